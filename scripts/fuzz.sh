#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each (default 60), with the token
# dictionary and the checked-in seed corpus; fails if any target finds a crash.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Works from a fresh clone: installs cargo-fuzz when missing, copies the seeds
# (fuzz/corpus/<target>/seed-*) into a working corpus under fuzz/target/corpus/<target>, and
# leaves crash inputs in fuzz/artifacts/<target>/. Uses the nightly toolchain when there is
# one; otherwise the default toolchain with RUSTC_BOOTSTRAP=1 (cargo-fuzz needs -Z flags).
# Extra libFuzzer flags can be passed in FUZZ_FLAGS (e.g. FUZZ_FLAGS=-jobs=2).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
case "$seconds" in
'' | *[!0-9]*)
    echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2
    exit 2
    ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

if cargo +nightly --version >/dev/null 2>&1; then
    fuzz=(cargo +nightly fuzz)
else
    echo "==> no nightly toolchain: using the default one with RUSTC_BOOTSTRAP=1"
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cd fuzz && "${fuzz[@]}" list)
fi

# Per-target input sizes: above the caps the targets configure, so the too-large paths run
# (the entry module's small limits: 512-byte tokens, 2 KiB bundles).
max_len() {
    case "$1" in
    decode_token) echo 1024 ;;
    *) echo 4096 ;;
    esac
}

cd fuzz
failed=()
for t in "${targets[@]}"; do
    corpus="target/corpus/$t"
    mkdir -p "$corpus"
    if [ -d "corpus/$t" ]; then
        find "corpus/$t" -maxdepth 1 -type f -name 'seed-*' -exec cp -n {} "$corpus/" \;
    fi
    echo "==> fuzz $t for ${seconds}s"
    # shellcheck disable=SC2086 # FUZZ_FLAGS is a list of flags
    if ! "${fuzz[@]}" run "$t" "$corpus" -- \
        -max_total_time="$seconds" \
        -max_len="$(max_len "$t")" \
        -rss_limit_mb=512 \
        -timeout=10 \
        -dict=token.dict \
        -print_final_stats=1 \
        ${FUZZ_FLAGS:-}; then
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz: crash or failure in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${seconds}s each without a crash"
