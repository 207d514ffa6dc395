//! How long a reconnecting tab waits for its page: from opening the socket to the **last**
//! message of the first render (every component's `render`), against a running demo worker,
//! interleaved with a same-run baseline (a bare tokio-tungstenite echo on loopback: socket
//! open → first reply). Run by `scripts/bench-first-render.sh`.
//!
//! ```text
//! cargo run --release -p state-recovery-bench --example first_render -- ws://127.0.0.1:3951/ws [RUNS [OTHER_URL]]
//! ```
//! With `OTHER_URL` (a worker of another release), both are measured in the same rounds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

#[path = "support/ws.rs"]
mod ws;
use ws::next;

/// A tab with state in every component: its salt and tokens.
async fn build_state(url: &str) -> (String, Vec<String>) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let hello = json!({"type": "recover", "salt": null, "entries": []});
    ws.send(Message::text(hello.to_string())).await.unwrap();
    let mut salt = String::new();
    let mut tokens = std::collections::BTreeMap::new();
    let events = [
        json!({"type": "event", "target": "counter", "action": "inc"}),
        json!({"type": "event", "target": "todos", "action": "add", "value": "milk"}),
        json!({"type": "event", "target": "wizard", "action": "next"}),
    ];
    for e in &events {
        ws.send(Message::text(e.to_string())).await.unwrap();
    }
    while tokens.len() < 3 {
        let m = next(&mut ws).await;
        match m["type"].as_str() {
            Some("salt") => salt = m["salt"].as_str().unwrap().to_owned(),
            Some("state") => {
                tokens.insert(
                    m["key"].as_str().unwrap().to_owned(),
                    m["token"].as_str().unwrap().to_owned(),
                );
            }
            _ => {}
        }
    }
    (salt, tokens.into_values().collect())
}

/// One reconnect: (socket open → `recovered`, socket open → last render).
async fn reconnect(url: &str, hello: &str) -> (Duration, Duration) {
    let t0 = Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::text(hello)).await.unwrap();
    let (mut recovered, mut renders) = (None, 0);
    while renders < 3 {
        let m = next(&mut ws).await;
        match m["type"].as_str() {
            Some("recovered") => {
                assert_eq!(m["restored"], 3, "{m}");
                recovered = Some(t0.elapsed());
            }
            Some("render") => renders += 1,
            _ => {}
        }
    }
    let last = t0.elapsed();
    let _ = ws.close(None).await;
    (recovered.unwrap(), last)
}

/// The baseline: a bare WebSocket echo in this process.
async fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tcp.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_text() && ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    format!("ws://{addr}")
}

async fn echo_once(url: &str) -> Duration {
    let t0 = Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::text("ping")).await.unwrap();
    let _ = ws.next().await;
    let d = t0.elapsed();
    let _ = ws.close(None).await;
    d
}

fn pct(v: &mut [Duration], p: usize) -> f64 {
    v.sort();
    let i = (v.len() * p / 100).min(v.len() - 1);
    v[i].as_secs_f64() * 1e3
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .expect("usage: first_render WS_URL [RUNS [OTHER_WS_URL]]");
    let runs: usize = args.next().map_or(300, |n| n.parse().unwrap());
    // A second worker (another release) measured in the same rounds, for a before/after.
    let other = args.next();
    let (salt, tokens) = build_state(&url).await;
    let hello =
        json!({"type": "recover", "salt": salt, "entries": tokens, "input": {}}).to_string();
    let other = match other {
        Some(u) => {
            let (salt, tokens) = build_state(&u).await;
            let h = json!({"type": "recover", "salt": salt, "entries": tokens, "input": {}});
            Some((u, h.to_string()))
        }
        None => None,
    };
    let echo = echo_server().await;
    // Warm both up.
    for _ in 0..20 {
        reconnect(&url, &hello).await;
        if let Some((u, h)) = &other {
            reconnect(u, h).await;
        }
        echo_once(&echo).await;
    }
    let (mut rec, mut last, mut base) = (Vec::new(), Vec::new(), Vec::new());
    let (mut rec2, mut last2) = (Vec::new(), Vec::new());
    for i in 0..runs {
        // Interleaved, rotating which goes first, so load on the machine hits each alike.
        for k in 0..3 {
            match (i + k) % 3 {
                0 => {
                    let (r, l) = reconnect(&url, &hello).await;
                    rec.push(r);
                    last.push(l);
                }
                1 => base.push(echo_once(&echo).await),
                _ => {
                    if let Some((u, h)) = &other {
                        let (r, l) = reconnect(u, h).await;
                        rec2.push(r);
                        last2.push(l);
                    }
                }
            }
        }
    }
    let (b50, b99) = (pct(&mut base, 50), pct(&mut base, 99));
    println!("runs {runs}, 3 entries restored per reconnect");
    let report = |name: &str, rec: &mut Vec<Duration>, last: &mut Vec<Duration>| {
        let (r50, r99) = (pct(rec, 50), pct(rec, 99));
        let (l50, l99) = (pct(last, 50), pct(last, 99));
        println!(
            "{name}socket open -> recovered:              median {r50:.3} ms, p99 {r99:.3} ms"
        );
        println!(
            "{name}socket open -> last render (3 of 3):   median {l50:.3} ms, p99 {l99:.3} ms"
        );
        println!(
            "{name}last render / baseline:                median {:.2}x",
            l50 / b50
        );
    };
    report("", &mut rec, &mut last);
    if let Some((u, _)) = &other {
        println!("other worker ({u}):");
        report("  ", &mut rec2, &mut last2);
    }
    println!("baseline, bare echo (open -> reply):   median {b50:.3} ms, p99 {b99:.3} ms");
}
