//! Events exactly once, through the transport-independent protocol core: a client that keeps
//! what the JS client keeps (the stash, the sequence counter and the unacknowledged events,
//! a `batch` taken all or nothing) against "workers" (endpoints sharing one configuration)
//! that die at every point between receiving an event and the client storing the reply.
//! The same model drives `transport.rs` (plain tokio-tungstenite) and `reconnect.rs` (axum).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};
use state_recovery::guard::{Guard, GuardStore, InProcessStore};
use state_recovery::protocol::{
    event_seq, Accepted, Batch, Endpoint, EventError, Incoming, Recovered, ServerMessage, MAX_SEQ,
    MAX_SEQ_GAP,
};
use state_recovery::{inspect, state_key, Limits, Reason, Recovery, SealError, Slot, StateKey};

use crate::common::{recovery, ring, salt, seal_bytes, NOW, STEP};

/// [`recovery`] with other limits.
fn recovery_limited(limits: Limits) -> Recovery {
    Recovery::builder(ring(&[("k1", 1)]))
        .namespace("test-app")
        .clock(state_recovery::ManualClock::new(NOW))
        .limits(limits)
        .build()
        .unwrap()
}

/// What the JS client keeps, and does with what it is sent (client/state-recovery.js).
#[derive(Default, Clone, Debug)]
pub struct Tab {
    pub salt: Option<String>,
    /// The newest (rev, token) per state key: highest revision wins, an equal one replaces.
    pub entries: BTreeMap<String, (u64, String)>,
    /// The last sequence given.
    pub next: u64,
    /// The unacknowledged events, as sent.
    pub queue: Vec<(u64, String)>,
    /// The last `recovered` announced `applied`: messages are numbered.
    pub numbered: bool,
    /// The application's messages, as delivered.
    pub seen: Vec<Value>,
}

impl Tab {
    /// The recover message.
    pub fn hello(&self) -> String {
        let tokens: Vec<&str> = self.entries.values().map(|(_, t)| t.as_str()).collect();
        json!({"type": "recover", "salt": self.salt, "entries": tokens, "input": {}}).to_string()
    }

    /// Sends an application message: numbered and kept when the server announced `applied`.
    pub fn send(&mut self, mut body: Value) -> String {
        if !self.numbered {
            return body.to_string();
        }
        self.next += 1;
        body["$seq"] = json!(self.next);
        let text = body.to_string();
        self.queue.push((self.next, text.clone()));
        text
    }

    /// Takes in one frame; returns what the client sends right after it (the resends, after
    /// `recovered`).
    pub fn take(&mut self, frame: &str) -> Vec<String> {
        let m: Value = serde_json::from_str(frame).unwrap();
        match m["type"].as_str().unwrap_or("") {
            "salt" => {
                let salt = m["salt"].as_str().map(str::to_owned);
                if self.salt != salt {
                    self.entries.clear();
                    self.queue.clear(); // dropped: "salt-changed"
                    self.salt = salt;
                }
            }
            "state" => self.store(&m),
            "drop" => {
                self.entries.remove(m["key"].as_str().unwrap());
            }
            "recovered" => {
                self.numbered = m["applied"].is_u64();
                if let Some(applied) = m["applied"].as_u64() {
                    self.ack(applied);
                    return self.queue.iter().map(|(_, t)| t.clone()).collect();
                }
            }
            "batch" => {
                // All or nothing: every entry in one write, then the acknowledgement.
                for x in m["messages"].as_array().unwrap() {
                    match x["type"].as_str() {
                        Some("state") => self.store(x),
                        Some("drop") => {
                            self.entries.remove(x["key"].as_str().unwrap());
                        }
                        _ => self.seen.push(x.clone()),
                    }
                }
                self.ack(m["seq"].as_u64().unwrap());
            }
            _ => self.seen.push(m),
        }
        Vec::new()
    }

    fn store(&mut self, m: &Value) {
        let key = m["key"].as_str().unwrap().to_owned();
        let rev = m["rev"].as_u64().unwrap();
        if self.entries.get(&key).map_or(true, |(r, _)| *r <= rev) {
            self.entries
                .insert(key, (rev, m["token"].as_str().unwrap().to_owned()));
        }
    }

    fn ack(&mut self, seq: u64) {
        self.queue.retain(|(s, _)| *s > seq);
        self.next = self.next.max(seq);
    }

    /// The stored (signed, so readable) payload for `key`.
    pub fn payload(&self, key: StateKey) -> Option<Value> {
        let (_, token) = self.entries.get(&key.to_string())?;
        serde_json::from_slice(&inspect(token, 1 << 16).unwrap().payload).ok()
    }

