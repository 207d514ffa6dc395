//! `RecoverySocket`: a WebSocket upgrade whose session starts by reading the reconnect
//! message, then hands over the socket; `RecoverySession::recv` also refreshes entries on
//! long-lived connections, closes the socket when the worker drains, and (with events on)
//! drops resent events and answers each new one with one batch frame.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::SinkExt as _;
use tokio::sync::OwnedSemaphorePermit;

use super::handle::{MissingLayer, RecoveryHandle};
use crate::bundle::Restored;
use crate::protocol::{
    Batch, ClientInput, Drain, EventId, Incoming, Recovered, RecoveryContext, ServerMessage,
    SessionGuard, DRAIN_CLOSE_CODE,
};

/// The body of the 403 for an upgrade from an origin that is not allowed.
const FORBIDDEN_ORIGIN: &str = "state-recovery: WebSocket upgrade refused: origin not allowed\n";

/// Extracts a WebSocket upgrade with state recovery: see [`on_upgrade`](Self::on_upgrade).
///
/// It first checks the `Origin` header against the layer's policy (by default the same host
/// and port as the request's `Host`; see
/// [`StateRecoveryLayer::with_allowed_origins`](super::StateRecoveryLayer::with_allowed_origins)
/// and [`with_any_origin_insecure`](super::StateRecoveryLayer::with_any_origin_insecure)):
/// a browser's upgrade from another origin is refused with 403 before anything else, so
/// another site cannot open the user's session (cross-site WebSocket hijacking). A request
/// without `Origin` (not a browser) passes. Its other rejections are the `WebSocketUpgrade`
/// rejection, or a 500 if the layer is missing.
///
/// # Buffers and caps
/// The upgrade is sized for small messages (override any of it with
/// [`map_upgrade`](Self::map_upgrade)):
///
/// | setting | value | tungstenite's default |
/// |---|---|---|
/// | `read_buffer_size`, `write_buffer_size` | [`BUFFER_BYTES`](Self::BUFFER_BYTES) (8 KiB) | 128 KiB each |
/// | `max_message_size`, `max_frame_size` | the larger of [`Limits::max_bundle_bytes`](crate::Limits::max_bundle_bytes) and [`with_max_message_bytes`](super::StateRecoveryLayer::with_max_message_bytes) (1 MiB and 64 KiB by default) | 64 MiB, 16 MiB |
/// | `max_write_buffer_size` | 8 KiB + twice that cap | unlimited |
///
/// tungstenite zero-fills its whole read buffer on every read and keeps it resident, so the
/// stock 128 KiB cost ~143 kB of RSS per idle connection (18 kB with 8 KiB; BENCHMARKS.md).
/// A client message over the cap is refused before it is buffered: the session closes the
/// socket with code **1009** (Message Too Big, reason
/// [`TOO_BIG_CLOSE_REASON`](Self::TOO_BIG_CLOSE_REASON)) and ends (the first message: the
/// callback is not called; later: [`RecoverySession::recv`] returns the error). The JS
/// client never sends a reconnect message over the bundle cap the server announced.
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
        if let Err(refused) = handle.config.origins.check(&parts.headers, &parts.uri) {
            let origin = parts.headers.get(header::ORIGIN).map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .chars()
                    .take(200)
                    .collect::<String>()
            });
            tracing::info!(
                target: "state_recovery",
                reason = refused.code(),
                origin = ?origin,
                "WebSocket upgrade refused: origin not allowed"
            );
            return Err((StatusCode::FORBIDDEN, FORBIDDEN_ORIGIN).into_response());
        }
        let upgrade = WebSocketUpgrade::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let cap = handle
            .recovery()
            .limits()
            .max_bundle_bytes()
            .max(handle.config.max_message_bytes);
        let upgrade = upgrade
            .read_buffer_size(Self::BUFFER_BYTES)
            .write_buffer_size(Self::BUFFER_BYTES)
            .max_write_buffer_size(Self::BUFFER_BYTES.saturating_add(cap.saturating_mul(2)))
            .max_message_size(cap)
            .max_frame_size(cap);
        Ok(Self { upgrade, handle })
    }
}

