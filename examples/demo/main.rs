//! A live page whose state survives losing its worker.
//!
//! ```text
//! cargo run --example demo                       # http://127.0.0.1:3000
//! PORT=3001 WORKER_ID=b cargo run --example demo # a second worker (same dev key ring)
//! scripts/cluster.sh 3                           # three workers behind nginx on :3000
//! ```
//!
//! The server renders three stateful components (a counter, a todo list and a three-step form
//! with a free-text draft) and sends their HTML over a WebSocket; the page sends events back.
//! Every change seals the component's state with the connection's [`RecoveryContext`] and
//! sends it to the browser, which keeps the newest entry per component in `sessionStorage`.
//! Kill the worker (SIGKILL it, or, with `DEMO_ALLOW_KILL=1`, "kill this worker" on the page
//! or `POST /kill`): the page reconnects, possibly to another worker with the same key ring,
//! hands its entries back, and every component comes back as it was. Events go through the
//! layer's events (`StateRecoveryLayer::with_events`): the page numbers them, each reply (the
//! sealed entry, the render and the record that the event was applied) is one frame, and an
//! event the dead worker never answered is resent to the next one, which applies it once.
//!
//! Environment: `STATE_RECOVERY_KEYS` (the key ring; when unset, a development ring is created
//! once in `.state-recovery-dev-keys`, with a warning), `BIND` (default `127.0.0.1`), `PORT`
//! (default 3000), `WORKER_ID` (default random), `RUST_LOG`, and:
//! - `DEMO_ALLOW_KILL=1`: the page's "kill this worker" button (the WebSocket message
//!   `{"type":"kill"}`) and `POST /kill` make the worker exit. Off by default: then the page
//!   hides the button, the message is ignored and `POST /kill` is 403. Even when on, `POST
//!   /kill` from a browser must be same-origin (`Sec-Fetch-Site: same-origin` when the
//!   browser sends it, and an `Origin` equal to `http(s)://` + `Host`); a request with
//!   neither header is not a browser's and is allowed. The WebSocket is same-origin by the
//!   layer's `Origin` check.
//! - `DEMO_IDLE_TIMEOUT_SECS` (default 600): a WebSocket session on which the client sent no
//!   message (text or binary; pings do not count) for that long is closed (code 1000,
//!   reason `idle`). The JS client reconnects and recovers, so an open tab costs one
//!   reconnect per period, and a peer that vanished without closing is gone after it.
//! - `DEMO_BACKLOG` (default 4096, at most 65535): the listen backlog (the kernel caps it at
//!   `net.core.somaxconn`); a storm reconnects thousands of tabs at once.
//! - `DEMO_MAX_RECOVERIES` (default `0`: no bound, the layer's default): how many WebSocket
//!   recoveries run at once (`StateRecoveryLayer::with_max_concurrent_recoveries`); a storm's
//!   recoveries beyond it wait for a permit, live sessions' events never do.
//! - `DEMO_HEADER_TIMEOUT_SECS` (default 10): an HTTP/1 connection that does not send a
//!   request's complete headers within that long (including an idle keep-alive connection)
//!   is closed.
//! - `DEMO_ENCRYPT=1`: every entry is sealed encrypted (token format 2, XChaCha20-Poly1305),
//!   so the browser's stash holds no readable state; unset or `0`: signed (format 1). Entries
//!   of either kind open on every worker whatever it seals.
//! - for rolling deploys, `DEMO_SCHEMA` (1 or 2: which release of the wizard's state this
//!   worker plays) and `DEMO_SEAL_AS=1` (a version-2 worker that still seals version 1).
//! - the revocation and rollback guard (always on): `DEMO_REDIS_URL` (e.g.
//!   `redis://127.0.0.1:6379/`; needs `--features redis`) makes every worker that has it share
//!   revocations and high-water marks through Redis; without it each worker has its own
//!   in-process store. `DEMO_GUARD_POLICY` (`closed`, the default, or `open`): what a worker
//!   does when Redis is down or slow (100 ms). `DEMO_GUARD_MARK_DELAY_MS` (default 1000): how old
//!   a high-water mark must be before it is written (`GuardBuilder::mark_delay`).
//!
//! Demo-only notions, for trying the guard: a "user" (the subject entries are bound to) is a
//! `demo_user` cookie set by the page's login form (`POST /login`, any name of 1 to 32 of
//! `[a-z0-9_-]`, no password: this is not authentication); `POST /logout` revokes that user's
//! entries on every worker sharing the store (or, without a user, this tab's salt, read from
//! the `State-Recovery` header). Both are same-origin only, like `POST /kill`. And the page
//! is told why entries were refused (`revoked`, `rolled-back`, ...), which a real application
//! never tells the client: the crate sends counts only.
//!
//! `--manifest` prints the key manifest (for `state-recovery keys diff`) and exits.

