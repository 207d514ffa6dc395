//! A bounded loopback load test of the axum layer: one binary, two roles.
//!
//! ```text
//! loadgen server --app bare|layer|extract-only|extract [--port 3901] [--seconds 30]
//! loadgen client [--port 3901] [--seconds 10] [--connections 32] [--rate N]
//!                [--bundle none|header|body] [--entries 20]
//! ```
//!
//! - `bare`: a minimal axum app (one route, a short text reply); `layer`: the same app behind
//!   `StateRecoveryLayer`; `extract-only`: behind the layer, the handler taking `Recovered` and
//!   answering as the bare one does (the extractor's own cost); `extract`: behind the layer,
//!   with the handler taking `Recovered` and reading every entry as a typed value (what a page
//!   that restores state does; it also clones its keys and formats its answer).
//! - The client speaks HTTP/1.1 keep-alive over raw TCP on 127.0.0.1 only. Without `--rate` it
//!   is closed-loop (throughput); with `--rate` it is open-loop at that many requests per second
//!   in total (a connection that falls behind its schedule sends at once), and latency runs
//!   from the write of a request to the last byte of its response. It seals its own bundle
//!   with the server's fixed demo key.
//! - The server prints its CPU time per request when it stops (every thread's, from
//!   `/proc/self/task/*/schedstat`).
//! - Both stop by themselves: the client after `--seconds`, the server after its `--seconds`.
//!
//! `scripts/bench-load.sh` pins them apart (taskset) and runs every scenario; see
//! BENCHMARKS.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::panic
)]
#![allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use state_recovery::layer::{Recovered, StateRecoveryLayer};
use state_recovery::{KeyId, KeyRing, Location, Pepper, Recovery, Salt, Scope, StateKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A to-do row, as in the benches.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Todo {
    id: u32,
    text: String,
    done: bool,
}

/// Component state of about 200 bytes of JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    title: String,
    todos: Vec<Todo>,
}

fn state() -> State {
    State {
        title: "Groceries and chores for the week".into(),
        todos: (0..2)
            .map(|id| Todo {
                id,
                text: format!("write the benchmark report, part {id}"),
                done: id % 2 == 0,
            })
            .collect(),
    }
}

/// The demo configuration both roles share: a fixed (public!) pepper, never for production.
fn recovery() -> Recovery {
    let ring = KeyRing::single(
        KeyId::new("k1").unwrap(),
        Pepper::try_from_bytes(&std::array::from_fn::<u8, 32, _>(|i| {
            7 ^ (i as u8).wrapping_mul(37)
        }))
        .unwrap(),
    )
    .unwrap();
    Recovery::builder(ring).build().unwrap()
}

fn keys(r: &Recovery, n: usize) -> Vec<StateKey> {
    (0..n)
        .map(|i| {
            r.state_key(&Location::new("src/todo.rs", 12, 9).with_instance(format!("row/{i}")))
        })
        .collect()
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().ok().expect("bad argument value"))
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("server") => server(&args),
        Some("client") => client(&args),
        _ => {
            eprintln!("usage: loadgen server|client [options] (see the source)");
            std::process::exit(2);
        }
    }
}

fn server(args: &[String]) {
    let app_kind: String = arg(args, "--app", "bare".to_string());
    let port: u16 = arg(args, "--port", 3901);
    let seconds: u64 = arg(args, "--seconds", 30);
    // One worker thread: the script pins the whole process to one core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let app_kind2 = app_kind.clone();
    rt.block_on(async move {
        let app_kind = app_kind2;
        let recovery = recovery();
        let keys = keys(&recovery, 20);
        let bare = || async {
            SERVED.fetch_add(1, Ordering::Relaxed);
            "ok 0"
        };
        let app = match app_kind.as_str() {
            "bare" => Router::new().route("/", get(bare).post(bare)),
            "layer" => Router::new()
                .route("/", get(bare).post(bare))
                .layer(StateRecoveryLayer::new(recovery)),
            "extract-only" => {
                let handler = |_: Recovered| async {
                    SERVED.fetch_add(1, Ordering::Relaxed);
                    "ok 0"
                };
                Router::new()
                    .route("/", get(handler).post(handler))
                    .layer(StateRecoveryLayer::new(recovery))
            }
            "extract" => {
                let handler = move |r: Recovered| {
                    let keys = keys.clone();
                    async move {
                        SERVED.fetch_add(1, Ordering::Relaxed);
                        let n = keys.iter().filter_map(|k| r.get::<State>(*k)).count();
                        format!("ok {n}")
                    }
                };
                Router::new()
                    .route("/", get(handler.clone()).post(handler))
                    .layer(StateRecoveryLayer::new(recovery))
            }
            other => panic!("unknown --app {other}"),
        };
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let serve = axum::serve(listener, app);
        // Bounded: the server stops by itself.
        let _ = tokio::time::timeout(Duration::from_secs(seconds), serve).await;
        // CPU time of every thread of this process (ns, from the scheduler; read while the
        // worker still runs), per request served: unlike requests per second it hardly moves
        // when a neighbour takes the core for a while.
        let cpu_ns: u64 = std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks
                    .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
                    .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0);
        let served = SERVED.load(Ordering::Relaxed);
        println!(
            "server app={app_kind} served={served} cpu_ms={:.1} cpu_us_per_req={:.2}",
            cpu_ns as f64 / 1e6,
            cpu_ns as f64 / 1e3 / served.max(1) as f64
        );
    });
}