    /// The counter as stored.
    pub fn stored_count(&self, w: &Worker) -> u64 {
        self.payload(w.counter.key())
            .and_then(|v| v.as_u64())
            .unwrap_or(0)
    }
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text frame, as JSON (bounded wait).
pub async fn next_frame(ws: &mut Ws) -> Value {
    use futures_util::StreamExt as _;
    loop {
        let m = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("no frame in 10 s")
            .expect("socket closed")
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

/// Opens a connection for `tab` at `url`: the handshake up to the first `render`, with the
/// resends sent right after `recovered`.
pub async fn open(url: &str, tab: &mut Tab) -> Ws {
    use futures_util::SinkExt as _;
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::text(tab.hello())).await.unwrap();
    loop {
        let m = next_frame(&mut ws).await;
        for text in tab.take(&m.to_string()) {
            ws.send(Message::text(text)).await.unwrap();
        }
        if m["type"] == "render" {
            return ws;
        }
    }
}

/// Takes every frame that arrived before the connection closed (what a browser does: it
/// handles each frame it received before the close event).
pub async fn drain(ws: &mut Ws, tab: &mut Tab) {
    use futures_util::StreamExt as _;
    let wait = std::time::Duration::from_secs(10);
    while let Ok(Some(Ok(m))) = tokio::time::timeout(wait, ws.next()).await {
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            tab.take(t.as_str());
        }
    }
}

/// Takes frames until every event `tab` sent is acknowledged.
pub async fn settle(ws: &mut Ws, tab: &mut Tab) {
    while !tab.queue.is_empty() {
        let f = next_frame(ws).await.to_string();
        tab.take(&f);
    }
}

/// Sends `{"type":"inc"}` (numbered when the server announced `applied`) and waits for its
/// acknowledgement.
pub async fn click(ws: &mut Ws, tab: &mut Tab) {
    use futures_util::SinkExt as _;
    let text = tab.send(json!({"type": "inc"}));
    ws.send(tokio_tungstenite::tungstenite::Message::text(text))
        .await
        .unwrap();
    settle(ws, tab).await;
}

/// Where a worker dies while handling an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Received, not applied.
    BeforeApply,
    /// Applied and sealed, the reply not flushed.
    AfterApply,
    /// The reply flushed, lost before the client stored it (a reset connection).
    AfterFlush,
    /// Nothing lost: the client stored the reply, then the worker died.
    None,
}

pub const CUTS: [Cut; 4] = [
    Cut::BeforeApply,
    Cut::AfterApply,
    Cut::AfterFlush,
    Cut::None,
];

/// A worker: an endpoint, the counter slot and a log slot, and how often it applied an event.
pub struct Worker {
    pub endpoint: Endpoint,
    pub counter: Slot<u64>,
    pub log: Slot<Vec<String>>,
    pub applied: u64,
    /// Sends the updates of an event in separate frames instead of one batch (the
    /// non-atomic reply the batch replaces; a negative control).
    pub split: bool,
}

/// One connection of a worker.
pub struct Conn {
    pub rec: Recovered,
    pub n: u64,
    pub log: Vec<String>,
}

impl Worker {
    pub fn new(r: &Recovery, events: bool) -> Self {
        Self::on(r, |e| if events { e.with_events() } else { e })
    }

    pub fn on(r: &Recovery, endpoint: impl FnOnce(Endpoint) -> Endpoint) -> Self {
        let mut reg = r.registry();
        let counter = Slot::declare(state_key!("counter"))
            .register(&mut reg)
            .unwrap();
        let log = Slot::declare(state_key!("log")).register(&mut reg).unwrap();
        Self {
            endpoint: endpoint(Endpoint::new(r.clone()).with_registry(Arc::new(reg))),
            counter,
            log,
            applied: 0,
            split: false,
        }
    }

    /// The handshake: what the worker sends after the client's recover message.
    pub fn connect(&self, rec: Recovered) -> (Conn, Vec<String>) {
        let (n, _) = self.counter.restore(&rec);
        let (log, _) = self.log.restore(&rec);
        let mut frames: Vec<String> = rec.messages().iter().map(|m| m.to_json()).collect();
        frames.push(json!({"type": "render", "count": n}).to_string());
        (Conn { rec, n, log }, frames)
    }