impl RecoverySocket {
    /// The read and write buffers' size (each grows for a larger message).
    pub const BUFFER_BYTES: usize = 8 * 1024;
    /// The close code for a client message over the cap: 1009, Message Too Big.
    pub const TOO_BIG_CLOSE_CODE: u16 = 1009;
    /// The close reason sent with [`TOO_BIG_CLOSE_CODE`](Self::TOO_BIG_CLOSE_CODE).
    pub const TOO_BIG_CLOSE_REASON: &'static str = "message too big";

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
    /// sends `salt` (if one was issued), then calls `callback`: restore the application's
    /// state from [`RecoverySession::recovered`], then [`ready`](RecoverySession::ready)
    /// (or the first [`send`](RecoverySession::send) / [`recv`](RecoverySession::recv))
    /// sends `recovered` with honest counts and the refreshed entries, in one flush. If the
    /// client goes away first, or the worker is draining, `callback` is not called.
    ///
    /// With admission control
    /// ([`StateRecoveryLayer::with_max_concurrent_recoveries`](super::StateRecoveryLayer::with_max_concurrent_recoveries)),
    /// the session waits for a permit once the first message is in, before opening it, and
    /// gives it back once `recovered` is written (or when it is dropped): call
    /// [`ready`](RecoverySession::ready) as soon as the state is restored.
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

/// How long a recovery keeps its admission permit while the guard's store answers; past it,
/// it gives the permit back until the answer is in.
const GUARD_HOLD: Duration = Duration::from_millis(5);

/// A permit of the layer's admission bound ([`StateRecoveryLayer::with_max_concurrent_recoveries`](super::StateRecoveryLayer::with_max_concurrent_recoveries)),
/// once one is free; `None` without a bound.
async fn admit(handle: &RecoveryHandle) -> Option<OwnedSemaphorePermit> {
    let admission = handle.config.admission.as_ref()?;
    // Never closed: the semaphore lives as long as the layer's config.
    admission.permits.clone().acquire_owned().await.ok()
}

/// A recovered WebSocket connection: the socket, and what the reconnect message restored.
///
/// # Events exactly once
/// On a layer [with events](super::StateRecoveryLayer::with_events), `recovered` announces
/// the last applied sequence and the JS client numbers its messages (`"$seq":N`). Then
/// [`recv`](Self::recv) hands each numbered message to the application **once**: a resent
/// one the restored state already has is answered with an acknowledgement and never
/// returned. While the application handles a new event (from `recv` returning it to the next
/// `recv`, or [`flush`](Self::flush)), everything it sends through the session
/// ([`send`](Self::send), [`send_all`](Self::send_all)) is buffered, with the sealed
/// applied-events entry, into one `{"type":"batch",...}` frame, sent when it goes back to
/// `recv`: the client stores it all or nothing, so a worker dying at any point leaves the
/// client either with the event's whole effect and its record, or with neither (and it
/// resends the event to the next worker). No timer is involved: the batch leaves as soon as
/// the handler returns to `recv`. [`event_seq`](Self::event_seq) and
/// [`event_id`](Self::event_id) name the event being handled (key effects outside sealed
/// state by the id: they can happen twice, see SECURITY.md). Writes to
/// [`socket_mut`](Self::socket_mut) bypass the batch.
///
/// Its `Debug` shows the client's first message (when it was the application's own) by kind
/// and length only: it may hold anything the user sent, tokens included.
pub struct RecoverySession {
    socket: WebSocket,
    recovered: Recovered,
    first_message: Option<Message>,
    ready: bool,
    drain: Option<Drain>,
    _guard: Option<SessionGuard>,
    refresh_every: Duration,
    next_refresh: tokio::time::Instant,
    /// `recovered` announced `applied`: numbered messages are deduplicated.
    events: bool,
    /// The batch of the event being handled.
    batch: Option<Batch>,
    /// What the handler sent during the event that a batch cannot carry (binary frames, text
    /// that is not JSON, control frames): sent right after the batch.
    after: Vec<Message>,
    /// Frames on their way out, each removed once the socket took it, so a send cancelled
    /// (a `recv` dropped by a timeout) is resumed by the next one, not lost.
    outbox: VecDeque<Message>,
    /// The sequence of the event being handled.
    event: Option<u64>,
    /// The admission permit, held from the first message until `recovered` is written (or
    /// the session is dropped).
    permit: Option<OwnedSemaphorePermit>,
}

impl fmt::Debug for RecoverySession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.first_message.as_ref().map(|m| match m {
            Message::Text(t) => ("text", t.len()),
            Message::Binary(b) => ("binary", b.len()),
            Message::Ping(b) => ("ping", b.len()),
            Message::Pong(b) => ("pong", b.len()),
            Message::Close(_) => ("close", 0),
        });
        f.debug_struct("RecoverySession")
            .field("socket", &self.socket)
            .field("recovered", &self.recovered)
            .field("first_message", &first)
            .field("ready", &self.ready)
            .field("drain", &self.drain)
            .field("refresh_every", &self.refresh_every)
            .field("events", &self.events)
            .field("event", &self.event)
            .field("batch", &self.batch)
            .field("admitted", &self.permit.is_some())
            .finish_non_exhaustive()
    }
}

