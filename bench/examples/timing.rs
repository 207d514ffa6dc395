//! Timing evidence for `Recovery::open` with dudect (Welch's t-test on two input classes).
//!
//! ```text
//! cargo run --release -p state-recovery-bench --example timing            # every comparison
//! cargo run --release -p state-recovery-bench --example timing -- --filter last
//! TIMING_SAMPLES=200000 cargo run --release -p state-recovery-bench --example timing   # a quicker look
//! ```
//!
//! Each comparison times `open` on `TIMING_SAMPLES` inputs per class (default 1,000,000),
//! drawn in random order from a pool of same-length tokens:
//!
//! | bench | left | right | what it asks |
//! |---|---|---|---|
//! | `valid_vs_first_tag_byte` | valid | tag wrong in byte 0 | an early mismatch |
//! | `valid_vs_last_tag_byte` | valid | tag wrong in byte 31 | a late mismatch |
//! | `valid_vs_random_tag` | valid | random tag | a tag unrelated to the right one |
//! | `first_vs_last_tag_byte` | wrong in byte 0 | wrong in byte 31 | does the compare stop early? |
//! | `wrong_location_vs_bad_tag` | authentic, other location | tag wrong in byte 31 | the MAC verdict alone |
//! | `control_same_pool` | wrong in byte 31 | the same tokens | the harness's own noise (A/A) |
//! | `control_twin_pool` | wrong in byte 31 | a twin pool, built alike | memory-layout effects (A/A) |
//!
//! A valid token does more work after the MAC (depth scan, JSON parse, the value), so
//! `valid_vs_*` are expected to differ; the last two benches isolate the tag comparison. A
//! |t| above 5 means "distinguishable with this many samples", not "exploitable". Evidence,
//! not a gate: the numbers depend on the machine and its load.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use dudect_bencher::rand::{Rng, RngCore, SeedableRng};
use dudect_bencher::{ctbench_main, BenchRng, Class, CtRunner};
use serde::de::IgnoredAny;
use state_recovery::{
    KeyId, KeyRing, Location, ManualClock, Pepper, Recovery, Salt, Scope, StateKey,
};

const POOL: usize = 1024;
const TAG_LEN: usize = 32;

struct Fixture {
    recovery: Recovery,
    salt: Salt,
    elsewhere: StateKey,
    valid: Vec<String>,
    first: Vec<String>,
    last: Vec<String>,
    random: Vec<String>,
    last_twin: Vec<String>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ring = KeyRing::single(
            KeyId::new("t1").unwrap(),
            Pepper::try_from_bytes(&std::array::from_fn::<u8, 32, _>(|i| {
                0x42 ^ (i as u8).wrapping_mul(37)
            }))
            .unwrap(),
        )
        .unwrap();
        let recovery = Recovery::builder(ring)
            .clock(ManualClock::new(1_700_000_000))
            .build()
            .unwrap();
        let salt = Salt::from_bytes([9; 16]);
        let key = recovery.state_key(&Location::new("src/timing.rs", 1, 1));
        let elsewhere = recovery.state_key(&Location::new("src/timing.rs", 2, 1));
        let mut rng = BenchRng::seed_from_u64(0x7157);
        let (mut valid, mut first, mut last, mut random) = (vec![], vec![], vec![], vec![]);
        let mut last_twin = vec![];
        for i in 0..POOL {
            // Same length for every token: a six-digit string payload.
            let value = format!("{:06}", rng.gen_range(0..1_000_000u32));
            let token = recovery
                .seal(&Scope::new(&salt), key, i as u64, 1, &value)
                .unwrap();
            let bytes = decode(token.as_str());
            let tag_at = bytes.len() - TAG_LEN;
            let mut f = bytes.clone();
            f[tag_at] ^= 1 + rng.gen::<u8>() % 255;
            let mut l = bytes.clone();
            l[bytes.len() - 1] ^= 1 + rng.gen::<u8>() % 255;
            let mut r = bytes.clone();
            rng.fill_bytes(&mut r[tag_at..]);
            let mut t = bytes.clone();
            t[bytes.len() - 1] ^= 1 + rng.gen::<u8>() % 255;
            last_twin.push(encode(&t));
            valid.push(token.into_string());
            first.push(encode(&f));
            last.push(encode(&l));
            random.push(encode(&r));
        }
        Fixture {
            recovery,
            salt,
            elsewhere,
            valid,
            first,
            last,
            random,
            last_twin,
        }
    })
}

