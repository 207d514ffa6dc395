//! The protocol over plain tokio-tungstenite, with no axum: what a framework with its own
//! transport does with `Endpoint`, `Recovered`, `RecoveryContext` and `Slot`. Runs with
//! `cargo test --no-default-features --test it transport` (CI does).

use std::sync::Arc;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use state_recovery::protocol::{Endpoint, Incoming, ServerMessage};
use state_recovery::{state_key, Slot};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::common::recovery;
use crate::events::{click, drain, open, settle, Cut, Tab};

/// A "worker": accepts WebSockets, reads the reconnect message first, restores the counter,
/// answers `recovered` and the first render in one flush, then counts `inc` events.
async fn worker(endpoint: Endpoint, counter: Slot<u64>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tcp.set_nodelay(true).unwrap();
            let endpoint = endpoint.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                let first = match ws.next().await {
                    Some(Ok(Message::Text(t))) => t,
                    _ => return,
                };
                let recovered = endpoint.recover(Some(first.as_bytes()), None);
                let (mut n, _) = counter.restore(&recovered);
                let render = json!({"type": "render", "count": n});
                let replies = recovered
                    .messages()
                    .into_iter()
                    .map(|m| m.to_json())
                    .chain([render.to_string()]);
                for text in replies {
                    ws.feed(Message::text(text)).await.unwrap();
                }
                ws.flush().await.unwrap();
                while let Some(Ok(Message::Text(t))) = ws.next().await {
                    if t.as_str() == r#"{"type":"inc"}"# {
                        n += 1;
                        let update = counter.seal(recovered.context(), &n).unwrap();
                        let update = ServerMessage::from(update).to_json();
                        ws.send(Message::text(update)).await.unwrap();
                    }
                }
            });
        }
    });
    format!("ws://{addr}")
}

