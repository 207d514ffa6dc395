//! The axum layer in process (no sockets, so no kernel or scheduler noise): CPU per request
//! for a bare app, the same app behind `StateRecoveryLayer`, and behind the layer with the
//! handler taking `Recovered` — with no bundle, and with a 20-entry bundle in the
//! `State-Recovery` header or in the JSON body. The loopback load test
//! (`scripts/bench-load.sh`) measures the same apps over TCP.
//!
//! After criterion, an interleaved pass (as in `bench/benches/ratios.rs`) prints the per-request
//! cost of each variant against the bare app, measured in alternating batches.
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::hint::black_box;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use criterion::{criterion_group, Criterion};
use state_recovery::layer::{Recovered, StateRecoveryLayer};
use state_recovery::{Salt, Scope, StateKey};
use tower::ServiceExt as _;

#[path = "support/mod.rs"]
mod support;

use support::{paired, recovery, state_key, state_of_len, State};

const ENTRIES: usize = 20;

fn apps() -> [(&'static str, Router); 3] {
    let bare = || async { "ok 0" };
    let keys: Vec<StateKey> = (0..ENTRIES).map(|i| state_key(&recovery(), i)).collect();
    let extract = move |r: Recovered| {
        let keys = keys.clone();
        async move {
            let n = keys.iter().filter_map(|k| r.get::<State>(*k)).count();
            format!("ok {n}")
        }
    };
    [
        ("bare", Router::new().route("/", get(bare).post(bare))),
        (
            "layer",
            Router::new()
                .route("/", get(bare).post(bare))
                .layer(StateRecoveryLayer::new(recovery())),
        ),
        (
            "extract",
            Router::new()
                .route("/", get(extract.clone()).post(extract))
                .layer(StateRecoveryLayer::new(recovery())),
        ),
    ]
}

/// The reconnect message with `ENTRIES` tokens of 200-byte payloads.
fn message() -> serde_json::Value {
    let r = recovery();
    let salt = Salt::generate();
    let scope = Scope::new(&salt);
    let value = state_of_len(200);
    let tokens: Vec<String> = (0..ENTRIES)
        .map(|i| {
            r.seal(&scope, state_key(&r, i), 1, 1, &value)
                .unwrap()
                .into_string()
        })
        .collect();
    serde_json::json!({ "type": "recover", "salt": salt.encode(), "entries": tokens })
}

fn layer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let message = message();
    let header = URL_SAFE_NO_PAD.encode(message.to_string());
    let body = serde_json::json!({ "state_recovery": message }).to_string();
    let none = || Request::get("/").body(Body::empty()).unwrap();
    let in_header = || {
        Request::get("/")
            .header("state-recovery", header.as_str())
            .body(Body::empty())
            .unwrap()
    };
    let in_body = || {
        Request::post("/")
            .header("content-type", "application/json")
            .body(Body::from(body.clone()))
            .unwrap()
    };
    let mut g = c.benchmark_group("layer-request");
    for (name, app) in apps() {
        // Each response must be a 200 that says how many entries the handler read.
        let check = |req: Request<Body>, want: &str| {
            let res = rt.block_on(app.clone().oneshot(req)).unwrap();
            assert!(res.status().is_success());
            let bytes = rt
                .block_on(axum::body::to_bytes(res.into_body(), 1024))
                .unwrap();
            assert_eq!(&bytes[..], want.as_bytes(), "{name}");
        };
        check(none(), "ok 0");
        g.bench_function(format!("{name}/no-bundle"), |b| {
            b.iter(|| black_box(rt.block_on(app.clone().oneshot(none())).unwrap()));
        });
        if name == "extract" {
            check(in_header(), &format!("ok {ENTRIES}"));
            check(in_body(), &format!("ok {ENTRIES}"));
            g.bench_function(format!("{name}/header-{ENTRIES}"), |b| {
                b.iter(|| black_box(rt.block_on(app.clone().oneshot(in_header())).unwrap()));
            });
            g.bench_function(format!("{name}/body-{ENTRIES}"), |b| {
                b.iter(|| black_box(rt.block_on(app.clone().oneshot(in_body())).unwrap()));
            });
        }
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

/// Builds one request of a variant.
type MakeRequest<'a> = Box<dyn Fn() -> Request<Body> + 'a>;

/// Every variant against the bare app, interleaved; prints a Markdown table.
fn interleaved() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let message = message();
    let header = URL_SAFE_NO_PAD.encode(message.to_string());
    let body = serde_json::json!({ "state_recovery": message }).to_string();
    let [(_, bare), (_, layer), (_, extract)] = apps();
    // The extractor alone: a handler that takes `Recovered` and answers as the bare one does
    // (the `extract` handler also clones its 20 keys, looks each up and formats its answer).
    let extract_only = Router::new()
        .route("/", get(|_: Recovered| async { "ok 0" }))
        .layer(StateRecoveryLayer::new(recovery()));
    let run = |app: &Router, req: Request<Body>| {
        black_box(rt.block_on(app.clone().oneshot(req)).unwrap());
    };
    let none = || Request::get("/").body(Body::empty()).unwrap();
    let variants: [(&str, &Router, MakeRequest<'_>); 5] = [
        ("layer, no bundle", &layer, Box::new(none)),
        (
            "layer + `Recovered` (handler answers at once), no bundle",
            &extract_only,
            Box::new(none),
        ),
        ("layer + `Recovered`, no bundle", &extract, Box::new(none)),
        (
            "layer + `Recovered`, 20 entries in the header",
            &extract,
            Box::new(|| {
                Request::get("/")
                    .header("state-recovery", header.as_str())
                    .body(Body::empty())
                    .unwrap()
            }),
        ),
        (
            "layer + `Recovered`, 20 entries in the JSON body",
            &extract,
            Box::new(|| {
                Request::post("/")
                    .header("content-type", "application/json")
                    .body(Body::from(body.clone()))
                    .unwrap()
            }),
        ),
    ];
    println!("| request (in process, no sockets) | median | bare app | median | ratio | added |");
    println!("|---|---:|---|---:|---:|---:|");
    for (what, app, req) in &variants {
        let r = paired(41, &mut || run(app, req()), &mut || run(&bare, none()));
        println!(
            "| {what} | {:.2} µs | bare, no bundle | {:.2} µs | {:.3} | {:.2} µs |",
            r.ours / 1e3,
            r.base / 1e3,
            r.ratio,
            (r.ours - r.base) / 1e3
        );
    }
}

criterion_group! { name = benches; config = config(); targets = layer }

fn main() {
    benches();
    if !std::env::args().any(|a| a == "--list" || a == "--test") {
        interleaved();
    }
    Criterion::default().configure_from_args().final_summary();
}
