//! `storm`: N simulated tabs against a demo cluster behind nginx, then reconnect storms: the
//! busiest worker is SIGKILLed (or SIGTERMed: a drain), and every tab it held must come back
//! with every component exactly as last acknowledged. Run by `scripts/storm.sh N`, which
//! starts the cluster (scripts/cluster.sh, RESPAWN=1) and passes its directory.
//!
//! ```text
//! storm --url ws://127.0.0.1:3700/ws --cluster-dir DIR --base-port 3700 --clients 500 \
//!       [--workers 3] [--rate 0.5] [--ramp 1000] [--before 3] [--wait 30] [--rounds 1]
//!       [--storms kill,drain] [--threads 1] [--out FILE] [--label TEXT] [--max-secs 600]
//! ```
//!
//! Each tab keeps its stash and reconnects exactly as client/state-recovery.js does (see
//! `tab.rs`; the reconnect constants are the JS client's `RECONNECT`, compared by a test).
//! Per storm it measures, for the tabs on the victim ("affected"), the time from the signal
//! (sent by this process) to "restored" (`recovered` and every component's first render,
//! checked); for the others, event → render round trips before and during the storm; the
//! survivors', nginx's and its own CPU share and RSS. It writes one JSON file (`--out`) and
//! exits 1 if any state was lost, a tab never came back within `--wait`, an event was lost in
//! flight or applied twice, or a render did not show what the tab expected; 2 on a usage or
//! setup error.
//!
//! Events exactly once, as the JS client: once `recovered` announces `applied`, a tab numbers
//! its events (`"$seq"`, `client.rs`), keeps each until its `batch` comes back, and resends
//! the ones above `applied` after the next `recovered`. An event unacknowledged when its
//! connection closed is "in flight"; it is lost only if it is never applied (no batch answers
//! it within `SETTLE`, 10 s, of the storm's last restore), and an event is applied twice if a batch
//! with messages answers a `$seq` at or below one already applied (or, in effect, if a render
//! shows the change twice: a divergence).
// A command-line tool: its report goes to stdout. A measuring tool: durations, counts and
// percentiles of bounded runs. serde_json::Value indexing (a missing key reads as null; writes
// go to objects built here) and slicing at positions `find` returned.
#![allow(
    clippy::print_stdout,
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing
)]

mod client;
mod hub;
mod model;
mod procfs;
mod schedule;
mod stash;
mod tab;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use hub::Hub;
use procfs::Usage;
use tab::{Tab, TabConfig};

const USAGE: &str = "usage: storm --url ws://127.0.0.1:PORT/ws --cluster-dir DIR --base-port P \
--clients N [--workers 3] [--rate EVENTS_PER_SEC_PER_TAB] [--ramp CONNECTS_PER_SEC] \
[--before SECS] [--wait SECS] [--rounds R] [--storms kill,drain] [--threads T] [--out FILE] \
[--label TEXT] [--max-secs S]";

/// How long after a storm's last restore the events in flight at its closes have to be
/// answered (resent and applied) before they count as lost: the tabs' own ack timeout.
const SETTLE: Duration = Duration::from_secs(10);

/// What a storm does to the busiest worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// SIGKILL: no warning, the sockets die.
    Kill,
    /// SIGTERM: the worker drains (close 1012 to every session).
    Drain,
}

impl Kind {
    const fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Drain => "drain",
        }
    }
    const fn signal(self) -> Signal {
        match self {
            Self::Kill => Signal::SIGKILL,
            Self::Drain => Signal::SIGTERM,
        }
    }
}

