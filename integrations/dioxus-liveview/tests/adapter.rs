//! The adapter over a real socket: two "workers" (routers sharing one key ring) and a client
//! speaking the protocol (tokio-tungstenite), as the page's script does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::time::Duration;

use dioxus::prelude::*;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use state_recovery::layer::StateRecoveryLayer;
use state_recovery::protocol::Drain;
use state_recovery::{state_key, KeyId, KeyRing, Pepper, Recovery, RecoveryContext, Salt, Slot};
use state_recovery_dioxus::{use_recoverable, use_slot, LiveviewApp};
use tokio_tungstenite::tungstenite::Message;

#[path = "support/events.rs"]
mod events;
use events::click;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn recovery() -> Recovery {
    let pepper: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 7);
    Recovery::builder(
        KeyRing::single(
            KeyId::new("k1").unwrap(),
            Pepper::try_from_bytes(&pepper).unwrap(),
        )
        .unwrap(),
    )
    .namespace("adapter-test")
    .build()
    .unwrap()
}

/// Counts its connections: `n` goes up by one once per connection (without any client event),
/// so every connection seals a new value.
fn bumping() -> Element {
    let mut n = use_recoverable(state_key!("n"), || 0_u32);
    use_hook(move || {
        spawn(async move {
            n += 1;
        })
    });
    rsx! { p { "n={n}" } }
}

/// Starts a worker serving `app`; returns its socket URL.
async fn worker(layer: StateRecoveryLayer, app: fn() -> Element) -> String {
    let router = LiveviewApp::new(layer).router(app).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("ws://{addr}/_state_recovery/ws")
}

/// What the client got, in order: JSON text messages and binary frames (Dioxus's edits).
#[derive(Debug)]
enum Got {
    Text(Value),
    Frame(Vec<u8>),
    Close(Option<u16>),
}

impl Got {
    fn shows(&self, text: &str) -> bool {
        matches!(self, Got::Frame(f) if f.windows(text.len()).any(|w| w == text.as_bytes()))
    }
    fn is(&self, ty: &str) -> bool {
        matches!(self, Got::Text(v) if v["type"] == ty)
    }
}

async fn next(ws: &mut Ws) -> Option<Got> {
    let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a message within 10 s");
    Some(match m? {
        Ok(Message::Text(t)) => Got::Text(serde_json::from_str(t.as_str()).unwrap()),
        Ok(Message::Binary(b)) => Got::Frame(b.to_vec()),
        Ok(Message::Close(c)) => Got::Close(c.map(|c| u16::from(c.code))),
        Ok(_) => return Box::pin(next(ws)).await,
        Err(_) => return None,
    })
}

/// Reads until `done` holds for the messages so far.
async fn until(ws: &mut Ws, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
    let mut got = Vec::new();
    while !done(&got) {
        match next(ws).await {
            Some(g) => got.push(g),
            None => panic!("the socket ended; got {got:?}"),
        }
    }
    got
}

async fn open(url: &str, hello: Value) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::text(hello.to_string())).await.unwrap();
    ws
}

/// The (restored, rejected) counts of the `recovered` message.
fn counts(got: &[Got]) -> (u64, u64) {
    match got.iter().find(|g| g.is("recovered")) {
        Some(Got::Text(v)) => (
            v["restored"].as_u64().unwrap(),
            v["rejected"].as_u64().unwrap(),
        ),
        _ => panic!("no recovered message in {got:?}"),
    }
}

/// The salt of the `salt` message, which must come first.
fn salt_of(got: &[Got]) -> String {
    match got.first() {
        Some(Got::Text(v)) if v["type"] == "salt" => v["salt"].as_str().unwrap().to_owned(),
        _ => panic!("no salt first in {got:?}"),
    }
}

fn position(got: &[Got], f: impl Fn(&Got) -> bool) -> Option<usize> {
    got.iter().position(f)
}

