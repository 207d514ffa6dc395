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
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
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
        .layer(StateRecoveryLayer::new(recovery).with_registry(Arc::new(registry)))
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
    axum::serve(listener, router).await?;
    Ok(())
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
    let restored = recovered.restored();
    let (counter, counter_outcome) = s.counter.restore(restored);
    let (todos, todos_outcome) = s.todos.restore(restored);
    let (wizard, wizard_outcome) = s.wizard.restore(restored);
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
        "rejected": recovered.rejected().len(),
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
    /// the page's (untrusted) form input. Returns whether the state must be sealed again.
    fn recover(store: &'a dyn Store<C>, session: &RecoverySession) -> (Self, bool) {
        let (mut state, outcome) = store.restore(session.restored());
        let changed = state.absorb_input(session.input()) != Change::None;
        // A restored entry is sealed again at once: under the current key and version, the
        // ring's current first pepper and the current time step, so it outlives the rotation
        // of the pepper it came under. A component that starts fresh because its entry was
        // sealed by a newer release is not sealed until it changes, so the client keeps that
        // entry for a worker that can read it.
        (Self { store, state }, outcome.is_restored() || changed)
    }

    /// Applies an event and sends what changed: a new sealed entry, and a render.
    async fn apply(
        &mut self,
        session: &mut RecoverySession,
        action: &str,
        value: &Value,
    ) -> Result<(), axum::Error> {
        let change = self.state.apply(action, value);
        if change != Change::None {
            self.seal(session).await?;
        }
        if change == Change::Render {
            self.render(session).await?;
        }
        Ok(())
    }

    /// Seals the state (the slot picks the revision and version) and sends it to the page.
    async fn seal(&self, session: &mut RecoverySession) -> Result<(), axum::Error> {
        match self.store.seal(session.context(), &self.state) {
            Ok(update) => session.send(update).await,
            // Over a size limit, say: the page keeps working, this state just won't survive.
            Err(e) => {
                tracing::warn!(component = C::ID, error = %e, "state not sealed");
                Ok(())
            }
        }
    }

    async fn render(&self, session: &mut RecoverySession) -> Result<(), axum::Error> {
        let msg = json!({"type": "render", "id": C::ID, "html": self.state.render()});
        session
            .socket_mut()
            .send(Message::Text(msg.to_string().into()))
            .await
    }
}

/// One live connection: the layer has already read the reconnect message and sent `salt` (if
/// it issued one) and `recovered`.
async fn live(app: App, mut session: RecoverySession) -> Result<(), axum::Error> {
    let hello = json!({"type": "worker", "id": &*app.worker});
    session
        .socket_mut()
        .send(Message::Text(hello.to_string().into()))
        .await?;

    let s = &*app.slots;
    let (mut counter, c1) = Live::<Counter>::recover(&s.counter, &session);
    let (mut todos, c2) = Live::<Todos>::recover(&s.todos, &session);
    let (mut wizard, c3) = Live::<Wizard>::recover(&*s.wizard, &session);
    if c1 {
        counter.seal(&mut session).await?;
    }
    if c2 {
        todos.seal(&mut session).await?;
    }
    if c3 {
        wizard.seal(&mut session).await?;
    }
    counter.render(&mut session).await?;
    todos.render(&mut session).await?;
    wizard.render(&mut session).await?;

    while let Some(msg) = session.socket_mut().recv().await {
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