    /// Handles one client message, dying at `cut`; returns the frames that reach the wire.
    pub fn handle(&mut self, c: &mut Conn, text: &str, cut: Cut) -> Vec<String> {
        let mut batch = match c.rec.context().incoming(text.as_bytes()) {
            Incoming::Duplicate(ack) => return vec![ack.to_json()],
            Incoming::Refused(_) => return Vec::new(),
            Incoming::New(batch) => Some(batch),
            Incoming::Unsequenced => None,
            other => panic!("unexpected {other:?}"),
        };
        if cut == Cut::BeforeApply {
            return Vec::new();
        }
        let m: Value = serde_json::from_str(text).unwrap();
        let mut out: Vec<ServerMessage> = Vec::new();
        match m["type"].as_str() {
            Some("inc") => {
                c.n += 1;
                out.push(self.counter.seal(c.rec.context(), &c.n).unwrap().into());
            }
            Some("log") => {
                c.log.push(m["value"].as_str().unwrap().to_owned());
                out.push(self.log.seal(c.rec.context(), &c.log).unwrap().into());
            }
            _ => {}
        }
        self.applied += 1;
        let render = json!({"type": "render", "count": c.n, "log": c.log}).to_string();
        if cut == Cut::AfterApply {
            return Vec::new();
        }
        match &mut batch {
            // The event's batch: everything in one frame.
            Some(b) if !self.split => {
                for u in out {
                    b.push(u);
                }
                b.push_json(&render).unwrap();
                vec![b.to_json()]
            }
            // The same updates, one frame each (what a transport without batches sends).
            Some(b) => {
                let mut frames: Vec<String> = out.iter().map(ServerMessage::to_json).collect();
                frames.extend(b.state_updates().map(|u| u.to_json()));
                frames.push(Batch::new(b.seq()).to_json());
                frames
            }
            None => {
                let mut frames: Vec<String> = out.iter().map(|u| u.to_json()).collect();
                frames.push(render);
                frames
            }
        }
    }
}

/// Connects `tab` to `w`: the handshake, then the client's resends handled (nothing lost).
pub fn connect(tab: &mut Tab, w: &mut Worker) -> Conn {
    let rec = w.endpoint.recover(Some(tab.hello().as_bytes()), Some("u1"));
    let (mut c, frames) = w.connect(rec);
    let mut resends = Vec::new();
    for f in frames {
        resends.extend(tab.take(&f));
    }
    for text in resends {
        for f in w.handle(&mut c, &text, Cut::None) {
            tab.take(&f);
        }
    }
    c
}

/// Sends one event, delivered in full.
pub fn event(tab: &mut Tab, w: &mut Worker, c: &mut Conn, body: Value) {
    let text = tab.send(body);
    for f in w.handle(c, &text, Cut::None) {
        tab.take(&f);
    }
}

/// A tab with three clicks on worker `a`, then a fourth that `a` dies on at `cut`; the frames
/// `a` put on the wire are returned (not taken).
fn three_clicks_then_a_kill(r: &Recovery, cut: Cut) -> (Tab, Vec<String>) {
    let mut a = Worker::new(r, true);
    let mut tab = Tab::default();
    let mut c = connect(&mut tab, &mut a);
    assert!(tab.numbered, "recovered announces applied");
    for _ in 0..3 {
        event(&mut tab, &mut a, &mut c, json!({"type": "inc"}));
    }
    assert_eq!((tab.stored_count(&a), tab.queue.len()), (3, 0));
    let text = tab.send(json!({"type": "inc"}));
    let wire = a.handle(&mut c, &text, cut);
    (tab, wire)
}

#[test]
fn a_kill_between_send_and_reply_applies_the_event_exactly_once_on_the_next_worker() {
    let (r, _) = recovery();
    for cut in CUTS {
        let (mut tab, wire) = three_clicks_then_a_kill(&r, cut);
        if cut == Cut::None {
            for f in &wire {
                tab.take(f);
            }
        }
        // Worker a is gone; b shares its configuration, nothing else.
        let mut b = Worker::new(&r, true);
        let mut c = connect(&mut tab, &mut b);
        assert_eq!(tab.stored_count(&b), 4, "{cut:?}: the click counts once");
        assert_eq!(c.n, 4, "{cut:?}");
        assert_eq!(
            b.applied,
            u64::from(cut != Cut::None),
            "{cut:?}: b applies the resent event only when the client had no reply"
        );
        assert!(tab.queue.is_empty(), "{cut:?}: acknowledged");
        assert_eq!(c.rec.applied_seq(), 4, "{cut:?}");
        // And it goes on from there.
        event(&mut tab, &mut b, &mut c, json!({"type": "inc"}));
        assert_eq!(tab.stored_count(&b), 5, "{cut:?}");
    }
}

