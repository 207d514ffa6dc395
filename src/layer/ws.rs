//! `RecoverySocket`: a WebSocket upgrade whose session starts by reading the reconnect
//! message, answering `salt` (if issued) and `recovered`, then hands over the socket.

use std::future::Future;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::client_input::ClientInput;
use super::extract::Recovered;
use super::handle::{envelope, MissingLayer, RecoveryHandle};
use crate::bundle::Restored;
use crate::error::Reason;
use crate::protocol::RecoveryContext;
use crate::protocol::ServerMessage;

/// Extracts a WebSocket upgrade with state recovery: see [`on_upgrade`](Self::on_upgrade).
/// Its rejection is the `WebSocketUpgrade` rejection, or a 500 if the layer is missing.
#[derive(Debug)]
pub struct RecoverySocket {
    upgrade: WebSocketUpgrade,
    handle: RecoveryHandle,
}

impl<S: Send + Sync> FromRequestParts<S> for RecoverySocket {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let handle = RecoveryHandle::from_extensions(&parts.extensions)
            .ok_or_else(|| MissingLayer.into_response())?;
        let upgrade = WebSocketUpgrade::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Self { upgrade, handle })
    }
}

impl RecoverySocket {
    /// Changes the upgrade's settings (e.g. `max_message_size`, protocols). The reconnect
    /// message is held to the bundle cap whatever the transport allows, but a transport cap
    /// stops a huge frame before it is buffered.
    #[must_use]
    pub fn map_upgrade(mut self, f: impl FnOnce(WebSocketUpgrade) -> WebSocketUpgrade) -> Self {
        self.upgrade = f(self.upgrade);
        self
    }

    /// Finishes the upgrade. The session then waits (up to the layer's first-message timeout)
    /// for the client's first data message; a `{"type":"recover",...}` message is opened
    /// (held to the bundle cap); anything else, or nothing in time, means a new client. It
    /// sends `salt` (if one was issued) and `recovered`, then calls `callback`. If the client
    /// goes away first, `callback` is not called.
    pub fn on_upgrade<F, Fut>(self, callback: F) -> Response
    where
        F: FnOnce(RecoverySession) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handle = self.handle;
        self.upgrade.on_upgrade(move |socket| async move {
            if let Some(session) = RecoverySession::start(socket, handle).await {
                callback(session).await;
            }
        })
    }
}

/// A recovered WebSocket connection: the socket, and what the reconnect message restored.
#[derive(Debug)]
pub struct RecoverySession {
    socket: WebSocket,
    recovered: Recovered,
    first_message: Option<Message>,
}

impl RecoverySession {
    async fn start(mut socket: WebSocket, handle: RecoveryHandle) -> Option<Self> {
        let timeout = handle.config.first_message_timeout;
        let (recovered, first_message) =
            match tokio::time::timeout(timeout, next_data(&mut socket)).await {
                Err(_) => {
                    tracing::debug!(target: "state_recovery", "no first message in time");
                    (handle.recover(None), None)
                }
                Ok(None) => return None,
                Ok(Some(Message::Text(text))) => {
                    let bytes = text.as_str().as_bytes();
                    let max = handle.recovery().limits().max_bundle_bytes();
                    if bytes.len() > max {
                        (
                            handle.fresh(Some(Reason::TooLarge), ClientInput::default()),
                            None,
                        )
                    } else if is_reconnect(bytes) {
                        (handle.recover(Some(bytes)), None)
                    } else {
                        tracing::info!(
                            target: "state_recovery",
                            reason = "not-a-reconnect-message",
                            "first message is not a reconnect message; treating the client as new"
                        );
                        (handle.recover(None), Some(Message::Text(text)))
                    }
                }
                Ok(Some(other)) => {
                    tracing::info!(
                        target: "state_recovery",
                        reason = "not-a-reconnect-message",
                        "first message is binary; treating the client as new"
                    );
                    (handle.recover(None), Some(other))
                }
            };
        let mut session = Self {
            socket,
            recovered,
            first_message,
        };
        for m in session.recovered.messages() {
            session.send(m).await.ok()?;
        }
        Some(session)
    }

    /// What the reconnect message restored.
    #[must_use]
    pub fn recovered(&self) -> &Recovered {
        &self.recovered
    }

    /// The restored (verified) entries and the rejected ones.
    #[must_use]
    pub fn restored(&self) -> &Restored {
        self.recovered.restored()
    }

    /// The client input: **untrusted**, validate it as any user input.
    #[must_use]
    pub fn input(&self) -> &ClientInput {
        self.recovered.input()
    }

    /// The context to seal new state with.
    #[must_use]
    pub fn context(&self) -> &RecoveryContext {
        self.recovered.context()
    }

    /// The socket, to go on with the application's own messages.
    pub fn socket_mut(&mut self) -> &mut WebSocket {
        &mut self.socket
    }

    /// The client's first message, if it was not a reconnect message (so it is the
    /// application's own and has not been handled).
    pub fn take_first_message(&mut self) -> Option<Message> {
        self.first_message.take()
    }

    /// Sends one of this crate's messages (e.g. a [`StateUpdate`](super::StateUpdate)) as a
    /// text frame.
    ///
    /// # Errors
    /// The socket's error if the connection is gone.
    pub async fn send(&mut self, message: impl Into<ServerMessage>) -> Result<(), axum::Error> {
        let json = message.into().to_json();
        self.socket.send(Message::Text(json.into())).await
    }

    /// The socket and the recovery outcome, apart.
    #[must_use]
    pub fn into_parts(self) -> (WebSocket, Recovered) {
        (self.socket, self.recovered)
    }
}

/// The next text or binary message; `None` once the socket closes or fails.
async fn next_data(socket: &mut WebSocket) -> Option<Message> {
    loop {
        match socket.recv().await? {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => return Some(m),
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(Message::Close(_)) | Err(_) => return None,
        }
    }
}

/// A JSON object whose `type` is `recover`.
fn is_reconnect(message: &[u8]) -> bool {
    envelope(message).is_ok_and(|e| e.kind.as_deref() == Some("recover"))
}