#[derive(Debug, Clone)]
struct Args {
    url: String,
    cluster_dir: PathBuf,
    workers: u8,
    base_port: u16,
    clients: usize,
    rate: f64,
    ramp: f64,
    before: Duration,
    wait: Duration,
    rounds: u32,
    storms: Vec<Kind>,
    threads: usize,
    out: Option<PathBuf>,
    label: String,
    max_secs: u64,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        url: String::new(),
        cluster_dir: PathBuf::new(),
        workers: 3,
        base_port: 0,
        clients: 0,
        rate: 0.5,
        ramp: 1000.0,
        before: Duration::from_secs(3),
        wait: Duration::from_secs(30),
        rounds: 1,
        storms: vec![Kind::Kill, Kind::Drain],
        threads: 1,
        out: None,
        label: String::new(),
        max_secs: 600,
    };
    fn num<T: std::str::FromStr>(name: &str, v: Option<String>) -> Result<T, String> {
        let v = v.ok_or_else(|| format!("{name} needs a value"))?;
        v.parse().map_err(|_| format!("{name}: not a number: {v}"))
    }
    fn secs(name: &str, v: Option<String>) -> Result<Duration, String> {
        let s: f64 = num(name, v)?;
        if !(0.0..=3600.0).contains(&s) {
            return Err(format!("{name}: 0 to 3600 seconds"));
        }
        Ok(Duration::from_secs_f64(s))
    }
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--url" => a.url = it.next().ok_or("--url needs a value")?,
            "--cluster-dir" => {
                a.cluster_dir = it.next().ok_or("--cluster-dir needs a value")?.into()
            }
            "--workers" => a.workers = num("--workers", it.next())?,
            "--base-port" => a.base_port = num("--base-port", it.next())?,
            "--clients" => a.clients = num("--clients", it.next())?,
            "--rate" => a.rate = num("--rate", it.next())?,
            "--ramp" => a.ramp = num("--ramp", it.next())?,
            "--before" => a.before = secs("--before", it.next())?,
            "--wait" => a.wait = secs("--wait", it.next())?,
            "--rounds" => a.rounds = num("--rounds", it.next())?,
            "--threads" => a.threads = num("--threads", it.next())?,
            "--out" => a.out = Some(it.next().ok_or("--out needs a value")?.into()),
            "--label" => a.label = it.next().ok_or("--label needs a value")?,
            "--max-secs" => a.max_secs = num("--max-secs", it.next())?,
            "--storms" => {
                let v = it.next().ok_or("--storms needs a value")?;
                a.storms = v
                    .split(',')
                    .map(|s| match s {
                        "kill" => Ok(Kind::Kill),
                        "drain" => Ok(Kind::Drain),
                        _ => Err(format!("--storms: kill or drain, not {s}")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "-h" | "--help" => return Err(String::new()),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if !loopback_ws(&a.url) {
        return Err(format!(
            "--url must be ws:// on loopback (127.0.0.0/8, localhost, [::1]), not {:?}",
            a.url
        ));
    }
    if a.cluster_dir.as_os_str().is_empty() || a.base_port == 0 {
        return Err("--cluster-dir and --base-port are required".into());
    }
    if !(1..=20_000).contains(&a.clients) {
        return Err("--clients: 1 to 20000".into());
    }
    if !(1..=9).contains(&a.workers) {
        return Err("--workers: 1 to 9".into());
    }
    if !(a.rate > 0.0 && a.rate <= 50.0 && a.ramp >= 1.0 && a.ramp <= 100_000.0) {
        return Err("--rate: (0, 50] events/s per tab; --ramp: 1 to 100000 connects/s".into());
    }
    if !(1..=1000).contains(&a.rounds) || !(1..=8).contains(&a.threads) {
        return Err("--rounds: 1 to 1000; --threads: 1 to 8".into());
    }
    if !(10..=7200).contains(&a.max_secs) {
        return Err("--max-secs: 10 to 7200".into());
    }
    Ok(a)
}

/// `ws://` to a loopback host only: this tool never sends traffic anywhere else.
fn loopback_ws(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("ws://") else {
        return false;
    };
    let host_port = rest.split('/').next().unwrap_or("");
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host == "localhost",
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("storm: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("storm: no runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let limit = Duration::from_secs(args.max_secs);
    let result = rt.block_on(async { tokio::time::timeout(limit, run(args)).await });
    rt.shutdown_background();
    match result {
        Ok(Ok(true)) => ExitCode::SUCCESS,
        Ok(Ok(false)) => ExitCode::from(1),
        Ok(Err(e)) => {
            eprintln!("storm: {e}");
            ExitCode::from(2)
        }
        Err(_) => {
            eprintln!("storm: gave up after --max-secs {}", limit.as_secs());
            ExitCode::from(2)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster: pids from CLUSTER_DIR, /healthz, signals.

/// Worker `i`'s pid, from `w<i>.pid` (scripts/cluster.sh writes it at every start).
fn worker_pid(dir: &Path, i: u8) -> Option<u32> {
    std::fs::read_to_string(dir.join(format!("w{i}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// nginx's worker processes (children of the master in nginx/nginx.pid).
fn nginx_workers(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("nginx/nginx.pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .map(procfs::children)
        .unwrap_or_default()
}

/// `GET /healthz` on `port` answers `ok w<i>` (a worker's own port, or nginx's: then it says
/// whether nginx routed this request to worker `i`).
async fn healthy(port: u16, i: u8) -> bool {
    let check = async {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut body = Vec::new();
        tcp.read_to_end(&mut body).await.ok()?;
        let text = String::from_utf8_lossy(&body);
        Some(text.starts_with("HTTP/1.1 200") && text.contains(&format!("ok w{i}\n")))
    };
    tokio::time::timeout(Duration::from_secs(1), check)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// The port of a `ws://host:port/...` URL (80 without one).
fn url_port(url: &str) -> u16 {
    let host_port = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or("");
    host_port
        .rsplit_once(':')
        .filter(|(h, _)| !h.ends_with('[') && (h.starts_with('[') == h.ends_with(']')))
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(80)
}

fn signal(pid: u32, sig: Signal) -> Result<(), String> {
    let raw = i32::try_from(pid).map_err(|_| format!("bad pid {pid}"))?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), sig)
        .map_err(|e| format!("kill -{sig} {pid}: {e}"))
}

/// Usage of each worker (by index 1..=W; `None` if gone), nginx's workers summed, and this
/// process.
#[derive(Debug, Clone)]
struct Snapshot {
    at: Instant,
    workers: Vec<Option<(u32, Usage)>>,
    nginx: Usage,
    tool_cpu: Duration,
    tool_rss_kb: u64,
    /// The whole machine's busy CPU time (every core), from /proc/stat.
    machine: Duration,
    /// The kernel's (ListenOverflows, ListenDrops).
    listen: (u64, u64),
}

fn snapshot(dir: &Path, workers: u8) -> Snapshot {
    let ws = (1..=workers)
        .map(|i| worker_pid(dir, i).and_then(|p| procfs::usage(p).map(|u| (p, u))))
        .collect();
    let mut nginx = Usage::default();
    for p in nginx_workers(dir) {
        if let Some(u) = procfs::usage(p) {
            nginx.cpu += u.cpu;
            nginx.rss_kb += u.rss_kb;
        }
    }
    Snapshot {
        at: Instant::now(),
        workers: ws,
        nginx,
        tool_cpu: procfs::self_cpu(),
        tool_rss_kb: procfs::self_rss_kb(),
        machine: procfs::machine_busy(),
        listen: procfs::listen_drops(),
    }
}

/// Counts of each string.
fn tally<'a>(xs: impl Iterator<Item = &'a str>) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    for x in xs {
        *m.entry(x.to_owned()).or_insert(0) += 1;
    }
    m
}

/// The 1-minute load average.
fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU used between two snapshots as a share of one core (0.5 = half a core).
fn share(cpu0: Duration, cpu1: Duration, t0: Instant, t1: Instant) -> f64 {
    let wall = t1.saturating_duration_since(t0).as_secs_f64();
    if wall <= 0.0 {
        return 0.0;
    }
    cpu1.saturating_sub(cpu0).as_secs_f64() / wall
}

// ---------------------------------------------------------------------------------------------
// Statistics.

/// Nearest-rank percentile of sorted values (as the Node harnesses compute it).
fn pct(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `{n, median, p90, p99, max}` in ms, and the sorted samples if `keep`.
fn summary(mut v: Vec<f64>, keep: bool) -> Value {
    v.sort_by(f64::total_cmp);
    let p = |q| pct(&v, q).map(round2);
    let mut s = json!({
        "n": v.len(), "median": p(50.0), "p90": p(90.0), "p99": p(99.0), "max": v.last().copied().map(round2),
    });
    if keep {
        s["samples"] = json!(v.iter().map(|x| round2(*x)).collect::<Vec<_>>());
    }
    s
}

fn fmt_ms(x: &Value) -> String {
    x.as_f64()
        .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

// ---------------------------------------------------------------------------------------------
// The run.

/// Waits until `want` tabs are ready (restored and warm), at most `bound`; how many are.
async fn wait_ready(hub: &Hub, want: usize, bound: Duration) -> usize {
    let end = Instant::now() + bound;
    loop {
        let n = hub.lock().tabs.iter().filter(|t| t.ready).count();
        if n >= want || Instant::now() >= end {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ready tabs per worker (index 0 = w1).
fn per_worker(hub: &Hub, workers: u8) -> Vec<usize> {
    let mut counts = vec![0; usize::from(workers)];
    for t in hub.lock().tabs.iter().filter(|t| t.ready) {
        if let Some(c) = t
            .worker
            .and_then(|w| counts.get_mut(usize::from(w).wrapping_sub(1)))
        {
            *c += 1;
        }
    }
    counts
}

async fn run(args: Args) -> Result<bool, String> {
    let dir = args.cluster_dir.clone();
    for i in 1..=args.workers {
        let pid = worker_pid(&dir, i)
            .ok_or_else(|| format!("no {}", dir.join(format!("w{i}.pid")).display()))?;
        procfs::usage(pid).ok_or_else(|| format!("worker w{i} (pid {pid}) is not running"))?;
        let port = args.base_port + u16::from(i);
        if !healthy(port, i).await {
            return Err(format!(
                "worker w{i} does not answer /healthz on port {port}"
            ));
        }
    }
    let start = snapshot(&dir, args.workers);
    let hub = Arc::new(Hub::new(args.clients));
    let t_start = Instant::now();

    // The tool's own timer lag, every 10 ms.
    {
        let hub = hub.clone();
        tokio::spawn(async move {
            loop {
                let t = Instant::now();
                tokio::time::sleep(Duration::from_millis(10)).await;
                let late = t.elapsed().saturating_sub(Duration::from_millis(10));
                hub.lock().lag.push((t, late));
            }
        });
    }

    // Ramp up.
    let config = TabConfig {
        url: args.url.as_str().into(),
        interval: Duration::from_secs_f64(1.0 / args.rate),
    };
    eprintln!(
        "storm: {} tabs at {} connects/s, {} events/s each, {} runtime thread(s)",
        args.clients, args.ramp, args.rate, args.threads
    );
    for i in 0..args.clients {
        tokio::spawn(Tab::new(i, config.clone(), hub.clone()).run());
        #[allow(clippy::cast_precision_loss)]
        let due = t_start + Duration::from_secs_f64((i + 1) as f64 / args.ramp);
        if due > Instant::now() + Duration::from_millis(5) {
            tokio::time::sleep_until(due.into()).await;
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let ramp_bound =
        Duration::from_secs(30) + Duration::from_secs_f64(args.clients as f64 / args.ramp * 2.0);
    let ready = wait_ready(&hub, args.clients, ramp_bound).await;
    let t_ready = Instant::now();
    let after_ramp = snapshot(&dir, args.workers);
    if ready < args.clients {
        let rec = hub.lock();
        return Err(format!(
            "only {ready} of {} tabs got ready within {:.0} s ({} handshakes failed); is the cluster sized for them?",
            args.clients,
            ramp_bound.as_secs_f64(),
            rec.connect_failures.len()
        ));
    }
    eprintln!(
        "storm: {} tabs ready in {:.1} s (per worker: {:?})",
        ready,
        (t_ready - t_start).as_secs_f64(),
        per_worker(&hub, args.workers)
    );

    // Idle connections: events paused, RSS per connection over the RSS at start.
    hub.set_events(false);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = snapshot(&dir, args.workers);
    let counts = per_worker(&hub, args.workers);
    hub.set_events(true);
    let mut idle_rows = Vec::new();
    let (mut grown, mut conns) = (0_i64, 0_usize);
    for (i, (a, b)) in start.workers.iter().zip(&idle.workers).enumerate() {
        let n = counts.get(i).copied().unwrap_or(0);
        if let (Some((_, a)), Some((_, b))) = (a, b) {
            let d = i64::try_from(b.rss_kb).unwrap_or(0) - i64::try_from(a.rss_kb).unwrap_or(0);
            grown += d;
            conns += n;
            #[allow(clippy::cast_precision_loss)]
            let per = if n > 0 { d as f64 / n as f64 } else { 0.0 };
            idle_rows.push(json!({"worker": format!("w{}", i + 1), "connections": n,
                "rss_kb_start": a.rss_kb, "rss_kb_idle": b.rss_kb, "kb_per_connection": round2(per)}));
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let per_conn = if conns > 0 {
        grown as f64 / conns as f64
    } else {
        0.0
    };
    #[allow(clippy::cast_precision_loss)]
    let tool_per_conn = (idle.tool_rss_kb as f64 - start.tool_rss_kb as f64) / args.clients as f64;
    eprintln!(
        "storm: idle: worker RSS {per_conn:.1} kB per connection ({conns} connections); this tool {tool_per_conn:.1} kB per tab"
    );

    let mut storms = Vec::new();
    let mut ok = true;
    for round in 0..args.rounds {
        for &kind in &args.storms {
            let s = storm(&args, &hub, kind, round).await?;
            ok &= s.1;
            storms.push(s.0);
        }
    }

    // Totals per kind.
    let mut totals = serde_json::Map::new();
    for kind in [Kind::Kill, Kind::Drain] {
        let of: Vec<&Value> = storms.iter().filter(|s| s["kind"] == kind.name()).collect();
        if of.is_empty() {
            continue;
        }
        let samples: Vec<f64> = of
            .iter()
            .flat_map(|s| {
                s["to_restored_ms"]["samples"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|v| v.as_f64())
            .collect();
        let sum = |k: &str| of.iter().map(|s| s[k].as_u64().unwrap_or(0)).sum::<u64>();
        totals.insert(
            kind.name().into(),
            json!({
                "storms": of.len(), "affected": sum("affected"), "restored": sum("restored"),
                "never_back": sum("never_back"), "lost": sum("lost"), "in_flight": sum("in_flight"),
                "in_flight_applied": sum("in_flight_applied"), "in_flight_applied_before": sum("in_flight_applied_before"),
                "in_flight_lost": sum("in_flight_lost"),
                "in_flight_duplicated": sum("in_flight_duplicated"),
                "to_restored_ms": summary(samples, false),
            }),
        );
    }
    let rec = hub.lock();
    let end = snapshot(&dir, args.workers);
    let report = json!({
        "label": args.label,
        "clients": args.clients,
        "workers": args.workers,
        "rate_per_tab": args.rate,
        "threads": args.threads,
        "reconnect": {
            "first_jitter_ms": schedule::first_jitter(),
            "base_delay_ms": schedule::RECONNECT.base_delay,
            "max_delay_ms": schedule::RECONNECT.max_delay,
            "drain_jitter_ms": schedule::RECONNECT.drain_jitter,
        },
        "ramp": {
            "secs": round2((t_ready - t_start).as_secs_f64()),
            "tool_cpu_share": round2(share(start.tool_cpu, after_ramp.tool_cpu, start.at, after_ramp.at)),
        },
        "idle": {
            "kb_per_connection": round2(per_conn),
            "connections": conns,
            "workers": idle_rows,
            "tool_kb_per_tab": round2(tool_per_conn),
        },
        "storms": storms,
        "totals": totals,
        "diverged": rec.diverged.len(),
        "diverged_examples": rec.diverged.iter().take(5).collect::<Vec<_>>(),
        "stuck_events": rec.stuck,
        "events_in_flight": rec.in_flight.len(),
        "events_in_flight_never_applied": rec.in_flight.iter().filter(|f| f.applied.is_none()).count(),
        "events_applied_twice": rec.duplicated.len(),
        "malformed_batches": rec.malformed_batches,
        "dropped_entries": &rec.dropped,
        "connect_failures": tally(rec.connect_failures.iter().map(|(_, k)| k.as_str())),
        "tool": {
            "cpu_secs": round2(end.tool_cpu.as_secs_f64()),
            "wall_secs": round2((end.at - start.at).as_secs_f64()),
            "rss_kb": end.tool_rss_kb,
        },
    });
    drop(rec);
    let diverged = report["diverged"].as_u64().unwrap_or(0);
    if diverged > 0 {
        ok = false;
        eprintln!("storm: FAIL: {diverged} renders did not show what the tab expected");
    }
    // Over the whole run too (the storms count theirs): an event applied twice fails it.
    let twice = report["events_applied_twice"].as_u64().unwrap_or(0);
    if twice > 0 {
        ok = false;
        eprintln!("storm: FAIL: {twice} events applied twice");
    }
    if let Some(out) = &args.out {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(out, text + "\n").map_err(|e| format!("{}: {e}", out.display()))?;
        eprintln!("storm: results in {}", out.display());
    }
    print_report(&report);
    Ok(ok)
}

/// One storm: the victim (the worker with the most ready tabs) gets `kind`'s signal.
/// Returns its JSON and whether it passed.
#[allow(clippy::too_many_lines)]
async fn storm(args: &Args, hub: &Hub, kind: Kind, round: u32) -> Result<(Value, bool), String> {
    let dir = &args.cluster_dir;
    let ready = wait_ready(hub, args.clients, Duration::from_secs(30)).await;
    if ready < args.clients {
        eprintln!(
            "storm: note: only {ready} of {} tabs ready before this storm",
            args.clients
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = snapshot(dir, args.workers);
    tokio::time::sleep(args.before).await;
    let at_kill = snapshot(dir, args.workers);

    // The victim and its tabs, fixed at the signal (the lock holds every tab still).
    let (victim, pid, affected, restores_from, t0) = {
        let rec = hub.lock();
        let mut counts = vec![0_usize; usize::from(args.workers)];
        for t in rec.tabs.iter().filter(|t| t.ready) {
            if let Some(c) = t
                .worker
                .and_then(|w| counts.get_mut(usize::from(w).wrapping_sub(1)))
            {
                *c += 1;
            }
        }
        let (vi, _) = counts
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
            .ok_or("no workers")?;
        let victim = u8::try_from(vi + 1).map_err(|e| e.to_string())?;
        let pid = worker_pid(dir, victim).ok_or_else(|| format!("no pid for w{victim}"))?;
        let affected: HashSet<usize> = rec
            .tabs
            .iter()
            .enumerate()
            .filter(|(_, t)| t.ready && t.worker == Some(victim))
            .map(|(i, _)| i)
            .collect();
        let from = rec.restores.len();
        let t0 = Instant::now();
        signal(pid, kind.signal())?;
        (victim, pid, affected, from, t0)
    };
    eprintln!(
        "storm: {} {} of w{victim} (pid {pid}): {} tabs affected",
        kind.name(),
        round + 1,
        affected.len()
    );

    // Until every affected tab is restored, or the bound.
    let mut first: std::collections::HashMap<usize, hub::Restore> =
        std::collections::HashMap::new();
    let mut scanned = restores_from;
    let mut collateral_lost = Vec::new();
    loop {
        {
            let rec = hub.lock();
            for r in rec.restores.iter().skip(scanned) {
                if affected.contains(&r.tab) {
                    first.entry(r.tab).or_insert_with(|| r.clone());
                } else if let Some(l) = &r.lost {
                    collateral_lost.push(l.clone());
                }
            }
            scanned = rec.restores.len();
        }
        if first.len() >= affected.len() || t0.elapsed() >= args.wait {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let t_last = first.values().map(|r| r.at).max().unwrap_or(t0);
    let all_back = first.len() >= affected.len();
    let t_end = if all_back {
        t_last.max(t0)
    } else {
        Instant::now()
    };
    let after = snapshot(dir, args.workers);

    // The events in flight at this storm's closes: resent after `recovered`, each answered by
    // a batch (at most SETTLE after the last restore, then the rest count as lost).
    let in_window = |f: &hub::InFlight| f.closed >= t0 && f.closed <= t_end;
    let settle_end = Instant::now() + SETTLE;
    loop {
        let open = hub
            .lock()
            .in_flight
            .iter()
            .filter(|f| in_window(f) && f.applied.is_none())
            .count();
        if open == 0 || Instant::now() >= settle_end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t_settled = Instant::now();
    let (in_flight, in_flight_applied, in_flight_already, in_flight_lost, duplicated, lost_events) = {
        let rec = hub.lock();
        let of: Vec<&hub::InFlight> = rec.in_flight.iter().filter(|f| in_window(f)).collect();
        let applied = of.iter().filter(|f| f.applied.is_some()).count();
        let already = of
            .iter()
            .filter(|f| f.applied.is_some() && f.already)
            .count();
        let lost: Vec<String> = of
            .iter()
            .filter(|f| f.applied.is_none())
            .map(|f| {
                f.seq.map_or_else(
                    || format!("tab {}: an unnumbered event", f.tab),
                    |s| format!("tab {}: $seq {s}", f.tab),
                )
            })
            .collect();
        let dup = rec
            .duplicated
            .iter()
            .filter(|(_, _, at)| *at >= t0 && *at <= t_settled)
            .count();
        (of.len(), applied, already, lost.len(), dup, lost)
    };

    // A moment for the closes of the affected sockets to be recorded (they come first anyway).
    let mut codes = std::collections::BTreeMap::new();
    let mut landed = std::collections::BTreeMap::new();
    let (
        times,
        lost_details,
        closed_in_flight,
        collateral_closed,
        rtt_before,
        rtt_during,
        lag_b,
        lag_d,
    ) = {
        let rec = hub.lock();
        for r in first.values() {
            let w = r.worker.map_or_else(|| "?".to_owned(), |w| format!("w{w}"));
            *landed.entry(w).or_insert(0_u64) += 1;
        }
        let times: Vec<f64> = first
            .values()
            .map(|r| ms(r.at.saturating_duration_since(t0)))
            .collect();
        let mut lost: Vec<String> = first.values().filter_map(|r| r.lost.clone()).collect();
        lost.extend(collateral_lost);
        let mut in_flight = 0_u64;
        let mut collateral = 0_u64;
        for c in rec.closed.iter().filter(|c| c.at >= t0 && c.at <= t_end) {
            *codes.entry(c.code).or_insert(0_u64) += 1;
            in_flight += u64::from(c.in_flight);
            if !affected.contains(&c.tab) {
                collateral += 1;
            }
        }
        let rtt = |from: Instant, to: Instant| -> Vec<f64> {
            rec.samples
                .iter()
                .filter(|s| s.sent >= from && s.sent < to && !affected.contains(&(s.tab as usize)))
                .map(|s| ms(s.rtt))
                .collect()
        };
        let lag = |from: Instant, to: Instant| -> Vec<f64> {
            rec.lag
                .iter()
                .filter(|(t, _)| *t >= from && *t < to)
                .map(|(_, d)| ms(*d))
                .collect()
        };
        (
            times,
            lost,
            in_flight,
            collateral,
            rtt(before.at, t0),
            rtt(t0, t_end),
            lag(before.at, t0),
            lag(t0, t_end),
        )
    };
    let never_back = affected.len() - first.len();
    let failed_during = tally(
        hub.lock()
            .connect_failures
            .iter()
            .filter(|(t, _)| *t >= t0 && *t <= t_end)
            .map(|(_, k)| k.as_str()),
    );

    // Where the time went: signal → close seen, backoff, handshake, open → restored.
    let mut detect = Vec::new();
    let mut backoff = Vec::new();
    let mut handshake = Vec::new();
    let mut recover = Vec::new();
    let mut attempts = std::collections::BTreeMap::new();
    for r in first.values() {
        if let Some(o) = r.outage {
            detect.push(ms(o.closed.saturating_duration_since(t0)));
            backoff.push(ms(o.backoff));
            *attempts.entry(o.attempts.to_string()).or_insert(0_u64) += 1;
        }
        handshake.push(ms(r.opened.saturating_duration_since(r.connect_started)));
        recover.push(ms(r.at.saturating_duration_since(r.opened)));
    }

    // Survivors (and the victim before), nginx, this tool.
    let mut workers_json = Vec::new();
    for i in 0..usize::from(args.workers) {
        let w = i + 1;
        let get = |s: &Snapshot| s.workers.get(i).copied().flatten();
        let (b, k, a) = (get(&before), get(&at_kill), get(&after));
        let is_victim = w == usize::from(victim);
        let mut row = json!({"worker": format!("w{w}"), "victim": is_victim});
        if let (Some((_, b)), Some((_, k))) = (b, k) {
            row["cpu_share_before"] = json!(round2(share(b.cpu, k.cpu, before.at, at_kill.at)));
            row["rss_kb_before"] = json!(k.rss_kb);
        }
        if !is_victim {
            if let (Some((pk, k)), Some((pa, a))) = (k, a) {
                if pk == pa {
                    row["cpu_share_during"] =
                        json!(round2(share(k.cpu, a.cpu, at_kill.at, after.at)));
                    row["rss_kb_after"] = json!(a.rss_kb);
                }
            }
        }
        workers_json.push(row);
    }
    // Ours: the survivors, nginx and this tool (the machine's other work is the rest).
    let mut ours = at_kill.nginx.cpu + at_kill.tool_cpu;
    let mut ours_after = after.nginx.cpu + after.tool_cpu;
    for i in 0..usize::from(args.workers) {
        if let (Some(Some((pk, k))), Some(Some((pa, a)))) =
            (at_kill.workers.get(i), after.workers.get(i))
        {
            if pk == pa {
                ours += k.cpu;
                ours_after += a.cpu;
            }
        }
    }
    let ours_during = share(ours, ours_after, at_kill.at, after.at);
    let storm_secs = t_end.saturating_duration_since(t0).as_secs_f64();
    let lost = lost_details.len();
    let pass = lost == 0 && never_back == 0 && in_flight_lost == 0 && duplicated == 0;
    let v = json!({
        "kind": kind.name(),
        "round": round + 1,
        "victim": format!("w{victim}"),
        "signal": format!("{}", kind.signal()),
        "affected": affected.len(),
        "restored": first.len(),
        "never_back": never_back,
        "lost": lost,
        "lost_examples": lost_details.iter().take(10).collect::<Vec<_>>(),
        "closes_in_flight": closed_in_flight,
        "in_flight": in_flight,
        "in_flight_applied": in_flight_applied,
        "in_flight_applied_before": in_flight_already,
        "in_flight_lost": in_flight_lost,
        "in_flight_lost_examples": lost_events.iter().take(10).collect::<Vec<_>>(),
        "in_flight_duplicated": duplicated,
        "in_flight_settle_ms": round2(ms(t_settled.saturating_duration_since(t_end))),
        "collateral_closed": collateral_closed,
        "close_codes": codes.iter().map(|(c, n)| (c.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "landed_on": landed,
        "storm_secs": round2(storm_secs),
        "to_restored_ms": summary(times, true),
        "breakdown_ms": {
            "signal_to_close_seen": summary(detect, false),
            "backoff_waited": summary(backoff, false),
            "last_handshake": summary(handshake, false),
            "open_to_restored": summary(recover, false),
        },
        "handshakes_tried": attempts,
        "loadavg_1m": loadavg(),
        "machine_cpu_cores": {
            "before": round2(share(before.machine, at_kill.machine, before.at, at_kill.at)),
            "during": round2(share(at_kill.machine, after.machine, at_kill.at, after.at)),
        },
        "ours_cpu_cores_during": round2(ours_during),
        "listen_overflows_during": after.listen.0.saturating_sub(at_kill.listen.0),
        "listen_drops_during": after.listen.1.saturating_sub(at_kill.listen.1),
        "failed_handshakes_during": failed_during,
        "unaffected_rtt_ms": { "before": summary(rtt_before, false), "during": summary(rtt_during, false) },
        "tool_lag_ms": { "before": summary(lag_b, false), "during": summary(lag_d, false) },
        "workers": workers_json,
        "nginx_cpu_share": {
            "before": round2(share(before.nginx.cpu, at_kill.nginx.cpu, before.at, at_kill.at)),
            "during": round2(share(at_kill.nginx.cpu, after.nginx.cpu, at_kill.at, after.at)),
        },
        "tool_cpu_share": {
            "before": round2(share(before.tool_cpu, at_kill.tool_cpu, before.at, at_kill.at)),
            "during": round2(share(at_kill.tool_cpu, after.tool_cpu, at_kill.at, after.at)),
        },
        "pass": pass,
    });
    let r = &v["to_restored_ms"];
    eprintln!(
        "storm: {} {}: {}/{} back in {:.2} s; median {} ms, p99 {} ms; lost {lost}; in flight {in_flight}: \
         {in_flight_applied} answered ({in_flight_already} of them applied before), {in_flight_lost} lost, \
         {duplicated} applied twice",
        kind.name(),
        round + 1,
        first.len(),
        affected.len(),
        storm_secs,
        fmt_ms(&r["median"]),
        fmt_ms(&r["p99"]),
    );

    // The victim back (the cluster's supervisor restarts it) and routable again.
    let port = args.base_port + u16::from(victim);
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let back = worker_pid(dir, victim).is_some_and(|p| p != pid) && healthy(port, victim).await;
        if back {
            break;
        }
        if Instant::now() >= end {
            return Err(format!(
                "w{victim} was not restarted within 20 s (RESPAWN=1?)"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // nginx keeps an upstream that failed (max_fails=1) out of the rotation, probing it with
    // one connection per fail_timeout (1 s in scripts/cluster.sh), and only a probe that ends
    // well puts it back: a WebSocket probe never ends, so without this a restarted worker would
    // get one new socket per second. Short requests through nginx until one reaches it.
    let nginx = url_port(&args.url);
    let end = Instant::now() + Duration::from_secs(10);
    let mut routed = false;
    while Instant::now() < end {
        if healthy(nginx, victim).await {
            routed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !routed {
        eprintln!("storm: note: nginx did not route to the restarted w{victim} within 10 s");
    }
    Ok((v, pass))
}

fn print_report(r: &Value) {
    println!(
        "storm: {} tabs ({}), {} workers; ramp {} s; idle worker RSS {} kB per connection, this tool {} kB per tab",
        r["clients"], r["label"].as_str().unwrap_or(""), r["workers"], r["ramp"]["secs"],
        r["idle"]["kb_per_connection"], r["idle"]["tool_kb_per_tab"]
    );
    for s in r["storms"].as_array().into_iter().flatten() {
        let t = &s["to_restored_ms"];
        let (b, d) = (
            &s["unaffected_rtt_ms"]["before"],
            &s["unaffected_rtt_ms"]["during"],
        );
        let surv: Vec<String> = s["workers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|w| w["victim"] == false)
            .map(|w| {
                format!(
                    "{} cpu {}→{} rss {}→{} kB",
                    w["worker"].as_str().unwrap_or("?"),
                    w["cpu_share_before"],
                    w["cpu_share_during"],
                    w["rss_kb_before"],
                    w["rss_kb_after"]
                )
            })
            .collect();
        println!(
            "  {} #{} of {}: affected {}, restored {}, never back {}, lost {}, in flight {} (answered {}, lost {}, applied twice {}); \
             to restored median {} p90 {} p99 {} max {} ms; unaffected rtt p50/p99 before {}/{} ms (n {}), during {}/{} ms (n {}); \
             survivors: {}; nginx cpu {}→{}; tool cpu {}→{}, lag p99 during {} ms",
            s["kind"].as_str().unwrap_or("?"), s["round"], s["victim"].as_str().unwrap_or("?"),
            s["affected"], s["restored"], s["never_back"], s["lost"], s["in_flight"],
            s["in_flight_applied"], s["in_flight_lost"], s["in_flight_duplicated"],
            fmt_ms(&t["median"]), fmt_ms(&t["p90"]), fmt_ms(&t["p99"]), fmt_ms(&t["max"]),
            fmt_ms(&b["median"]), fmt_ms(&b["p99"]), b["n"], fmt_ms(&d["median"]), fmt_ms(&d["p99"]), d["n"],
            surv.join(", "),
            s["nginx_cpu_share"]["before"], s["nginx_cpu_share"]["during"],
            s["tool_cpu_share"]["before"], s["tool_cpu_share"]["during"],
            fmt_ms(&s["tool_lag_ms"]["during"]["p99"]),
        );
        let bd = &s["breakdown_ms"];
        let part = |k: &str| format!("{}/{}", fmt_ms(&bd[k]["median"]), fmt_ms(&bd[k]["p99"]));
        println!(
            "    median/p99 ms: signal → close seen {}, backoff waited {}, last handshake {}, open → restored {}; \
             handshakes tried {}, failed {}; kernel listen overflows {}; landed on {}; machine CPU {} cores during (ours {}), load average {}",
            part("signal_to_close_seen"), part("backoff_waited"), part("last_handshake"), part("open_to_restored"),
            s["handshakes_tried"], s["failed_handshakes_during"], s["listen_overflows_during"], s["landed_on"], s["machine_cpu_cores"]["during"], s["ours_cpu_cores_during"],
            s["loadavg_1m"],
        );
        for l in s["lost_examples"].as_array().into_iter().flatten() {
            println!("    LOST {}", l.as_str().unwrap_or(""));
        }
        for l in s["in_flight_lost_examples"]
            .as_array()
            .into_iter()
            .flatten()
        {
            println!("    IN FLIGHT LOST {}", l.as_str().unwrap_or(""));
        }
    }
    for (k, t) in r["totals"].as_object().into_iter().flatten() {
        let x = &t["to_restored_ms"];
        println!(
            "  {k} total: {} storms, affected {}, lost {}, in flight {} (answered {}, lost {}, applied twice {}), never back {}; to restored median {} p99 {} ms",
            t["storms"], t["affected"], t["lost"], t["in_flight"], t["in_flight_applied"],
            t["in_flight_lost"], t["in_flight_duplicated"], t["never_back"],
            fmt_ms(&x["median"]), fmt_ms(&x["p99"])
        );
    }
    println!(
        "  tool: {} s CPU in {} s; stuck events {}, renders that diverged {}, events in flight {} (never applied {}), \
         applied twice {}, malformed batches {}, stash drops {}, failed handshakes {}",
        r["tool"]["cpu_secs"], r["tool"]["wall_secs"], r["stuck_events"], r["diverged"],
        r["events_in_flight"], r["events_in_flight_never_applied"], r["events_applied_twice"],
        r["malformed_batches"], r["dropped_entries"], r["connect_failures"]
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback() {
        for ok in [
            "ws://127.0.0.1:3700/ws",
            "ws://127.1.2.3:1/",
            "ws://localhost:3700/ws",
            "ws://[::1]:3700/ws",
        ] {
            assert!(loopback_ws(ok), "{ok}");
        }
        for no in [
            "wss://127.0.0.1/ws",
            "ws://10.0.0.1:3700/ws",
            "ws://example.com/ws",
            "ws://[::2]:1/",
            "http://127.0.0.1/",
        ] {
            assert!(!loopback_ws(no), "{no}");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(url_port("ws://127.0.0.1:3700/ws"), 3700);
        assert_eq!(url_port("ws://[::1]:3701/ws"), 3701);
        assert_eq!(url_port("ws://localhost/ws"), 80);
        assert_eq!(url_port("ws://[::1]/ws"), 80);
    }

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(pct(&v, 50.0), Some(50.0));
        assert_eq!(pct(&v, 99.0), Some(99.0));
        assert_eq!(pct(&[3.0], 99.0), Some(3.0));
        assert_eq!(pct(&[], 50.0), None);
    }

    #[test]
    fn arguments() {
        let a = |s: &str| parse_args(s.split_whitespace().map(str::to_owned));
        let ok = a("--url ws://127.0.0.1:3700/ws --cluster-dir /tmp/x --base-port 3700 --clients 10 --storms drain --rounds 3").unwrap();
        assert_eq!(ok.storms, [Kind::Drain]);
        assert_eq!(ok.rounds, 3);
        assert!(a(
            "--url ws://192.168.1.1:3700/ws --cluster-dir /tmp/x --base-port 3700 --clients 10"
        )
        .is_err());
        assert!(a(
            "--url ws://127.0.0.1:3700/ws --cluster-dir /tmp/x --base-port 3700 --clients 0"
        )
        .is_err());
        assert!(a("--bogus").is_err());
    }
}