impl RecoverySession {
    async fn start(mut socket: WebSocket, handle: RecoveryHandle) -> Option<Self> {
        let drain = handle.config.drain.clone();
        if let Some(d) = drain.as_ref().filter(|d| d.is_draining()) {
            let _ = socket.send(drain_close(d)).await;
            return None;
        }
        let guard = drain.as_ref().map(Drain::session);
        let timeout = handle.config.first_message_timeout;
        let first = tokio::time::timeout(timeout, next_data(&mut socket)).await;
        if matches!(first, Ok(None)) {
            return None;
        }
        // Admission: the recovery (verifying, `salt`, the callback up to `recovered`) waits for
        // a permit; the wait for the first message above took none.
        let mut permit = admit(&handle).await;
        if let Some(d) = drain.as_ref().filter(|d| d.is_draining()) {
            let _ = socket.send(drain_close(d)).await;
            return None;
        }
        let endpoint = handle.endpoint();
        let subject = handle.subject();
        // One parse decides: a reconnect message, something broken, or the application's own
        // first message (then, as without any message in time, a new client).
        let (stage, keep_first) = match &first {
            Err(_) => {
                tracing::debug!(target: "state_recovery", "no first message in time");
                (endpoint.fresh_stage(None, subject), false)
            }
            Ok(None) => return None,
            Ok(Some(Message::Text(text))) => {
                match endpoint.first_stage(text.as_str().as_bytes(), subject) {
                    Some(stage) => (stage, false),
                    None => {
                        tracing::info!(
                            target: "state_recovery",
                            reason = "not-a-reconnect-message",
                            "first message is not a reconnect message; treating the client as new"
                        );
                        (endpoint.fresh_stage(None, subject), true)
                    }
                }
            }
            Ok(Some(_)) => {
                tracing::info!(
                    target: "state_recovery",
                    reason = "not-a-reconnect-message",
                    "first message is binary; treating the client as new"
                );
                (endpoint.fresh_stage(None, subject), true)
            }
        };
        let recovered = if endpoint.awaits_guard(&stage) {
            // The guard's store round trip is a wait, not work: an answer within
            // GUARD_HOLD keeps the permit (an in-process store, a store nearby); a slower
            // one (up to the guard's timeout) gives it back meanwhile and queues again for
            // the rest, so a slow store does not serialize recoveries.
            let mut answer = std::pin::pin!(endpoint.finish_guarded(stage, subject));
            match tokio::time::timeout(GUARD_HOLD, answer.as_mut()).await {
                Ok(recovered) => recovered,
                Err(_) => {
                    drop(permit.take());
                    let recovered = answer.await;
                    permit = admit(&handle).await;
                    recovered
                }
            }
        } else {
            endpoint.finish_sync(stage, subject)
        };
        // The application's own first message goes to it.
        let first_message = if keep_first {
            first.ok().flatten()
        } else {
            None
        };
        let step = handle.recovery().otp().step_secs();
        let refresh_every = Duration::from_secs((step / 4).clamp(1, 900));
        let mut session = Self {
            socket,
            recovered,
            first_message,
            ready: false,
            drain,
            _guard: guard,
            refresh_every,
            next_refresh: after(refresh_every),
            events: false,
            batch: None,
            after: Vec::new(),
            outbox: VecDeque::new(),
            event: None,
            permit,
        };
        // The salt goes first, before any state update; the rest waits for `ready`.
        if let Some(salt) = session.recovered.salt_message() {
            session.send_now(salt.into()).await.ok()?;
        }
        Some(session)
    }