#[test]
fn a_resend_of_an_event_the_state_has_is_acknowledged_not_applied() {
    let (r, _) = recovery();
    let (mut tab, wire) = three_clicks_then_a_kill(&r, Cut::None);
    for f in &wire {
        tab.take(f);
    }
    // A client that resends anyway (it did not prune): b drops every one of them.
    let resends = vec![
        json!({"type": "inc", "$seq": 4}).to_string(),
        json!({"type": "inc", "$seq": 2}).to_string(),
        json!({"type": "inc", "$seq": 4}).to_string(),
    ];
    let mut b = Worker::new(&r, true);
    let rec = b.endpoint.recover(Some(tab.hello().as_bytes()), Some("u1"));
    let (mut c, frames) = b.connect(rec);
    for f in frames {
        tab.take(&f);
    }
    for text in resends {
        let wire = b.handle(&mut c, &text, Cut::None);
        let ack: Value = serde_json::from_str(&wire[0]).unwrap();
        assert_eq!(ack["type"], "batch");
        assert_eq!(
            ack["messages"],
            json!([]),
            "an acknowledgement carries nothing"
        );
        tab.take(&wire[0]);
    }
    assert_eq!((b.applied, tab.stored_count(&b), c.n), (0, 4, 4));
    // On the same connection too: the second copy of a new event is a duplicate.
    let text = tab.send(json!({"type": "inc"}));
    assert_eq!(b.handle(&mut c, &text, Cut::None).len(), 1);
    let again = b.handle(&mut c, &text, Cut::None);
    assert_eq!(
        serde_json::from_str::<Value>(&again[0]).unwrap()["messages"],
        json!([])
    );
    assert_eq!((b.applied, c.n), (1, 5));
}

/// The negative controls: each piece removed, the kill loses or doubles the click.
#[test]
fn without_the_resend_the_dedupe_or_the_batch_a_kill_loses_or_doubles_the_click() {
    let (r, _) = recovery();
    // No resend (a client that forgets what it sent): the click is lost.
    for cut in [Cut::BeforeApply, Cut::AfterApply, Cut::AfterFlush] {
        let (mut tab, _) = three_clicks_then_a_kill(&r, cut);
        tab.queue.clear();
        let mut b = Worker::new(&r, true);
        connect(&mut tab, &mut b);
        assert_eq!(tab.stored_count(&b), 3, "{cut:?}: lost without the resend");
    }
    // No dedupe (a worker without events, and a client that resends anyway): doubled.
    let (mut tab, wire) = three_clicks_then_a_kill(&r, Cut::None);
    for f in &wire {
        tab.take(f);
    }
    let resend = json!({"type": "inc", "$seq": 4}).to_string();
    let mut old = Worker::new(&r, false);
    let rec = old
        .endpoint
        .recover(Some(tab.hello().as_bytes()), Some("u1"));
    assert_eq!(rec.recovered_message().applied, None, "nothing announced");
    let (mut c, frames) = old.connect(rec);
    for f in frames {
        tab.take(&f);
    }
    for f in old.handle(&mut c, &resend, Cut::None) {
        tab.take(&f);
    }
    assert_eq!(tab.stored_count(&old), 5, "doubled without the dedupe");

    // No batch: the same updates in separate frames. A cut between the counter's frame and
    // the applied-events entry's (the client stored the first) doubles the click.
    let mut a = Worker::new(&r, true);
    a.split = true;
    let mut tab = Tab::default();
    let mut c = connect(&mut tab, &mut a);
    let text = tab.send(json!({"type": "inc"}));
    let frames = a.handle(&mut c, &text, Cut::None);
    assert!(frames.len() >= 3, "counter, applied entry, acknowledgement");
    tab.take(&frames[0]); // the counter's update only
    let mut b = Worker::new(&r, true);
    connect(&mut tab, &mut b);
    assert_eq!(
        tab.stored_count(&b),
        2,
        "doubled when the reply is not one frame"
    );
}

#[test]
fn resent_events_apply_in_order_and_before_new_ones() {
    let (r, _) = recovery();
    let mut a = Worker::new(&r, true);
    let mut tab = Tab::default();
    let mut c = connect(&mut tab, &mut a);
    for v in ["a", "b"] {
        event(&mut tab, &mut a, &mut c, json!({"type": "log", "value": v}));
    }
    // c is applied but not flushed; d and e are sent and never read: all three resent.
    let t = tab.send(json!({"type": "log", "value": "c"}));
    a.handle(&mut c, &t, Cut::AfterApply);
    tab.send(json!({"type": "log", "value": "d"}));
    tab.send(json!({"type": "log", "value": "e"}));
    assert_eq!(tab.queue.len(), 3);
    let mut b = Worker::new(&r, true);
    let mut c = connect(&mut tab, &mut b);
    event(
        &mut tab,
        &mut b,
        &mut c,
        json!({"type": "log", "value": "f"}),
    );
    let log = tab.payload(b.log.key()).unwrap();
    assert_eq!(log, json!(["a", "b", "c", "d", "e", "f"]));
    assert_eq!(b.applied, 4);
}

