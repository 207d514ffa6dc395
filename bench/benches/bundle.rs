//! Reconnect bundles: `open_bundle` of 1,000 entries of 200 B against 1,000 × the ideal, and
//! scaling: bundles of 10, 100, 1,000 and 1,024 (the cap) entries, and single payloads up to
//! the 64 KiB token cap.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[path = "support/mod.rs"]
mod support;

use support::{BundleFixture, Fixture};

/// The largest payload whose token fits the default 64 KiB cap: 49,152 raw bytes, less the
/// 72 bytes of header and tag for a 2-byte key id.
const MAX_PAYLOAD: usize = 65_536 / 4 * 3 - 72;

fn open_bundle(c: &mut Criterion) {
    let mut g = c.benchmark_group("open-bundle-1000x200B");
    let f = BundleFixture::new(1000, 200);
    assert_eq!(f.ours().len(), 1000);
    assert_eq!(f.ours_typed(), f.ideal());
    g.throughput(Throughput::Elements(1000));
    g.bench_function("ours", |b| b.iter(|| black_box(f.ours())));
    g.bench_function("ours+get-typed", |b| b.iter(|| black_box(f.ours_typed())));
    g.bench_function("ideal-x1000", |b| b.iter(|| black_box(f.ideal())));
    g.finish();
}

fn bundle_scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("bundle-scaling");
    for n in [10, 100, 1000, 1024] {
        let f = BundleFixture::new(n, 200);
        assert_eq!(f.ours().len(), n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("ours", n), &f, |b, f| {
            b.iter(|| black_box(f.ours()));
        });
        g.bench_with_input(BenchmarkId::new("ideal", n), &f, |b, f| {
            b.iter(|| black_box(f.ideal()));
        });
    }
    g.finish();
}

fn payload_scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("payload-scaling");
    for size in [64, 1024, 4096, 16 * 1024, 32 * 1024, MAX_PAYLOAD] {
        let f = Fixture::new(size);
        assert!(f.token.as_str().len() <= 65_536);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("ours", size), &f, |b, f| {
            b.iter(|| black_box(f.ours_open()));
        });
        g.bench_with_input(BenchmarkId::new("ideal", size), &f, |b, f| {
            b.iter(|| black_box(f.ideal_open()));
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! { name = benches; config = config(); targets = open_bundle, bundle_scaling, payload_scaling }
criterion_main!(benches);
