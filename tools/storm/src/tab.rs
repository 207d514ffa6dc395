//! One simulated tab: the JS client's `connect()` over tokio-tungstenite, with its own
//! [`Stash`] and [`Backoff`], driving the demo's components with the demo's own messages.
//!
//! As the JS client: the recover message first on every socket; `salt`, `state` and `drop`
//! go to the stash, `recovered` passes its limits to the stash and resets the backoff; a close
//! reconnects after the backoff's delay (the drain close code: after the drain jitter); a
//! handshake that fails counts as a close (1006). Events exactly once through [`Conn`] (the
//! JS client's rules, `client.rs`): after a `recovered` with `applied` every event is
//! numbered (`"$seq"`) and kept in the stash until its `batch` comes back (stored whole, then
//! acknowledged); after the next `recovered` the ones above `applied` are resent, in order.
//! Without `applied` it sends unnumbered and an event is acknowledged by its `state` message.
//! Not as the JS client: no form input, no `online` event, no `reconnect()`/`close()` calls;
//! it sends application messages only once restored and only one at a time (it waits for
//! each event's render before the next), so nothing is ever held before `recovered`.
//!
//! What it records for the exactly-once check: an event unacknowledged when its connection
//! closes is in flight ([`InFlight`]); the batch that answers it after the resend (with the
//! event's state and render: applied, checked against the model; empty: the restored state
//! had it) marks it applied. A batch with messages for a `$seq` at or below the highest one
//! already applied is an event applied twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use rand::Rng as _;
use serde_json::Value;
use tokio::time::{sleep_until, timeout};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Conn, Received, Sent};
use crate::hub::{Closed, Hub, InFlight, Outage, Restore, Sample};
use crate::model::{component, todos, Event, Model, COMPONENTS};
use crate::schedule::{Backoff, RECONNECT};
use crate::stash::Stash;

/// A handshake that takes longer is a failure (the JS client has none: a browser's own).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// An event without its render after this long is counted as stuck.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// The close code the JS client sees when a socket dies without a close frame.
const ABNORMAL: u16 = 1006;

/// A failed handshake, in a word: the proxy's HTTP status, or the I/O error's kind.
fn failure(e: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::Http(r) => format!("http-{}", r.status().as_u16()),
        Error::Io(io) => format!("io-{:?}", io.kind()),
        Error::Protocol(p) => format!("protocol-{p:?}").chars().take(60).collect(),
        other => format!("{other}").chars().take(60).collect(),
    }
}

/// How a tab behaves.
#[derive(Debug, Clone)]
pub(crate) struct TabConfig {
    pub(crate) url: Arc<str>,
    /// The mean time between two events of one tab, once warm.
    pub(crate) interval: Duration,
}

/// An event on its way.
#[derive(Debug)]
struct Pending {
    event: Event,
    /// Sent (or resent) on the current connection, at this time.
    sent: Option<Instant>,
    /// Its `state` message came back: the change is in the stash (unnumbered events only: a
    /// numbered one is acknowledged by its `batch`, with its render).
    acked: bool,
    /// Its `$seq` (`None`: sent unnumbered, to a server that did not announce `applied`).
    seq: Option<u64>,
    /// Resent after a reconnect (its round trip is not a sample).
    resent: bool,
    /// Its entry in the hub's `in_flight`, once a connection closed with it unacknowledged.
    in_flight: Option<usize>,
}

/// One tab.
#[derive(Debug)]
pub(crate) struct Tab {
    idx: usize,
    config: TabConfig,
    hub: Arc<Hub>,
    stash: Stash,
    /// `connect()`'s state around the stash: numbered or not, held messages.
    conn: Conn,
    backoff: Backoff,
    /// The reconnect spread the last close's reason asked for (`drain <ms>`), if any.
    drain_spread: Option<u64>,
    model: Model,
    /// The state key of each component, learnt from its first acknowledged event.
    keys: [Option<String>; 3],
    /// The id of the first todo in the list's last render.
    first_todo: Option<u32>,
    /// Events sent so far.
    k: u64,
    /// The event sent and not yet answered: kept across connections while it is numbered
    /// (the stash resends it after `recovered`).
    pending: Option<Pending>,
    /// The key of the applied-events entry (the first update of every batch with messages).
    applied_key: Option<String>,
    /// The highest `$seq` a batch with messages answered (applied): a batch with messages for
    /// one at or below it is an event applied twice.
    applied_seq: u64,
    /// Since the last close: when, the backoff waited, the handshakes tried.
    outage: Option<Outage>,
    /// The current connection's handshake: started, opened.
    handshake: (Instant, Instant),
}

