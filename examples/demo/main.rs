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
//! Kill the worker ("kill this worker" on the page, or `POST /kill`): the page reconnects,
//! possibly to another worker with the same key ring, hands its entries back, and every
//! component comes back as it was.
//!
//! Environment: `STATE_RECOVERY_KEYS` (the key ring; when unset, a development ring is created
//! once in `.state-recovery-dev-keys`, with a warning), `BIND` (default `127.0.0.1`), `PORT`
//! (default 3000), `WORKER_ID` (default random), `RUST_LOG`, and for rolling deploys
//! `DEMO_SCHEMA` (1 or 2: which release of the wizard's state this worker plays) and
//! `DEMO_SEAL_AS=1` (a version-2 worker that still seals version 1). `--manifest` prints the
//! key manifest (for `state-recovery keys diff`) and exits.

mod components;
mod keys;
mod slots;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Message;
use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use axum::{Json, Router};
use futures_util::SinkExt as _;
use serde::Deserialize;
use serde_json::{json, Value};
use state_recovery::protocol::Drain;
use state_recovery::{Outcome, Recovered, RecoverySession, RecoverySocket, StateRecoveryLayer};
use tracing_subscriber::EnvFilter;

use components::{Change, Component, Counter, Todos, Wizard};
use slots::{Slots, Store};

const PAGE: &str = include_str!("page.html");
/// The largest WebSocket message accepted: a reconnect bundle (1 MiB by default) plus input.
const MAX_MESSAGE: usize = 2 * 1024 * 1024;

#[derive(Clone)]
struct App {
    worker: Arc<str>,
    slots: Arc<Slots>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let mut builder = keys::builder()?;
    if std::env::var_os("STATE_RECOVERY_NAMESPACE").is_none() {
        builder = builder.namespace("state-recovery-demo");
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
    let app = App {
        worker: worker.clone(),
        slots: Arc::new(slots),
    };
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
        .with_state(app)
        .layer(
            StateRecoveryLayer::new(recovery)
                .with_registry(Arc::new(registry))
                .with_drain(drain.clone()),
        )
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
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!(
        "worker {worker} (state schema {}) listening on http://{}",
        Wizard::current_schema(),
        listener.local_addr()?
    );
    // Small frames go out at once: without TCP_NODELAY every frame after the first of a burst
    // waits for the client's delayed ACK (~40 ms).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(stop_on_signal(drain.clone()));
    let stopping = drain.clone();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { stopping.started().await })
        .await?;
    // No new connections now; every session has been told to reconnect elsewhere (1012).
    let idle = drain.idle(DRAIN_DEADLINE).await;
    eprintln!(
        "worker {worker} drained ({}); exiting",
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

/// `POST /kill`: answers, then exits with status 1 (a crash, as far as the page can tell).
async fn kill(State(app): State<App>) -> impl IntoResponse {
    tracing::warn!(worker = %app.worker, "killed on request");
    tokio::spawn(async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::process::exit(1);
    });
    (
        [(header::CONNECTION, "close")],
        format!("worker {} exits\n", app.worker),
    )
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

    /// Applies an event and sends what changed: a new sealed entry, and a render.
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
        send_all(session, out).await
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

/// Sends messages with one flush (one TCP segment where they fit, no wait on Nagle).
async fn send_all(
    session: &mut RecoverySession,
    messages: Vec<Message>,
) -> Result<(), axum::Error> {
    if messages.is_empty() {
        return Ok(());
    }
    session.ready().await?;
    let socket = session.socket_mut();
    for m in messages {
        socket.feed(m).await?;
    }
    socket.flush().await
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
    let hello = json!({"type": "worker", "id": &*app.worker});
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
    send_all(&mut session, first).await?;

    // `recv` also refreshes entries on a long-lived connection, and returns `None` once the
    // worker drains (after closing the socket with 1012: the page reconnects elsewhere).
    while let Some(msg) = session.recv().await {
        let text = match msg? {
            Message::Text(t) => t,
            Message::Close(_) => break,
            _ => continue,
        };
        // Anything that is not a known message is ignored: the page is not trusted.
        let Ok(incoming) = serde_json::from_str::<Incoming>(text.as_str()) else {
            continue;
        };
        match incoming {
            Incoming::Kill => {
                tracing::warn!(worker = %app.worker, "killed from the page");
                std::process::exit(1);
            }
            Incoming::Event {
                target,
                action,
                value,
            } => match target.as_str() {
                Counter::ID => counter.apply(&mut session, &action, &value).await?,
                Todos::ID => todos.apply(&mut session, &action, &value).await?,
                Wizard::ID => wizard.apply(&mut session, &action, &value).await?,
                _ => {}
            },
        }
    }
    Ok(())
}