fn decode(t: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(t).unwrap()
}

fn encode(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn samples() -> usize {
    std::env::var("TIMING_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
}

/// Times `open` of `left[i]` against `right[i]`, `samples()` of each, in random order.
fn compare(runner: &mut CtRunner, rng: &mut BenchRng, left: &[String], right: &[String]) {
    let f = fixture();
    let scope = Scope::new(&f.salt);
    let n = samples();
    let mut plan: Vec<(bool, u16)> = Vec::with_capacity(2 * n);
    let (mut nl, mut nr) = (0, 0);
    while nl < n || nr < n {
        let is_left = if nl == n {
            false
        } else if nr == n {
            true
        } else {
            rng.gen::<bool>()
        };
        *(if is_left { &mut nl } else { &mut nr }) += 1;
        plan.push((is_left, rng.gen_range(0..POOL as u16)));
    }
    // Warm the step-key cache so the first sample is not an outlier.
    let _ = f.recovery.open::<IgnoredAny>(&scope, &left[0]);
    for (is_left, i) in plan {
        let (class, token) = if is_left {
            (Class::Left, left[usize::from(i)].as_str())
        } else {
            (Class::Right, right[usize::from(i)].as_str())
        };
        runner.run_one(class, || f.recovery.open::<IgnoredAny>(&scope, token));
    }
}

fn valid_vs_first_tag_byte(runner: &mut CtRunner, rng: &mut BenchRng) {
    let f = fixture();
    compare(runner, rng, &f.valid, &f.first);
}

fn valid_vs_last_tag_byte(runner: &mut CtRunner, rng: &mut BenchRng) {
    let f = fixture();
    compare(runner, rng, &f.valid, &f.last);
}

fn valid_vs_random_tag(runner: &mut CtRunner, rng: &mut BenchRng) {
    let f = fixture();
    compare(runner, rng, &f.valid, &f.random);
}

fn first_vs_last_tag_byte(runner: &mut CtRunner, rng: &mut BenchRng) {
    let f = fixture();
    compare(runner, rng, &f.first, &f.last);
}

/// Authentic tokens opened at another location fail right after the MAC check (no JSON), so
/// this compares "tag verified" against "tag refused" with the same work either side.
fn wrong_location_vs_bad_tag(runner: &mut CtRunner, rng: &mut BenchRng) {
    let f = fixture();
    let scope = Scope::new(&f.salt);
    let n = samples();
    for _ in 0..2 * n {
        let i = rng.gen_range(0..POOL);
        if rng.gen::<bool>() {
            let t = f.valid[i].as_str();
            runner.run_one(Class::Left, || {
                f.recovery.open_at::<IgnoredAny>(&scope, f.elsewhere, t)
            });
        } else {
            let t = f.last[i].as_str();
            runner.run_one(Class::Right, || {
                f.recovery.open_at::<IgnoredAny>(&scope, f.elsewhere, t)
            });
        }
    }
}

fn control_same_pool(runner: &mut CtRunner, rng: &mut BenchRng) {
    let f = fixture();
    compare(runner, rng, &f.last, &f.last);
}

fn control_twin_pool(runner: &mut CtRunner, rng: &mut BenchRng) {
    let f = fixture();
    compare(runner, rng, &f.last, &f.last_twin);
}

ctbench_main!(
    valid_vs_first_tag_byte,
    valid_vs_last_tag_byte,
    valid_vs_random_tag,
    first_vs_last_tag_byte,
    wrong_location_vs_bad_tag,
    control_same_pool,
    control_twin_pool
);
