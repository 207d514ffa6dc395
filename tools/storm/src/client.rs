//! The events part of the JS client's `connect()` (client/state-recovery.js), rule for rule:
//! what it does with a server message, when it numbers and keeps what it sends, when it holds
//! a message until `recovered`, and what it resends after `recovered` announces `applied`.
//! The stash (the queue, its caps, `batch`) is [`Stash`]; this is the connection's state
//! around it. Not mirrored: the socket itself (the caller sends the frames returned, on an
//! open socket; `send` on a closed one is the caller's `false`), `send(obj, {resend: false})`
//! (the tool has no such message), and messages that are not plain objects.
//! `tests::agrees_with_the_js_client` drives the same steps through `connect()` under node
//! (with a fake `WebSocket`) and through this, and compares the frames sent and the rest.

use serde_json::Value;

use crate::stash::{safe_uint, Absorbed, EventDropReason, Stash, MAX_EVENTS};

/// What [`Conn::receive`] made of a server message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Received {
    /// Not JSON, or no string `type`: ignored.
    Ignored,
    /// A `salt`, `state` or `drop` message (the stash's).
    Protocol,
    /// `recovered`: the frames to send now, in order (the resent events, then the held
    /// messages), and the `applied` it announced (`None`: events are off on this socket).
    Recovered {
        resend: Vec<String>,
        applied: Option<u64>,
    },
    /// A `batch`: its application messages, or `None` if it was refused whole.
    Batch(Option<Vec<Value>>),
    /// Anything else: the application's (`onMessage`).
    App,
}

/// What [`Conn::send`] did with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Send this text now (numbered if events are on: the stash keeps it until acknowledged).
    Now(String),
    /// Held until `recovered` (then sent: numbered, or not).
    Held,
    /// Refused (`send` returns false): the queue is full (reported to the stash's
    /// `events_dropped`, as `onEventDropped`).
    Refused,
}

/// `connect()`'s per-socket state: `recovered`, `numbered`, `announced` and `held`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Conn {
    /// `recovered` arrived on the current socket.
    recovered: bool,
    /// ... and announced `applied`: messages are numbered and kept.
    numbered: bool,
    /// Some socket announced `applied` (so hold what is sent before `recovered`).
    announced: bool,
    /// Messages sent before `recovered` (JSON texts), in order.
    held: Vec<String>,
}

impl Conn {
    /// A new socket opens (`open()`): not recovered, not numbered (held messages stay).
    pub(crate) fn open(&mut self) {
        self.recovered = false;
        self.numbered = false;
    }

    /// Whether the current socket announced `applied` (messages are numbered).
    pub(crate) const fn numbered(&self) -> bool {
        self.numbered
    }

    /// `send(obj)` on an open socket, `obj` as its JSON text (as `JSON.stringify` writes it).
    pub(crate) fn send(&mut self, stash: &mut Stash, message: &str) -> Sent {
        if !self.recovered && (self.announced || !stash.queue().is_empty()) {
            if self.held.len() + stash.queue().len() >= MAX_EVENTS {
                stash
                    .events_dropped
                    .push((message.to_owned(), EventDropReason::OverEventLimit));
                return Sent::Refused;
            }
            self.held.push(message.to_owned());
            return Sent::Held;
        }
        self.send_now(stash, message)
    }

    /// `sendNow`: numbered and kept when events are on.
    fn send_now(&self, stash: &mut Stash, message: &str) -> Sent {
        if self.numbered {
            return stash.enqueue(message).map_or(Sent::Refused, Sent::Now);
        }
        Sent::Now(message.to_owned())
    }

    /// The socket's `onmessage` with a parsed message.
    pub(crate) fn receive(&mut self, stash: &mut Stash, m: &Value) -> Received {
        let Some(kind) = m.get("type").and_then(Value::as_str) else {
            return Received::Ignored;
        };
        if kind == "batch" {
            return Received::Batch(stash.absorb_batch(m));
        }
        if stash.absorb(m) == Absorbed::Protocol {
            return Received::Protocol;
        }
        if kind != "recovered" {
            return Received::App;
        }
        self.recovered = true;
        // `Number.isSafeInteger(m.applied) && m.applied >= 0`.
        let applied = m.get("applied").and_then(safe_uint);
        self.numbered = applied.is_some();
        let mut resend = Vec::new();
        if let Some(a) = applied {
            self.announced = true;
            // Forget what the restored state already has; resend the rest, in order.
            stash.ack(a);
            resend.extend(stash.queue().iter().map(|(_, text)| text.clone()));
        }
        for message in std::mem::take(&mut self.held) {
            if let Sent::Now(text) = self.send_now(stash, &message) {
                resend.push(text);
            }
        }
        Received::Recovered { resend, applied }
    }