    /// Sends `recovered` (with the counts of what the application restored so far) and the
    /// refreshed entries and `drop` messages, once, in one flush. `send` and `recv` call it;
    /// call it yourself before writing to [`socket_mut`](Self::socket_mut) directly.
    ///
    /// # Errors
    /// The socket's error if the connection is gone.
    pub async fn ready(&mut self) -> Result<(), axum::Error> {
        if self.ready {
            // A `ready` cancelled while it wrote `recovered` kept its permit until now.
            self.permit = None;
            return Ok(());
        }
        self.ready = true;
        let recovered = self.recovered.recovered_message();
        self.events = recovered.applied.is_some();
        let pending = self.recovered.take_pending();
        let messages = std::iter::once(ServerMessage::from(recovered)).chain(pending);
        self.outbox.extend(messages.map(|m| text(&m)));
        let sent = self.send_outbox().await;
        // The recovery is over (or the client is gone): the next one may start.
        self.permit = None;
        sent
    }

    /// Sends the batch of the event being handled (everything sent through the session since
    /// [`recv`](Self::recv) returned it, with its applied-events entry) as one frame, then
    /// whatever it could not carry; after [`ready`](Self::ready). [`recv`](Self::recv) calls
    /// it first; call it yourself before slow work that follows the event's last update, or
    /// before writing to [`socket_mut`](Self::socket_mut). What the handler sends after it
    /// goes out at once, outside the batch: a worker dying before that reaches the client
    /// loses it (the event counts as applied), so seal the event's state before flushing.
    ///
    /// # Errors
    /// The socket's error if the connection is gone.
    pub async fn flush(&mut self) -> Result<(), axum::Error> {
        self.ready().await?;
        if let Some(batch) = self.batch.take() {
            self.outbox.push_back(text(&batch.into()));
            self.outbox.extend(self.after.drain(..));
        }
        self.send_outbox().await
    }

    /// Feeds every frame of the outbox, each removed once the socket took it, then flushes.
    async fn send_outbox(&mut self) -> Result<(), axum::Error> {
        if self.outbox.is_empty() {
            return Ok(());
        }
        while let Some(m) = self.outbox.front() {
            self.socket.feed(m.clone()).await?;
            self.outbox.pop_front();
        }
        self.socket.flush().await
    }

    /// The sequence of the event being handled: the `$seq` of the message [`recv`](Self::recv)
    /// last returned, when it was a new numbered event; `None` for a message without one.
    #[must_use]
    pub const fn event_seq(&self) -> Option<u64> {
        self.event
    }

    /// The [`EventId`] of the event being handled ([`RecoveryContext::event_id`]): the
    /// idempotency key for its effects outside sealed state, the same on every worker.
    #[must_use]
    pub fn event_id(&self) -> Option<EventId> {
        self.event.map(|seq| self.context().event_id(seq))
    }

