//! Admission control on the layer: at most N WebSocket recoveries at once; the others wait
//! for a permit (first come, first served), live sessions never do, and a session that ends
//! (its client gone, its callback returned) gives its permit back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use state_recovery::guard::{
    CheckReply, CheckRequest, Guard, GuardStore, InProcessStore, RaiseBatch, RaiseReply,
    StoreFuture, StoreId,
};
use state_recovery::layer::{RecoverySession, RecoverySocket, StateRecoveryLayer};
use state_recovery::Recovery;
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{recovery, salt};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A server whose callback reports each session it is given (its client's `id`, the form
/// field the reconnect message carried) on `entered`, then waits for a permit of `gate`
/// before `ready`, then echoes.
struct Server {
    url: String,
    entered: mpsc::UnboundedReceiver<String>,
    gate: Arc<Semaphore>,
    layer: StateRecoveryLayer,
}

async fn server(layer: impl FnOnce(StateRecoveryLayer) -> StateRecoveryLayer) -> Server {
    server_on(recovery().0, layer).await
}

async fn server_on(
    r: Recovery,
    layer: impl FnOnce(StateRecoveryLayer) -> StateRecoveryLayer,
) -> Server {
    let layer = layer(StateRecoveryLayer::new(r));
    let (tx, entered) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let app = Router::new()
        .route(
            "/ws",
            get(move |ws: RecoverySocket| {
                let (tx, gate) = (tx.clone(), g.clone());
                async move {
                    ws.on_upgrade(move |mut session: RecoverySession| async move {
                        let id = session
                            .input()
                            .form("f")
                            .and_then(|f| f.get("id"))
                            .unwrap_or("-")
                            .to_owned();
                        let _ = tx.send(id);
                        if let Ok(p) = gate.acquire().await {
                            p.forget();
                        }
                        if session.ready().await.is_err() {
                            return;
                        }
                        let socket = session.socket_mut();
                        while let Some(Ok(msg)) = socket.recv().await {
                            if socket.send(msg).await.is_err() {
                                break;
                            }
                        }
                    })
                }
            }),
        )
        .layer(layer.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        url: format!("ws://{addr}/ws"),
        entered,
        gate,
        layer,
    }
}

/// Connects and sends a reconnect message (a valid salt, no entries: no `salt` message is
/// due, so the first frame is `recovered`) naming the client.
async fn connect(url: &str, id: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let msg = json!({"type": "recover", "salt": salt(3).encode(), "entries": [],
        "input": {"f": {"id": id}}});
    ws.send(Message::text(msg.to_string())).await.unwrap();
    ws
}

async fn next_text(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no frame in 10 s")
            .expect("socket closed")
            .unwrap();
        if let Message::Text(t) = m {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

async fn entered(s: &mut Server) -> String {
    tokio::time::timeout(Duration::from_secs(10), s.entered.recv())
        .await
        .expect("no session entered the callback in 10 s")
        .unwrap()
}

/// Nothing enters the callback for a while (the negative check waits 300 ms: it can only
/// pass wrongly, never fail wrongly, on a slow machine).
async fn none_entered(s: &mut Server) {
    let got = tokio::time::timeout(Duration::from_millis(300), s.entered.recv()).await;
    assert!(got.is_err(), "a recovery ran without a permit: {got:?}");
}

#[tokio::test]
async fn with_a_limit_of_one_the_second_recovery_waits_for_the_first() {
    let mut s = server(|l| l.with_max_concurrent_recoveries(1)).await;
    assert_eq!(s.layer.max_concurrent_recoveries(), Some(1));
    let mut a = connect(&s.url, "a").await;
    assert_eq!(entered(&mut s).await, "a");
    // A holds the only permit until its `recovered` is written.
    let mut b = connect(&s.url, "b").await;
    none_entered(&mut s).await;
    s.gate.add_permits(1);
    assert_eq!(next_text(&mut a).await["type"], "recovered");
    // A's permit is back: B's recovery runs.
    assert_eq!(entered(&mut s).await, "b");
    s.gate.add_permits(1);
    assert_eq!(next_text(&mut b).await["type"], "recovered");
    // A live session never waits for a permit: A echoes while C holds it.
    let _c = connect(&s.url, "c").await;
    assert_eq!(entered(&mut s).await, "c");
    a.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    assert_eq!(next_text(&mut a).await["type"], "ping");
}

#[tokio::test]
async fn a_recovery_whose_client_went_away_gives_its_permit_back() {
    let mut s = server(|l| l.with_max_concurrent_recoveries(1)).await;
    let a = connect(&s.url, "a").await;
    assert_eq!(entered(&mut s).await, "a");
    // B waits for the permit; then both A's and B's clients go away.
    let b = connect(&s.url, "b").await;
    none_entered(&mut s).await;
    drop(a);
    drop(b);
    s.gate.add_permits(100);
    // A's `ready` fails and gives the permit back; B gets it, finds its client gone (its
    // `ready` fails too, or its session never starts), and gives it back: C goes through.
    let mut c = connect(&s.url, "c").await;
    let mut seen = Vec::new();
    loop {
        let id = entered(&mut s).await;
        seen.push(id.clone());
        if id == "c" {
            break;
        }
    }
    assert_eq!(next_text(&mut c).await["type"], "recovered");
    assert!(!seen.contains(&"a".to_owned()), "{seen:?}");
}

#[tokio::test]
async fn a_callback_that_returns_without_ready_gives_its_permit_back() {
    let (r, _) = recovery();
    let calls = Arc::new(AtomicUsize::new(0));
    let n = calls.clone();
    let app = Router::new()
        .route(
            "/ws",
            get(move |ws: RecoverySocket| {
                let n = n.clone();
                async move {
                    ws.on_upgrade(move |session: RecoverySession| async move {
                        // The first session is dropped before `ready`; the others recover.
                        if n.fetch_add(1, Ordering::SeqCst) == 0 {
                            drop(session);
                            return;
                        }
                        let mut session = session;
                        let _ = session.ready().await;
                        let _ = session.socket_mut().recv().await;
                    })
                }
            }),
        )
        .layer(StateRecoveryLayer::new(r).with_max_concurrent_recoveries(1));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let _first = connect(&url, "a").await;
    let mut second = connect(&url, "b").await;
    assert_eq!(next_text(&mut second).await["type"], "recovered");
}

#[tokio::test]
async fn many_clients_through_a_small_bound_all_recover() {
    let mut s = server(|l| l.with_max_concurrent_recoveries(2)).await;
    s.gate.add_permits(1000);
    let mut clients = Vec::new();
    for i in 0..20 {
        clients.push(connect(&s.url, &format!("c{i}")).await);
    }
    for ws in &mut clients {
        assert_eq!(next_text(ws).await["type"], "recovered");
    }
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(entered(&mut s).await);
    }
    assert_eq!(ids.len(), 20);
}

#[tokio::test]
async fn the_bound_is_off_by_default_and_can_be_set_and_lifted() {
    let (r, _) = recovery();
    let layer = StateRecoveryLayer::new(r);
    assert_eq!(layer.max_concurrent_recoveries(), None);
    assert!(format!("{layer:?}").contains("max_concurrent_recoveries: None"));
    let bounded = layer.clone().with_max_concurrent_recoveries(8);
    assert_eq!(bounded.max_concurrent_recoveries(), Some(8));
    assert!(format!("{bounded:?}").contains("max_concurrent_recoveries: Some(8)"));
    assert_eq!(
        layer
            .clone()
            .with_max_concurrent_recoveries(0)
            .max_concurrent_recoveries(),
        Some(1),
        "clamped to at least one"
    );
    assert_eq!(
        bounded.without_recovery_limit().max_concurrent_recoveries(),
        None
    );
    // Unbounded (the default): two recoveries run at once.
    let mut s = server(|l| l).await;
    let _a = connect(&s.url, "a").await;
    let _b = connect(&s.url, "b").await;
    let mut ids = vec![entered(&mut s).await, entered(&mut s).await];
    ids.sort();
    assert_eq!(ids, ["a", "b"]);
}

/// An in-process store whose checks wait for the test's go (each counted as it starts).
struct Gated {
    inner: InProcessStore,
    checks: AtomicUsize,
    go: Semaphore,
}

impl GuardStore for Gated {
    fn check<'a>(&'a self, request: &'a CheckRequest) -> StoreFuture<'a, CheckReply> {
        Box::pin(async move {
            self.checks.fetch_add(1, Ordering::SeqCst);
            if let Ok(p) = self.go.acquire().await {
                p.forget();
            }
            self.inner.check(request).await
        })
    }
    fn raise<'a>(&'a self, batch: &'a RaiseBatch) -> StoreFuture<'a, RaiseReply> {
        self.inner.raise(batch)
    }
    fn revoke_subject<'a>(&'a self, subject: &'a StoreId, ttl: Duration) -> StoreFuture<'a, ()> {
        self.inner.revoke_subject(subject, ttl)
    }
    fn revoke_scope<'a>(&'a self, scope: &'a StoreId, ttl: Duration) -> StoreFuture<'a, ()> {
        self.inner.revoke_scope(scope, ttl)
    }
}

#[tokio::test]
async fn a_slow_guard_store_does_not_serialize_recoveries() {
    let (r, _) = recovery();
    let store = Arc::new(Gated {
        inner: InProcessStore::default(),
        checks: AtomicUsize::new(0),
        go: Semaphore::new(0),
    });
    let guard = Guard::builder(&r, store.clone())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut s = server_on(r, |l| l.with_guard(guard).with_max_concurrent_recoveries(1)).await;
    s.gate.add_permits(100);
    // Both checks wait on the store at once: the first gave its permit back while it waited.
    let mut a = connect(&s.url, "a").await;
    let mut b = connect(&s.url, "b").await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while store.checks.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the second check never started: the first held the only permit");
    store.go.add_permits(2);
    assert_eq!(next_text(&mut a).await["type"], "recovered");
    assert_eq!(next_text(&mut b).await["type"], "recovered");
    let mut ids = vec![entered(&mut s).await, entered(&mut s).await];
    ids.sort();
    assert_eq!(ids, ["a", "b"]);
}
