//! The transport-independent part of the protocol: the reconnect handshake ([`Endpoint`] →
//! [`Recovered`]), the per-connection [`RecoveryContext`], untrusted [`ClientInput`], the
//! server's messages, and the graceful [`Drain`]. The axum layer (`layer`, feature `axum`)
//! is glue over these; a framework with its own transport uses them directly
//! (`tests/it/transport.rs` serves the protocol over plain tokio-tungstenite).
//!
//! # Names
//! | noun | what it is |
//! |---|---|
//! | [`Location`](crate::Location) | where a piece of state is declared (`state_key!("cart")`: module + name) |
//! | [`StateKey`](crate::StateKey) | the 128-bit keyed hash of a location: what names an entry on the wire |
//! | [`Slot`](crate::Slot) | one declared piece of state: key, type, schema, migrations, aliases |
//! | [`Token`](crate::Token) | one signed entry as text |
//! | reconnect message | what the client sends first: salt, tokens, client input |
//! | [`Recovered`] | everything one reconnect message gave: verified entries, rejections, input, context |
//! | [`Restored`](crate::Restored) | the verified entries of a message (by key) and the rejected ones |
//! | [`Opened`](crate::Opened) / [`RawEntry`](crate::RawEntry) | one entry that verified (typed / unparsed) |
//! | [`Rejected`](crate::Rejected) | one entry that did not, with its [`Reason`](crate::Reason) |
//! | [`Rejection`](crate::Rejection) | the error of a single `open`: a reason, nothing else |
//! | [`RecoveryContext`] | one connection's salt, subject, revisions and held entries: seals updates |
//! | [`StateUpdate`] | a sealed entry on its way to the client (`{"type":"state",...}`) |
//! | [`ClientInput`] | recovered form fields: unsigned, untrusted |
//!
//! # Wire protocol
//! Client → server, the **reconnect message**, first on every connection:
//!
//! ```json
//! {"type":"recover","salt":"<22-char salt>" | null,"entries":["<token>", ...],
//!  "input":{"<form id>":{"<field name>":"<value>" | ["<v1>","<v2>"]}}}
//! ```
//!
//! (over WebSocket, the first text message; over HTTP, the `State-Recovery` header as
//! unpadded base64url or a JSON body's `"state_recovery"` field). A `null` or missing salt
//! is a new client: a fresh salt is issued and nothing restored. A message that cannot be
//! used (not JSON, another `type`, over the bundle cap, a bad salt or entries array) is
//! refused whole: one rejected entry is counted and the client starts fresh with a new salt.
//! Over WebSocket, a first message that is JSON of another `type` is the application's own
//! (a new client, nothing rejected; [`take_first_message`]). Entries past the entry cap are
//! skipped unread and counted as rejected (`too-large`, [`Restored::overflow`]); the others
//! are opened.
//!
//! [`Restored::overflow`]: crate::Restored::overflow
//!
//! [`take_first_message`]: crate::layer::RecoverySession::take_first_message
//!
//! Server → client:
//! - `{"type":"salt","salt":"..."}` ([`SaltMessage`]), first, when a salt was issued: the
//!   client drops its entries and keeps this salt.
//! - `{"type":"recovered","restored":N,"rejected":M,"limits":{"maxTokenBytes":..,
//!   "maxBundleBytes":..,"maxEntries":..}}` ([`RecoveredMessage`]), once, after the
//!   application restored its state: `restored` counts the entries it used; every other entry
//!   (rejected, unclaimed, of an unreadable schema, superseded by the current key of its slot)
//!   is `rejected`. Counts only, never reasons. `limits` are what the client must keep its next
//!   reconnect message within.
//! - `{"type":"state","key":"<32 hex>","rev":N,"token":"..."}` ([`StateUpdate`]) for every
//!   sealed update and every refreshed entry; the client keeps the highest `rev` per key, and
//!   an equal `rev` replaces (a refresh re-seals the same state at the same revision).
//! - `{"type":"drop","key":"<32 hex>"}` ([`DropMessage`]) for an entry rejected as `expired`:
//!   the client forgets it.
//! - A WebSocket close with code **1012** and reason `drain` ([`DRAIN_CLOSE_CODE`]): the
//!   worker is stopping; reconnect now (the JS client waits a 0-50 ms jitter, no backoff).
//! - Any other `type` is the application's own.
//!
//! # The lifecycle
//! - **Revisions continue.** The context continues above the revision of every entry the
//!   message carried, accepted or rejected (the claimed revision of a rejected one, capped at
//!   [`MAX_REVISION`]), so the next update for a key is one the client keeps.
//! - **Refresh and re-keying** (on by default; [`Endpoint::without_refresh`]). An entry
//!   restored from an earlier time step, or sealed under a key that is no longer the ring's
//!   first, is re-sealed at once (same revision, schema and payload) and sent after
//!   `recovered`; a long-lived session re-seals what it holds when a new step begins
//!   ([`RecoveryContext::refresh`], called by `RecoverySession::recv` every quarter step).
//!   With a registry, only entries under a slot's current key are refreshed; entries under an
//!   alias are moved to the current key by the slot instead, and unclaimed ones expire.
//! - **Limits are one contract.** The server announces its limits in `recovered`; the context
//!   refuses an update that would put the client's reconnect message over the bundle or entry
//!   cap ([`SealError::OverBudget`](crate::SealError::OverBudget),
//!   [`SealError::TooManyEntries`](crate::SealError::TooManyEntries)); the JS client never
//!   stores a longer token nor sends a larger message, and reports every entry it drops
//!   (`onDropped`).
//! - **Drain.** [`Drain::start`] (on SIGTERM) makes every session close with 1012; the JS
//!   client reconnects at once, to another worker; the worker exits when its sessions are
//!   gone ([`Drain::idle`]) or a deadline passes.
//! - **The guard** (optional, [`Endpoint::with_guard`]; see [`guard`](crate::guard)). Every
//!   reconnect is checked after the MAC against a store that every worker shares, in one
//!   bounded round trip ([`Endpoint::recover_guarded`]): a revoked scope's entries are
//!   `revoked` and the client gets a fresh salt; an entry below its key's high-water mark is
//!   `rolled-back`; revisions continue above every mark. Seals queue their marks behind them.
//!   When the store is unavailable the guard's policy decides (`guard-unavailable` when it
//!   fails closed: the client keeps its salt, nothing is sealed).

mod client_input;
mod context;
mod drain;
mod endpoint;
mod message;

pub use client_input::{ClientInput, FormInput, InputError, InputLimits};
pub use context::{Budget, RecoveryContext, MAX_REVISION};
pub use drain::{Drain, SessionGuard, DRAIN_CLOSE_CODE, DRAIN_CLOSE_REASON};
pub use endpoint::{is_reconnect_message, Endpoint, Recovered};
pub use message::{
    DropMessage, LimitsMessage, RecoveredMessage, SaltMessage, ServerMessage, StateUpdate,
};