    /// `pending`: messages sent and not yet acknowledged, plus those held (the test compares
    /// it; a tab tracks its one pending event itself).
    #[cfg(test)]
    pub(crate) fn pending(&self, stash: &Stash) -> usize {
        stash.queue().len() + self.held.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(n: u8) -> String {
        format!("{n:032x}")
    }
    const SALT_A: &str = "AAAAAAAAAAAAAAAAAAAAAA";
    const SALT_B: &str = "BBBBBBBBBBBBBBBBBBBBBB";

    fn inc() -> Value {
        json!({"type": "event", "target": "counter", "action": "inc", "value": null})
    }
    fn recovered(applied: Option<u64>) -> Value {
        let mut m = json!({"type": "recovered", "restored": 0, "rejected": 0,
            "limits": {"maxTokenBytes": 65536, "maxBundleBytes": 1_048_576, "maxEntries": 1024}});
        if let Some(a) = applied {
            m["applied"] = json!(a);
        }
        m
    }
    fn batch(seq: u64, rev: u64) -> Value {
        json!({"type": "batch", "seq": seq, "messages": [
            {"type": "state", "key": key(0xaa), "rev": rev, "token": format!("applied{seq}")},
            {"type": "state", "key": key(1), "rev": rev, "token": format!("c{rev}")},
            {"type": "render", "id": "counter", "html": format!("<p data-count=\"{rev}\">")},
        ]})
    }

    /// Steps: `{"open": …}` a new socket (its recover message is its first frame),
    /// `{"recv": m}` a server message, `{"send": obj}` the application sends.
    fn script() -> Vec<Value> {
        let recv = |m: Value| json!({ "recv": m });
        let send = |m: Value| json!({ "send": m });
        let open = || json!({"open": true});
        let big =
            json!({"type": "event", "target": "todos", "action": "add", "value": "x".repeat(2000)});
        let mut v = vec![
            open(),
            // An old server: no `applied`, nothing numbered.
            recv(json!({"type": "salt", "salt": SALT_A})),
            send(inc()),
            recv(recovered(None)),
            send(inc()),
            recv(json!({"type": "state", "key": key(1), "rev": 1, "token": "c1"})),
            open(),
            // Events on: numbered and kept; a batch acknowledges.
            recv(recovered(Some(0))),
            send(inc()),
            recv(batch(1, 2)),
            send(inc()),
            send(inc()),
            recv(batch(2, 3)),
            // The worker dies with event 3 unacknowledged; held before `recovered`.
            open(),
            send(inc()),
            recv(recovered(Some(2))),
            recv(batch(3, 4)),
            recv(batch(4, 5)),
            // A resend the restored state already has: forgotten at `recovered`.
            send(inc()),
            send(inc()),
            open(),
            recv(recovered(Some(5))),
            recv(json!({"type": "batch", "seq": 6, "messages": []})),
            // Malformed batches: refused whole, nothing acknowledged.
            recv(json!({"type": "batch", "seq": 0, "messages": []})),
            recv(json!({"type": "batch", "seq": 6, "messages": {}})),
            recv(
                json!({"type": "batch", "seq": 6, "messages": [{"type": "state", "key": "NOTHEX", "rev": 1, "token": "t"}]}),
            ),
            recv(json!({"type": "batch", "seq": 6, "messages": [{"type": "drop", "key": 7}]})),
            recv(json!({"type": "batch", "seq": 1.5, "messages": []})),
            // A drop, a state re-added after its drop, odd items, protocol types skipped.
            recv(json!({"type": "batch", "seq": 6, "messages": [
                {"type": "drop", "key": key(1)}, 7, null, [1], {"type": 5},
                {"type": "salt", "salt": SALT_B}, {"type": "render", "id": "todos"},
                {"type": "drop", "key": key(0xaa)},
                {"type": "state", "key": key(0xaa), "rev": 9, "token": "again"}]})),
            // Above the counter: acknowledges, raises it.
            recv(json!({"type": "batch", "seq": 40, "messages": []})),
            send(inc()),
            // An application message and an unknown one.
            recv(json!({"type": "worker", "id": "w2"})),
            recv(json!({"type": 3})),
            // `applied` that is not a safe integer: events off on this socket.
            open(),
            recv(json!({"type": "recovered", "applied": -1})),
            send(inc()),
            open(),
            recv(json!({"type": "recovered", "applied": 2.5})),
            open(),
            recv(recovered(Some(41))),
        ];
        // The byte cap: 1 MiB of ~2 kB events (about 510 fit), then refused.
        for _ in 0..520 {
            v.push(send(big.clone()));
        }
        // The count cap, with held messages: a socket that is not recovered yet.
        v.push(open());
        for _ in 0..520 {
            v.push(send(inc()));
        }
        v.push(recv(recovered(Some(0))));
        // Everything acknowledged (the counter raised), then the count cap.
        v.push(recv(
            json!({"type": "batch", "seq": 100_000, "messages": []}),
        ));
        for _ in 0..1030 {
            v.push(send(inc()));
        }
        // A new salt drops the queue.
        v.push(open());
        v.push(recv(json!({"type": "salt", "salt": SALT_B})));
        v.push(recv(recovered(Some(0))));
        v.push(send(inc()));
        v
    }

    /// After each step: the frames sent on the socket, what `send` returned, the application
    /// messages, `pending`, the queue, the counter, the drops so far.
    fn run_rust(steps: &[Value]) -> Vec<Value> {
        let mut stash = Stash::new();
        let mut conn = Conn::default();
        let (mut ev_seen, mut seen) = (0, 0);
        steps
            .iter()
            .map(|step| {
                let mut frames = Vec::new();
                let mut sent = Value::Null;
                let mut app = Vec::new();
                if step.get("open").is_some() {
                    conn.open();
                    frames.push(stash.bundle());
                } else if let Some(m) = step.get("recv") {
                    match conn.receive(&mut stash, m) {
                        Received::Recovered { resend, .. } => frames = resend,
                        Received::Batch(got) => app = got.unwrap_or_default(),
                        Received::App => app.push(m.clone()),
                        Received::Protocol | Received::Ignored => {}
                    }
                } else if let Some(m) = step.get("send") {
                    let r = conn.send(&mut stash, &m.to_string());
                    if let Sent::Now(text) = &r {
                        frames.push(text.clone());
                    }
                    sent = json!(r != Sent::Refused);
                }
                let queue: Vec<u64> = stash.queue().iter().map(|(s, _)| *s).collect();
                let queue_bytes: usize = stash.queue().iter().map(|(_, t)| t.len()).sum();
                let ev_dropped: Vec<Value> = stash.events_dropped[ev_seen..]
                    .iter()
                    .map(|(m, r)| json!([serde_json::from_str::<Value>(m).unwrap(), r.as_str()]))
                    .collect();
                ev_seen = stash.events_dropped.len();
                let dropped: Vec<Value> = stash.dropped[seen..]
                    .iter()
                    .map(|(k, r)| json!([k, r.as_str()]))
                    .collect();
                seen = stash.dropped.len();
                json!({"frames": frames, "sent": sent, "app": app, "pending": conn.pending(&stash),
                       "next": stash.next_seq(), "queue": queue, "queueBytes": queue_bytes,
                       "eventsDropped": ev_dropped, "dropped": dropped})
            })
            .collect()
    }

    /// The same steps through the JS client's own `connect()` (node, a fake `WebSocket`),
    /// compared after each one.
    #[test]
    fn agrees_with_the_js_client() {
        let steps = script();
        let client = crate::stash::tests::JS_CLIENT;
        let program = format!(
            r#"
const {{ connect }} = await import({client:?});
const sockets = [];
globalThis.WebSocket = class {{
  constructor(url) {{ this.url = url; this.readyState = 0; this.sent = []; sockets.push(this); }}
  send(text) {{ if (this.readyState != 1) throw new Error("not open"); this.sent.push(text); }}
  close() {{ this.readyState = 3; }}
}};
const m = new Map();
const storage = {{ getItem: (k) => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, String(v)), removeItem: (k) => m.delete(k) }};
const dropped = [];
const eventsDropped = [];
let app = [];
const live = connect({{ url: "ws://127.0.0.1:9/ws", storage, input: () => ({{}}),
  onDropped: (k, r) => dropped.push([k, r]), onEventDropped: (msg, r) => eventsDropped.push([msg, r]),
  onMessage: (msg) => app.push(msg) }});
const out = [];
let first = true;
for (const step of {steps}) {{
  let sent = null;
  app = [];
  if (step.open) {{
    if (!first) live.reconnect();
    first = false;
    const s = sockets[sockets.length - 1];
    s.readyState = 1;
    s.onopen();
  }} else if (step.recv !== undefined) {{
    sockets[sockets.length - 1].onmessage({{ data: JSON.stringify(step.recv) }});
  }} else if (step.send !== undefined) {{
    sent = live.send(step.send);
  }}
  await null; // the end of the turn: the events are written
  const s = sockets[sockets.length - 1];
  const frames = s.sent.splice(0);
  const ev = live.stash.events;
  const queueBytes = ev.queue.reduce((n, e) => n + new TextEncoder().encode(e[1]).length, 0);
  out.push({{ frames, sent, app, pending: live.pending, next: ev.next, queue: ev.queue.map((e) => e[0]),
    queueBytes, eventsDropped: eventsDropped.splice(0), dropped: dropped.splice(0) }});
}}
live.close();
console.log(JSON.stringify(out));
"#,
            steps = Value::Array(steps.clone())
        );
        let Some(js) = crate::stash::tests::run_node(&program) else {
            return;
        };
        let rust = run_rust(&steps);
        assert_eq!(js.len(), rust.len());
        for (i, (j, r)) in js.iter().zip(&rust).enumerate() {
            assert_eq!(j, r, "after step {i}: {}", steps[i]);
        }
        // The script reaches both caps and the salt change.
        let reasons: Vec<&str> = rust
            .iter()
            .flat_map(|r| r["eventsDropped"].as_array().unwrap().iter())
            .filter_map(|d| d[1].as_str())
            .collect();
        assert!(reasons.contains(&"over-event-limit") && reasons.contains(&"salt-changed"));
        assert!(rust
            .iter()
            .any(|r| r["queue"].as_array().unwrap().len() == MAX_EVENTS));
    }
}
