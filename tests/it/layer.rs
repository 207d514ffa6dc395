//! The axum layer: the JS client route, the HTTP extractor (header and body), per-entry
//! isolation, hostile messages, subject binding, client input, opaque rejections, logs, and a
//! real WebSocket session over loopback.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use state_recovery::layer::{
    Recovered, RecoverySession, RecoverySocket, StateRecoveryLayer, CLIENT_JS,
};
use state_recovery::{Limits, Location, Recovery, Salt, Scope, StateKey, Token};
use tokio_tungstenite::tungstenite::Message;
use tower::ServiceExt as _;

use crate::common::{recovery, recovery_with, ring, salt};
use crate::events::{click, drain, next_frame, open, settle, Cut};

#[derive(Clone, Copy)]
struct Keys {
    counter: StateKey,
    note: StateKey,
}

fn keys(r: &Recovery) -> Keys {
    Keys {
        counter: r.state_key(&Location::new("app.rs", 1, 1)),
        note: r.state_key(&Location::new("app.rs", 2, 1)),
    }
}

/// Everything a handler can see, as JSON, so tests can look at it.
fn report(k: Keys, r: &Recovered) -> Value {
    let input: Value = r
        .input()
        .forms()
        .map(|(id, f)| {
            let fields: serde_json::Map<String, Value> =
                f.fields().map(|(n, v)| (n.to_owned(), json!(v))).collect();
            (id.to_owned(), Value::Object(fields))
        })
        .collect::<serde_json::Map<_, _>>()
        .into();
    json!({
        "messages": r.messages(),
        "counter": r.get::<u32>(k.counter),
        "note": r.get::<String>(k.note),
        "restored": r.restored().len(),
        "rejected": r.rejected().iter().map(|x| x.reason.code()).collect::<Vec<_>>(),
        "bundle_rejection": r.bundle_rejection().map(|x| x.code()),
        "input": input,
        "input_error": r.input().error().map(|e| e.code()),
        "next_rev": r.context().next_revision(k.counter),
        "salt": r.context().salt().encode(),
        "salt_issued": r.context().salt_issued(),
        "subject": r.context().subject(),
        "other": r.body()
            .and_then(|b| serde_json::from_slice::<Value>(b).ok())
            .and_then(|v| v.get("other").cloned()),
    })
}

fn app_with(
    recovery: Recovery,
    layer: impl FnOnce(StateRecoveryLayer) -> StateRecoveryLayer,
) -> Router {
    let k = keys(&recovery);
    Router::new()
        .route(
            "/page",
            get(move |r: Recovered| async move { Json(report(k, &r)) }),
        )
        .route(
            "/page",
            post(move |r: Recovered| async move { Json(report(k, &r)) }),
        )
        // What a client sees: the protocol messages only.
        .route(
            "/public",
            get(|r: Recovered| async move { Json(r.messages()) }),
        )
        .route(
            "/seal",
            post(move |r: Recovered| async move {
                let ctx = r.context();
                let rev = ctx.next_revision(k.counter);
                let update = ctx.seal(k.counter, rev, 1, &99u32).unwrap();
                let mut out = r.messages();
                out.push(update.into());
                Json(out)
            }),
        )
        .layer(layer(StateRecoveryLayer::new(recovery)))
}

fn app(recovery: Recovery) -> Router {
    app_with(recovery, |l| l)
}

fn seal(r: &Recovery, s: &Salt, key: StateKey, rev: u64, value: &impl serde::Serialize) -> Token {
    r.seal(&Scope::new(s), key, rev, 1, value).unwrap()
}

fn message(s: Option<&Salt>, entries: &[&str]) -> Value {
    json!({"type": "recover", "salt": s.map(Salt::encode), "entries": entries, "input": {}})
}

fn with_header(path: &str, msg: &Value) -> Request<Body> {
    with_raw_header(path, &URL_SAFE_NO_PAD.encode(msg.to_string()))
}