mod components;
mod keys;
mod slots;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use serde_json::{json, Value};
use state_recovery::guard::{Guard, GuardPolicy, GuardStore, GuardVerdict, InProcessStore};
use state_recovery::protocol::Drain;
use state_recovery::{
    Outcome, Reason, Recovered, Recovery, RecoverySession, RecoverySocket, StateRecoveryLayer,
};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use components::{Change, Component, Counter, Todos, Wizard};
use slots::{Slots, Store};

const PAGE: &str = include_str!("page.html");
/// The largest WebSocket message accepted: a reconnect bundle (1 MiB by default) plus input.
const MAX_MESSAGE: usize = 2 * 1024 * 1024;

#[derive(Clone)]
struct App {
    worker: Arc<str>,
    slots: Arc<Slots>,
    /// `DEMO_ALLOW_KILL=1`: the page and `POST /kill` may make this worker exit.
    allow_kill: bool,
    /// `DEMO_IDLE_TIMEOUT_SECS`: how long a session may go without a client message.
    idle_timeout: Duration,
    /// The revocation and rollback guard (`DEMO_REDIS_URL`, `DEMO_GUARD_POLICY`).
    guard: Guard,
}

/// The demo's "user" cookie (demo-only: no password, not authentication).
const USER_COOKIE: &str = "demo_user";

/// A demo user name: 1 to 32 of `[a-z0-9_-]`.
fn valid_user(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The `demo_user` cookie of a request, if it holds a valid name: the subject the layer binds
/// entries to.
fn user_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == USER_COOKIE)
        .map(|(_, v)| v.to_owned())
        .filter(|v| valid_user(v))
}

/// The guard: Redis when `DEMO_REDIS_URL` is set, else this worker's memory.
fn guard(recovery: &Recovery) -> Result<Guard, Box<dyn std::error::Error>> {
    let policy = match std::env::var("DEMO_GUARD_POLICY").as_deref() {
        Err(_) | Ok("" | "closed") => GuardPolicy::FailClosed,
        Ok("open") => GuardPolicy::FailOpen,
        Ok(_) => return Err("DEMO_GUARD_POLICY must be closed or open".into()),
    };
    let store: Arc<dyn GuardStore> = match std::env::var("DEMO_REDIS_URL") {
        Ok(url) if !url.is_empty() => redis_store(&url)?,
        _ => Arc::new(InProcessStore::new()),
    };
    let mut builder = Guard::builder(recovery, store).policy(policy);
    if let Ok(ms) = std::env::var("DEMO_GUARD_MARK_DELAY_MS") {
        match ms.trim().parse::<u64>() {
            Ok(ms @ 0..=60_000) => builder = builder.mark_delay(Duration::from_millis(ms)),
            _ => return Err("DEMO_GUARD_MARK_DELAY_MS must be 0 to 60000".into()),
        }
    }
    Ok(builder.build()?)
}

#[cfg(feature = "redis")]
fn redis_store(url: &str) -> Result<Arc<dyn GuardStore>, Box<dyn std::error::Error>> {
    let store = state_recovery::guard::RedisStore::with_prefix(url, "state-recovery-demo")?;
    eprintln!("guard: Redis store (prefix {})", store.prefix());
    Ok(Arc::new(store))
}

#[cfg(not(feature = "redis"))]
fn redis_store(_: &str) -> Result<Arc<dyn GuardStore>, Box<dyn std::error::Error>> {
    Err(
        "DEMO_REDIS_URL is set, but the demo was built without the `redis` feature: \
         cargo run --example demo --features redis"
            .into(),
    )
}

