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
//! | event | a numbered client message (`"$seq":n`), with events on ([`Endpoint::with_events`]) |
//! | applied-events entry | the sealed record of the last event applied (key [`Recovery::applied_key`](crate::Recovery::applied_key)) |
//! | [`Batch`] | everything one event caused, in one frame (`{"type":"batch",...}`) |
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
//! - `{"type":"batch","seq":N,"messages":[...]}` ([`Batch`]), with events on: everything one
//!   numbered event caused, in one frame (see [events exactly once](#events-exactly-once)).
//! - A WebSocket close with code **1012** and reason `drain <ms>` ([`DRAIN_CLOSE_CODE`],
//!   [`Drain::close_reason`]): the worker is stopping; reconnect now, spread over `ms` (the JS
//!   client waits random(0, min(ms, 50)) ms, no backoff; `ms` is `ceil(sessions / 20)`, 1 to
//!   [`MAX_DRAIN_SPREAD_MS`], so a worker with few sessions sends them back at once).
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
//! - **Events** (optional, [`Endpoint::with_events`]): numbered client messages are applied
//!   once across worker deaths; see below.
//! - **The guard** (optional, [`Endpoint::with_guard`]; see [`guard`](crate::guard)). Every
//!   reconnect is checked after the MAC against a store that every worker shares, in one
//!   bounded round trip ([`Endpoint::recover_guarded`]): a revoked scope's entries are
//!   `revoked` and the client gets a fresh salt; an entry below its key's high-water mark is
//!   `rolled-back`; revisions continue above every mark. Seals queue their marks behind them.
//!   When the store is unavailable the guard's policy decides (`guard-unavailable` when it
//!   fails closed: the client keeps its salt, nothing is sealed).
//!
//! # Events exactly once
//! A worker that dies between receiving an event and its reply reaching the client loses the
//! event, or (had the client resent it blindly) applies it twice. With
//! [`Endpoint::with_events`] (`StateRecoveryLayer::with_events` in the layer) each event the
//! JS client sends is applied to the sealed state exactly once, whichever worker gets it.
//!
//! **Wire.** All of it is additive; nothing changes unless `recovered` carries `applied`.
//! - `recovered` gains `"applied":N`: the last event sequence the restored state has (0: none
//!   recorded). Only a context that tracks events and can seal announces it.
//! - The client then adds `"$seq":n` ([`SEQ_FIELD`]) to every object it sends: 1, 2, 3, ...
//!   per stash (kept in storage with it, so a reload goes on counting), at most
//!   [`MAX_SEQ`] (2^53 − 1). It keeps each one, as the exact text sent, until acknowledged
//!   (at most 64 events and 64 KiB by default; past that `send` refuses the new one and
//!   reports it). On a new connection, after `recovered`, it forgets those at or below
//!   `applied` and resends the others, in order, before anything new; what the application
//!   sends meanwhile is held until then.
//! - The server answers each new numbered message with one `{"type":"batch","seq":n,
//!   "messages":[...]}` frame: the event's state updates, the application's own messages
//!   (renders) in order, and the **applied-events entry**: a sealed entry under the reserved
//!   key [`Recovery::applied_key`](crate::Recovery::applied_key) (no location produces it, no
//!   application seal may use it) at the next revision, payload `{"seq":n}`. A numbered
//!   message at or below the last applied sequence is a duplicate: not handled, answered by
//!   a batch with no messages. `seq` acknowledges every event up to `n`.
//! - The client takes a batch all or nothing, in one handler run: it checks it whole, writes
//!   every entry in one storage write, then drops the events up to `seq` from its queue, then
//!   hands the application's messages over.
//!
//! **Why exactly once.** Let *S* be what the client stored: its entries, the applied-events
//! entry among them, recording some sequence *a*. Every event at or below *a* has its effects
//! in *S* (the entry was written in the same storage write as those effects), and every event
//! above *a* is still in the client's queue (it leaves the queue only after that write). A
//! worker restores *a* from *S* with the rest of the state, so it drops every resent event at
//! or below *a* and applies every one above, in order, once, to *S*. Where can a worker die?
//! Before applying, or after applying but before its batch is flushed, or after the flush but
//! before the client stored the batch: in each case *S* has neither the event's effects nor
//! its record, the event is still queued, and the next worker applies it once. After the
//! client stored the batch: *S* has both, and the resend (if any) is dropped. There is no
//! point in between, because the effects and the record travel in one frame and are stored in
//! one write. (A crash of the tab between that write and removing the events from its queue
//! resends an event *S* already records: dropped.)
//!
//! **The limits, and what the application must do.**
//! - Exactly once holds for **sealed state**. An effect outside it (a database write, an
//!   e-mail, a payment) done while handling an event happens again when a worker dies after
//!   doing it and before the client stored the batch. Make such effects idempotent, keyed by
//!   [`RecoveryContext::event_id`] (a hash of the salt, subject and sequence: the same on every
//!   worker), or keep them out of the event path.
//! - Seal everything the event changes **before the batch leaves** (in the layer, before the
//!   handler goes back to `recv` or calls `flush`): what is sent after it is outside the
//!   record, and a kill before it arrives loses it while the event counts as applied.
//! - **Ordering**: one client's events apply in the order it numbered them, resends before
//!   anything new; two stashes (two tabs) are independent (their sequences are bound to their
//!   salts and never compared).
//! - A **new salt** (the stash refused or revoked) drops the queue: the state the events
//!   applied to is gone (the JS client reports each to `onEventDropped`, `salt-changed`).
//! - **No record, no deduplication**: when the applied-events entry is missing or rejected
//!   (expired, rolled back, tampered with, two of them), the restored state records nothing
//!   and every resent event is new. A client can always make its events apply again this way;
//!   it gains nothing it could not get by sending them again (see SECURITY.md 4.1).
//! - With a **guard**, the applied-events entry is marked like any entry; the mark delay is
//!   what keeps a kill right after the seal from refusing the client's (older) record as
//!   `rolled-back`. A worker that lived past the delay without its reply reaching the client
//!   leaves marks that refuse the client's entries: that state is lost (the guard's
//!   documented exception), never applied twice.
//! - If the entry cannot be sealed (the client's entries fill the budget), the event is still
//!   applied, unprotected ([`Batch::records_applied`] is false; logged).
//!
//! **Compatibility.** An old client (or any message without `$seq`) is handled as before: no
//! parse, no batch, no deduplication. A new client with an old server sees no `applied`: it
//! sends unnumbered, as before, and keeps what it had queued for a server that announces it.
//! An old server's clients, told nothing new, behave as before with a new server.
//!
//! **For a transport of your own**: [`RecoveryContext::incoming`] classifies each client
//! message ([`Incoming`]): handle [`Incoming::Unsequenced`] as before; for
//! [`Incoming::New`], [`push`](Batch::push) / [`push_json`](Batch::push_json) what the
//! handler sends into the batch and send [`Batch::to_json`] as one frame; for
//! [`Incoming::Duplicate`], send the acknowledgement and skip the handler; ignore
//! [`Incoming::Refused`]. (`tests/it/transport.rs` does this over tokio-tungstenite.)

mod client_input;
mod context;
mod drain;
mod endpoint;
mod events;
mod message;

pub use client_input::{ClientInput, FormInput, InputError, InputLimits};
pub use context::{Budget, RecoveryContext, MAX_REVISION};
pub use drain::{Drain, SessionGuard, DRAIN_CLOSE_CODE, DRAIN_CLOSE_REASON, MAX_DRAIN_SPREAD_MS};
pub use endpoint::{is_reconnect_message, Endpoint, Recovered};
pub use events::{
    event_seq, Accepted, EventError, EventId, Incoming, MAX_SEQ, MAX_SEQ_GAP, SEQ_FIELD,
};
pub use message::{
    Batch, DropMessage, LimitsMessage, RecoveredMessage, SaltMessage, ServerMessage, StateUpdate,
};