fn state_of(got: &[Got], rev: u64) -> Option<(usize, String)> {
    got.iter().enumerate().find_map(|(i, g)| match g {
        Got::Text(v) if v["type"] == "state" && v["rev"] == rev => {
            Some((i, v["token"].as_str().unwrap().to_owned()))
        }
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_sealed_on_one_worker_is_restored_on_another() {
    let a = worker(StateRecoveryLayer::new(recovery()), bumping).await;
    let b = worker(StateRecoveryLayer::new(recovery()), bumping).await;

    // A new client on A: salt first, then `recovered`, then the render; the connection bumps
    // n to 1, and the state update goes out before the frame that shows it.
    let mut ws = open(&a, json!({"type": "recover", "salt": null, "entries": []})).await;
    let got = until(&mut ws, |g| g.iter().any(|g| g.shows("n=1"))).await;
    let salt = salt_of(&got); // salt first
    let recovered = position(&got, |g| g.is("recovered")).unwrap();
    let first_frame = position(&got, |g| matches!(g, Got::Frame(_))).unwrap();
    assert!(
        recovered < first_frame,
        "recovered before the first render: {got:?}"
    );
    assert_eq!(counts(&got), (0, 0), "{got:?}");
    let (update, token) = state_of(&got, 1).expect("n=1 sealed at revision 1");
    let shown = position(&got, |g| g.shows("n=1")).unwrap();
    assert!(
        update < shown,
        "the state update before the render that shows it: {got:?}"
    );
    drop(ws); // A is gone, as far as this client knows.

    // The same client on B: n is restored (1), counted, then bumped to 2 at revision 2.
    let mut ws = open(
        &b,
        json!({"type": "recover", "salt": salt, "entries": [token]}),
    )
    .await;
    let got = until(&mut ws, |g| g.iter().any(|g| g.shows("n=2"))).await;
    assert!(
        !got.iter().any(|g| g.is("salt")),
        "the client keeps its salt"
    );
    assert_eq!(counts(&got), (1, 0), "{got:?}");
    assert!(
        got.iter().any(|g| g.shows("n=1")),
        "the first render shows the restored value: {got:?}"
    );
    assert!(
        state_of(&got, 2).is_some(),
        "n=2 sealed at revision 2: {got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_or_unreadable_entry_starts_its_component_fresh_and_is_counted() {
    let a = worker(StateRecoveryLayer::new(recovery()), bumping).await;
    let mut ws = open(&a, json!({"type": "recover", "salt": null, "entries": []})).await;
    let got = until(&mut ws, |g| state_of(g, 1).is_some()).await;
    let salt = salt_of(&got);
    let (_, token) = state_of(&got, 1).unwrap();
    drop(ws);

    // One character of the token changed: bad-signature, rejected, n starts at 0 again.
    let mut forged = token.into_bytes();
    let last = forged.len() - 3;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let mut ws = open(
        &a,
        json!({"type": "recover", "salt": salt, "entries": [forged]}),
    )
    .await;
    let got = until(&mut ws, |g| g.iter().any(|g| g.shows("n=1"))).await;
    assert_eq!(counts(&got), (0, 1), "{got:?}");
    assert!(got.iter().any(|g| g.shows("n=0")), "fresh: {got:?}");
    drop(ws);

    // A genuine entry for the key whose payload is not the hook's type (another release's
    // shape): the component starts fresh, the entry is counted as rejected.
    let r = recovery();
    let ctx = RecoveryContext::new(r.clone(), Salt::decode(&salt).unwrap(), None);
    let key = r.state_key(&state_key!("n"));
    let other = ctx.seal(key, 7, 1, &json!({"not": "a number"})).unwrap();
    let hello = json!({"type": "recover", "salt": salt, "entries": [other.token().as_str()]});
    let mut ws = open(&a, hello).await;
    let got = until(&mut ws, |g| g.iter().any(|g| g.shows("n=1"))).await;
    assert_eq!(counts(&got), (0, 1), "{got:?}");
    // Revisions continue above the entry the client held, so the client keeps the new one.
    assert!(
        state_of(&got, 8).is_some(),
        "sealed above the held revision: {got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_message_that_is_not_a_reconnect_message_is_a_new_client() {
    let a = worker(StateRecoveryLayer::new(recovery()), bumping).await;
    for first in [
        "not json at all",
        r#"{"type":"recover","salt":42}"#,
        "__ping__",
    ] {
        let (mut ws, _) = tokio_tungstenite::connect_async(&a).await.unwrap();
        ws.send(Message::text(first)).await.unwrap();
        let got = until(&mut ws, |g| g.iter().any(|g| g.shows("n=1"))).await;
        assert!(got[0].is("salt"), "{first}: a fresh salt: {got:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_worker_tells_its_pages_to_reconnect_elsewhere() {
    let drain = Drain::new();
    let a = worker(
        StateRecoveryLayer::new(recovery()).with_drain(drain.clone()),
        bumping,
    )
    .await;
    let mut ws = open(&a, json!({"type": "recover", "salt": null, "entries": []})).await;
    until(&mut ws, |g| g.iter().any(|g| g.shows("n=1"))).await;
    assert_eq!(drain.sessions(), 1);
    drain.start();
    let got = until(&mut ws, |g| g.iter().any(|g| matches!(g, Got::Close(_)))).await;
    assert!(
        matches!(got.last(), Some(Got::Close(Some(1012)))),
        "closed with 1012: {got:?}"
    );
    assert!(
        drain.idle(Duration::from_secs(5)).await,
        "the session ended"
    );
}

/// A slot with a migration: version 1 was a bare number.
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
struct Score {
    points: u64,
    label: String,
}

static SCORE: std::sync::OnceLock<Slot<Score>> = std::sync::OnceLock::new();

fn scored() -> Element {
    let score = use_slot(SCORE.get().unwrap());
    let s = score.read();
    rsx! { p { "{s.label}:{s.points}" } }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migrates_what_an_older_release_sealed() {
    let r = recovery();
    let mut registry = r.registry();
    let slot = Slot::<u64>::declare(state_key!("score"))
        .migrate(2, |points: u64| Score {
            points,
            label: "migrated".into(),
        })
        .register(&mut registry)
        .unwrap();
    let key = slot.key();
    SCORE.set(slot).ok();
    let layer = StateRecoveryLayer::new(r.clone()).with_registry(std::sync::Arc::new(registry));
    let a = worker(layer, scored).await;

    // What version 1 sealed for this client: a bare number.
    let salt = Salt::generate();
    let ctx = RecoveryContext::new(r, salt.clone(), None);
    let old = ctx.seal(key, 3, 1, &41_u64).unwrap();
    let hello =
        json!({"type": "recover", "salt": salt.encode(), "entries": [old.token().as_str()]});
    let mut ws = open(&a, hello).await;
    let got = until(&mut ws, |g| g.iter().any(|g| g.shows("migrated:41"))).await;
    assert_eq!(counts(&got), (1, 0), "{got:?}");
}

#[test]
fn outside_the_adapter_the_hook_is_an_ordinary_signal() {
    static SEEN: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
    fn plain() -> Element {
        let mut n = use_recoverable(state_key!("plain"), || 5_u8);
        SEEN.store(*n.read(), std::sync::atomic::Ordering::SeqCst);
        use_hook(move || n += 1); // a write without a session: nothing to seal, no panic
        rsx! { "{n}" }
    }
    let mut dom = VirtualDom::new(plain);
    dom.rebuild_in_place();
    assert_eq!(SEEN.load(std::sync::atomic::Ordering::SeqCst), 5);
    dom.mark_dirty(ScopeId::ROOT);
    dom.render_immediate(&mut dioxus::dioxus_core::NoOpMutations);
    assert_eq!(SEEN.load(std::sync::atomic::Ordering::SeqCst), 6);
}

/// One button; its click bumps a recoverable counter.
fn clicker() -> Element {
    let mut c = use_recoverable(state_key!("c"), || 0_u32);
    rsx! { button { onclick: move |_| c += 1, "c={c}" } }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_is_sealed_before_the_render_that_shows_it_and_survives_the_worker() {
    let a = worker(StateRecoveryLayer::new(recovery()), clicker).await;
    let b = worker(StateRecoveryLayer::new(recovery()), clicker).await;
    let mut ws = open(&a, json!({"type": "recover", "salt": null, "entries": []})).await;
    let got = until(&mut ws, |g| g.iter().any(|g| g.shows("c=0"))).await;
    let salt = salt_of(&got);
    let mut token = String::new();
    for n in 1..=3_u64 {
        ws.send(Message::text(click(1))).await.unwrap();
        let want = format!("c={n}");
        let got = until(&mut ws, |g| g.iter().any(|g| g.shows(&want))).await;
        let (update, t) = state_of(&got, n).unwrap_or_else(|| panic!("c={n} sealed: {got:?}"));
        let shown = position(&got, |g| g.shows(&want)).unwrap();
        assert!(update < shown, "sealed before shown: {got:?}");
        token = t;
    }
    drop(ws);
    let mut ws = open(
        &b,
        json!({"type": "recover", "salt": salt, "entries": [token]}),
    )
    .await;
    let got = until(&mut ws, |g| g.iter().any(|g| g.shows("c=3"))).await;
    assert_eq!(counts(&got), (1, 0), "{got:?}");
    ws.send(Message::text(click(1))).await.unwrap();
    let got = until(&mut ws, |g| g.iter().any(|g| g.shows("c=4"))).await;
    assert!(state_of(&got, 4).is_some(), "{got:?}");
}