    /// The next message from the client, after [`ready`](Self::ready) and
    /// [`flush`](Self::flush) (the previous event's batch). While it waits, it re-seals
    /// entries that reach a new time step (so state in a tab left open for days never ages
    /// out) and, when the worker drains, closes the socket with code 1012 and returns `None`.
    /// `None` also when the client closed the socket.
    ///
    /// With events on, a numbered message the state already has is acknowledged and skipped,
    /// one with a bad sequence is skipped (logged with its [`EventError`](crate::protocol::EventError)
    /// code), and a new one opens the batch that the handler's sends go into
    /// ([`event_seq`](Self::event_seq) is then its sequence).
    pub async fn recv(&mut self) -> Option<Result<Message, axum::Error>> {
        if let Err(e) = self.flush().await {
            return Some(Err(e));
        }
        self.event = None;
        loop {
            let drain = self.drain.clone();
            let draining = async move {
                match drain {
                    Some(d) => d.started().await,
                    None => std::future::pending().await,
                }
            };
            // The refresh deadline lives in the session, so a chatty connection refreshes as
            // surely as an idle one.
            let refresh = tokio::time::sleep_until(self.next_refresh);
            tokio::select! {
                () = draining => {
                    if let Some(d) = &self.drain {
                        let _ = self.socket.send(drain_close(d)).await;
                    }
                    return None;
                }
                () = refresh => {
                    self.next_refresh = after(self.refresh_every);
                    if let Err(e) = self.send_refreshed().await {
                        return Some(Err(e));
                    }
                }
                m = self.socket.recv() => {
                    let m = match m {
                        Some(Ok(m)) => m,
                        other => return refuse_too_big(&mut self.socket, other).await,
                    };
                    match self.classify(&m) {
                        Some(Incoming::Duplicate(ack)) => {
                            tracing::debug!(
                                target: "state_recovery",
                                seq = ack.seq(),
                                "event already applied: acknowledged, not handled"
                            );
                            self.outbox.push_back(text(&ack.into()));
                            if let Err(e) = self.send_outbox().await {
                                return Some(Err(e));
                            }
                        }
                        Some(Incoming::Refused(e)) => {
                            tracing::info!(
                                target: "state_recovery",
                                reason = e.code(),
                                error = %e,
                                "numbered message refused: not handled"
                            );
                        }
                        Some(Incoming::New(batch)) => {
                            self.event = Some(batch.seq());
                            self.batch = Some(batch);
                            return Some(Ok(m));
                        }
                        Some(Incoming::Unsequenced) | None => return Some(Ok(m)),
                    }
                }
            }
        }
    }

    /// What a client message is, when numbered messages are deduplicated (`None`: they are
    /// not, or it is not text).
    fn classify(&self, m: &Message) -> Option<Incoming> {
        match m {
            Message::Text(t) if self.events => {
                Some(self.recovered.context().incoming(t.as_str().as_bytes()))
            }
            _ => None,
        }
    }

    /// Re-seals held entries that reached a new time step, and sends them in one flush.
    async fn send_refreshed(&mut self) -> Result<(), axum::Error> {
        let updates = self.recovered.context().refresh();
        self.outbox
            .extend(updates.into_iter().map(|u| text(&u.into())));
        self.send_outbox().await
    }

    /// What the reconnect message restored (restore slots from it:
    /// `slot.restore(session.recovered())`).
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

    /// The socket, to go on with the application's own messages. Call
    /// [`ready`](Self::ready) first (and [`flush`](Self::flush) while handling an event: what
    /// is written here bypasses its batch); prefer [`recv`](Self::recv), which also refreshes
    /// entries and drains, and [`send_all`](Self::send_all).
    pub fn socket_mut(&mut self) -> &mut WebSocket {
        &mut self.socket
    }

