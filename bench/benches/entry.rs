//! `open` and `seal` of one entry against the ideal pipeline on the same token, at 64 B,
//! 200 B, 1 KiB and 16 KiB of payload. See BENCHMARKS.md.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[path = "support/mod.rs"]
mod support;

use support::{Fixture, SIZES};

fn open(c: &mut Criterion) {
    let mut g = c.benchmark_group("open");
    for size in SIZES {
        let f = Fixture::new(size);
        assert_eq!(f.ours_open(), f.ideal_open());
        assert_eq!(f.ours_open(), f.ideal_open_simd());
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("ours", size), &f, |b, f| {
            b.iter(|| black_box(f.ours_open()));
        });
        g.bench_with_input(BenchmarkId::new("ideal", size), &f, |b, f| {
            b.iter(|| black_box(f.ideal_open()));
        });
        g.bench_with_input(BenchmarkId::new("ideal-b64simd", size), &f, |b, f| {
            b.iter(|| black_box(f.ideal_open_simd()));
        });
    }
    g.finish();
}

fn seal(c: &mut Criterion) {
    let mut g = c.benchmark_group("seal");
    for size in SIZES {
        let f = Fixture::new(size);
        assert_eq!(f.ours_seal().as_str().len(), f.ideal_seal().len());
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("ours", size), &f, |b, f| {
            b.iter(|| black_box(f.ours_seal()));
        });
        g.bench_with_input(BenchmarkId::new("ideal", size), &f, |b, f| {
            b.iter(|| black_box(f.ideal_seal()));
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! { name = benches; config = config(); targets = open, seal }
criterion_main!(benches);
