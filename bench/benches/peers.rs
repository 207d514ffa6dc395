//! Peers on the same payloads: cookie 0.18's SignedJar (add; get + parse) and the ReactPy
//! PR #1204 verification scheme (an entry sealed just now and one sealed 40 hours ago).
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[path = "support/mod.rs"]
mod support;

use support::{Fixture, SIZES};

fn peers_open(c: &mut Criterion) {
    let mut g = c.benchmark_group("peers-open");
    for size in SIZES {
        let f = Fixture::new(size);
        assert_eq!(f.ours_open(), f.jar_get_parse());
        assert_eq!(f.ours_open(), f.reactpy_open_fresh());
        assert_eq!(f.ours_open(), f.reactpy_open_40h());
        assert_eq!(f.ours_open(), f.ours_open_40h());
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("ours", size), &f, |b, f| {
            b.iter(|| black_box(f.ours_open()));
        });
        g.bench_with_input(BenchmarkId::new("ours-40h", size), &f, |b, f| {
            b.iter(|| black_box(f.ours_open_40h()));
        });
        g.bench_with_input(BenchmarkId::new("signedjar-get-parse", size), &f, |b, f| {
            b.iter(|| black_box(f.jar_get_parse()));
        });
        g.bench_with_input(BenchmarkId::new("reactpy-fresh", size), &f, |b, f| {
            b.iter(|| black_box(f.reactpy_open_fresh()));
        });
        g.bench_with_input(BenchmarkId::new("reactpy-40h", size), &f, |b, f| {
            b.iter(|| black_box(f.reactpy_open_40h()));
        });
    }
    g.finish();
}

fn peers_seal(c: &mut Criterion) {
    let mut g = c.benchmark_group("peers-seal");
    for size in SIZES {
        let f = Fixture::new(size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("ours", size), &f, |b, f| {
            b.iter(|| black_box(f.ours_seal()));
        });
        g.bench_with_input(BenchmarkId::new("signedjar-add", size), &f, |b, f| {
            b.iter(|| black_box(f.jar_add()));
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

criterion_group! { name = benches; config = config(); targets = peers_open, peers_seal }
criterion_main!(benches);
