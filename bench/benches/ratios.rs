//! The target check: each comparison measured *interleaved* (batches of ours and of the
//! baseline alternate, ABBA, for many rounds), so a neighbour's compile that slows one batch
//! slows its partner too. Prints a Markdown table of medians and the median per-round ratio.
//!
//! `cargo bench -p state-recovery-bench --bench ratios` (add `-- quick` for fewer rounds).
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]
#![allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

use std::hint::black_box;

#[path = "support/mod.rs"]
mod support;

use support::{fmt_ns, paired, BundleFixture, Fixture, Row, SIZES};

/// `target`: the ratio must be at most this (None: informational).
fn row(what: &str, base: &str, r: &Row, target: Option<f64>) {
    let verdict = match target {
        Some(t) if r.ratio <= t => format!("≤ {t} met"),
        Some(t) => format!("≤ {t} **missed**"),
        None => "info".into(),
    };
    println!(
        "| {what} | {} | {base} | {} | {:.3} | {verdict} |",
        fmt_ns(r.ours),
        fmt_ns(r.base),
        r.ratio
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let rounds = if quick { 21 } else { 81 };
    println!("| ours | median | baseline | median | ratio (median of rounds) | target |");
    println!("|---|---:|---|---:|---:|---|");
    for size in SIZES {
        let f = Fixture::new(size);
        let strict = match size {
            200 => Some(1.3),
            16_384 => Some(1.1),
            _ => None,
        };
        let mut ours = || {
            black_box(f.ours_open());
        };
        let r = paired(rounds, &mut ours, &mut || {
            black_box(f.ideal_open());
        });
        row(&format!("open {size} B"), "ideal", &r, strict);
        let r = paired(rounds, &mut ours, &mut || {
            black_box(f.ideal_open_simd());
        });
        row(&format!("open {size} B"), "ideal, base64-simd", &r, None);
        let r = paired(rounds, &mut ours, &mut || {
            black_box(f.jar_get_parse());
        });
        row(
            &format!("open {size} B"),
            "SignedJar get+parse",
            &r,
            Some(1.0),
        );
        let r = paired(rounds, &mut ours, &mut || {
            black_box(f.reactpy_open_fresh());
        });
        row(&format!("open {size} B"), "ReactPy, fresh", &r, Some(1.0));
        let r = paired(
            rounds,
            &mut || {
                black_box(f.ours_open_40h());
            },
            &mut || {
                black_box(f.reactpy_open_40h());
            },
        );
        let t: f64 = if size == 200 { 1.0 / 3.0 } else { 1.0 };
        row(
            &format!("open {size} B, 40 h old"),
            "ReactPy, 40 h old",
            &r,
            Some((t * 1000.0).round() / 1000.0),
        );
        let mut ours_seal = || {
            black_box(f.ours_seal());
        };
        let r = paired(rounds, &mut ours_seal, &mut || {
            black_box(f.ideal_seal());
        });
        row(&format!("seal {size} B"), "ideal", &r, strict);
        let r = paired(rounds, &mut ours_seal, &mut || {
            black_box(f.jar_add());
        });
        row(&format!("seal {size} B"), "SignedJar add", &r, None);
    }
    let rounds = if quick { 11 } else { 31 };
    let b = BundleFixture::new(1000, 200);
    let r = paired(
        rounds,
        &mut || {
            black_box(b.ours());
        },
        &mut || {
            black_box(b.ideal());
        },
    );
    row("open_bundle 1,000 × 200 B", "1,000 × ideal", &r, Some(1.3));
    let r = paired(
        rounds,
        &mut || {
            black_box(b.ours_typed());
        },
        &mut || {
            black_box(b.ideal());
        },
    );
    row(
        "open_bundle 1,000 × 200 B + get typed",
        "1,000 × ideal",
        &r,
        None,
    );

    // Scaling: is the cost linear in entries and in bytes?
    for n in [10, 100, 1000, 1024] {
        let b = BundleFixture::new(n, 200);
        let r = paired(
            rounds,
            &mut || {
                black_box(b.ours());
            },
            &mut || {
                black_box(b.ideal());
            },
        );
        row(
            &format!(
                "open_bundle {n} × 200 B ({} per entry)",
                fmt_ns(r.ours / n as f64)
            ),
            &format!("{n} × ideal ({} per entry)", fmt_ns(r.base / n as f64)),
            &r,
            None,
        );
    }
    for size in [4096, 32 * 1024, MAX_PAYLOAD] {
        let f = Fixture::new(size);
        let r = paired(
            rounds,
            &mut || {
                black_box(f.ours_open());
            },
            &mut || {
                black_box(f.ideal_open());
            },
        );
        let per_kib = |ns: f64| fmt_ns(ns * 1024.0 / size as f64);
        row(
            &format!("open {size} B ({} per KiB)", per_kib(r.ours)),
            &format!("ideal ({} per KiB)", per_kib(r.base)),
            &r,
            None,
        );
    }
}

/// The largest payload whose token fits the default 64 KiB cap (2-byte key id).
const MAX_PAYLOAD: usize = 65_536 / 4 * 3 - 72;