/// `name` as a whole number of seconds (1 to 7 days), or `default`.
fn env_secs(name: &str, default: u64) -> Result<Duration, String> {
    match std::env::var(name) {
        Err(_) => Ok(Duration::from_secs(default)),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n @ 1..=604_800) => Ok(Duration::from_secs(n)),
            _ => Err(format!(
                "{name} must be a whole number of seconds, from 1 to 604800"
            )),
        },
    }
}

/// `DEMO_BACKLOG`: the listen backlog (1 to 65535; default 4096). The kernel caps it at
/// `net.core.somaxconn`.
fn env_backlog() -> Result<u32, String> {
    match std::env::var("DEMO_BACKLOG") {
        Err(_) => Ok(DEFAULT_BACKLOG),
        Ok(v) => match v.trim().parse::<u32>() {
            Ok(n @ 1..=65_535) => Ok(n),
            _ => Err("DEMO_BACKLOG must be a whole number from 1 to 65535".to_owned()),
        },
    }
}

/// `DEMO_MAX_RECOVERIES`: the layer's bound on concurrent WebSocket recoveries (a whole
/// number; `0` or unset: none, the layer's default).
fn with_max_recoveries(layer: StateRecoveryLayer) -> Result<StateRecoveryLayer, String> {
    match std::env::var("DEMO_MAX_RECOVERIES") {
        Err(_) => Ok(layer.without_recovery_limit()),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(0) => Ok(layer.without_recovery_limit()),
            Ok(n) => Ok(layer.with_max_concurrent_recoveries(n)),
            Err(_) => Err("DEMO_MAX_RECOVERIES must be a whole number (0: no bound)".to_owned()),
        },
    }
}

/// The listen backlog unless `DEMO_BACKLOG` says otherwise: tokio's `TcpListener::bind` uses
/// 1024, which overflowed when a third of 5,000 tabs reconnected at once (BENCHMARKS.md).
const DEFAULT_BACKLOG: u32 = 4096;

/// A listener on `addr` with `backlog`, `SO_REUSEADDR` set as `TcpListener::bind` sets it (so
/// a restarted worker binds its port at once).
fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// `timeout` from now (at most a week, so it cannot overflow).
fn idle_deadline(timeout: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(timeout).unwrap_or(now)
}