/// Requests the handler ran.
static SERVED: AtomicU64 = AtomicU64::new(0);

fn client(args: &[String]) {
    let port: u16 = arg(args, "--port", 3901);
    let seconds: u64 = arg(args, "--seconds", 10);
    let connections: usize = arg(args, "--connections", 32);
    let rate: u64 = arg(args, "--rate", 0);
    let bundle: String = arg(args, "--bundle", "none".to_string());
    let entries: usize = arg(args, "--entries", 20);

    let request = build_request(&bundle, entries);
    let request_bytes = request.len();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (count, errors, mut lat) = rt.block_on(async move {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for c in 0..connections {
            let request = request.clone();
            tasks.push(tokio::spawn(async move {
                connection(port, &request, deadline, rate, connections, c).await
            }));
        }
        let (mut count, mut errors, mut lat) = (0u64, 0u64, Vec::new());
        for t in tasks {
            let (n, e, l) = t.await.unwrap();
            count += n;
            errors += e;
            lat.extend(l);
        }
        (count, errors, lat)
    });
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
        lat[i].as_secs_f64() * 1e3
    };
    println!(
        "bundle={bundle} entries={} connections={connections} rate={rate} seconds={seconds} \
         requests={count} errors={errors} rps={:.0} p50_ms={:.3} p90_ms={:.3} p99_ms={:.3} \
         p999_ms={:.3} request_bytes={}",
        if bundle == "none" { 0 } else { entries },
        count as f64 / seconds as f64,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        request_bytes
    );
}

/// The raw HTTP/1.1 request, with the bundle in the header, the body, or nowhere.
fn build_request(bundle: &str, entries: usize) -> Vec<u8> {
    let head = "Host: 127.0.0.1\r\nUser-Agent: loadgen\r\n";
    if bundle == "none" {
        return format!("GET / HTTP/1.1\r\n{head}\r\n").into_bytes();
    }
    let r = recovery();
    let salt = Salt::generate();
    let scope = Scope::new(&salt);
    let value = state();
    let tokens: Vec<String> = keys(&r, entries)
        .into_iter()
        .map(|k| r.seal(&scope, k, 1, 1, &value).unwrap().into_string())
        .collect();
    let message = serde_json::json!({
        "type": "recover",
        "salt": salt.encode(),
        "entries": tokens,
    });
    match bundle {
        "header" => {
            let value = URL_SAFE_NO_PAD.encode(message.to_string());
            format!("GET / HTTP/1.1\r\n{head}State-Recovery: {value}\r\n\r\n").into_bytes()
        }
        "body" => {
            let body = serde_json::json!({ "state_recovery": message }).to_string();
            format!(
                "POST / HTTP/1.1\r\n{head}Content-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        }
        other => panic!("unknown --bundle {other}"),
    }
}

/// One keep-alive connection: (requests completed, errors, latencies).
async fn connection(
    port: u16,
    request: &[u8],
    deadline: Instant,
    rate: u64,
    connections: usize,
    index: usize,
) -> (u64, u64, Vec<Duration>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let (mut n, mut errors, mut lat) = (0u64, 0u64, Vec::new());
    // Open loop: this connection's share of the rate, phase-shifted so connections interleave.
    let period = (rate > 0).then(|| Duration::from_secs_f64(connections as f64 / rate as f64));
    let start =
        Instant::now() + period.map_or(Duration::ZERO, |p| p * index as u32 / connections as u32);
    let mut scheduled = start;
    loop {
        if let Some(p) = period {
            let now = Instant::now();
            if scheduled > now {
                tokio::time::sleep_until(scheduled.into()).await;
            }
            if scheduled >= deadline {
                break;
            }
            scheduled += p;
        } else if Instant::now() >= deadline {
            break;
        }
        // From the actual send: tokio's timer wakes up to ~1 ms late, which would swamp the
        // server's sub-millisecond work if counted from the schedule. A late connection sends
        // at once (the schedule catches up), so the rate holds.
        let sent_at = Instant::now();
        if stream.write_all(request).await.is_err() || !read_response(&mut stream, &mut buf).await {
            errors += 1;
            break;
        }
        lat.push(sent_at.elapsed());
        n += 1;
    }
    (n, errors, lat)
}

/// Reads one response (headers, then Content-Length bytes of body). False on anything but 200.
async fn read_response(stream: &mut TcpStream, buf: &mut [u8]) -> bool {
    let mut filled = 0;
    let header_end = loop {
        match stream.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return false,
            Ok(k) => filled += k,
        }
        if let Some(i) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if filled == buf.len() {
            return false;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") {
        return false;
    }
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while filled < header_end + len {
        match stream.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return false,
            Ok(k) => filled += k,
        }
    }
    true
}
