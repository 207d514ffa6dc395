//! How long a click waits for its reply: from sending `{"type":"event",...,"action":"inc"}` to
//! the counter's `render` (unnumbered: the `state` frame then the `render` frame; numbered,
//! `"$seq"` on a worker with events: the one `batch` frame carrying both and the
//! applied-events entry), against running demo workers on loopback, interleaved round by
//! round (the order rotating) so load on the machine hits every target alike.
//!
//! ```text
//! cargo run --release -p state-recovery-bench --example event_reply -- RUNS NAME=ws://..[,numbered] ...
//! ```
//! e.g. `before=ws://127.0.0.1:3853/ws after=ws://127.0.0.1:3854/ws
//! after-numbered=ws://127.0.0.1:3854/ws,numbered` (a target named with `,numbered` numbers
//! its events, which needs a worker whose `recovered` announces `applied`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use std::time::{Duration, Instant};

use futures_util::SinkExt as _;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[path = "support/ws.rs"]
mod ws;
use ws::{next, Ws};

/// Whether `m` is (or, for a batch, carries) the counter's render.
fn counter_render(m: &Value) -> bool {
    match m["type"].as_str() {
        Some("render") => m["id"] == "counter",
        Some("batch") => m["messages"]
            .as_array()
            .is_some_and(|a| a.iter().any(counter_render)),
        _ => false,
    }
}

struct Target {
    name: String,
    ws: Ws,
    numbered: bool,
    seq: u64,
    times: Vec<Duration>,
}

impl Target {
    async fn open(spec: &str) -> Self {
        let (name, rest) = spec.split_once('=').expect("NAME=URL[,numbered]");
        let (url, numbered) = match rest.strip_suffix(",numbered") {
            Some(url) => (url, true),
            None => (rest, false),
        };
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let hello = json!({"type": "recover", "salt": null, "entries": []});
        ws.send(Message::text(hello.to_string())).await.unwrap();
        let mut renders = 0;
        let mut announced = false;
        while renders < 3 {
            let m = next(&mut ws).await;
            match m["type"].as_str() {
                Some("recovered") => announced = m["applied"].is_u64(),
                Some("render") => renders += 1,
                _ => {}
            }
        }
        assert!(
            announced || !numbered,
            "{name}: the worker does not announce applied"
        );
        Self {
            name: name.to_owned(),
            ws,
            numbered,
            seq: 0,
            times: Vec::new(),
        }
    }

    async fn click(&mut self) {
        let mut e = json!({"type": "event", "target": "counter", "action": "inc", "value": null});
        if self.numbered {
            self.seq += 1;
            e["$seq"] = json!(self.seq);
        }
        let text = e.to_string();
        let t0 = Instant::now();
        self.ws.send(Message::text(text)).await.unwrap();
        while !counter_render(&next(&mut self.ws).await) {}
        self.times.push(t0.elapsed());
    }
}

fn pct(v: &mut [Duration], p: usize) -> f64 {
    v.sort();
    let i = (v.len() * p / 100).min(v.len() - 1);
    v[i].as_secs_f64() * 1e3
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args
        .next()
        .expect("usage: event_reply RUNS NAME=URL ...")
        .parse()
        .unwrap();
    let mut targets = Vec::new();
    for spec in args {
        targets.push(Target::open(&spec).await);
    }
    for t in &mut targets {
        for _ in 0..20 {
            t.click().await; // warm up
        }
        t.times.clear();
    }
    let n = targets.len();
    for i in 0..runs {
        for k in 0..n {
            targets[(i + k) % n].click().await;
        }
    }
    println!("runs {runs} per target, interleaved; click sent -> counter render received");
    for t in &mut targets {
        let (m, p) = (pct(&mut t.times, 50), pct(&mut t.times, 99));
        println!("{:<24} median {m:.3} ms, p99 {p:.3} ms", t.name);
    }
}