/// `DEMO_ALLOW_KILL`: `1` turns the kill switch on; unset, empty or `0` leaves it off.
fn allow_kill() -> Result<bool, String> {
    match std::env::var("DEMO_ALLOW_KILL").as_deref() {
        Err(_) | Ok("" | "0") => Ok(false),
        Ok("1") => Ok(true),
        Ok(_) => Err("DEMO_ALLOW_KILL must be 0 or 1".to_owned()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // RUST_LOG as `Targets` directives (`info`, `state_recovery=debug,info`): the demo does
    // not build tracing-subscriber's regex-based EnvFilter.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();

    let mut builder = keys::builder()?;
    if std::env::var_os("STATE_RECOVERY_NAMESPACE").is_none() {
        builder = builder.namespace("state-recovery-demo");
    }
    match std::env::var("DEMO_ENCRYPT").as_deref() {
        Err(_) | Ok("" | "0") => {}
        Ok("1") => builder = builder.encrypted(),
        Ok(_) => return Err("DEMO_ENCRYPT must be 0 or 1".into()),
    }
    let recovery = builder.build()?;
    // Every piece of state is declared once; the registry refuses two with the same key.
    let mut registry = recovery.registry();
    let slots = Slots::declare(&mut registry)?;
    if std::env::args().any(|a| a == "--manifest") {
        use std::io::Write as _;
        std::io::stdout().write_all(registry.manifest().to_json().as_bytes())?;
        return Ok(());
    }
    let worker: Arc<str> = match std::env::var("WORKER_ID") {
        Ok(id) if !id.is_empty() && HeaderValue::from_str(&id).is_ok() => id.into(),
        _ => format!("w-{:04x}", rand::random::<u16>()).into(),
    };
    let guard = guard(&recovery)?;
    let app = App {
        worker: worker.clone(),
        slots: Arc::new(slots),
        allow_kill: allow_kill()?,
        idle_timeout: env_secs("DEMO_IDLE_TIMEOUT_SECS", 600)?,
        guard: guard.clone(),
    };
    let header_timeout = env_secs("DEMO_HEADER_TIMEOUT_SECS", 10)?;
    if app.allow_kill {
        tracing::warn!(
            "DEMO_ALLOW_KILL=1: the page and POST /kill (same origin) can kill this worker"
        );
    }
    let drain = Drain::new();

    let worker_header = HeaderValue::from_str(&worker)?;
    let router = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/ws", get(ws))
        .route("/api/state", get(snapshot).post(snapshot))
        .route(
            "/healthz",
            get(|State(app): State<App>| async move { format!("ok {}\n", app.worker) }),
        )
        .route("/kill", post(kill))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .with_state(app)
        .layer(with_max_recoveries(
            StateRecoveryLayer::new(recovery)
                .with_registry(Arc::new(registry))
                .with_drain(drain.clone())
                .with_guard(guard.clone())
                // The page's events survive a killed worker, each applied once.
                .with_events()
                .with_subject(|req| user_of(&req.headers)),
        )?)
        .layer(axum::middleware::map_response(move |mut res: Response| {
            let value = worker_header.clone();
            async move {
                res.headers_mut()
                    .insert(HeaderName::from_static("x-worker"), value);
                res
            }
        }));

    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let addr: SocketAddr = match bind.parse() {
        Ok(addr) => addr,
        Err(_) => format!("{bind}:{port}").parse()?,
    };
    let listener = match listen(addr, env_backlog()?) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            return Err(format!(
                "cannot listen on {addr}: the port is in use (another worker, or another \
                 program); choose another PORT"
            )
            .into())
        }
        Err(e) => return Err(format!("cannot listen on {addr}: {e}").into()),
    };
    eprintln!(
        "worker {worker} (state schema {}) listening on http://{}",
        Wizard::current_schema(),
        listener.local_addr()?
    );
    tokio::spawn(stop_on_signal(drain.clone()));
    serve(listener, router, &drain, header_timeout).await;
    // No new connections now; every session has been told to reconnect elsewhere (1012).
    let idle = drain.idle(DRAIN_DEADLINE).await;
    // The high-water marks of the last seals, still queued: written before the worker exits.
    let flushed = match guard.flush().await {
        Ok(()) => "marks written".to_owned(),
        Err(e) => format!("marks NOT written: {e}"),
    };
    eprintln!(
        "worker {worker} drained ({}; {flushed}); exiting",
        if idle {
            "every session closed"
        } else {
            "deadline passed"
        }
    );
    Ok(())
}

/// How long a draining worker waits for its sessions to close.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// What `axum::serve(..).with_graceful_shutdown(..)` does, on hyper's HTTP/1 connection
/// directly, for the one setting axum does not expose: the header read timeout (hyper only
/// applies it with a timer, which `axum::serve` does not set). Accepts until the drain
/// starts, with TCP_NODELAY on every connection; then stops accepting, asks every HTTP
/// connection to finish its request and close, and waits for them (at most the drain
/// deadline). Upgraded WebSockets are not HTTP connections any more: the drain closes them.
async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    drain: &Drain,
    header_timeout: Duration,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    // Every connection task holds a receiver; `closed` resolves when the last one is gone.
    let (open_tx, open_rx) = tokio::sync::watch::channel(());
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = drain.started() => break,
        };
        // Small frames go out at once: without TCP_NODELAY every frame after the first of a
        // burst waits for the client's delayed ACK (~40 ms).
        let _ = tcp.set_nodelay(true);
        let conn = http
            .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(router.clone()))
            .with_upgrades();
        let (drain, open) = (drain.clone(), open_rx.clone());
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                () = drain.started() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                // A header read timeout ends up here too.
                tracing::debug!(error = %e, "HTTP connection ended");
            }
            drop(open);
        });
    }
    drop(listener);
    drop(open_rx);
    let _ = tokio::time::timeout(DRAIN_DEADLINE, open_tx.closed()).await;
}

