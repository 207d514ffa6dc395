//! A Dioxus LiveView app whose state survives a killed worker: a counter, a todo list and a
//! text draft, written as ordinary components with the adapter's hooks.
//!
//! ```text
//! cargo run -p state-recovery-dioxus --example todo     # http://127.0.0.1:3000
//! ```
//!
//! Run several workers behind nginx with the same `STATE_RECOVERY_KEYS` (scripts/cluster.sh
//! does: `DEMO_BIN=target/debug/examples/todo scripts/cluster.sh 3`), make some state, kill the
//! worker serving the page: the page reconnects to another one with everything in it.
//!
//! Environment: `PORT` (3000), `BIND` (127.0.0.1), `WORKER_ID` (shown on the page),
//! `STATE_RECOVERY_KEYS` (the shared key ring; unset: a random one for this process only, so
//! state survives reconnects to this worker but not its death) and the crate's other
//! `STATE_RECOVERY_*` settings, `DEMO_ALLOW_KILL=1` (a "kill this worker" button that makes the
//! worker exit at once, as a crash would), `RUST_LOG` (`Targets` directives, default `info`).
//! SIGTERM drains: every page is told to reconnect elsewhere (close 1012), then the worker exits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::serve::ListenerExt as _;
use dioxus::prelude::*;
use serde::{Deserialize, Serialize};
use state_recovery::layer::StateRecoveryLayer;
use state_recovery::protocol::Drain;
use state_recovery::{state_key, KeyId, KeyRing, Pepper, Recovery, RecoveryBuilder, Slot};
use state_recovery_dioxus::{use_recoverable, use_slot, LiveviewApp};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

/// One todo (schema version 2 of the list: version 1 was a list of strings).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Todo {
    id: u64,
    text: String,
    done: bool,
}

/// The todo list's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Todos {
    items: Vec<Todo>,
    next_id: u64,
}

/// What every connection's app gets as root context.
#[derive(Clone)]
struct Ctx {
    todos: Slot<Todos>,
    worker: Arc<str>,
    allow_kill: bool,
}

fn app() -> Element {
    let ctx = use_context::<Ctx>();
    rsx! {
        style { {STYLE} }
        h1 { "Dioxus LiveView + state-recovery" }
        p { id: "worker", "served by worker " b { "{ctx.worker}" } }
        Counter {}
        TodoList {}
        Draft {}
        if ctx.allow_kill {
            button {
                id: "kill",
                onclick: move |_| kill_now(),
                "kill this worker"
            }
        }
    }
}

/// The kill switch: exits at once, as a crash would (nothing is flushed or drained).
fn kill_now() {
    tracing::warn!("kill button: exiting now");
    std::process::exit(3);
}

#[component]
fn Counter() -> Element {
    let mut count = use_recoverable(state_key!("counter"), || 0_i64);
    rsx! {
        section {
            h2 { "Counter" }
            button { id: "dec", onclick: move |_| count -= 1, "−" }
            span { id: "count", " {count} " }
            button { id: "inc", onclick: move |_| count += 1, "+" }
        }
    }
}

#[component]
fn TodoList() -> Element {
    let ctx = use_context::<Ctx>();
    let mut todos = use_slot(&ctx.todos);
    let mut new_text = use_recoverable(state_key!("new-todo"), String::new);
    let mut add = move || {
        let text = new_text.peek().trim().to_owned();
        if text.is_empty() {
            return;
        }
        let mut t = todos.write();
        let id = t.next_id;
        t.next_id = id.saturating_add(1);
        t.items.push(Todo {
            id,
            text,
            done: false,
        });
        drop(t);
        new_text.set(String::new());
    };
    rsx! {
        section {
            h2 { "Todos" }
            div {
                input {
                    id: "new-todo",
                    value: "{new_text}",
                    placeholder: "what needs doing?",
                    oninput: move |e| new_text.set(e.value()),
                    onkeydown: move |e| {
                        if e.key() == Key::Enter {
                            add();
                        }
                    },
                }
                button { id: "add", onclick: move |_| add(), "add" }
            }
            ul { id: "todos",
                for todo in todos.read().items.clone() {
                    li { key: "{todo.id}", class: if todo.done { "done" },
                        input {
                            r#type: "checkbox",
                            checked: todo.done,
                            onchange: move |_| {
                                if let Some(t) = todos.write().items.iter_mut().find(|t| t.id == todo.id) {
                                    t.done = !t.done;
                                }
                            },
                        }
                        span { class: "text", "{todo.text}" }
                        button {
                            class: "remove",
                            onclick: move |_| todos.write().items.retain(|t| t.id != todo.id),
                            "×"
                        }
                    }
                }
            }
        }
    }
}