    /// The client's first message, if it was not a reconnect message (so it is the
    /// application's own and has not been handled).
    pub fn take_first_message(&mut self) -> Option<Message> {
        self.first_message.take()
    }

    /// Sends one of this crate's messages (e.g. a [`StateUpdate`](crate::StateUpdate)) as a
    /// text frame, after [`ready`](Self::ready); while an event is being handled, adds it to
    /// the event's batch instead (sent by the next [`recv`](Self::recv) or
    /// [`flush`](Self::flush)).
    ///
    /// # Errors
    /// The socket's error if the connection is gone.
    pub async fn send(&mut self, message: impl Into<ServerMessage>) -> Result<(), axum::Error> {
        self.ready().await?;
        let message = message.into();
        if let Some(batch) = &mut self.batch {
            batch.push(message);
            return Ok(());
        }
        self.send_now(message).await
    }

    /// Sends frames of the application's own (renders, ...) with one flush, after
    /// [`ready`](Self::ready); while an event is being handled, adds each JSON text frame to
    /// the event's batch instead (in order), and keeps the others (binary, text that is not
    /// JSON, control frames) to send right after it.
    ///
    /// # Errors
    /// The socket's error if the connection is gone.
    pub async fn send_all<I>(&mut self, messages: I) -> Result<(), axum::Error>
    where
        I: IntoIterator<Item = Message>,
    {
        self.ready().await?;
        match &mut self.batch {
            Some(batch) => {
                for m in messages {
                    match m {
                        Message::Text(t) if batch.push_json(t.as_str()).is_ok() => {}
                        other => self.after.push(other),
                    }
                }
                Ok(())
            }
            None => {
                self.outbox.extend(messages);
                self.send_outbox().await
            }
        }
    }

    async fn send_now(&mut self, message: ServerMessage) -> Result<(), axum::Error> {
        self.outbox.push_back(text(&message));
        self.send_outbox().await
    }

    /// The socket and the recovery outcome, apart. A batch not yet [flushed](Self::flush) is
    /// dropped: flush first.
    #[must_use]
    pub fn into_parts(self) -> (WebSocket, Recovered) {
        (self.socket, self.recovered)
    }
}

/// `d` from now (now itself in the impossible case that the clock would overflow).
fn after(d: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(d).unwrap_or(now)
}

fn text(message: &ServerMessage) -> Message {
    Message::Text(message.to_json().into())
}

/// The close a draining worker sends: 1012 and `drain <spread ms>` ([`Drain::close_reason`]).
fn drain_close(drain: &Drain) -> Message {
    Message::Close(Some(CloseFrame {
        code: DRAIN_CLOSE_CODE,
        reason: drain.close_reason().into(),
    }))
}

/// A read that failed because the client's message is over the cap: closes the socket with
/// 1009 (the stream cannot go on after it) and logs it; passes everything else on.
async fn refuse_too_big(
    socket: &mut WebSocket,
    m: Option<Result<Message, axum::Error>>,
) -> Option<Result<Message, axum::Error>> {
    if let Some(Err(e)) = &m {
        let too_big = std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<tungstenite::Error>())
            .is_some_and(|t| matches!(t, tungstenite::Error::Capacity(_)));
        if too_big {
            tracing::info!(
                target: "state_recovery",
                reason = "message-too-big",
                "client message over the WebSocket cap; closing with 1009"
            );
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code: RecoverySocket::TOO_BIG_CLOSE_CODE,
                    reason: RecoverySocket::TOO_BIG_CLOSE_REASON.into(),
                })))
                .await;
        }
    }
    m
}

/// The next text or binary message; `None` once the socket closes or fails.
async fn next_data(socket: &mut WebSocket) -> Option<Message> {
    loop {
        let m = socket.recv().await;
        match refuse_too_big(socket, m).await? {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => return Some(m),
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(Message::Close(_)) | Err(_) => return None,
        }
    }
}