#[test]
fn two_tabs_are_independent() {
    let (r, _) = recovery();
    let mut w = Worker::new(&r, true);
    let (mut t1, mut t2) = (Tab::default(), Tab::default());
    let mut c1 = connect(&mut t1, &mut w);
    let mut c2 = connect(&mut t2, &mut w);
    for _ in 0..3 {
        event(&mut t1, &mut w, &mut c1, json!({"type": "inc"}));
        event(&mut t2, &mut w, &mut c2, json!({"type": "inc"}));
    }
    // The same sequence numbers (1..3) in both: neither is a duplicate of the other's.
    assert_eq!((t1.next, t2.next), (3, 3));
    assert_eq!((t1.stored_count(&w), t2.stored_count(&w)), (3, 3));
    // Tab 1's applied entry does not open for tab 2 (another salt): it counts as rejected
    // there, and tab 2's resend of its own event 3 is still a duplicate.
    let mut mixed = t2.clone();
    let applied = r.applied_key().to_string();
    let stray = t1.entries[&applied].clone();
    mixed.entries.insert("stray".into(), stray);
    mixed
        .queue
        .push((3, json!({"type": "inc", "$seq": 3}).to_string()));
    let mut b = Worker::new(&r, true);
    let c = connect(&mut mixed, &mut b);
    let reasons: Vec<Reason> = c.rec.rejected().iter().map(|x| x.reason).collect();
    assert_eq!(reasons, [Reason::BadSignature]);
    assert_eq!(
        (c.rec.applied_seq(), b.applied, mixed.stored_count(&b)),
        (3, 0, 3)
    );
}

