//! One simulated tab: the JS client's `connect()` over tokio-tungstenite, with its own
//! [`Stash`] and [`Backoff`], driving the demo's components with the demo's own messages.
//!
//! As the JS client: the recover message first on every socket; `salt`, `state` and `drop`
//! go to the stash, `recovered` passes its limits to the stash and resets the backoff; a close
//! reconnects after the backoff's delay (the drain close code: after the drain jitter); a
//! handshake that fails counts as a close (1006). Not as the JS client: no form input, no
//! `online` event, no `reconnect()`/`close()` calls; it sends application messages only once
//! restored and only one at a time (it waits for each event's render before the next).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use rand::Rng as _;
use serde_json::Value;
use tokio::time::{sleep_until, timeout};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::hub::{Closed, Hub, Outage, Restore, Sample};
use crate::model::{component, todos, Event, Model, COMPONENTS};
use crate::schedule::{Backoff, RECONNECT};
use crate::stash::{Absorbed, Stash};

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
    sent: Instant,
    /// Its `state` message came back: the change is in the stash.
    acked: bool,
}

/// One tab.
#[derive(Debug)]
pub(crate) struct Tab {
    idx: usize,
    config: TabConfig,
    hub: Arc<Hub>,
    stash: Stash,
    backoff: Backoff,
    model: Model,
    /// The state key of each component, learnt from its first acknowledged event.
    keys: [Option<String>; 3],
    /// The id of the first todo in the list's last render.
    first_todo: Option<u32>,
    /// Events sent so far.
    k: u64,
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
            backoff: Backoff::default(),
            model: Model::default(),
            keys: [None, None, None],
            first_todo: None,
            k: 0,
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
            let delay = self.backoff.next(code == RECONNECT.drain_close_code);
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
        let bundle = self.stash.bundle();
        let sent_entries = self.stash.entries().len();
        self.count_drops();
        let mut code = ABNORMAL;
        let mut pending: Option<Pending> = None;
        if ws.send(Message::text(bundle)).await.is_ok() {
            code = self
                .converse(&mut ws, had_salt, sent_entries, &mut pending)
                .await;
        }
        let in_flight_lost = pending.as_ref().is_some_and(|p| !p.acked);
        let mut rec = self.hub.lock();
        rec.closed.push(Closed {
            tab: idx,
            at: Instant::now(),
            in_flight_lost,
            code,
        });
        if let Some(v) = rec.tabs.get_mut(idx) {
            v.ready = false;
            v.worker = None;
        }
        code
    }

    fn count_drops(&mut self) {
        if !self.stash.dropped.is_empty() {
            let mut rec = self.hub.lock();
            for (_, reason) in self.stash.dropped.drain(..) {
                *rec.dropped.entry(reason.as_str()).or_default() += 1;
            }
        }
    }

    async fn converse<S>(
        &mut self,
        ws: &mut tokio_tungstenite::WebSocketStream<S>,
        had_salt: bool,
        sent_entries: usize,
        pending: &mut Option<Pending>,
    ) -> u16
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let idx = self.idx;
        let mut recovered: Option<(u64, u64)> = None;
        let mut salt_issued = false;
        let mut first: [Option<String>; 3] = [None, None, None];
        let mut restored = false;
        let mut next_event = Instant::now();
        let mut stuck_counted = false;
        loop {
            let wake = match pending {
                Some(p) => p.sent + ACK_TIMEOUT,
                None if restored => next_event,
                None => Instant::now() + Duration::from_secs(3600),
            };
            let msg = tokio::select! {
                m = ws.next() => m,
                () = sleep_until(wake.into()) => {
                    if pending.is_some() {
                        if !stuck_counted {
                            stuck_counted = true;
                            self.hub.lock().stuck += 1;
                        }
                        next_event = Instant::now() + Duration::from_secs(3600);
                    } else if self.hub.events_on() {
                        let event = self.model.event(idx, self.k, self.first_todo);
                        if ws.send(Message::text(event.to_json())).await.is_err() {
                            return ABNORMAL;
                        }
                        self.k += 1;
                        *pending = Some(Pending { event, sent: Instant::now(), acked: false });
                    } else {
                        next_event = Instant::now() + Duration::from_millis(50);
                    }
                    continue;
                }
            };
            let text = match msg {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(frame))) => {
                    return frame.map_or(1005, |f| u16::from(f.code));
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
                "state" => self.maybe_ack(&m, pending),
                "salt" if had_salt => salt_issued = true,
                "recovered" => {
                    let n = |k: &str| m.get(k).and_then(Value::as_u64).unwrap_or(0);
                    recovered = Some((n("restored"), n("rejected")));
                    self.backoff.reset();
                }
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
            if self.stash.absorb(&m) == Absorbed::Protocol {
                self.count_drops();
                continue;
            }
            if kind != "render" {
                continue;
            }
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
                    let lost = self.check_restore(had_salt, salt_issued, sent_entries, r, &first);
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
                    next_event = self.next_event_at(now);
                }
                continue;
            }
            // A render in the middle of the connection: the answer to the pending event?
            let Some(p) = pending.as_ref().filter(|p| p.event.component() == c) else {
                continue;
            };
            let now = Instant::now();
            let acked = p.acked;
            let sent = p.sent;
            *pending = None;
            let diverged = self.model.check(c, html).err();
            let diverged_now = diverged.is_some();
            let was_warm = self.warm();
            let mut rec = self.hub.lock();
            if acked {
                rec.samples.push(Sample {
                    tab: u32::try_from(idx).unwrap_or(u32::MAX),
                    sent,
                    rtt: now - sent,
                });
            }
            if let Some(d) = diverged {
                rec.diverged.push(format!("tab {idx}: {d}"));
            }
            if let Some(v) = rec.tabs.get_mut(idx) {
                v.ready = was_warm;
            }
            drop(rec);
            if diverged_now {
                // Follow what the server shows from now on (counted once above).
                self.model.read(c, html);
            }
            next_event = self.next_event_at(now);
            // A fresh tab spreads its first regular event over one interval.
            if was_warm && self.k == 3 {
                let f: f64 = rand::rng().random_range(0.0..1.0);
                next_event = now + self.config.interval.mul_f64(f);
            }
        }
    }

    /// A `state` message while an event is pending: its acknowledgement if it is for the
    /// event's component and newer than the stash's entry (a refresh has the same revision).
    fn maybe_ack(&mut self, m: &Value, pending: &mut Option<Pending>) {
        let Some(p) = pending.as_mut().filter(|p| !p.acked) else {
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
    fn check_restore(
        &mut self,
        had_salt: bool,
        salt_issued: bool,
        sent: usize,
        (restored, rejected): (u64, u64),
        first: &[Option<String>; 3],
    ) -> Option<String> {
        let mut problems = Vec::new();
        if had_salt {
            if salt_issued {
                problems.push("a new salt was issued (the stash was wiped)".to_owned());
            }
            if restored != sent as u64 || rejected != 0 {
                problems.push(format!(
                    "recovered {restored} restored, {rejected} rejected of {sent} sent"
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
