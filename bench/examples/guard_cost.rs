//! What the guard costs: a reconnect (3 entries) without a guard, with the in-process store,
//! and with Redis on loopback (one round trip); and a seal without a guard and with one (the
//! write-behind: a queue push). Interleaved rounds, medians per operation.
//!
//! ```text
//! cargo run --release -p state-recovery-bench --example guard_cost                     # in-process only
//! GUARD_BENCH_REDIS=redis://127.0.0.1:3660/ cargo run --release -p state-recovery-bench --features redis --example guard_cost
//! scripts/bench-guard.sh                                       # starts a redis-server for it
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use state_recovery::guard::Guard;
use state_recovery::protocol::Endpoint;
use state_recovery::{reconnect_message, state_key, KeyId, KeyRing, Pepper, Recovery};

const ROUNDS: usize = 21;
const RECOVERS: usize = 200;
const SEALS: usize = 2000;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// A client's reconnect message with 3 entries, sealed through `e` (so a guard knows them).
async fn message(e: &Endpoint, r: &Recovery, subject: &str) -> String {
    let first = e.recover_guarded(None, Some(subject)).await;
    let ctx = first.context();
    let tokens: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            let key = r.state_key(&state_key!("bench").with_instance(*n));
            let rev = ctx.next_revision(key);
            ctx.seal(
                key,
                rev,
                1,
                &serde_json::json!({"n": n, "items": [1, 2, 3]}),
            )
            .unwrap()
            .token()
            .as_str()
            .to_owned()
        })
        .collect();
    reconnect_message(ctx.salt(), tokens.iter().map(String::as_str))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let ring = KeyRing::single(KeyId::new("k1").unwrap(), Pepper::generate()).unwrap();
    let r = Recovery::builder(ring)
        .location_key(Pepper::generate())
        .build()
        .unwrap();
    #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
    let mut variants: Vec<(&str, Endpoint)> = vec![
        ("no guard", Endpoint::new(r.clone())),
        (
            "in-process store",
            Endpoint::new(r.clone()).with_guard(Guard::in_process(&r).unwrap()),
        ),
    ];
    #[cfg(feature = "redis")]
    if let Ok(url) = std::env::var("GUARD_BENCH_REDIS") {
        let store = state_recovery::guard::RedisStore::open(&url).unwrap();
        store
            .ping()
            .await
            .expect("GUARD_BENCH_REDIS does not answer");
        let store: std::sync::Arc<dyn state_recovery::guard::GuardStore> =
            std::sync::Arc::new(store);
        let guard = Guard::builder(&r, store).build().unwrap();
        variants.push((
            "redis (loopback)",
            Endpoint::new(r.clone()).with_guard(guard),
        ));
    }

    let mut messages = Vec::new();
    for (_, e) in &variants {
        messages.push(message(e, &r, "bench-user").await);
    }
    for (_, e) in &variants {
        if let Some(g) = e.guard() {
            g.flush().await.unwrap();
        }
    }

    let mut recover: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut seal: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    // Sealed in the seal rounds, never in the reconnect message (so it is never rolled back).
    let key = r.state_key(&state_key!("bench").with_instance("z"));
    for round in 0..ROUNDS {
        for (i, (_, e)) in variants.iter().enumerate() {
            let t0 = Instant::now();
            for _ in 0..RECOVERS {
                let rec = e
                    .recover_guarded(Some(messages[i].as_bytes()), Some("bench-user"))
                    .await;
                assert_eq!(rec.restored().len(), 3);
            }
            let per = t0.elapsed().as_secs_f64() / RECOVERS as f64;
            if round > 0 {
                recover[i].push(per);
            }
            let rec = e
                .recover_guarded(Some(messages[i].as_bytes()), Some("bench-user"))
                .await;
            let ctx = rec.context();
            let t0 = Instant::now();
            for n in 0..SEALS {
                let rev = ctx.next_revision(key);
                ctx.seal(key, rev, 1, &serde_json::json!({"n": n})).unwrap();
            }
            let per = t0.elapsed().as_secs_f64() / SEALS as f64;
            if round > 0 {
                seal[i].push(per);
            }
            if let Some(g) = e.guard() {
                g.flush().await.unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "{:<20} {:>18} {:>16}",
        "variant", "recover (3 entries)", "seal"
    );
    for (i, (name, _)) in variants.iter().enumerate() {
        println!(
            "{:<20} {:>15.1} µs {:>13.2} µs",
            name,
            median(recover[i].clone()) * 1e6,
            median(seal[i].clone()) * 1e6
        );
    }
    println!(
        "(medians of {} interleaved rounds; {RECOVERS} recovers and {SEALS} seals per round)",
        ROUNDS - 1
    );
}