#[component]
fn Draft() -> Element {
    let mut text = use_recoverable(state_key!("draft"), String::new);
    let words = text.read().split_whitespace().count();
    rsx! {
        section {
            h2 { "Draft" }
            textarea {
                id: "draft",
                rows: 4,
                value: "{text}",
                oninput: move |e| text.set(e.value()),
            }
            p { id: "words", "{words} words" }
        }
    }
}

const STYLE: &str = "body{font-family:sans-serif;max-width:40em;margin:2em auto}\
section{border:1px solid #ccc;border-radius:6px;padding:.5em 1em;margin:1em 0}\
li.done .text{text-decoration:line-through;color:#888}textarea{width:100%}\
html[data-state-recovery=reconnecting] body{opacity:.5}";

/// The key ring: `STATE_RECOVERY_KEYS` (and the crate's other settings) when set, else a random
/// pepper for this process only.
fn builder() -> Result<RecoveryBuilder, Box<dyn std::error::Error>> {
    if std::env::var_os("STATE_RECOVERY_KEYS").is_some() {
        return Ok(RecoveryBuilder::from_env()?);
    }
    eprintln!(
        "STATE_RECOVERY_KEYS is not set: a random key for this process only (state survives \
         reconnects to this worker, not its death; set the same ring on every worker)"
    );
    Ok(Recovery::builder(KeyRing::single(
        KeyId::new("dev")?,
        Pepper::generate(),
    )?))
}

fn allow_kill() -> Result<bool, String> {
    match std::env::var("DEMO_ALLOW_KILL").as_deref() {
        Err(_) | Ok("" | "0") => Ok(false),
        Ok("1") => Ok(true),
        Ok(_) => Err("DEMO_ALLOW_KILL must be 0 or 1".to_owned()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();

    let mut builder = builder()?;
    if std::env::var_os("STATE_RECOVERY_NAMESPACE").is_none() {
        builder = builder.namespace("state-recovery-dioxus-todo");
    }
    let recovery = builder.build()?;
    // Declared once: the list is a slot (schema 2, migrating version 1's list of strings);
    // the plain hooks' locations are registered too, so the registry claims (and refreshes)
    // every entry of the app.
    let mut registry = recovery.registry();
    let todos = Slot::<Vec<String>>::declare(state_key!("todos"))
        .migrate(2, |old: Vec<String>| Todos {
            next_id: old.len() as u64,
            items: (0..)
                .zip(old)
                .map(|(id, text)| Todo {
                    id,
                    text,
                    done: false,
                })
                .collect(),
        })
        .register(&mut registry)?;
    for location in [
        state_key!("counter"),
        state_key!("new-todo"),
        state_key!("draft"),
    ] {
        registry.register(&location)?;
    }
    let ctx = Ctx {
        todos,
        worker: std::env::var("WORKER_ID")
            .unwrap_or_else(|_| format!("w-{}", std::process::id()))
            .into(),
        allow_kill: allow_kill()?,
    };
    let drain = Drain::new();
    let layer = StateRecoveryLayer::new(recovery)
        .with_registry(Arc::new(registry))
        .with_drain(drain.clone());
    let worker = ctx.worker.clone();
    let router = LiveviewApp::new(layer)
        .title("todo · state-recovery")
        .router_with_virtual_dom(move || VirtualDom::new(app).with_root_context(ctx.clone()))?
        .route(
            "/healthz",
            get(move || {
                let worker = worker.clone();
                async move { format!("ok {worker}\n") }
            }),
        );

    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let addr: SocketAddr = format!("{bind}:{port}").parse()?;
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            return Err(
                format!("cannot listen on {addr}: the port is in use; choose another PORT").into(),
            )
        }
        Err(e) => return Err(format!("cannot listen on {addr}: {e}").into()),
    };
    eprintln!("todo worker listening on http://{}", listener.local_addr()?);
    // No Nagle delay on small frames (a render after a click is one small write).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let stop = drain.clone();
    tokio::spawn(async move {
        stop_signal().await;
        tracing::warn!("stopping: draining sessions");
        stop.start();
    });
    let d = drain.clone();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { d.started().await })
        .await?;
    let idle = drain.idle(Duration::from_secs(5)).await;
    eprintln!(
        "todo worker drained ({}); exiting",
        if idle {
            "every session closed"
        } else {
            "deadline passed"
        }
    );
    Ok(())
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