/// SIGTERM (every rolling deploy) or Ctrl-C starts the drain.
async fn stop_on_signal(drain: Drain) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = ctrl_c => {}
            }
        } else {
            let _ = ctrl_c.await;
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::warn!("stopping: draining sessions");
    drain.start();
}

/// Whether a request that changes something comes from this site's own pages: a browser says
/// where a request comes from (`Sec-Fetch-Site`, `Origin`; a page cannot forge either), so a
/// cross-site form post is refused (CSRF). A request with neither header is not a browser's
/// (curl): it carries no ambient credentials to abuse, and could claim any origin anyway.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        if site.as_bytes() != b"same-origin" {
            return false;
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match (origin.to_str(), host) {
        (Ok(origin), Some(host)) => ["http", "https"]
            .iter()
            .any(|scheme| origin.eq_ignore_ascii_case(&format!("{scheme}://{host}"))),
        _ => false,
    }
}

/// `POST /kill` (with `DEMO_ALLOW_KILL=1`, same origin only): answers, then exits with
/// status 1 (a crash, as far as the page can tell).
async fn kill(State(app): State<App>, headers: HeaderMap) -> Response {
    if !app.allow_kill {
        let off = "the kill switch is off: start the worker with DEMO_ALLOW_KILL=1\n";
        return (StatusCode::FORBIDDEN, off).into_response();
    }
    if !same_origin(&headers) {
        tracing::warn!(worker = %app.worker, "cross-origin POST /kill refused");
        return (StatusCode::FORBIDDEN, "cross-origin request refused\n").into_response();
    }
    tracing::warn!(worker = %app.worker, "killed on request");
    tokio::spawn(async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::process::exit(1);
    });
    (
        [(header::CONNECTION, "close")],
        format!("worker {} exits\n", app.worker),
    )
        .into_response()
}

/// What `POST /login` takes: `{"user": "alice"}`.
#[derive(Deserialize)]
struct Login {
    user: String,
}

/// `POST /login` (same origin only): sets the demo's `demo_user` cookie. Demo-only: anyone
/// can be anyone; it only shows entries bound to a subject, and revoked with it.
async fn login(headers: HeaderMap, Json(form): Json<Login>) -> Response {
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "cross-origin request refused\n").into_response();
    }
    if !valid_user(&form.user) {
        return (StatusCode::BAD_REQUEST, "a user is 1 to 32 of [a-z0-9_-]\n").into_response();
    }
    let cookie = format!(
        "{USER_COOKIE}={}; Path=/; SameSite=Strict; HttpOnly",
        form.user
    );
    (
        [(header::SET_COOKIE, cookie)],
        Json(json!({"user": form.user})),
    )
        .into_response()
}