impl Tab {
    pub(crate) fn new(idx: usize, config: TabConfig, hub: Arc<Hub>) -> Self {
        Self {
            idx,
            config,
            hub,
            stash: Stash::new(),
            conn: Conn::default(),
            backoff: Backoff::default(),
            drain_spread: None,
            model: Model::default(),
            keys: [None, None, None],
            first_todo: None,
            k: 0,
            pending: None,
            applied_key: None,
            applied_seq: 0,
            outage: None,
            handshake: (Instant::now(), Instant::now()),
        }
    }

    /// Every component has an entry in the stash.
    fn warm(&self) -> bool {
        self.keys.iter().all(Option::is_some)
    }

    /// Connects, runs the session, backs off, forever (the runtime's end stops it).
    pub(crate) async fn run(mut self) {
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(16 * 1024)
            .write_buffer_size(0);
        loop {
            let connect = tokio_tungstenite::connect_async_with_config(
                &*self.config.url,
                Some(ws_config),
                true, // TCP_NODELAY, as browsers
            );
            let started = Instant::now();
            if let Some(o) = self.outage.as_mut() {
                o.attempts += 1;
            }
            let code = match timeout(CONNECT_TIMEOUT, connect).await {
                Ok(Ok((ws, _response))) => {
                    self.handshake = (started, Instant::now());
                    self.session(ws).await
                }
                Ok(Err(e)) => self.failed(failure(&e)),
                Err(_) => self.failed("timeout".to_owned()),
            };
            let now = Instant::now();
            let outage = self.outage.get_or_insert(Outage {
                closed: now,
                backoff: Duration::ZERO,
                attempts: 0,
            });
            let spread = (code == RECONNECT.drain_close_code).then(|| self.drain_spread.take());
            let delay = self
                .backoff
                .next(spread.map(|s| s.unwrap_or(RECONNECT.drain_jitter)));
            outage.backoff += Duration::from_millis(delay);
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
    }

    /// A handshake that failed: counted; the JS client sees it as a close (1006).
    fn failed(&self, how: String) -> u16 {
        self.hub.lock().connect_failures.push((Instant::now(), how));
        ABNORMAL
    }

    /// The next event's time: the mean interval × uniform(0.5, 1.5), or at once while warming.
    fn next_event_at(&self, now: Instant) -> Instant {
        if !self.warm() {
            return now;
        }
        let f: f64 = rand::rng().random_range(0.5..1.5);
        now + self.config.interval.mul_f64(f)
    }

    /// One connection; returns its close code.
    async fn session<S>(&mut self, mut ws: tokio_tungstenite::WebSocketStream<S>) -> u16
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let idx = self.idx;
        self.hub.tab(idx, |v| {
            v.connections += 1;
            v.worker = None;
            v.ready = false;
        });
        // Whether this connection must restore what the tab holds.
        let had_salt = self.stash.salt().is_some();
        self.conn.open();
        let bundle = self.stash.bundle();
        let sent_entries = self.stash.entries().len();
        // Whether the applied-events entry was among them (a used one is counted in neither
        // `restored` nor `rejected`).
        let sent_applied = self
            .applied_key
            .as_deref()
            .is_some_and(|k| self.stash.rev(k).is_some());
        self.count_drops();
        let mut code = ABNORMAL;
        if ws.send(Message::text(bundle)).await.is_ok() {
            code = self
                .converse(&mut ws, had_salt, (sent_entries, sent_applied))
                .await;
        }
        let now = Instant::now();
        // An event sent on this connection and not acknowledged: in flight. A numbered one
        // stays queued (resent after the next `recovered`); an unnumbered one is gone.
        let mut in_flight = false;
        let mut rec = self.hub.lock();
        if let Some(p) = self.pending.as_mut().filter(|p| p.sent.is_some()) {
            p.sent = None;
            if !p.acked {
                in_flight = true;
                if p.in_flight.is_none() {
                    p.in_flight = Some(rec.in_flight.len());
                    rec.in_flight.push(InFlight {
                        tab: idx,
                        seq: p.seq,
                        closed: now,
                        applied: None,
                        already: false,
                    });
                }
            }
        }
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.seq.is_none() || p.acked)
        {
            self.pending = None;
        }
        rec.closed.push(Closed {
            tab: idx,
            at: now,
            in_flight,
            code,
        });
        if let Some(v) = rec.tabs.get_mut(idx) {
            v.ready = false;
            v.worker = None;
        }
        code
    }

    fn count_drops(&mut self) {
        if !self.stash.dropped.is_empty() || !self.stash.events_dropped.is_empty() {
            let mut rec = self.hub.lock();
            for (_, reason) in self.stash.dropped.drain(..) {
                *rec.dropped.entry(reason.as_str()).or_default() += 1;
            }
            for (_, reason) in self.stash.events_dropped.drain(..) {
                *rec.dropped.entry(reason.tally()).or_default() += 1;
            }
        }
    }

    /// `recovered`: the events the restored state already has are forgotten, the others
    /// resent (`resend`, from [`Conn::receive`]). Returns false if a send failed.
    async fn resend<S>(
        &mut self,
        ws: &mut tokio_tungstenite::WebSocketStream<S>,
        resend: Vec<String>,
        applied: Option<u64>,
    ) -> bool
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        if let Some(p) = self.pending.take() {
            match (p.seq, applied) {
                // Still queued: resent below.
                (Some(seq), Some(_)) if self.stash.queue().iter().any(|(s, _)| *s == seq) => {
                    self.pending = Some(p);
                }
                // The restored state records it applied (its batch reached the stash, so the
                // model has it; if not, the restore check reports the difference).
                (Some(_), Some(_)) => self.resolve(&p, Instant::now(), true),
                // A server that does not announce `applied`: it waits in the stash for one
                // that does; this tab goes on without it (in flight, never applied: lost).
                _ => {}
            }
        }
        for text in resend {
            if ws.send(Message::text(text)).await.is_err() {
                return false;
            }
        }
        if let Some(p) = self.pending.as_mut() {
            p.sent = Some(Instant::now());
            p.resent = true;
        }
        true
    }

    /// The pending event was applied (once; `already`: before, not by this answer): its
    /// in-flight entry, if any, says so.
    fn resolve(&self, p: &Pending, now: Instant, already: bool) {
        if let Some(i) = p.in_flight {
            if let Some(f) = self.hub.lock().in_flight.get_mut(i) {
                if f.applied.is_none() {
                    f.applied = Some(now);
                    f.already = already;
                }
            }
        }
    }

    #[allow(clippy::too_many_lines)]
    async fn converse<S>(
        &mut self,
        ws: &mut tokio_tungstenite::WebSocketStream<S>,
        had_salt: bool,
        sent_entries: (usize, bool),
    ) -> u16
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let idx = self.idx;
        let mut recovered: Option<(u64, u64, Option<u64>)> = None;
        let mut salt_issued = false;
        let mut first: [Option<String>; 3] = [None, None, None];
        let mut restored = false;
        let mut next_event = Instant::now();
        let mut stuck_counted = false;
        let far = || Instant::now() + Duration::from_secs(3600);
        loop {
            let wake = match &self.pending {
                Some(p) => p.sent.map_or_else(far, |s| s + ACK_TIMEOUT),
                None if restored => next_event,
                None => far(),
            };
            let msg = tokio::select! {
                m = ws.next() => m,
                () = sleep_until(wake.into()) => {
                    if self.pending.is_some() {
                        if !stuck_counted {
                            stuck_counted = true;
                            self.hub.lock().stuck += 1;
                        }
                        next_event = far();
                    } else if self.hub.events_on() {
                        let event = self.model.event(idx, self.k, self.first_todo);
                        let text = match self.conn.send(&mut self.stash, &event.to_json()) {
                            Sent::Now(text) => text,
                            // Held: only before `recovered`, and events wait for the restore.
                            Sent::Held | Sent::Refused => {
                                self.count_drops();
                                next_event = self.next_event_at(Instant::now());
                                continue;
                            }
                        };
                        self.k += 1;
                        // Kept first: if this send is lost, a numbered event is resent.
                        self.pending = Some(Pending {
                            event,
                            sent: Some(Instant::now()),
                            acked: false,
                            seq: self.conn.numbered().then(|| self.stash.next_seq()),
                            resent: false,
                            in_flight: None,
                        });
                        if ws.send(Message::text(text)).await.is_err() {
                            return ABNORMAL;
                        }
                    } else {
                        next_event = Instant::now() + Duration::from_millis(50);
                    }
                    continue;
                }
            };
            let text = match msg {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(frame))) => {
                    let Some(f) = frame else { return 1005 };
                    self.drain_spread = Some(crate::schedule::drain_spread(f.reason.as_str()));
                    return u16::from(f.code);
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return ABNORMAL,
            };
            let Ok(m) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            let Some(kind) = m.get("type").and_then(Value::as_str) else {
                continue;
            };
            match kind {
                "state" => self.maybe_ack(&m),
                "salt" if had_salt => salt_issued = true,
                "worker" => {
                    let w = m
                        .get("id")
                        .and_then(Value::as_str)
                        .and_then(|id| id.strip_prefix('w'))
                        .and_then(|n| n.parse::<u8>().ok());
                    self.hub.tab(idx, |v| v.worker = w);
                }
                _ => {}
            }
            let renders = match self.conn.receive(&mut self.stash, &m) {
                Received::Ignored => continue,
                Received::Protocol => {
                    self.count_drops();
                    continue;
                }
                Received::Recovered { resend, applied } => {
                    let n = |k: &str| m.get(k).and_then(Value::as_u64).unwrap_or(0);
                    recovered = Some((n("restored"), n("rejected"), applied));
                    self.backoff.reset();
                    self.count_drops();
                    if !self.resend(ws, resend, applied).await {
                        return ABNORMAL;
                    }
                    continue;
                }
                Received::Batch(app) => {
                    self.count_drops();
                    match self.batch(&m, app) {
                        Some(r) => r,
                        None => continue,
                    }
                }
                Received::App if kind == "render" => vec![m],
                Received::App => continue,
            };
            for m in renders {
                let (Some(c), Some(html)) = (
                    m.get("id").and_then(Value::as_str).and_then(component),
                    m.get("html").and_then(Value::as_str),
                ) else {
                    continue;
                };
                if c == 1 {
                    self.first_todo = todos(html).first().map(|t| t.0);
                }
                if !restored {
                    if let Some(slot) = first.get_mut(c) {
                        *slot = Some(html.to_owned());
                    }
                    if let (Some(r), true) = (recovered, first.iter().all(Option::is_some)) {
                        restored = true;
                        let lost =
                            self.check_restore(had_salt, salt_issued, sent_entries, r, &first);
                        let now = Instant::now();
                        let warm = self.warm();
                        let mut rec = self.hub.lock();
                        let worker = rec.tabs.get(idx).and_then(|v| v.worker);
                        rec.restores.push(Restore {
                            tab: idx,
                            at: now,
                            lost,
                            worker,
                            outage: self.outage.take(),
                            connect_started: self.handshake.0,
                            opened: self.handshake.1,
                        });
                        if let Some(v) = rec.tabs.get_mut(idx) {
                            v.ready = warm;
                        }
                        drop(rec);
                        // A resent event's answer is on its way: the next one after it.
                        next_event = self.next_event_at(now);
                    }
                    continue;
                }
                self.answered(c, html, &mut next_event);
            }
            // A batch that applied the pending event without rendering its component (not
            // the demo's way): applied all the same; the next event goes.
            if let Some(p) = self.pending.take_if(|p| p.seq.is_some() && p.acked) {
                self.resolve(&p, Instant::now(), false);
                next_event = self.next_event_at(Instant::now());
            }
        }
    }

    /// A render in the middle of the connection: if it is the answer to the pending event
    /// (an unnumbered one's render, or the render in a numbered one's batch, already
    /// applied to the model), checked against the model.
    fn answered(&mut self, c: usize, html: &str, next_event: &mut Instant) {
        let Some(p) = self
            .pending
            .as_ref()
            .filter(|p| p.event.component() == c && p.sent.is_some())
        else {
            return;
        };
        let now = Instant::now();
        let acked = p.acked;
        let sent = p.sent.unwrap_or(now);
        let resent = p.resent;
        let numbered = p.seq.is_some();
        if numbered && !acked {
            // A render outside the pending event's batch.
            return;
        }
        if let Some(p) = self.pending.take() {
            self.resolve(&p, now, false);
        }
        let diverged = self.model.check(c, html).err();
        let diverged_now = diverged.is_some();
        let was_warm = self.warm();
        let mut rec = self.hub.lock();
        if acked && !resent {
            rec.samples.push(Sample {
                tab: u32::try_from(self.idx).unwrap_or(u32::MAX),
                sent,
                rtt: now - sent,
            });
        }
        if let Some(d) = diverged {
            rec.diverged.push(format!("tab {}: {d}", self.idx));
        }
        if let Some(v) = rec.tabs.get_mut(self.idx) {
            v.ready = was_warm;
        }
        drop(rec);
        if diverged_now {
            // Follow what the server shows from now on (counted once above).
            self.model.read(c, html);
        }
        *next_event = self.next_event_at(now);
        // A fresh tab spreads its first regular event over one interval.
        if was_warm && self.k == 3 {
            let f: f64 = rand::rng().random_range(0.0..1.0);
            *next_event = now + self.config.interval.mul_f64(f);
        }
    }

    /// A `batch` the stash took (`app`: its application messages, `None` if refused whole).
    /// With messages, its event was applied: to the pending event's model (and its
    /// component's key learnt), or, for a `$seq` already applied, counted as applied twice.
    /// Without messages, the server had applied it already. Returns the renders to check.
    fn batch(&mut self, m: &Value, app: Option<Vec<Value>>) -> Option<Vec<Value>> {
        let Some(app) = app else {
            self.hub.lock().malformed_batches += 1;
            return None;
        };
        let seq = m.get("seq").and_then(Value::as_u64)?;
        let items = m.get("messages").and_then(Value::as_array)?;
        let now = Instant::now();
        if !items.is_empty() && seq <= self.applied_seq {
            self.hub.lock().duplicated.push((self.idx, seq, now));
        }
        if !items.is_empty() {
            self.applied_seq = self.applied_seq.max(seq);
        }
        let p = self.pending.as_mut().filter(|p| p.seq == Some(seq))?;
        if items.is_empty() {
            // Already applied (a resend the restored state records): nothing to render.
            if let Some(p) = self.pending.take() {
                self.resolve(&p, now, true);
            }
            return None;
        }
        p.acked = true;
        let c = p.event.component();
        self.model.apply(&p.event);
        // The first update is the applied-events entry; the component's comes after it.
        if let Some(k) = items
            .first()
            .filter(|x| x.get("type").and_then(Value::as_str) == Some("state"))
            .and_then(|x| x.get("key").and_then(Value::as_str))
        {
            if self.applied_key.as_deref() != Some(k) {
                self.applied_key = Some(k.to_owned());
            }
        }
        let key = items
            .iter()
            .skip(1)
            .filter(|x| x.get("type").and_then(Value::as_str) == Some("state"))
            .find_map(|x| x.get("key").and_then(Value::as_str));
        if let (Some(slot), Some(key)) = (self.keys.get_mut(c), key) {
            *slot = Some(key.to_owned());
        }
        Some(app)
    }

    /// A `state` message while an unnumbered event is pending: its acknowledgement if it is
    /// for the event's component and newer than the stash's entry (a refresh has the same
    /// revision).
    fn maybe_ack(&mut self, m: &Value) {
        let Some(p) = self
            .pending
            .as_mut()
            .filter(|p| !p.acked && p.seq.is_none())
        else {
            return;
        };
        let (Some(key), Some(rev)) = (
            m.get("key").and_then(Value::as_str),
            m.get("rev").and_then(Value::as_u64),
        ) else {
            return;
        };
        let c = p.event.component();
        let mapped = self.keys.iter().position(|k| k.as_deref() == Some(key));
        if mapped.is_some_and(|i| i != c) {
            return;
        }
        if self.stash.rev(key).is_some_and(|r| r >= rev) {
            return;
        }
        p.acked = true;
        self.model.apply(&p.event);
        if let Some(k) = self.keys.get_mut(c) {
            *k = Some(key.to_owned());
        }
    }

    /// After a reconnect: what was lost, if anything (`None` for a tab with nothing to lose).
    /// `sent`: the entries sent, and whether the applied-events entry was one of them (then
    /// `recovered` must count it in neither `restored` nor `rejected` and announce as
    /// `applied` the last event this tab saw applied).
    fn check_restore(
        &mut self,
        had_salt: bool,
        salt_issued: bool,
        (sent, sent_applied): (usize, bool),
        (restored, rejected, applied): (u64, u64, Option<u64>),
        first: &[Option<String>; 3],
    ) -> Option<String> {
        let mut problems = Vec::new();
        if had_salt {
            if salt_issued {
                problems.push("a new salt was issued (the stash was wiped)".to_owned());
            }
            let used = sent as u64 - u64::from(sent_applied);
            if restored != used || rejected != 0 {
                problems.push(format!(
                    "recovered {restored} restored, {rejected} rejected of {sent} sent \
                     ({} the applied-events entry)",
                    if sent_applied { "with" } else { "without" }
                ));
            }
            if sent_applied && applied != Some(self.applied_seq) {
                problems.push(format!(
                    "recovered announced applied {applied:?}, the last event applied was {}",
                    self.applied_seq
                ));
            }
            for (c, html) in first.iter().enumerate() {
                if let Err(e) = self.model.check(c, html.as_deref().unwrap_or("")) {
                    problems.push(e);
                }
            }
        }
        // From now on the tab expects what the server shows (a fresh tab, or after a loss).
        if !had_salt || !problems.is_empty() {
            for (c, html) in first.iter().enumerate() {
                self.model.read(c, html.as_deref().unwrap_or(""));
            }
        }
        if problems.is_empty() {
            None
        } else {
            let names = COMPONENTS.join("/");
            Some(format!(
                "tab {} ({names}): {}",
                self.idx,
                problems.join("; ")
            ))
        }
    }
}
