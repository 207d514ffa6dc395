//! The protocol over plain tokio-tungstenite, with no axum: what a framework with its own
//! transport does with `Endpoint`, `Recovered`, `RecoveryContext` and `Slot`. Runs with
//! `cargo test --no-default-features --test it transport` (CI does).

use std::sync::Arc;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use state_recovery::protocol::{Endpoint, ServerMessage};
use state_recovery::{state_key, Slot};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::common::recovery;

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