async fn next_json(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Value {
    let m = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    serde_json::from_str(m.to_text().unwrap()).unwrap()
}

#[tokio::test]
async fn the_protocol_needs_no_axum() {
    let (r, _) = recovery();
    let mut reg = r.registry();
    let counter: Slot<u64> = Slot::declare(state_key!("counter"))
        .register(&mut reg)
        .unwrap();
    let endpoint = Endpoint::new(r).with_registry(Arc::new(reg));
    let a = worker(endpoint.clone(), counter.clone()).await;
    let b = worker(endpoint, counter).await;

    // A new client on A: salt, recovered, render; then two increments.
    let (mut ws, _) = tokio_tungstenite::connect_async(&a).await.unwrap();
    let hello = json!({"type": "recover", "salt": null, "entries": []});
    ws.send(Message::text(hello.to_string())).await.unwrap();
    let salt = next_json(&mut ws).await;
    assert_eq!(salt["type"], "salt");
    assert_eq!(next_json(&mut ws).await["type"], "recovered");
    assert_eq!(next_json(&mut ws).await["count"], 0);
    let mut token = String::new();
    for want in 1..=2 {
        ws.send(Message::text(r#"{"type":"inc"}"#)).await.unwrap();
        let update = next_json(&mut ws).await;
        assert_eq!(
            (update["type"].as_str(), update["rev"].as_u64()),
            (Some("state"), Some(want))
        );
        token = update["token"].as_str().unwrap().to_owned();
    }
    drop(ws); // A is gone, as far as this client knows.

    // The same client on B: everything comes back, counted honestly.
    let (mut ws, _) = tokio_tungstenite::connect_async(&b).await.unwrap();
    let back = json!({"type": "recover", "salt": salt["salt"], "entries": [token]});
    ws.send(Message::text(back.to_string())).await.unwrap();
    let recovered = next_json(&mut ws).await;
    assert_eq!(
        (
            recovered["restored"].as_u64(),
            recovered["rejected"].as_u64()
        ),
        (Some(1), Some(0))
    );
    assert_eq!(next_json(&mut ws).await["count"], 2);
    ws.send(Message::text(r#"{"type":"inc"}"#)).await.unwrap();
    assert_eq!(next_json(&mut ws).await["rev"], 3);
}

/// A worker with events on that can be killed (its tasks aborted: the socket closes, nothing
/// it had not written goes out) at a chosen point of handling an event.
struct Killable {
    url: String,
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    /// Where the next event stops (then `reached` is notified and the task waits forever).
    cut: Arc<std::sync::Mutex<Option<Cut>>>,
    reached: Arc<tokio::sync::Notify>,
    /// Events applied by this worker.
    applied: Arc<std::sync::atomic::AtomicU64>,
}

impl Killable {
    async fn start(endpoint: Endpoint, counter: Slot<u64>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let tasks = Arc::new(std::sync::Mutex::new(Vec::new()));
        let cut: Arc<std::sync::Mutex<Option<Cut>>> = Arc::default();
        let reached = Arc::new(tokio::sync::Notify::new());
        let applied = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (t, c, r, a) = (tasks.clone(), cut.clone(), reached.clone(), applied.clone());
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tcp.set_nodelay(true).unwrap();
                let (endpoint, counter) = (endpoint.clone(), counter.clone());
                let (cut, reached, applied) = (c.clone(), r.clone(), a.clone());
                let conn = tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    let Some(Ok(Message::Text(first))) = ws.next().await else {
                        return;
                    };
                    let rec = endpoint.recover(Some(first.as_bytes()), None);
                    let (mut n, _) = counter.restore(&rec);
                    for m in rec.messages() {
                        ws.feed(Message::text(m.to_json())).await.unwrap();
                    }
                    let render = json!({"type": "render", "count": n}).to_string();
                    ws.feed(Message::text(render)).await.unwrap();
                    ws.flush().await.unwrap();
                    let stop = |at: Cut| {
                        let hit = *cut.lock().unwrap() == Some(at);
                        if hit {
                            reached.notify_one();
                        }
                        hit
                    };
                    while let Some(Ok(Message::Text(t))) = ws.next().await {
                        let mut batch = match rec.context().incoming(t.as_bytes()) {
                            Incoming::New(batch) => batch,
                            Incoming::Duplicate(ack) => {
                                ws.send(Message::text(ack.to_json())).await.unwrap();
                                continue;
                            }
                            _ => continue,
                        };
                        if stop(Cut::BeforeApply) {
                            std::future::pending::<()>().await;
                        }
                        n += 1;
                        applied.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        batch.push(counter.seal(rec.context(), &n).unwrap());
                        let render = json!({"type": "render", "count": n}).to_string();
                        batch.push_json(&render).unwrap();
                        if stop(Cut::AfterApply) {
                            std::future::pending::<()>().await;
                        }
                        ws.send(Message::text(batch.to_json())).await.unwrap();
                        if stop(Cut::AfterFlush) {
                            std::future::pending::<()>().await;
                        }
                    }
                });
                t.lock().unwrap().push(conn.abort_handle());
            }
        });
        tasks.lock().unwrap().push(accept.abort_handle());
        Self {
            url,
            tasks,
            cut,
            reached,
            applied,
        }
    }

    fn kill(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    fn applied(&self) -> u64 {
        self.applied.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Over real sockets, with no axum: a worker killed at each point between receiving a click
/// and the client storing its reply; the next worker applies the click once.
#[tokio::test]
async fn a_click_survives_a_killed_worker_once_over_plain_websockets() {
    let (r, _) = recovery();
    let mut reg = r.registry();
    let counter: Slot<u64> = Slot::declare(state_key!("counter"))
        .register(&mut reg)
        .unwrap();
    let endpoint = Endpoint::new(r.clone())
        .with_registry(Arc::new(reg))
        .with_events();
    for cut in [Cut::BeforeApply, Cut::AfterApply, Cut::AfterFlush] {
        let a = Killable::start(endpoint.clone(), counter.clone()).await;
        let b = Killable::start(endpoint.clone(), counter.clone()).await;
        let mut tab = Tab::default();
        let mut ws = open(&a.url, &mut tab).await;
        for _ in 0..2 {
            click(&mut ws, &mut tab).await;
        }
        assert_eq!(tab.queue.len(), 0);
        // The third click: a dies at `cut`.
        *a.cut.lock().unwrap() = Some(cut);
        let reached = a.reached.notified();
        let text = tab.send(json!({"type": "inc"}));
        ws.send(Message::text(text)).await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), reached)
            .await
            .unwrap();
        a.kill();
        if cut == Cut::AfterFlush {
            drop(ws); // the batch was written, and is lost before the client stores it
        } else {
            drain(&mut ws, &mut tab).await; // what arrived before the close is stored
        }
        assert_eq!(tab.queue.len(), 1, "{cut:?}: unacknowledged");

        let mut ws = open(&b.url, &mut tab).await;
        settle(&mut ws, &mut tab).await; // the resend's batch
        let stored = |tab: &Tab| {
            let (_, token) = &tab.entries[&counter.key().to_string()];
            let p = state_recovery::inspect(token, 1 << 16).unwrap().payload;
            serde_json::from_slice::<u64>(&p).unwrap()
        };
        assert_eq!(stored(&tab), 3, "{cut:?}: counted once");
        assert_eq!(b.applied(), 1, "{cut:?}");
        assert_eq!(
            a.applied(),
            u64::from(cut != Cut::BeforeApply) + 2,
            "{cut:?}: a applied it too, and died with it"
        );
        click(&mut ws, &mut tab).await;
        assert_eq!(stored(&tab), 4, "{cut:?}");
        b.kill();
    }
}
