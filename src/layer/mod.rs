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
//! The wire protocol, the names and the lifecycle (refresh, revisions, limits, drain) are
//! described in [`protocol`](crate::protocol): this module is the axum glue over it. What
//! the glue adds: the JS client served at `/state-recovery.js`, the `State-Recovery` header
//! and JSON-body forms for plain HTTP ([`Recovered`] as an extractor), the WebSocket session
//! ([`RecoverySocket`] → [`RecoverySession`], whose [`recv`](RecoverySession::recv) refreshes
//! entries, closes with 1012 on drain and, with
//! [`StateRecoveryLayer::with_events`], delivers each event once and answers it with one batch
//! frame), the `Origin` check on upgrades (same host by
//! default: [the `Origin` check](StateRecoveryLayer#the-origin-check)), the first-message
//! timeout, and the subject read from each request. Rejection reasons go to `tracing` (target `state_recovery`; the
//! claimed key in hex and the reason code, never a token, payload, salt or secret).
//!
//! # For framework authors
//! With another transport and no axum, use [`Endpoint`](crate::protocol::Endpoint); inside
//! an axum app, take the [`RecoveryHandle`] the layer put into the request and feed it the
//! reconnect message's JSON text yourself:
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

mod extract;
mod handle;
#[allow(clippy::module_inception)]
mod layer;
mod origin;
mod service;
mod ws;

pub use crate::protocol::RecoveryContext;
pub use crate::protocol::{ClientInput, FormInput, InputError, InputLimits, Recovered};
pub use crate::protocol::{RecoveredMessage, SaltMessage, ServerMessage, StateUpdate};
pub use extract::{BODY_FIELD, HEADER};
pub use handle::{MissingLayer, RecoveryHandle};
pub use layer::StateRecoveryLayer;
pub use service::{ResponseFuture, StateRecoveryService, CLIENT_JS};
pub use ws::{RecoverySession, RecoverySocket};
