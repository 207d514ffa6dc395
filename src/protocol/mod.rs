//! The transport-independent part of the wire protocol: the server's messages and the
//! per-connection [`RecoveryContext`] that seals updates. The axum layer
//! ([`layer`](crate::layer), feature `axum`) is glue over these; a framework with its own
//! transport uses them directly.

mod context;
mod message;

pub use context::RecoveryContext;
pub use message::{RecoveredMessage, SaltMessage, ServerMessage, StateUpdate};