fn with_raw_header(path: &str, value: &str) -> Request<Body> {
    Request::get(path)
        .header("State-Recovery", value)
        .body(Body::empty())
        .unwrap()
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// `{"type":"recovered",...}` with the default limits.
fn recovered_msg(restored: impl Into<Value>, rejected: impl Into<Value>) -> Value {
    json!({"type": "recovered", "restored": restored.into(), "rejected": rejected.into(),
        "limits": {"maxTokenBytes": 65536, "maxBundleBytes": 1048576, "maxEntries": 1024}})
}

fn fresh_salt_issued(v: &Value) -> bool {
    let m = &v["messages"];
    m[0]["type"] == "salt"
        && m[0]["salt"]
            .as_str()
            .is_some_and(|s| Salt::decode(s).is_ok())
        && m[1]["type"] == "recovered"
        && m[1]["restored"] == 0
}

#[tokio::test]
async fn serves_the_js_client() {
    let (r, _) = recovery();
    let app = app(r.clone());
    let res = app
        .clone()
        .oneshot(
            Request::get("/state-recovery.js")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers().clone();
    assert_eq!(h[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
    assert_eq!(h[header::CACHE_CONTROL], "no-cache");
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, CLIENT_JS.as_bytes());

    // Revalidation is a 304.
    let etag = h[header::ETAG].clone();
    let res = app
        .clone()
        .oneshot(
            Request::get("/state-recovery.js")
                .header(header::IF_NONE_MATCH, etag)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);

    // Another path, or none.
    let moved = app_with(r.clone(), |l| l.with_client_path("static/sr.js"));
    let res = moved
        .clone()
        .oneshot(Request::get("/static/sr.js").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = moved
        .oneshot(
            Request::get("/state-recovery.js")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let off = app_with(r, StateRecoveryLayer::without_client_route);
    let res = off
        .oneshot(
            Request::get("/state-recovery.js")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn header_bundle_restores_typed_values() {
    let (r, _) = recovery();
    let k = keys(&r);
    let s = salt(1);
    let a = seal(&r, &s, k.counter, 7, &41u32);
    let b = seal(&r, &s, k.note, 2, &"half-typed");
    let (status, v) = send(
        &app(r),
        with_header("/page", &message(Some(&s), &[a.as_str(), b.as_str()])),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["counter"], 41);
    assert_eq!(v["note"], "half-typed");
    assert_eq!(v["messages"], json!([recovered_msg(2, 0)]));
    assert_eq!(v["salt"], s.encode());
    assert_eq!(v["salt_issued"], false);
    // Revisions continue after the restored one.
    assert_eq!(v["next_rev"], 8);
}

#[tokio::test]
async fn body_field_bundle_restores_and_keeps_the_body() {
    let (r, _) = recovery();
    let k = keys(&r);
    let s = salt(2);
    let a = seal(&r, &s, k.counter, 1, &5u32);
    let body = json!({"other": "mine", "state_recovery": message(Some(&s), &[a.as_str()])});
    let req = Request::post("/page")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (status, v) = send(&app(r), req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["counter"], 5);
    assert_eq!(v["other"], "mine");
    assert_eq!(v["restored"], 1);
}

#[tokio::test]
async fn tampered_entry_is_rejected_and_the_others_restored() {
    let (r, _) = recovery();
    let k = keys(&r);
    let s = salt(3);
    let good = seal(&r, &s, k.note, 1, &"kept");
    let mut bad = seal(&r, &s, k.counter, 1, &1u32).into_string();
    let mid = bad.len() / 2;
    let c = bad.as_bytes()[mid];
    bad.replace_range(mid..=mid, if c == b'A' { "B" } else { "A" });
    let (_, v) = send(
        &app(r),
        with_header("/page", &message(Some(&s), &[&bad, good.as_str()])),
    )
    .await;
    assert_eq!(v["note"], "kept");
    assert_eq!(v["counter"], Value::Null);
    assert_eq!(v["rejected"], json!(["bad-signature"]));
    assert_eq!(v["messages"], json!([recovered_msg(1, 1)]));
}

#[tokio::test]
async fn malformed_messages_mean_a_new_client() {
    let (r, _) = recovery();
    let app = app(r);
    let enc = |s: &str| URL_SAFE_NO_PAD.encode(s);
    let cases: Vec<(Request<Body>, Option<&str>)> = vec![
        (
            with_raw_header("/page", "!!not base64!!"),
            Some("malformed"),
        ),
        (
            with_raw_header("/page", &format!("{}=", enc("{}"))),
            Some("malformed"),
        ),
        (
            with_raw_header("/page", &enc("not json")),
            Some("malformed"),
        ),
        (with_raw_header("/page", &enc("[1,2]")), Some("malformed")),
        (
            with_raw_header(
                "/page",
                &enc(r#"{"type":"recover","salt":"short","entries":[]}"#),
            ),
            Some("malformed"),
        ),
        (
            with_raw_header("/page", &enc(r#"{"type":"recover","salt":7}"#)),
            Some("malformed"),
        ),
        (
            with_raw_header("/page", &enc(r#"{"type":"other","salt":null}"#)),
            Some("malformed"),
        ),
        (
            with_raw_header(
                "/page",
                &enc(r#"{"type":"recover","salt":null,"entries":["x"]}"#),
            ),
            None,
        ),
        (
            with_raw_header("/page", &enc(r#"{"type":"recover"}"#)),
            None,
        ),
        (Request::get("/page").body(Body::empty()).unwrap(), None),
        (
            Request::post("/page")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{not json"))
                .unwrap(),
            Some("malformed"),
        ),
        (
            Request::post("/page")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"state_recovery":"a string"}"#))
                .unwrap(),
            Some("malformed"),
        ),
    ];
    for (i, (req, reason)) in cases.into_iter().enumerate() {
        let (status, v) = send(&app, req).await;
        assert_eq!(status, StatusCode::OK, "case {i}");
        assert!(fresh_salt_issued(&v), "case {i}: {v}");
        assert_eq!(v["restored"], 0, "case {i}");
        assert_eq!(v["bundle_rejection"], json!(reason), "case {i}");
        assert_eq!(v["salt_issued"], true, "case {i}");
    }
}

#[tokio::test]
async fn oversized_bundle_is_too_large_before_any_mac() {
    let limits = Limits::default()
        .with_max_token_bytes(1024)
        .with_max_bundle_bytes(4096);
    let clock = Arc::new(state_recovery::ManualClock::new(crate::common::NOW));
    let r = Recovery::builder(ring(&[("k1", 1)]))
        .namespace("test-app")
        .clock(clock)
        .limits(limits)
        .build()
        .unwrap();
    let k = keys(&r);
    let s = salt(4);
    let good = seal(&r, &s, k.counter, 1, &1u32);
    let mut msg = message(Some(&s), &[good.as_str()]);
    msg["input"] = json!({"f": {"pad": "x".repeat(5000)}});
    let app = app(r);
    // Header.
    let (status, v) = send(&app, with_header("/page", &msg)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["bundle_rejection"], "too-large");
    assert_eq!(v["counter"], Value::Null);
    assert!(fresh_salt_issued(&v), "{v}");
    assert_eq!(v["messages"][1]["rejected"], 1);
    // Body field.
    let req = Request::post("/page")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"state_recovery": msg}).to_string()))
        .unwrap();
    let (status, v) = send(&app, req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["bundle_rejection"], "too-large");
    assert_eq!(v["counter"], Value::Null);
    // A body far over the cap is refused by its declared length, unread.
    let req = Request::post("/page")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(" ".repeat(200_000)))
        .unwrap();
    let (status, v) = send(&app, req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["bundle_rejection"], "too-large");
}

#[tokio::test]
async fn another_users_salt_restores_nothing() {
    let (r, _) = recovery();
    let k = keys(&r);
    let (mine, theirs) = (salt(5), salt(6));
    let a = seal(&r, &theirs, k.counter, 1, &1u32);
    let b = seal(&r, &theirs, k.note, 1, &"secret-ish");
    let (_, v) = send(
        &app(r),
        with_header("/page", &message(Some(&mine), &[a.as_str(), b.as_str()])),
    )
    .await;
    assert_eq!(v["restored"], 0);
    assert_eq!(v["rejected"], json!(["bad-signature", "bad-signature"]));
    // The client's own salt is valid, so it is kept: no new salt message.
    assert_eq!(v["messages"], json!([recovered_msg(0, 2)]));
}

#[tokio::test]
async fn entries_are_bound_to_the_subject() {
    let (r, _) = recovery();
    let app = app_with(r, |l| {
        l.with_subject(|p| {
            p.headers
                .get("x-user")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
    });
    // Alice gets a salt and a sealed entry from the server.
    let req = Request::post("/seal")
        .header("x-user", "alice")
        .body(Body::empty())
        .unwrap();
    let (_, msgs) = send(&app, req).await;
    assert_eq!(msgs[0]["type"], "salt");
    assert_eq!(msgs[2]["type"], "state");
    assert_eq!(msgs[2]["rev"], 1);
    let s = Salt::decode(msgs[0]["salt"].as_str().unwrap()).unwrap();
    let token = msgs[2]["token"].as_str().unwrap();
    let msg = message(Some(&s), &[token]);

    let as_user = |user: &str| {
        let mut req = with_header("/page", &msg);
        req.headers_mut().insert("x-user", user.parse().unwrap());
        req
    };
    let (_, v) = send(&app, as_user("alice")).await;
    assert_eq!(v["counter"], 99);
    assert_eq!(v["subject"], "alice");
    let (_, v) = send(&app, as_user("bob")).await;
    assert_eq!(v["counter"], Value::Null);
    assert_eq!(v["rejected"], json!(["bad-signature"]));
    // Anonymous too.
    let (_, v) = send(&app, with_header("/page", &msg)).await;
    assert_eq!(v["rejected"], json!(["bad-signature"]));
}

#[tokio::test]
async fn client_input_comes_through_separately_and_is_never_opened() {
    let (r, _) = recovery();
    let k = keys(&r);
    let s = salt(7);
    let token = seal(&r, &s, k.counter, 1, &12u32);
    let app = app(r);
    // A valid token hidden inside input is a string, not an entry.
    let msg = json!({
        "type": "recover", "salt": s.encode(), "entries": [],
        "input": {"signup": {"name": "Ada", "entries": [token.as_str()], "tags": ["a", "b"]}},
    });
    let (_, v) = send(&app, with_header("/page", &msg)).await;
    assert_eq!(v["restored"], 0);
    assert_eq!(v["counter"], Value::Null);
    assert_eq!(v["rejected"], json!([]));
    assert_eq!(v["input"]["signup"]["name"], json!(["Ada"]));
    assert_eq!(v["input"]["signup"]["entries"], json!([token.as_str()]));
    assert_eq!(v["input"]["signup"]["tags"], json!(["a", "b"]));
    assert_eq!(v["messages"], json!([recovered_msg(0, 0)]));

    // Bad input is dropped whole; the signed entries are restored regardless.
    let msg = json!({
        "type": "recover", "salt": s.encode(), "entries": [token.as_str()],
        "input": {"f": {"n": 1}},
    });
    let (_, v) = send(&app, with_header("/page", &msg)).await;
    assert_eq!(v["counter"], 12);
    assert_eq!(v["input"], json!({}));
    assert_eq!(v["input_error"], "malformed");
}

#[tokio::test]
async fn rejections_look_identical_whatever_the_reason() {
    let (r, clock) = recovery();
    let k = keys(&r);
    let s = salt(8);
    let old = seal(&r, &s, k.counter, 1, &1u32).into_string();
    clock.advance(10 * crate::common::STEP); // old is now expired
    let (other_ring, other_clock) = recovery_with(ring(&[("k9", 9)]));
    other_clock.advance(10 * crate::common::STEP);
    let forged = seal(&other_ring, &s, k.counter, 1, &1u32).into_string(); // unknown-key
    let moved = seal(&r, &salt(9), k.counter, 1, &1u32).into_string(); // bad-signature
    let garbage = "not a token".to_owned(); // malformed
    let app = app(r);

    let mut seen = Vec::new();
    for t in [&forged, &moved, &garbage, &old] {
        let res: Response = app
            .clone()
            .oneshot(with_header("/public", &message(Some(&s), &[t])))
            .await
            .unwrap();
        let status = res.status();
        let mut headers: Vec<_> = res
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect();
        headers.sort();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        seen.push((status, headers, body));
    }
    // An expired entry also gets a `drop` (the client can read the step in its own token, so
    // this tells it nothing it could not compute); apart from that, all look the same.
    let expired = seen.pop().unwrap();
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
    let with_drop: Value = serde_json::from_slice(&expired.2).unwrap();
    assert_eq!(with_drop[0], recovered_msg(0, 1));
    assert_eq!(
        with_drop[1],
        json!({"type": "drop", "key": k.counter.to_string()})
    );
    assert_eq!(
        (expired.0, with_drop.as_array().map(Vec::len)),
        (seen[0].0, Some(2))
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&seen[0].2).unwrap(),
        json!([recovered_msg(0, 1)])
    );
    // The handler, though, knows why.
    let (_, v) = send(
        &app,
        with_header(
            "/page",
            &message(Some(&s), &[&forged, &moved, &garbage, &old]),
        ),
    )
    .await;
    assert_eq!(
        v["rejected"],
        json!(["unknown-key", "bad-signature", "malformed", "expired"])
    );
}

#[tokio::test]
async fn missing_layer_is_a_500() {
    let app = Router::new().route("/", get(|_: Recovered| async { "unreachable" }));
    let res = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_name_key_and_reason_but_never_token_or_salt() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (r, _) = recovery();
    let k = keys(&r);
    let (s, other) = (salt(10), salt(11));
    let moved = seal(&r, &other, k.counter, 1, &"payload-text");
    let (_, v) = send(
        &app(r),
        with_header("/page", &message(Some(&s), &[moved.as_str()])),
    )
    .await;
    assert_eq!(v["rejected"], json!(["bad-signature"]));

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("bad-signature"), "{logs}");
    assert!(logs.contains(&k.counter.to_string()), "{logs}");
    for secret in [moved.as_str(), &s.encode(), &other.encode(), "payload-text"] {
        assert!(!logs.contains(secret), "log leaks {secret}: {logs}");
    }
}

// --- WebSocket, over loopback ---

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A live page: on connect it seals `counter + 1`, then echoes the app's first message (if
/// the client's first message was not a reconnect message) and any later text.
async fn serve_ws(recovery: Recovery, timeout: Duration) -> String {
    serve_ws_with(recovery, |l| l.with_first_message_timeout(timeout)).await
}

/// [`serve_ws`] with a layer of the test's making.
async fn serve_ws_with(
    recovery: Recovery,
    layer: impl FnOnce(StateRecoveryLayer) -> StateRecoveryLayer,
) -> String {
    let k = keys(&recovery);
    let app = Router::new()
        .route(
            "/ws",
            get(move |ws: RecoverySocket| async move {
                ws.on_upgrade(move |mut session: RecoverySession| async move {
                    let n: u32 = session.recovered().get(k.counter).unwrap_or(0);
                    let ctx = session.context();
                    let update = ctx
                        .seal(k.counter, ctx.next_revision(k.counter), 1, &(n + 1))
                        .unwrap();
                    session.send(update).await.unwrap();
                    let form = session
                        .input()
                        .form("f")
                        .and_then(|f| f.get("q"))
                        .map(str::to_owned);
                    let first = session
                        .take_first_message()
                        .map(|m| m.into_text().unwrap().to_string());
                    let hello = json!({"type": "hello", "first": first, "q": form});
                    let socket = session.socket_mut();
                    socket.send(hello.to_string().into()).await.unwrap();
                    while let Some(Ok(msg)) = socket.recv().await {
                        if socket.send(msg).await.is_err() {
                            break;
                        }
                    }
                })
            }),
        )
        .layer(layer(StateRecoveryLayer::new(recovery)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("ws://{addr}/ws")
}

async fn recv_json(c: &mut Client) -> Value {
    let next = tokio::time::timeout(Duration::from_secs(10), c.next())
        .await
        .unwrap();
    let msg = next.unwrap().unwrap();
    serde_json::from_str(msg.to_text().unwrap()).unwrap()
}

async fn connect(url: &str, first: Option<String>) -> Client {
    let (mut c, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    if let Some(text) = first {
        c.send(Message::text(text)).await.unwrap();
    }
    c
}

#[tokio::test]
async fn websocket_session_recovers_and_handles_bad_first_messages() {
    let (r, _) = recovery();
    let url = serve_ws(r, Duration::from_millis(300)).await;

    // New client: salt, recovered, then its first state.
    let mut c = connect(&url, Some(message(None, &[]).to_string())).await;
    let salt_msg = recv_json(&mut c).await;
    assert_eq!(salt_msg["type"], "salt");
    let s = Salt::decode(salt_msg["salt"].as_str().unwrap()).unwrap();
    assert_eq!(recv_json(&mut c).await, recovered_msg(0, 0));
    let state = recv_json(&mut c).await;
    assert_eq!(
        (state["type"].as_str(), state["rev"].as_u64()),
        (Some("state"), Some(1))
    );
    let token = state["token"].as_str().unwrap().to_owned();
    assert_eq!(recv_json(&mut c).await["type"], "hello");
    // The connection goes on with app messages.
    c.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    assert_eq!(recv_json(&mut c).await, json!({"type": "ping"}));
    drop(c);

    // Reconnect with the salt and the token: restored, and the next state builds on it.
    let mut msg = message(Some(&s), &[&token]);
    msg["input"] = json!({"f": {"q": "typed"}});
    let mut c = connect(&url, Some(msg.to_string())).await;
    assert_eq!(recv_json(&mut c).await, recovered_msg(1, 0));
    let state = recv_json(&mut c).await;
    assert_eq!(state["rev"], 2);
    let hello = recv_json(&mut c).await;
    assert_eq!(hello["q"], "typed");
    assert_eq!(hello["first"], Value::Null);

    // JSON that is not a reconnect message: a new client, and the app still gets it.
    let mut c = connect(&url, Some(r#"{"type":"hello"}"#.to_owned())).await;
    assert_eq!(recv_json(&mut c).await["type"], "salt");
    assert_eq!(recv_json(&mut c).await, recovered_msg(0, 0));
    assert_eq!(recv_json(&mut c).await["rev"], 1);
    assert_eq!(recv_json(&mut c).await["first"], r#"{"type":"hello"}"#);

    // Not JSON at all: refused like any unusable reconnect message (one rejection counted),
    // and not handed to the app.
    let mut c = connect(&url, Some("hello there".to_owned())).await;
    assert_eq!(recv_json(&mut c).await["type"], "salt");
    assert_eq!(recv_json(&mut c).await, recovered_msg(0, 1));
    assert_eq!(recv_json(&mut c).await["rev"], 1);
    assert_eq!(recv_json(&mut c).await["first"], Value::Null);

    // A broken reconnect message: a new client, one rejection counted.
    let mut c = connect(&url, Some(r#"{"type":"recover","salt":123}"#.to_owned())).await;
    assert_eq!(recv_json(&mut c).await["type"], "salt");
    assert_eq!(recv_json(&mut c).await, recovered_msg(0, 1));

    // Silence: after the timeout, a new client.
    let mut c = connect(&url, None).await;
    assert_eq!(recv_json(&mut c).await["type"], "salt");
    assert_eq!(recv_json(&mut c).await["type"], "recovered");
    assert_eq!(recv_json(&mut c).await["rev"], 1);
}

#[tokio::test]
async fn websocket_oversized_first_message_is_too_large() {
    let (r, _) = recovery();
    let k = keys(&r);
    let s = salt(12);
    let token = seal(&r, &s, k.counter, 5, &7u32);
    // A transport cap above the bundle cap, so the message reaches the endpoint.
    let url = serve_ws_with(r, |l| {
        l.with_max_message_bytes(4 * Limits::DEFAULT_MAX_BUNDLE_BYTES)
    })
    .await;
    let mut msg = message(Some(&s), &[token.as_str()]);
    msg["input"] = json!({"f": {"pad": "x".repeat(Limits::DEFAULT_MAX_BUNDLE_BYTES)}});
    let mut c = connect(&url, Some(msg.to_string())).await;
    assert_eq!(recv_json(&mut c).await["type"], "salt");
    assert_eq!(recv_json(&mut c).await, recovered_msg(0, 1));
    // Nothing was restored: the counter starts over.
    let state = recv_json(&mut c).await;
    assert_eq!(state["rev"], 1);
}

/// A request without a bundle draws no salt it never uses: none exists until something needs
/// it (a seal, the salt message), then it is drawn once and kept; the response of a handler
/// that seals nothing carries no salt.
#[tokio::test]
async fn a_request_without_a_bundle_draws_its_salt_only_when_needed() {
    let (r, _) = recovery();
    let k = keys(&r);
    let endpoint = state_recovery::protocol::Endpoint::new(r.clone());
    let fresh = endpoint.recover(None, None);
    assert!(fresh.context().salt_issued());
    assert!(!fresh.context().salt_drawn(), "no salt drawn yet");
    let ctx = fresh.context();
    let update = ctx.seal(k.counter, 1, 1, &1u32).unwrap();
    assert!(ctx.salt_drawn(), "the first seal draws it");
    let salt = ctx.salt().clone();
    let msgs: Vec<Value> = fresh
        .messages()
        .iter()
        .map(|m| serde_json::from_str(&m.to_json()).unwrap())
        .collect();
    assert_eq!(msgs[0]["salt"], salt.encode(), "the same salt, drawn once");
    // The update is sealed under that salt.
    let opened = r.open::<u32>(&Scope::new(&salt), update.token().as_str());
    assert_eq!(opened.unwrap().value, 1);

    // Through the layer: a handler that seals nothing and sends no messages draws none.
    let app = Router::new()
        .route(
            "/",
            get(|r: Recovered| async move {
                let drawn = r.context().salt_drawn();
                ([("x-drawn", if drawn { "1" } else { "0" })], "ok")
            }),
        )
        .layer(StateRecoveryLayer::new(r));
    let res = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.headers()["x-drawn"], "0");
    assert!(res.headers().keys().all(|h| !h.as_str().contains("salt")));
    assert!(res.headers().get("state-recovery").is_none());
}

/// The upgrade's caps: a reconnect message of exactly the bundle cap restores; one byte
/// more is refused by the transport with close 1009 before it is buffered, and the
/// application is never called.
#[tokio::test]
async fn websocket_messages_over_the_cap_are_closed_with_1009() {
    let (r, _) = recovery();
    let k = keys(&r);
    let s = salt(12);
    let token = seal(&r, &s, k.counter, 5, &7u32);
    let url = serve_ws(r, Duration::from_secs(5)).await;
    let sized = |n: usize| {
        let mut msg = message(Some(&s), &[token.as_str()]);
        msg["input"] = json!({"f": {"pad": ""}});
        let pad = n - msg.to_string().len();
        msg["input"] = json!({"f": {"pad": "x".repeat(pad)}});
        let text = msg.to_string();
        assert_eq!(text.len(), n);
        text
    };

    // At the cap: restored, and the counter goes on from 7.
    let mut c = connect(&url, Some(sized(Limits::DEFAULT_MAX_BUNDLE_BYTES))).await;
    assert_eq!(recv_json(&mut c).await, recovered_msg(1, 0));
    assert_eq!(recv_json(&mut c).await["rev"], 6);

    // One byte over: close 1009, nothing else.
    let mut c = connect(&url, Some(sized(Limits::DEFAULT_MAX_BUNDLE_BYTES + 1))).await;
    let next = tokio::time::timeout(Duration::from_secs(10), c.next())
        .await
        .unwrap();
    match next {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), RecoverySocket::TOO_BIG_CLOSE_CODE);
            assert_eq!(frame.reason.as_str(), RecoverySocket::TOO_BIG_CLOSE_REASON);
        }
        other => panic!("expected close 1009, got {other:?}"),
    }
    assert_eq!(RecoverySocket::TOO_BIG_CLOSE_CODE, 1009);
}

/// With the application's registry, verified entries that no declared slot claims are
/// counted (and logged as `unclaimed`); claimed ones, including under an alias, are not.
#[tokio::test]
async fn the_layer_counts_unclaimed_entries_with_a_registry() {
    let (r, _) = recovery();
    let mut registry = r.registry();
    let counter: state_recovery::Slot<u32> =
        state_recovery::Slot::declare(state_recovery::state_key!("counter"))
            .alias(Location::new("app.rs", 1, 1))
            .register(&mut registry)
            .unwrap();
    let registry = std::sync::Arc::new(registry);
    let s = salt(3);
    let k = keys(&r);
    let old = seal(&r, &s, k.counter, 4, &7u32); // under the alias
    let gone = seal(&r, &s, k.note, 2, &"removed state");
    let router = Router::new()
        .route(
            "/count",
            get(move |rec: Recovered| async move {
                let (value, outcome) = counter.restore(rec.restored());
                Json(json!({
                    "unclaimed": rec.unclaimed(),
                    "value": value,
                    "alias": matches!(outcome, state_recovery::Outcome::Restored { alias: true, .. }),
                }))
            }),
        )
        .layer(StateRecoveryLayer::new(r.clone()).with_registry(registry.clone()));
    let msg = message(Some(&s), &[old.as_str(), gone.as_str()]);
    let (status, v) = send(&router, with_header("/count", &msg)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v, json!({"unclaimed": 1, "value": 7, "alias": true}));
    // Without a registry in the layer, nothing is counted.
    let plain = Router::new()
        .route(
            "/count",
            get(|rec: Recovered| async move { Json(json!(rec.unclaimed())) }),
        )
        .layer(StateRecoveryLayer::new(r));
    let (_, v) = send(&plain, with_header("/count", &msg)).await;
    assert_eq!(v, json!(0));
}

/// A long-lived, chatty session re-seals what the client holds when a new step begins, at
/// the same revision, while it keeps answering messages.
#[tokio::test]
async fn a_chatty_session_refreshes_its_entries_at_a_new_step() {
    let clock = Arc::new(state_recovery::ManualClock::new(crate::common::NOW));
    let r = Recovery::builder(ring(&[("k1", 1)]))
        .otp(state_recovery::OtpSettings::new(4, 1).unwrap()) // refresh checks every second
        .clock(clock.clone())
        .build()
        .unwrap();
    let k = keys(&r);
    let app = Router::new()
        .route(
            "/ws",
            get(move |ws: RecoverySocket| async move {
                ws.on_upgrade(move |mut session: RecoverySession| async move {
                    let ctx = session.context();
                    let update = ctx.seal(k.counter, 7, 1, &1u32).unwrap();
                    session.send(update).await.unwrap();
                    while let Some(Ok(msg)) = session.recv().await {
                        if session.socket_mut().send(msg).await.is_err() {
                            break;
                        }
                    }
                })
            }),
        )
        .layer(StateRecoveryLayer::new(r));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut c = connect(&url, Some(message(None, &[]).to_string())).await;
    assert_eq!(recv_json(&mut c).await["type"], "salt");
    assert_eq!(recv_json(&mut c).await["type"], "recovered");
    let first = recv_json(&mut c).await;
    assert_eq!(
        (first["type"].as_str(), first["rev"].as_u64()),
        (Some("state"), Some(7))
    );
    clock.advance(4); // a new step on the server's clock
                      // Keep the session busy: an echo every 100 ms, never idle for the refresh period.
    let mut refreshed = None;
    for i in 0..40 {
        c.send(Message::text(format!(r#"{{"ping":{i}}}"#)))
            .await
            .unwrap();
        let m = recv_json(&mut c).await;
        if m["type"] == "state" {
            refreshed = Some(m);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refreshed = refreshed.expect("no refresh while the session was busy");
    assert_eq!(refreshed["rev"], 7);
    assert_ne!(refreshed["token"], first["token"]);
}

/// The user the auth layer below found (what `with_subject` reads).
#[derive(Clone)]
struct User(String);

/// A stand-in auth layer: the `x-user` header becomes a `User` extension.
async fn auth(mut req: Request<Body>, next: axum::middleware::Next) -> Response {
    let user = req
        .headers()
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .map(|u| User(u.to_owned()));
    if let Some(user) = user {
        req.extensions_mut().insert(user);
    }
    next.run(req).await
}

/// `Router::layer` wraps what was added before it, so the layer added last runs first: the
/// auth layer must be added *after* the recovery layer. In the wrong order the subject
/// function sees no user: without `require_subject` everything silently seals as anonymous;
/// with it, nothing is restored or sealed, and the handler and the logs say why.
#[tokio::test]
async fn the_auth_layer_must_be_added_after_the_recovery_layer() {
    let (r, _) = recovery();
    let k = keys(&r);
    let build = |strict: bool, auth_outside: bool| {
        let mut layer = StateRecoveryLayer::new(r.clone())
            .with_subject(|p| p.extensions.get::<User>().map(|u| u.0.clone()));
        if strict {
            layer = layer.require_subject();
        }
        let routes = Router::new()
            .route(
                "/page",
                get(move |rec: Recovered| async move { Json(report(k, &rec)) }),
            )
            .route(
                "/seal",
                post(move |rec: Recovered| async move {
                    let ctx = rec.context();
                    let sealed = ctx.seal(k.counter, ctx.next_revision(k.counter), 1, &99u32);
                    Json(json!({
                        "messages": rec.messages(),
                        "subject": ctx.subject(),
                        "update": sealed.as_ref().ok().map(|u| serde_json::to_value(u).unwrap()),
                        "error": sealed.err().map(|e| e.to_string()),
                    }))
                }),
            );
        let auth = axum::middleware::from_fn(auth);
        if auth_outside {
            routes.layer(layer).layer(auth) // right: auth runs first
        } else {
            routes.layer(auth).layer(layer) // wrong: recovery runs first
        }
    };
    let as_alice = |req: axum::http::request::Builder| {
        req.header("x-user", "alice").body(Body::empty()).unwrap()
    };

    // Right order: Alice's entry is sealed for her and restored for her only.
    for strict in [false, true] {
        let app = build(strict, true);
        let (_, v) = send(&app, as_alice(Request::post("/seal"))).await;
        assert_eq!(v["subject"], "alice");
        let s = Salt::decode(v["messages"][0]["salt"].as_str().unwrap()).unwrap();
        let token = v["update"]["token"].as_str().unwrap().to_owned();
        let msg = message(Some(&s), &[&token]);
        let mut req = with_header("/page", &msg);
        req.headers_mut().insert("x-user", "alice".parse().unwrap());
        let (_, v) = send(&app, req).await;
        assert_eq!(
            (v["counter"].clone(), v["subject"].clone()),
            (json!(99), json!("alice"))
        );
    }

    // Wrong order, no `require_subject`: the user is invisible, and the state is sealed for
    // "anonymous" with no error at all: it opens for any anonymous request with that salt.
    let app = build(false, false);
    let (_, v) = send(&app, as_alice(Request::post("/seal"))).await;
    assert_eq!(v["subject"], Value::Null);
    assert_eq!(v["error"], Value::Null);
    let s = Salt::decode(v["messages"][0]["salt"].as_str().unwrap()).unwrap();
    let token = v["update"]["token"].as_str().unwrap().to_owned();
    let (_, v) = send(&app, with_header("/page", &message(Some(&s), &[&token]))).await;
    assert_eq!(v["counter"], 99, "opened without any user");

    // Wrong order with `require_subject`: refused, loudly.
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let app = build(true, false);
    let (_, v) = send(&app, as_alice(Request::post("/seal"))).await;
    assert_eq!(v["subject"], Value::Null);
    assert_eq!(v["update"], Value::Null);
    assert_eq!(
        v["error"],
        "no authenticated subject, and this context seals only for one"
    );
    // Alice's real entry (sealed in the right order) is not even opened; her salt is kept.
    let right = build(true, true);
    let (_, v) = send(&right, as_alice(Request::post("/seal"))).await;
    let s = Salt::decode(v["messages"][0]["salt"].as_str().unwrap()).unwrap();
    let token = v["update"]["token"].as_str().unwrap().to_owned();
    let mut req = with_header("/page", &message(Some(&s), &[&token]));
    req.headers_mut().insert("x-user", "alice".parse().unwrap());
    let (_, v) = send(&app, req).await;
    assert_eq!(v["counter"], Value::Null);
    assert_eq!(v["bundle_rejection"], "no-subject");
    assert_eq!(v["rejected"], json!([]));
    assert_eq!(v["salt"], s.encode());
    assert_eq!(v["messages"], json!([recovered_msg(0, 1)]));
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("WARN") && logs.contains("no-subject"),
        "{logs}"
    );
}

/// Opens a WebSocket with these extra handshake headers; the HTTP status if it was refused.
async fn upgrade(url: &str, headers: &[(&str, &str)]) -> Result<Client, StatusCode> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut req = url.into_client_request().unwrap();
    for (name, value) in headers {
        let name: axum::http::HeaderName = name.parse().unwrap();
        if name == header::HOST {
            req.headers_mut().insert(name, value.parse().unwrap()); // replaces the URL's
        } else {
            req.headers_mut().append(name, value.parse().unwrap());
        }
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((c, _)) => Ok(c),
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            Err(StatusCode::from_u16(res.status().as_u16()).unwrap())
        }
        Err(e) => panic!("{e}"),
    }
}

/// Cross-site WebSocket hijacking: a browser upgrade from another origin is refused with 403
/// before upgrading; the same host and port (any scheme), a missing `Origin` (not a browser),
/// an explicit list and the insecure bypass behave as documented.
#[tokio::test]
async fn websocket_upgrades_from_other_origins_are_refused() {
    let (r, _) = recovery();
    let hello = message(None, &[]).to_string();
    // Works: the session starts (salt first).
    async fn works(c: Result<Client, StatusCode>, hello: &str) {
        let mut c = c.expect("upgrade refused");
        c.send(Message::text(hello.to_owned())).await.unwrap();
        assert_eq!(recv_json(&mut c).await["type"], "salt");
    }

    // The default: same host.
    let url = serve_ws_with(r.clone(), |l| l).await;
    let authority = url
        .trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .to_owned();
    let same = format!("http://{authority}");
    let same_tls = format!("https://{authority}");
    works(upgrade(&url, &[("origin", &same)]).await, &hello).await;
    works(upgrade(&url, &[("origin", &same_tls)]).await, &hello).await;
    works(upgrade(&url, &[]).await, &hello).await; // no Origin: not a browser
    let port = authority.rsplit(':').next().unwrap();
    for origin in [
        "https://evil.example".to_owned(),
        format!("http://evil.example:{port}"),
        format!("http://127.0.0.1:{}", port.parse::<u16>().unwrap() ^ 1),
        "http://127.0.0.1".to_owned(),
        "null".to_owned(),
        "garbage".to_owned(),
    ] {
        assert_eq!(
            upgrade(&url, &[("origin", &origin)]).await.err(),
            Some(StatusCode::FORBIDDEN),
            "{origin}"
        );
    }
    let twice = upgrade(&url, &[("origin", &same), ("origin", &same)]).await;
    assert_eq!(twice.err(), Some(StatusCode::FORBIDDEN));
    // A Host that does not match the Origin (a proxy that rewrites or drops the port).
    let rewritten = upgrade(&url, &[("origin", &same), ("host", "127.0.0.1")]).await;
    assert_eq!(rewritten.err(), Some(StatusCode::FORBIDDEN));

    // An explicit list: exactly those origins, whatever the Host.
    let url = serve_ws_with(r.clone(), |l| {
        l.with_allowed_origins(["https://app.example.com", "http://localhost:8080/"])
    })
    .await;
    let allowed = [
        ("origin", "https://app.example.com"),
        ("host", "internal:1"),
    ];
    works(upgrade(&url, &allowed).await, &hello).await;
    works(
        upgrade(&url, &[("origin", "http://LOCALHOST:8080")]).await,
        &hello,
    )
    .await;
    works(upgrade(&url, &[]).await, &hello).await;
    let listed_elsewhere = url.replace("ws://", "http://").replace("/ws", "");
    for origin in ["http://app.example.com", &listed_elsewhere, "null"] {
        assert_eq!(
            upgrade(&url, &[("origin", origin)]).await.err(),
            Some(StatusCode::FORBIDDEN),
            "{origin}"
        );
    }

    // The insecure bypass: anything goes.
    let url = serve_ws_with(r, StateRecoveryLayer::with_any_origin_insecure).await;
    works(
        upgrade(&url, &[("origin", "https://evil.example")]).await,
        &hello,
    )
    .await;
    works(upgrade(&url, &[("origin", "null")]).await, &hello).await;
}

/// `RecoverySession`'s `Debug` shows the application's first message by kind and length only
/// (it may carry anything the user sent, tokens included), and what was restored without
/// payloads.
#[tokio::test]
async fn session_debug_shows_no_first_message_or_payloads() {
    let (r, _) = recovery();
    let k = keys(&r);
    let s = salt(5);
    let secret = "hunter2-typed-by-the-user";
    let token = r
        .seal(&Scope::new(&s), k.note, 1, 1, &json!({"draft": secret}))
        .unwrap();
    let app = Router::new()
        .route(
            "/ws",
            get(|ws: RecoverySocket| async move {
                ws.on_upgrade(|mut session: RecoverySession| async move {
                    let text = format!("{session:?}");
                    session.socket_mut().send(text.into()).await.unwrap();
                })
            }),
        )
        .layer(StateRecoveryLayer::new(r).with_first_message_timeout(Duration::from_secs(5)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let url = format!("ws://{addr}/ws");

    let own = json!({"type": "app", "entries": [token.as_str()], "note": secret}).to_string();
    let recover = message(Some(&s), &[token.as_str()]).to_string();
    for first in [own, recover] {
        let mut c = connect(&url, Some(first.clone())).await;
        let text = loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), c.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let text = msg.into_text().unwrap().to_string();
            if text.starts_with("RecoverySession") {
                break text;
            }
        };
        assert!(!text.contains(secret), "{text}");
        assert!(!text.contains(&token.as_str()[..24]), "{text}");
        assert!(
            !text.contains(&token.as_str()[token.as_str().len() - 24..]),
            "{text}"
        );
        if first.contains("\"app\"") {
            assert!(
                text.contains(&format!("first_message: Some((\"text\", {}))", first.len())),
                "{text}"
            );
        } else {
            assert!(text.contains("first_message: None"), "{text}");
            assert!(text.contains(&k.note.to_string()), "{text}");
        }
    }
}

/// An axum worker (the layer with events, a counter handled through `RecoverySession`) on a
/// runtime of its own, so killing it (`shutdown_background`) drops every task and socket at
/// once, as a SIGKILL does: nothing it had not written goes out.
struct LayerWorker {
    port: u16,
    runtime: Option<tokio::runtime::Runtime>,
    /// Where the next event stops (then `reached` is notified and the handler waits forever).
    cut: Arc<std::sync::Mutex<Option<Cut>>>,
    reached: Arc<tokio::sync::Notify>,
    applied: Arc<std::sync::atomic::AtomicU64>,
}

impl LayerWorker {
    fn start(recovery: &state_recovery::Recovery, events: bool) -> Self {
        use axum::extract::ws::Message as WsMessage;
        use state_recovery::{state_key, Slot};
        let mut reg = recovery.registry();
        let counter: Slot<u64> = Slot::declare(state_key!("counter"))
            .register(&mut reg)
            .unwrap();
        let layer = StateRecoveryLayer::new(recovery.clone()).with_registry(Arc::new(reg));
        let layer = if events { layer.with_events() } else { layer };
        let cut: Arc<std::sync::Mutex<Option<Cut>>> = Arc::default();
        let reached = Arc::new(tokio::sync::Notify::new());
        let applied = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (c, r, a) = (cut.clone(), reached.clone(), applied.clone());
        let app = axum::Router::new()
            .route(
                "/ws",
                get(move |ws: RecoverySocket| {
                    let (counter, cut, reached, applied) =
                        (counter.clone(), c.clone(), r.clone(), a.clone());
                    async move {
                        ws.on_upgrade(move |mut session: RecoverySession| async move {
                            let stop = |at: Cut| {
                                let hit = *cut.lock().unwrap() == Some(at);
                                if hit {
                                    reached.notify_one();
                                }
                                hit
                            };
                            let render = |n: u64| {
                                WsMessage::Text(
                                    json!({"type": "render", "count": n}).to_string().into(),
                                )
                            };
                            let (mut n, _) = counter.restore(session.recovered());
                            if session.send_all([render(n)]).await.is_err() {
                                return;
                            }
                            while let Some(Ok(WsMessage::Text(_))) = session.recv().await {
                                if stop(Cut::BeforeApply) {
                                    std::future::pending::<()>().await;
                                }
                                n += 1;
                                applied.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                if let Ok(update) = counter.seal(session.context(), &n) {
                                    let _ = session.send(update).await;
                                }
                                let _ = session.send_all([render(n)]).await;
                                if stop(Cut::AfterApply) {
                                    std::future::pending::<()>().await;
                                }
                                if cut.lock().unwrap().is_some() {
                                    let _ = session.flush().await;
                                }
                                if stop(Cut::AfterFlush) {
                                    std::future::pending::<()>().await;
                                }
                            }
                        })
                    }
                }),
            )
            .layer(layer);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let port = std_listener.local_addr().unwrap().port();
        let listener = {
            let _in = runtime.enter();
            tokio::net::TcpListener::from_std(std_listener).unwrap()
        };
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            port,
            runtime: Some(runtime),
            cut,
            reached,
            applied,
        }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    fn kill(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    fn applied(&self) -> u64 {
        self.applied.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for LayerWorker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The counter a tab stored (its entry's signed payload).
fn stored_counter(tab: &crate::events::Tab, recovery: &state_recovery::Recovery) -> u64 {
    let key = recovery.state_key(&state_recovery::state_key!("counter"));
    tab.payload(key).and_then(|v| v.as_u64()).unwrap_or(0)
}

/// Over a real socket through the axum layer: a worker killed between the client's send and
/// the reply, at each point (before the handler applied the click, after it applied and sent
/// it into the session, after the session flushed the batch but before the client stored
/// it). The click counts once on the next worker. Without events (the layer as before), the
/// same kill loses it whenever the reply did not make it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_in_flight_when_its_worker_dies_counts_once_through_the_layer() {
    let (r, _) = recovery();
    for events in [true, false] {
        for cut in [Cut::BeforeApply, Cut::AfterApply, Cut::AfterFlush] {
            let mut a = LayerWorker::start(&r, events);
            let b = LayerWorker::start(&r, events);
            let mut tab = crate::events::Tab::default();
            let mut ws = open(&a.url(), &mut tab).await;
            assert_eq!(tab.numbered, events, "recovered announces applied");
            for _ in 0..2 {
                send_click(&mut ws, &mut tab).await;
            }
            assert_eq!(stored_counter(&tab, &r), 2);
            *a.cut.lock().unwrap() = Some(cut);
            let reached = a.reached.notified();
            let text = tab.send(json!({"type": "inc"}));
            ws.send(Message::text(text)).await.unwrap();
            tokio::time::timeout(Duration::from_secs(10), reached)
                .await
                .unwrap();
            a.kill();
            if cut == Cut::AfterFlush {
                drop(ws); // the batch was written, and is lost before the client stores it
            } else {
                drain(&mut ws, &mut tab).await; // what arrived before the close is stored
            }

            let mut ws = open(&b.url(), &mut tab).await;
            settle(&mut ws, &mut tab).await;
            if events {
                assert_eq!(stored_counter(&tab, &r), 3, "{cut:?}: counted once");
                assert_eq!(b.applied(), 1, "{cut:?}");
                send_click(&mut ws, &mut tab).await;
                assert_eq!(stored_counter(&tab, &r), 4, "{cut:?}");
            } else {
                // Without events the handler's sends go out at once: a click is lost unless
                // they reached the client before the kill (AfterApply here).
                let kept = u64::from(cut == Cut::AfterApply);
                assert_eq!(
                    stored_counter(&tab, &r),
                    2 + kept,
                    "{cut:?}: lost without events"
                );
                assert_eq!(b.applied(), 0, "{cut:?}");
            }
        }
    }
}

/// One click: numbered or not, then its reply (a batch, or the state and render frames).
async fn send_click(ws: &mut crate::events::Ws, tab: &mut crate::events::Tab) {
    if tab.numbered {
        return click(ws, tab).await;
    }
    let text = tab.send(json!({"type": "inc"}));
    ws.send(Message::text(text)).await.unwrap();
    loop {
        let m = next_frame(ws).await;
        tab.take(&m.to_string());
        if m["type"] == "render" {
            return;
        }
    }
}

/// What the session does with numbered messages: one batch per new event (the handler's
/// updates coalesced, its renders in order, the applied-events entry, then what a batch
/// cannot carry), duplicates acknowledged without reaching the handler, `event_seq` and
/// `event_id` for the handler; unnumbered messages as before. Without `with_events` nothing
/// is announced and `$seq` is the application's field like any other.
#[tokio::test]
async fn the_session_answers_each_new_event_with_one_batch_and_drops_duplicates() {
    let (r, _) = recovery();
    let applied_key = r.applied_key().to_string();
    for events in [true, false] {
        let k = keys(&r);
        let handled = Arc::new(Mutex::new(Vec::<Value>::new()));
        let seen = handled.clone();
        let app = Router::new()
            .route(
                "/ws",
                get(move |ws: RecoverySocket| async move {
                    ws.on_upgrade(move |mut session: RecoverySession| async move {
                        let mut n: u32 = session.recovered().get(k.counter).unwrap_or(0);
                        while let Some(Ok(axum::extract::ws::Message::Text(t))) =
                            session.recv().await
                        {
                            let seq = session.event_seq();
                            let id = session.event_id().map(|i| i.to_string());
                            seen.lock()
                                .unwrap()
                                .push(json!({"text": t.as_str(), "seq": seq}));
                            // Two seals of one key: the batch keeps the newer.
                            for _ in 0..2 {
                                n += 1;
                                let ctx = session.context();
                                let u = ctx.seal(k.counter, ctx.next_revision(k.counter), 1, &n);
                                session.send(u.unwrap()).await.unwrap();
                            }
                            let render = json!({"type": "render", "n": n, "seq": seq, "id": id});
                            let bin = axum::extract::ws::Message::Binary(vec![1, 2].into());
                            session
                                .send_all([render.to_string().into(), bin, "not json".into()])
                                .await
                                .unwrap();
                        }
                    })
                }),
            )
            .layer(if events {
                StateRecoveryLayer::new(r.clone()).with_events()
            } else {
                StateRecoveryLayer::new(r.clone())
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let (mut c, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .unwrap();
        c.send(Message::text(
            r#"{"type":"recover","salt":null,"entries":[]}"#,
        ))
        .await
        .unwrap();
        assert_eq!(recv_json(&mut c).await["type"], "salt");
        let recovered = recv_json(&mut c).await;
        assert_eq!(recovered["type"], "recovered");
        if !events {
            assert!(recovered.get("applied").is_none(), "{recovered}");
            c.send(Message::text(r#"{"type":"inc","$seq":1}"#))
                .await
                .unwrap();
            let first = recv_json(&mut c).await;
            assert_eq!(
                (first["type"].as_str(), first["rev"].as_u64()),
                (Some("state"), Some(1))
            );
            continue;
        }
        assert_eq!(recovered["applied"], 0);

        c.send(Message::text(r#"{"type":"inc","$seq":1}"#))
            .await
            .unwrap();
        let batch = recv_json(&mut c).await;
        assert_eq!(
            (batch["type"].as_str(), batch["seq"].as_u64()),
            (Some("batch"), Some(1))
        );
        let msgs = batch["messages"].as_array().unwrap();
        let kinds: Vec<(&str, &str)> = msgs
            .iter()
            .map(|m| {
                (
                    m["type"].as_str().unwrap(),
                    m["key"].as_str().unwrap_or("-"),
                )
            })
            .collect();
        let counter = k.counter.to_string();
        assert_eq!(
            kinds,
            [
                ("state", applied_key.as_str()),
                ("state", counter.as_str()),
                ("render", "-")
            ]
        );
        assert_eq!(msgs[1]["rev"], 2, "the newer of the two seals");
        assert_eq!(
            (msgs[2]["n"].as_u64(), msgs[2]["seq"].as_u64()),
            (Some(2), Some(1))
        );
        assert_eq!(msgs[2]["id"].as_str().map(str::len), Some(32));
        // Then what a batch cannot carry, in order.
        let next = tokio::time::timeout(Duration::from_secs(10), c.next())
            .await
            .unwrap();
        assert_eq!(next.unwrap().unwrap(), Message::binary(vec![1u8, 2]));
        let next = tokio::time::timeout(Duration::from_secs(10), c.next())
            .await
            .unwrap();
        assert_eq!(next.unwrap().unwrap(), Message::text("not json"));

        // The same event again: acknowledged, never handled.
        c.send(Message::text(r#"{"type":"inc","$seq":1}"#))
            .await
            .unwrap();
        let ack = recv_json(&mut c).await;
        assert_eq!(ack, json!({"type": "batch", "seq": 1, "messages": []}));
        // A bad sequence: neither. An unnumbered message: handled as before (no batch).
        c.send(Message::text(r#"{"type":"inc","$seq":-1}"#))
            .await
            .unwrap();
        c.send(Message::text(r#"{"type":"plain"}"#)).await.unwrap();
        let update = recv_json(&mut c).await;
        assert_eq!(
            (update["type"].as_str(), update["rev"].as_u64()),
            (Some("state"), Some(3))
        );
        assert_eq!(recv_json(&mut c).await["type"], "state");
        let render = recv_json(&mut c).await;
        assert_eq!(
            (render["n"].as_u64(), render["seq"].as_u64()),
            (Some(4), None)
        );
        let handled = handled.lock().unwrap().clone();
        assert_eq!(
            handled
                .iter()
                .map(|h| h["seq"].as_u64())
                .collect::<Vec<_>>(),
            [Some(1), None],
            "the handler saw the event once, and the plain message"
        );
    }
}