/// `POST /logout` (same origin only): revokes the user's entries on every worker that shares
/// the guard's store (`Guard::revoke_subject`) and clears the cookie; without a user, revokes
/// this tab's salt, from the `State-Recovery` header (`Guard::revoke_salt`). The page then
/// reconnects: its entries are refused as `revoked` and it starts over with a fresh salt.
async fn logout(State(app): State<App>, headers: HeaderMap, recovered: Recovered) -> Response {
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "cross-origin request refused\n").into_response();
    }
    let user = user_of(&headers);
    let done = match &user {
        Some(user) => app.guard.revoke_subject(user).await.map(|()| "subject"),
        None if !recovered.context().salt_issued() => app
            .guard
            .revoke_salt(recovered.context().salt(), None)
            .await
            .map(|()| "salt"),
        None => Ok("nothing"),
    };
    match done {
        Ok(what) => {
            tracing::info!(worker = %app.worker, what, "logout: revoked");
            let clear = format!("{USER_COOKIE}=; Path=/; SameSite=Strict; HttpOnly; Max-Age=0");
            let body = json!({"revoked": what, "user": user, "worker": &*app.worker});
            ([(header::SET_COOKIE, clear)], Json(body)).into_response()
        }
        Err(e) => {
            tracing::warn!(worker = %app.worker, error = %e, "logout: not revoked");
            let body = json!({"error": e.to_string()});
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// What the guard made of a reconnect, for the page. **Demo-only**: the reasons entries were
/// refused are for the server; a real application tells the client nothing but counts.
fn guard_report(recovered: &Recovered) -> Value {
    let verdict = match recovered.guard_verdict() {
        GuardVerdict::Off => "off",
        GuardVerdict::Checked => "checked",
        GuardVerdict::Revoked => "revoked",
        GuardVerdict::Unavailable(GuardPolicy::FailOpen) => "unavailable-fail-open",
        GuardVerdict::Unavailable(GuardPolicy::FailClosed) => "unavailable-fail-closed",
        _ => "other",
    };
    let mut refused = serde_json::Map::new();
    for r in recovered.rejected() {
        let n = refused.entry(r.reason.code()).or_insert(json!(0));
        *n = json!(n.as_u64().unwrap_or(0).saturating_add(1));
    }
    let count = |reason: Reason| {
        refused
            .get(reason.code())
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    json!({
        "verdict": verdict,
        "refused": refused,
        "revoked": count(Reason::Revoked),
        "rolledBack": count(Reason::RolledBack),
        "user": recovered.context().subject(),
    })
}

/// `GET|POST /api/state`: the HTTP variant. Send the `State-Recovery` header (the JS client's
/// `headerValue()`); get back what it restored.
async fn snapshot(State(app): State<App>, recovered: Recovered) -> Json<Value> {
    let s = &app.slots;
    let (counter, counter_outcome) = s.counter.restore(&recovered);
    let (todos, todos_outcome) = s.todos.restore(&recovered);
    let (wizard, wizard_outcome) = s.wizard.restore(&recovered);
    let how = |o: &Outcome| format!("{o:?}");
    Json(json!({
        "worker": &*app.worker,
        "counter": counter,
        "todos": todos,
        "wizard": wizard,
        "outcomes": {
            "counter": how(&counter_outcome),
            "todos": how(&todos_outcome),
            "wizard": how(&wizard_outcome),
        },
        "recovered": recovered.recovered_message(),
        "unclaimed": recovered.unclaimed(),
        "guard": guard_report(&recovered),
    }))
}

async fn ws(State(app): State<App>, socket: RecoverySocket) -> Response {
    socket
        .map_upgrade(|u| u.max_message_size(MAX_MESSAGE).max_frame_size(MAX_MESSAGE))
        .on_upgrade(move |session| async move {
            if let Err(e) = live(app, session).await {
                tracing::debug!(error = %e, "connection ended");
            }
        })
}

/// What the page sends.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Incoming {
    /// `{"type":"event","target":"todos","action":"add","value":"milk"}`
    Event {
        target: String,
        action: String,
        #[serde(default)]
        value: Value,
    },
    /// `{"type":"kill"}`: the page's "kill this worker" button.
    Kill,
}

/// One component on this connection: its state and where it is stored.
struct Live<'a, C> {
    store: &'a dyn Store<C>,
    state: C,
}

impl<'a, C: Component> Live<'a, C> {
    /// Restores the component from the reconnect message, or starts it fresh; then takes in
    /// the page's (untrusted) form input. Returns whether the state must be sealed now.
    fn recover(store: &'a dyn Store<C>, session: &RecoverySession) -> (Self, bool) {
        let (mut state, outcome) = store.restore(session.recovered());
        let changed = state.absorb_input(session.input()) != Change::None;
        // Restored entries from an older time step or pepper are re-sealed by the layer
        // (refresh); the component seals what the layer cannot: state that came back under
        // an old key (alias) or version (migration), or that the form input changed. A
        // component that starts fresh because its entry was sealed by a newer release is not
        // sealed until it changes, so the client keeps that entry for a worker that reads it.
        (Self { store, state }, outcome.needs_seal() || changed)
    }

    /// Applies an event and sends what changed: a new sealed entry, and a render. For an
    /// event the page numbered, the session puts both into the event's batch (with the record
    /// that the event was applied), sent as one frame when `live` goes back to `recv`: a
    /// worker killed at any point leaves the page with all of it or none of it, and the page
    /// resends what it did not get to the next worker, which applies it once.
    async fn apply(
        &mut self,
        session: &mut RecoverySession,
        action: &str,
        value: &Value,
    ) -> Result<(), axum::Error> {
        let change = self.state.apply(action, value);
        let mut out = Vec::new();
        if change != Change::None {
            out.extend(self.sealed(session));
        }
        if change == Change::Render {
            out.push(self.render());
        }
        if out.is_empty() {
            return Ok(());
        }
        session.send_all(out).await
    }

    /// The state sealed (the slot picks the revision and version), as a message to send.
    fn sealed(&self, session: &RecoverySession) -> Option<Message> {
        match self.store.seal(session.context(), &self.state) {
            Ok(update) => Some(Message::Text(update.to_json().into())),
            // Over a size limit or the bundle budget: the page keeps working, this change
            // just won't survive a reconnect (the client keeps the previous entry).
            Err(e) => {
                tracing::warn!(component = C::ID, error = %e, "state not sealed");
                None
            }
        }
    }

    fn render(&self) -> Message {
        let msg = json!({"type": "render", "id": C::ID, "html": self.state.render()});
        Message::Text(msg.to_string().into())
    }
}

/// One live connection: the layer has already read the reconnect message and sent `salt` (if
/// it issued one).
async fn live(app: App, mut session: RecoverySession) -> Result<(), axum::Error> {
    let s = &*app.slots;
    let (mut counter, c1) = Live::<Counter>::recover(&s.counter, &session);
    let (mut todos, c2) = Live::<Todos>::recover(&s.todos, &session);
    let (mut wizard, c3) = Live::<Wizard>::recover(&*s.wizard, &session);
    // `recovered` (counting what the components used) and the refreshed entries, then the
    // first render, all in one burst.
    session.ready().await?;
    // `kill`: whether the page may show its kill button.
    // `guard`: demo-only, why entries were refused (see `guard_report`).
    let hello = json!({
        "type": "worker",
        "id": &*app.worker,
        "kill": app.allow_kill,
        "guard": guard_report(session.recovered()),
    });
    let mut first = vec![Message::Text(hello.to_string().into())];
    if c1 {
        first.extend(counter.sealed(&session));
    }
    if c2 {
        first.extend(todos.sealed(&session));
    }
    if c3 {
        first.extend(wizard.sealed(&session));
    }
    first.extend([counter.render(), todos.render(), wizard.render()]);
    // One flush for the burst (one TCP segment where it fits, no wait on Nagle).
    session.send_all(first).await?;

    // `recv` also refreshes entries on a long-lived connection, and returns `None` once the
    // worker drains (after closing the socket with 1012: the page reconnects elsewhere).
    // A client that sends nothing for `idle_timeout` is closed.
    let mut deadline = idle_deadline(app.idle_timeout);
    loop {
        let Ok(next) = tokio::time::timeout_at(deadline, session.recv()).await else {
            tracing::debug!(worker = %app.worker, "idle session closed");
            let idle = CloseFrame {
                code: 1000,
                reason: "idle".into(),
            };
            return session.socket_mut().send(Message::Close(Some(idle))).await;
        };
        let Some(msg) = next else { break };
        let text = match msg? {
            Message::Text(t) => t,
            Message::Binary(_) => {
                deadline = idle_deadline(app.idle_timeout);
                continue;
            }
            Message::Close(_) => break,
            _ => continue,
        };
        deadline = idle_deadline(app.idle_timeout);
        // Anything that is not a known message is ignored: the page is not trusted.
        let Ok(incoming) = serde_json::from_str::<Incoming>(text.as_str()) else {
            continue;
        };
        match incoming {
            // The socket is same-origin (the layer checks `Origin` on the upgrade).
            Incoming::Kill if app.allow_kill => {
                tracing::warn!(worker = %app.worker, "killed from the page");
                std::process::exit(1);
            }
            Incoming::Kill => {
                tracing::info!(worker = %app.worker, "kill message ignored: DEMO_ALLOW_KILL is off");
            }
            Incoming::Event {
                target,
                action,
                value,
            } => match target.as_str() {
                // `session.event_seq()` / `event_id()` name the event (numbered by the page):
                // an effect outside sealed state (none here) would be keyed by the id.
                Counter::ID => counter.apply(&mut session, &action, &value).await?,
                Todos::ID => todos.apply(&mut session, &action, &value).await?,
                Wizard::ID => wizard.apply(&mut session, &action, &value).await?,
                _ => {}
            },
        }
    }
    Ok(())
}
