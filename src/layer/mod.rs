//! The axum integration (feature `axum`): a tower layer, extractors for plain HTTP and
//! WebSocket, a per-connection [`RecoveryContext`], and the JS client served at
//! `/state-recovery.js`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{routing::get, Router};
//! use state_recovery::layer::{Recovered, RecoverySession, RecoverySocket, StateRecoveryLayer};
//! use state_recovery::{state_key, RecoveryBuilder, Slot};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let recovery = RecoveryBuilder::from_env()?.build()?;
//! let mut registry = recovery.registry();
//! let counter: Slot<u64> = Slot::declare(state_key!("counter")).register(&mut registry)?;
//! let page_counter = counter.clone();
//! let app = Router::new()
//!     .route("/ws", get(move |ws: RecoverySocket| async move {
//!         ws.on_upgrade(move |mut session: RecoverySession| async move {
//!             let (n, _outcome) = counter.restore(session.restored());
//!             if let Ok(update) = counter.seal(session.context(), &(n + 1)) {
//!                 let _ = session.send(update).await;
//!             }
//!             // ... go on with session.socket_mut() ...
//!         })
//!     }))
//!     .route("/page", get(move |r: Recovered| async move {
//!         format!("count: {}", page_counter.restore(r.restored()).0)
//!     }))
//!     .layer(StateRecoveryLayer::new(recovery).with_registry(Arc::new(registry)));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! # Wire protocol
//! Client → server, the **reconnect message**:
//!
//! ```json
//! {"type":"recover","salt":"<22-char salt>" | null,"entries":["<token>", ...],
//!  "input":{"<form id>":{"<field name>":"<value>" | ["<v1>","<v2>"]}}}
//! ```
//!
//! - WebSocket: the first text message after the socket opens ([`RecoverySocket`]).
//! - HTTP: a `State-Recovery` header whose value is that JSON as unpadded base64url, or a
//!   JSON body with the object under `"state_recovery"` ([`Recovered`]).
//!
//! A `null` or missing salt is a new client: a fresh salt is issued and nothing restored. So
//! is any message that cannot be used (malformed, over the bundle cap, a bad salt): the page
//! works, the client simply starts fresh. Server → client:
//!
//! - `{"type":"salt","salt":"..."}`: a fresh salt ([`SaltMessage`]); the client drops its old
//!   entries and keeps this salt.
//! - `{"type":"state","key":"<32 hex>","rev":N,"token":"..."}` for every sealed update
//!   ([`StateUpdate`]); the client keeps the highest `rev` per key.
//! - `{"type":"recovered","restored":N,"rejected":M}`, once after the reconnect message
//!   ([`RecoveredMessage`]). Counts only, never reasons; a message refused whole counts as
//!   one rejected entry.
//! - Any other `type` is the application's own.
//!
//! # Rejections
//! Every rejection looks the same to the client: it is only counted. The reason code goes to
//! `tracing` (target `state_recovery`, one event per entry with the claimed state key in hex
//! and the reason code; never the token, payload, salt or any secret) and to the handler
//! ([`Recovered::rejected`], [`Recovered::bundle_rejection`]).
//!
//! # Client input is not state
//! `"input"` holds form fields the browser recovered (LiveView's approach). It is
//! **unsigned and untrusted**: it becomes a [`ClientInput`] (strings only, capped by
//! [`InputLimits`]) through its own parser, and never reaches the signed-state decoder; an
//! `"entries"` array inside it is just a string field. Validate it like any form submission.
//! Livewire's CVE-2025-54068 (unauthenticated RCE) came from hydrating unsigned input with
//! the same machinery as signed state.
//!
//! # For framework authors
//! With another transport, take the [`RecoveryHandle`] the layer put into the request and
//! feed it the reconnect message's JSON text yourself:
//!
//! ```no_run
//! use state_recovery::layer::RecoveryHandle;
//! use state_recovery::Slot;
//!
//! fn on_connect(handle: &RecoveryHandle, first: Option<&[u8]>, slot: &Slot<Vec<String>>) -> Vec<String> {
//!     let recovered = handle.recover(first); // never fails; logs every rejection
//!     let mut out: Vec<String> = recovered.messages().iter().map(|m| m.to_json()).collect();
//!     let form = recovered.input().form("signup"); // untrusted: validate before use
//!     let (value, _outcome) = slot.restore(recovered.restored());
//!     if let Ok(update) = slot.seal(recovered.context(), &value) {
//!         out.push(update.to_json()); // send as {"type":"state",...}
//!     }
//!     out
//! }
//! ```

mod client_input;
mod extract;
mod handle;
#[allow(clippy::module_inception)]
mod layer;
mod service;
mod ws;

pub use crate::protocol::RecoveryContext;
pub use crate::protocol::{RecoveredMessage, SaltMessage, ServerMessage, StateUpdate};
pub use client_input::{ClientInput, FormInput, InputError, InputLimits};
pub use extract::{Recovered, BODY_FIELD, HEADER};
pub use handle::{MissingLayer, RecoveryHandle};
pub use layer::StateRecoveryLayer;
pub use service::{ResponseFuture, StateRecoveryService, CLIENT_JS};
pub use ws::{RecoverySession, RecoverySocket};
