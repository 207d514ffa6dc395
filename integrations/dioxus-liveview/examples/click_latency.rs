//! What the adapter costs a user: the same Dioxus app served by plain dioxus-liveview
//! (`LiveviewRouter::with_app`, where `use_recoverable` is an ordinary signal) and by
//! `LiveviewApp` (sealed on every write), on loopback, in one process, interleaved round by
//! round (the order alternating) so the machine's load hits both alike.
//!
//! - **click**: a Dioxus click event sent → the frame that shows its new value received (the
//!   last message of the render; with the adapter the state update comes before it);
//! - **connect**: the socket opened (with the adapter: the reconnect message carrying the
//!   app's entries, verified) → the first render received.
//!
//! ```text
//! cargo run --release -p state-recovery-dioxus --example click_latency -- [ROUNDS] [CLICKS]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use std::time::{Duration, Instant};

use dioxus::prelude::*;
use dioxus_liveview::LiveviewRouter as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use state_recovery::layer::StateRecoveryLayer;
use state_recovery::{state_key, KeyId, KeyRing, Pepper, Recovery};
use state_recovery_dioxus::{use_recoverable, LiveviewApp};
use tokio_tungstenite::tungstenite::Message;

#[path = "../tests/support/events.rs"]
mod events;
use events::click;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Three pieces of state, one button.
fn app() -> Element {
    let mut c = use_recoverable(state_key!("c"), || 0_u64);
    let mut note = use_recoverable(state_key!("note"), || "a note of some length".repeat(4));
    let mut items = use_recoverable(state_key!("items"), || vec![1_u32, 2, 3, 4, 5]);
    // Written once (on the first connection), so the stash holds all three.
    use_hook(move || {
        if *c.peek() == 0 {
            note.write().push('.');
            items.write().push(6);
        }
    });
    rsx! {
        button { onclick: move |_| c += 1, "c={c}" }
        p { "{note}" }
        ul { for i in items.read().iter() { li { key: "{i}", "{i}" } } }
    }
}

/// Reads until a binary frame containing `text`; returns the tokens of state updates seen.
async fn frame_with(ws: &mut Ws, text: &str, tokens: &mut Vec<(String, u64, String)>) {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no message in 10 s")
            .expect("socket closed")
            .unwrap();
        match m {
            Message::Binary(b) if b.windows(text.len()).any(|w| w == text.as_bytes()) => return,
            Message::Text(t) => keep(tokens, &serde_json::from_str(t.as_str()).unwrap()),
            _ => {}
        }
    }
}

/// Keeps the newest entry per key, as the page's stash does.
fn keep(tokens: &mut Vec<(String, u64, String)>, v: &Value) {
    if v["type"] == "state" {
        let key = v["key"].as_str().unwrap().to_owned();
        tokens.retain(|(k, _, _)| *k != key);
        let token = v["token"].as_str().unwrap().to_owned();
        tokens.push((key, v["rev"].as_u64().unwrap(), token));
    }
}

struct Target {
    name: &'static str,
    url: String,
    recovering: bool,
    click_us: Vec<f64>,
    connect_us: Vec<f64>,
    /// The adapter's client: salt and entries, as the page's stash.
    salt: Option<String>,
    tokens: Vec<(String, u64, String)>,
}

impl Target {
    async fn round(&mut self, clicks: u64) {
        let t0 = Instant::now();
        let (mut ws, _) = tokio_tungstenite::connect_async(&self.url).await.unwrap();
        if self.recovering {
            let entries: Vec<&str> = self.tokens.iter().map(|(_, _, t)| t.as_str()).collect();
            let hello = json!({"type": "recover", "salt": self.salt, "entries": entries});
            ws.send(Message::text(hello.to_string())).await.unwrap();
        }
        // The first render: `c=` and whatever it is (the stash restores it on the adapter).
        let mut first = None;
        while first.is_none() {
            let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            match m {
                Message::Binary(b) => {
                    if let Some(i) = b.windows(2).position(|w| w == b"c=") {
                        let digits: String = b[i + 2..]
                            .iter()
                            .take_while(|c| c.is_ascii_digit())
                            .map(|&c| c as char)
                            .collect();
                        first = digits.parse::<u64>().ok();
                    }
                }
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["type"] == "salt" {
                        self.salt = v["salt"].as_str().map(str::to_owned);
                        self.tokens.clear();
                    }
                    keep(&mut self.tokens, &v);
                }
                _ => {}
            }
        }
        self.connect_us.push(t0.elapsed().as_secs_f64() * 1e6);
        let mut count = first.unwrap();
        for _ in 0..clicks {
            count += 1;
            let want = format!("c={count}");
            let t = Instant::now();
            ws.send(Message::text(click(1))).await.unwrap();
            frame_with(&mut ws, &want, &mut self.tokens).await;
            self.click_us.push(t.elapsed().as_secs_f64() * 1e6);
        }
        ws.close(None).await.ok();
    }
}

fn stats(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    (q(0.5), q(0.99))
}

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    use axum::serve::ListenerExt as _;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("ws://{addr}")
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(20, |a| a.parse().unwrap());
    let clicks: u64 = args.next().map_or(50, |a| a.parse().unwrap());
    let recovery =
        Recovery::builder(KeyRing::single(KeyId::new("k1").unwrap(), Pepper::generate()).unwrap())
            .build()
            .unwrap();
    let bare = serve(axum::Router::new().with_app("/", app)).await;
    let ours = serve(
        LiveviewApp::new(StateRecoveryLayer::new(recovery))
            .router(app)
            .unwrap(),
    )
    .await;
    let mut targets = [
        Target {
            name: "dioxus-liveview",
            url: format!("{bare}/ws"),
            recovering: false,
            click_us: vec![],
            connect_us: vec![],
            salt: None,
            tokens: vec![],
        },
        Target {
            name: "with state-recovery",
            url: format!("{ours}/_state_recovery/ws"),
            recovering: true,
            click_us: vec![],
            connect_us: vec![],
            salt: None,
            tokens: vec![],
        },
    ];
    // Warm-up, then the measured rounds.
    for t in &mut targets {
        t.round(20).await;
        t.click_us.clear();
        t.connect_us.clear();
    }
    for r in 0..rounds {
        let order: [usize; 2] = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            targets[i].round(clicks).await;
        }
    }
    println!("{rounds} rounds × {clicks} clicks, interleaved; µs (median / p99)");
    let mut medians = vec![];
    for t in &mut targets {
        let (cm, cp) = stats(&mut t.click_us);
        let (om, op) = stats(&mut t.connect_us);
        println!(
            "{:>20}: click → its frame {cm:7.1} / {cp:7.1}   connect → first render {om:7.1} / {op:7.1}   (entries sent: {})",
            t.name,
            t.tokens.len()
        );
        medians.push((cm, om));
    }
    println!(
        "ratio (ours / bare): click {:.2}, connect {:.2}",
        medians[1].0 / medians[0].0,
        medians[1].1 / medians[0].1
    );
}