#[test]
fn sequences_that_are_not_safe_integers_jump_or_repeat_are_typed_and_change_nothing() {
    let (r, _) = recovery();
    let mut w = Worker::new(&r, true);
    let mut tab = Tab::default();
    let mut c = connect(&mut tab, &mut w);
    event(&mut tab, &mut w, &mut c, json!({"type": "inc"}));
    let budget = c.rec.context().budget();
    let too_far = format!(r#"{{"type":"inc","$seq":{}}}"#, 2 + MAX_SEQ_GAP);
    for (text, want) in [
        (r#"{"type":"inc","$seq":0}"#, EventError::InvalidSeq),
        (r#"{"type":"inc","$seq":-2}"#, EventError::InvalidSeq),
        (r#"{"type":"inc","$seq":2.5}"#, EventError::InvalidSeq),
        (r#"{"type":"inc","$seq":"2"}"#, EventError::InvalidSeq),
        (
            r#"{"type":"inc","$seq":9007199254740992}"#,
            EventError::InvalidSeq,
        ),
        (
            r#"{"type":"inc","$seq":2,"$seq":3}"#,
            EventError::InvalidSeq,
        ),
        (
            too_far.as_str(),
            EventError::TooFar {
                seq: 2 + MAX_SEQ_GAP,
                applied: 1,
            },
        ),
    ] {
        let got = c.rec.context().incoming(text.as_bytes());
        assert_eq!(got, Incoming::Refused(want), "{text}");
        assert_eq!(
            w.handle(&mut c, text, Cut::None),
            Vec::<String>::new(),
            "{text}"
        );
    }
    let ctx = c.rec.context();
    assert_eq!(
        (ctx.applied_seq(), c.n, w.applied),
        (1, 1, 1),
        "nothing recorded"
    );
    assert_eq!(ctx.budget(), budget, "nothing sealed");
    // Backwards is a duplicate; the largest jump allowed is new.
    assert!(matches!(ctx.accept_event(1), Ok(Accepted::Duplicate(_))));
    let far = 1 + MAX_SEQ_GAP;
    assert!(matches!(ctx.accept_event(far), Ok(Accepted::New(b)) if b.records_applied()));
    assert_eq!(ctx.applied_seq(), far);
    assert_eq!(ctx.accept_event(MAX_SEQ + 1), Err(EventError::InvalidSeq));
    // Unnumbered messages, and everything on an endpoint without events, are as before.
    assert_eq!(ctx.incoming(br#"{"type":"inc"}"#), Incoming::Unsequenced);
    assert_eq!(ctx.incoming(b"\x00binary"), Incoming::Unsequenced);
    let off = Worker::new(&r, false);
    let rec = off.endpoint.recover(None, Some("u1"));
    assert_eq!(
        rec.context().incoming(br#"{"$seq":1}"#),
        Incoming::Unsequenced
    );
    assert_eq!(rec.context().accept_event(1), Err(EventError::Disabled));
    assert_eq!(event_seq(br#"{"$seq":5}"#), Ok(Some(5)));
    // Without a record, any sequence is the first.
    let fresh = Worker::new(&r, true);
    let rec = fresh.endpoint.recover(None, Some("u1"));
    assert!(matches!(
        rec.context().accept_event(MAX_SEQ),
        Ok(Accepted::New(_))
    ));
}

#[test]
fn a_forged_duplicated_or_foreign_applied_entry_records_nothing_and_costs_nothing_else() {
    let (r, _) = recovery();
    let mut a = Worker::new(&r, true);
    let mut tab = Tab::default();
    let mut c = connect(&mut tab, &mut a);
    let applied_key = r.applied_key().to_string();
    event(&mut tab, &mut a, &mut c, json!({"type": "inc"}));
    let older = tab.entries[&applied_key].clone();
    event(&mut tab, &mut a, &mut c, json!({"type": "inc"}));
    assert_eq!(tab.entries.len(), 2, "the counter and the applied entry");

    let restore = |t: &Tab| {
        let w = Worker::new(&r, true);
        let rec = w.endpoint.recover(Some(t.hello().as_bytes()), Some("u1"));
        let (n, _) = w.counter.restore(&rec);
        let reasons: Vec<Reason> = rec.rejected().iter().map(|x| x.reason).collect();
        let m = rec.recovered_message();
        (rec.applied_seq(), n, reasons, (m.restored, m.rejected))
    };
    assert_eq!(
        restore(&tab),
        (2, 2, vec![], (1, 0)),
        "not counted when used"
    );

    // Tampered: bad signature; the counter is intact; nothing recorded.
    let mut forged = tab.clone();
    let (rev, token) = forged.entries[&applied_key].clone();
    let mut bytes = token.into_bytes();
    let last = bytes.len() - 3;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    forged.entries.insert(
        applied_key.clone(),
        (rev, String::from_utf8(bytes).unwrap()),
    );
    assert_eq!(restore(&forged), (0, 2, vec![Reason::BadSignature], (1, 1)));

    // Two authentic ones (an older and the newer): both refused, as any duplicate key.
    let mut twice = tab.clone();
    twice.entries.insert("older".into(), older);
    assert_eq!(
        restore(&twice),
        (
            0,
            2,
            vec![Reason::DuplicateKey, Reason::DuplicateKey],
            (1, 2)
        )
    );

    // Authentic (sealed with the ring) but not a sequence: typed reasons, nothing recorded.
    let key = r.applied_key();
    for (schema, payload, reason) in [
        (1, &br#"{"seq":"3"}"#[..], Reason::InvalidPayload),
        (1, br#"{"seq":0}"#, Reason::InvalidPayload),
        (1, br#"{"seq":9007199254740992}"#, Reason::InvalidPayload),
        (1, br#"{"seq":3,"more":1}"#, Reason::InvalidPayload),
        (1, br#"3"#, Reason::InvalidPayload),
        (2, br#"{"seq":3}"#, Reason::NewerSchema),
        (0, br#"{"seq":3}"#, Reason::Outdated),
    ] {
        // Sealed the documented way (SECURITY.md 2), for salt 7 and no subject.
        let token = seal_bytes(7, key, 1, schema, payload);
        let msg = state_recovery::reconnect_message(&salt(7), [token.as_str()]);
        let rec = Worker::new(&r, true)
            .endpoint
            .recover(Some(msg.as_bytes()), None);
        let reasons: Vec<Reason> = rec.rejected().iter().map(|x| x.reason).collect();
        assert_eq!(
            (rec.applied_seq(), reasons),
            (0, vec![reason]),
            "{payload:?}"
        );
    }
    let token = seal_bytes(7, key, 1, 1, br#"{"seq":3}"#);
    let msg = state_recovery::reconnect_message(&salt(7), [token.as_str()]);
    let rec = Worker::new(&r, true)
        .endpoint
        .recover(Some(msg.as_bytes()), None);
    assert_eq!(
        rec.applied_seq(),
        3,
        "the construction restores a valid one"
    );
    assert_eq!(rec.rejected(), &[]);

    // No application seal can write the reserved key.
    let err = c
        .rec
        .context()
        .seal(key, 99, 1, &json!({"seq": 1_000}))
        .unwrap_err();
    assert!(matches!(err, SealError::ReservedKey), "{err}");
}

#[test]
fn the_applied_entry_is_held_refreshed_and_counted_in_the_budget() {
    let (r, clock) = recovery();
    let mut a = Worker::new(&r, true);
    let mut tab = Tab::default();
    let mut c = connect(&mut tab, &mut a);
    event(&mut tab, &mut a, &mut c, json!({"type": "inc"}));
    assert_eq!(c.rec.context().budget().entries, 2);
    clock.advance(STEP);
    let refreshed = c.rec.context().refresh();
    assert!(refreshed.iter().any(|u| u.key() == r.applied_key()));
    for u in refreshed {
        tab.take(&u.to_json());
    }
    // After two more steps the original entries would have expired; the refreshed ones open.
    clock.advance(STEP);
    let mut b = Worker::new(&r, true);
    let c = connect(&mut tab, &mut b);
    assert_eq!((c.rec.applied_seq(), c.n), (1, 1));
    assert_eq!(c.rec.context().budget().entries, 2, "restored and held");
    // Restored after a reconnect (not sealed here): refreshed in turn.
    clock.advance(STEP);
    assert!(c
        .rec
        .context()
        .refresh()
        .iter()
        .any(|u| u.key() == r.applied_key()));
}

#[test]
fn a_full_budget_or_an_oversized_update_keeps_every_other_entry() {
    // Room for the counter and the applied entry only.
    let limits = Limits::default()
        .with_max_entries(2)
        .with_max_token_bytes(4096)
        .with_max_bundle_bytes(4096);
    let r = recovery_limited(limits);
    let mut a = Worker::new(&r, true);
    let mut tab = Tab::default();
    let mut c = connect(&mut tab, &mut a);
    event(&mut tab, &mut a, &mut c, json!({"type": "inc"}));
    // The log would be a third entry: refused (typed), the batch still carries the counter's
    // neighbours untouched and the applied entry.
    let text = tab.send(json!({"type": "log", "value": "x"}));
    let ctx = c.rec.context();
    let Incoming::New(mut batch) = ctx.incoming(text.as_bytes()) else {
        panic!("new")
    };
    let err = a.log.seal(ctx, &vec!["x".to_owned()]).unwrap_err();
    assert!(matches!(err, SealError::TooManyEntries { max: 2 }), "{err}");
    assert!(batch.records_applied());
    batch.push_json(r#"{"type":"render"}"#).unwrap();
    tab.take(&batch.to_json());
    assert_eq!(tab.entries.len(), 2);
    assert_eq!((tab.stored_count(&a), tab.queue.len()), (1, 0));

    // A client whose entries fill the budget before its first event: the event is still new,
    // but its batch cannot record it (logged); every entry stays.
    let r = recovery_limited(limits.with_max_entries(1));
    let mut a = Worker::new(&r, true);
    let mut tab = Tab::default();
    let mut c = connect(&mut tab, &mut a);
    tab.numbered = false;
    event(&mut tab, &mut a, &mut c, json!({"type": "inc"})); // unnumbered: the counter
    let Ok(Accepted::New(batch)) = c.rec.context().accept_event(1) else {
        panic!("new")
    };
    assert!(!batch.records_applied() && batch.is_empty());
    assert_eq!(
        c.rec.context().applied_seq(),
        1,
        "still applied on this connection"
    );
    assert!(matches!(
        c.rec.context().accept_event(1),
        Ok(Accepted::Duplicate(_))
    ));
    assert_eq!(c.rec.context().budget().entries, 1);
}

#[test]
fn a_new_salt_drops_what_was_queued_and_a_context_that_cannot_seal_announces_nothing() {
    let (r, _) = recovery();
    let mut a = Worker::new(&r, true);
    let mut tab = Tab::default();
    let mut c = connect(&mut tab, &mut a);
    event(&mut tab, &mut a, &mut c, json!({"type": "inc"}));
    tab.send(json!({"type": "inc"})); // never answered
                                      // The stash is refused whole (a broken salt): a fresh salt, the queue dropped with it.
    tab.salt = Some("not a salt".into());
    let mut b = Worker::new(&r, true);
    let c = connect(&mut tab, &mut b);
    assert!(tab.queue.is_empty() && b.applied == 0);
    assert_eq!((c.rec.applied_seq(), c.n), (0, 0));
    // The counter goes on, and the first new event after a new salt is new.
    assert_eq!(tab.next, 2);

    // A context that refuses to seal (a required subject missing) announces no `applied`:
    // the client sends unnumbered, and keeps what it has queued for a later connection.
    let strict = Worker::on(&r, |e| e.with_events().require_subject());
    let rec = strict.endpoint.recover(Some(tab.hello().as_bytes()), None);
    assert!(!rec.context().can_seal());
    assert_eq!(rec.recovered_message().applied, None);
    let rec = strict
        .endpoint
        .recover(Some(tab.hello().as_bytes()), Some("u1"));
    assert_eq!(rec.recovered_message().applied, Some(0));
}

#[test]
fn event_ids_are_the_same_on_every_worker_and_differ_per_client_and_event() {
    let (r, _) = recovery();
    let a = Worker::new(&r, true);
    let b = Worker::new(&r, true);
    let mut tab = Tab::default();
    let first = a.endpoint.recover(None, Some("u1"));
    for f in first.messages() {
        tab.take(&f.to_json());
    }
    let on_b = b.endpoint.recover(Some(tab.hello().as_bytes()), Some("u1"));
    let id = first.context().event_id(7);
    assert_eq!(id, on_b.context().event_id(7));
    assert_eq!(id.to_string().len(), 32);
    assert_ne!(id, first.context().event_id(8));
    let other_user = b.endpoint.recover(Some(tab.hello().as_bytes()), Some("u2"));
    assert_ne!(id, other_user.context().event_id(7));
    let other_tab = a.endpoint.recover(None, Some("u1"));
    assert_ne!(id, other_tab.context().event_id(7));
}

/// With a guard, the applied entry is marked like any entry. The mark delay is what lets a
/// kill between the seal and the client storing the reply go unpunished: with marks written
/// before the kill, the client's entries (applied one included) are refused as rolled back.
#[tokio::test]
async fn with_a_guard_a_kill_after_the_flush_still_applies_once() {
    let r = crate::guard::recovery();
    let store: Arc<dyn GuardStore> = Arc::new(InProcessStore::new());
    let guarded = |delay: std::time::Duration| {
        let guard = Guard::builder(&r, store.clone())
            .mark_delay(delay)
            .build()
            .unwrap();
        (
            Worker::on(&r, |e| e.with_events().with_guard(guard.clone())),
            guard,
        )
    };
    for written in [false, true] {
        // The delay is long for the test (the default is 1 s) unless the marks are written.
        let delay = std::time::Duration::from_secs(if written { 0 } else { 30 });
        let (mut a, guard_a) = guarded(delay);
        let mut tab = Tab::default();
        let rec = a
            .endpoint
            .recover_guarded(Some(tab.hello().as_bytes()), Some("u1"))
            .await;
        let (mut c, frames) = a.connect(rec);
        for f in frames {
            tab.take(&f);
        }
        for _ in 0..3 {
            event(&mut tab, &mut a, &mut c, json!({"type": "inc"}));
        }
        guard_a.flush().await.unwrap(); // the marks of what the client holds are written
        let text = tab.send(json!({"type": "inc"}));
        let _lost = a.handle(&mut c, &text, Cut::AfterFlush);
        if written {
            guard_a.flush().await.unwrap(); // the worker lived past the delay
        }
        drop((a, c, guard_a)); // killed: whatever is still queued is lost

        let (mut b, _guard_b) = guarded(delay);
        let rec = b
            .endpoint
            .recover_guarded(Some(tab.hello().as_bytes()), Some("u1"))
            .await;
        let reasons: Vec<Reason> = rec.rejected().iter().map(|x| x.reason).collect();
        let (mut c, frames) = b.connect(rec);
        let mut resends = Vec::new();
        for f in frames {
            resends.extend(tab.take(&f));
        }
        for t in resends {
            for f in b.handle(&mut c, &t, Cut::None) {
                tab.take(&f);
            }
        }
        if written {
            assert_eq!(reasons, [Reason::RolledBack, Reason::RolledBack]);
            assert_eq!(
                tab.stored_count(&b),
                1,
                "state lost (the guard's exception), not doubled"
            );
        } else {
            assert_eq!(reasons, []);
            assert_eq!((tab.stored_count(&b), b.applied), (4, 1), "exactly once");
        }
    }
}

/// Encrypted entries (the applied-events entry sealed as the recovery seals): the same.
#[test]
fn with_encrypted_entries_a_kill_still_applies_once() {
    let r = Recovery::builder(ring(&[("k1", 1)]))
        .namespace("test-app")
        .encrypted()
        .build()
        .unwrap();
    for cut in CUTS {
        let mut a = Worker::new(&r, true);
        let mut tab = Tab::default();
        let mut c = connect(&mut tab, &mut a);
        for _ in 0..3 {
            event(&mut tab, &mut a, &mut c, json!({"type": "inc"}));
        }
        let applied = &tab.entries[&r.applied_key().to_string()].1;
        assert_eq!(
            inspect(applied, 1 << 16).unwrap().kind,
            state_recovery::EntryKind::Encrypted
        );
        let text = tab.send(json!({"type": "inc"}));
        let wire = a.handle(&mut c, &text, cut);
        if cut == Cut::None {
            for f in &wire {
                tab.take(f);
            }
        }
        let mut b = Worker::new(&r, true);
        let c = connect(&mut tab, &mut b);
        assert_eq!((c.n, c.rec.applied_seq()), (4, 4), "{cut:?}");
        assert_eq!(b.applied, u64::from(cut != Cut::None), "{cut:?}");
    }
}
