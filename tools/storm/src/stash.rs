//! The JS client's `Stash` (client/state-recovery.js), rule for rule: the salt, the newest
//! token per state key (least recently updated first), the server's announced limits, the
//! local caps, the recover message, and the events exactly once (the sequence counter, the
//! unacknowledged events as the exact text sent, their caps of 1,024 events and 1 MiB, a
//! `batch` taken in whole or not at all). Differences: it lives in memory as typed values, not
//! as JSON strings in Web Storage, so the storage failures of the JS client (`storage-failed`,
//! a batch not acknowledged because its write failed) cannot happen; and there is no form
//! input (the harnesses' `input: () => ({})`). `tests::agrees_with_the_js_stash` runs the
//! same messages through both and compares; `crate::client`'s test does the same for the
//! events through `connect()`.

use serde_json::Value;

/// `DEFAULT_LIMITS` of the JS client (the crate's `Limits` defaults; compared in a test).
pub(crate) const DEFAULT_LIMITS: Limits = Limits {
    max_token_bytes: 65_536,
    max_bundle_bytes: 1_048_576,
    max_entries: 1_024,
};

/// The JS `Stash`'s own caps when none are given: `maxEntries`, `maxBytes`, `maxTokenBytes`.
const LOCAL_MAX_ENTRIES: usize = 256;
const LOCAL_MAX_BYTES: usize = 524_288;
const LOCAL_MAX_TOKEN: usize = 65_536;

/// The JS `Stash`'s event caps when none are given: `maxEvents`, `maxEventBytes` (UTF-8 bytes
/// of the texts kept).
pub(crate) const MAX_EVENTS: usize = 1_024;
const MAX_EVENT_BYTES: usize = 1_048_576;

/// `Number.MAX_SAFE_INTEGER`.
const MAX_SAFE: u64 = (1 << 53) - 1;

/// The server's limits, as announced in `recovered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max_token_bytes: usize,
    pub(crate) max_bundle_bytes: usize,
    pub(crate) max_entries: usize,
}

/// One stored entry: `[key, rev, token]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) rev: u64,
    pub(crate) token: String,
}

/// Why an entry was dropped or refused (the JS client's `onDropped` reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    TokenTooLarge,
    OverEntryLimit,
    OverByteLimit,
    ServerDrop,
    SaltChanged,
}

impl DropReason {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::TokenTooLarge => "token-too-large",
            Self::OverEntryLimit => "over-entry-limit",
            Self::OverByteLimit => "over-byte-limit",
            Self::ServerDrop => "server-drop",
            Self::SaltChanged => "salt-changed",
        }
    }
}

/// Why an event was refused or dropped (the JS client's `onEventDropped` reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventDropReason {
    /// The queue is full (1,024 events or 1 MiB of text): refused, not sent.
    OverEventLimit,
    /// A new salt wiped the stash: the state the events applied to is gone.
    SaltChanged,
}

impl EventDropReason {
    /// The JS client's reason (the test compares them).
    #[cfg(test)]
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::OverEventLimit => "over-event-limit",
            Self::SaltChanged => "salt-changed",
        }
    }

    /// The reason as the run's tally of drops names it (beside the entries' reasons).
    pub(crate) const fn tally(self) -> &'static str {
        match self {
            Self::OverEventLimit => "event-over-event-limit",
            Self::SaltChanged => "event-salt-changed",
        }
    }
}

/// What [`Stash::absorb`] made of a server message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Absorbed {
    /// A `salt`, `state` or `drop` message (valid or not): never the application's.
    Protocol,
    /// Anything else (`recovered` included: its limits are kept, the rest is the caller's).
    Other,
}

/// The salt, the entries and the limits of one tab (`sessionStorage` in the browser).
#[derive(Debug, Default, Clone)]
pub(crate) struct Stash {
    salt: Option<String>,
    entries: Vec<Entry>,
    limits: Option<Limits>,
    /// Every `onDropped(key, reason)` call, in order.
    pub(crate) dropped: Vec<(String, DropReason)>,
    /// `events.next`: the last sequence number given (0: none); it only goes up.
    next: u64,
    /// `events.queue`: the unacknowledged events as (seq, the exact text sent), oldest first.
    queue: Vec<(u64, String)>,
    /// `evBytes`: the UTF-8 bytes of the queue's texts.
    queue_bytes: usize,
    /// Every `onEventDropped(message, reason)` call, in order (the message as JSON text).
    pub(crate) events_dropped: Vec<(String, EventDropReason)>,
}

// `KEY`, `SALT`, `TOKEN` and `valid` of the JS client.
fn is_key(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}
fn is_salt(s: &str) -> bool {
    s.len() == 22 && s.bytes().all(is_b64url)
}
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_b64url)
}

/// `Number.isSafeInteger(x) && x >= 0` for a JSON number.
pub(crate) fn safe_uint(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return (n <= MAX_SAFE).then_some(n);
    }
    let f = v.as_f64()?;
    // 2.0 is an integer to JS; -0.0 too.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = f as u64;
    #[allow(clippy::cast_precision_loss)]
    let exact = f.fract() == 0.0 && f >= 0.0 && n <= MAX_SAFE && n as f64 == f;
    exact.then_some(n)
}

/// `checkLimits`: all three positive safe integers, or none.
fn check_limits(l: &Value) -> Option<Limits> {
    let get = |k: &str| {
        let n = safe_uint(l.get(k)?)?;
        if n < 1 {
            return None;
        }
        usize::try_from(n).ok()
    };
    Some(Limits {
        max_token_bytes: get("maxTokenBytes")?,
        max_bundle_bytes: get("maxBundleBytes")?,
        max_entries: get("maxEntries")?,
    })
}

/// `JSON.stringify` of a string without characters that need escaping (salts and tokens are
/// base64url), or of `null`.
fn json_str(s: Option<&str>) -> String {
    s.map_or_else(|| "null".to_owned(), |s| format!("\"{s}\""))
}

impl Stash {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn salt(&self) -> Option<&str> {
        self.salt.as_deref()
    }

    /// Entries, least recently updated first.
    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The stored revision for `key`, if any.
    pub(crate) fn rev(&self, key: &str) -> Option<u64> {
        self.entries.iter().find(|e| e.key == key).map(|e| e.rev)
    }

    /// `get limits`.
    pub(crate) fn limits(&self) -> Limits {
        self.limits.unwrap_or(DEFAULT_LIMITS)
    }

    /// `get caps`: (maxTokenBytes, maxEntries, maxBundleBytes).
    fn caps(&self) -> (usize, usize, usize) {
        let l = self.limits();
        (
            LOCAL_MAX_TOKEN.min(l.max_token_bytes),
            LOCAL_MAX_ENTRIES.min(l.max_entries),
            l.max_bundle_bytes,
        )
    }

    /// `message(entries, input)` as JSON text, exactly as `JSON.stringify` writes it.
    fn message_text(&self, tokens: &[&str], input: &str) -> String {
        let mut s = String::with_capacity(64 + tokens.iter().map(|t| t.len() + 3).sum::<usize>());
        s.push_str(r#"{"type":"recover","salt":"#);
        s.push_str(&json_str(self.salt()));
        s.push_str(r#","entries":["#);
        for (i, t) in tokens.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push('"');
            s.push_str(t);
            s.push('"');
        }
        s.push_str(r#"],"input":"#);
        s.push_str(input);
        s.push('}');
        s
    }

    /// `fit(list)`: the newest entries within the caps, and why each other key goes.
    fn fit(&self, list: &[Entry]) -> (Vec<Entry>, Vec<(String, DropReason)>) {
        let (max_token, max_entries, max_bundle) = self.caps();
        let mut keep = Vec::new();
        let mut why: Vec<(String, DropReason)> = Vec::new();
        // bytes for the entries' tokens (may be negative in JS: a tiny maxBundleBytes)
        let space = i64::try_from(max_bundle).unwrap_or(i64::MAX)
            - i64::try_from(self.message_text(&[], "{}").len()).unwrap_or(0);
        let mut room = space;
        let mut bytes = 0_usize;
        let mut full: Option<DropReason> = None;
        for e in list.iter().rev() {
            let n = e.token.len();
            let n64 = i64::try_from(n).unwrap_or(i64::MAX);
            let set = |why: &mut Vec<(String, DropReason)>, r| {
                // `why.set(key, r)`: the last write for a key wins.
                why.retain(|(k, _)| *k != e.key);
                why.push((e.key.clone(), r));
            };
            if n > max_token {
                set(&mut why, DropReason::TokenTooLarge);
            } else if n > LOCAL_MAX_BYTES || n64 + 2 > space {
                set(&mut why, DropReason::OverByteLimit);
            } else {
                if full.is_none() && keep.len() >= max_entries {
                    full = Some(DropReason::OverEntryLimit);
                }
                if full.is_none() {
                    bytes += n;
                    if bytes > LOCAL_MAX_BYTES {
                        full = Some(DropReason::OverByteLimit);
                    } else {
                        room -= n64 + 2 + i64::from(!keep.is_empty());
                        if room < 0 {
                            full = Some(DropReason::OverByteLimit);
                        }
                    }
                }
                match full {
                    Some(r) => set(&mut why, r),
                    None => keep.push(e.clone()),
                }
            }
        }
        keep.reverse();
        (keep, why)
    }

    /// `write(list)`: keeps what fits; reports every entry of `list` not kept.
    fn write(&mut self, list: Vec<Entry>) {
        let (keep, why) = self.fit(&list);
        for e in &list {
            if !keep.iter().any(|k| k.token == e.token) {
                let r = why
                    .iter()
                    .find(|(k, _)| *k == e.key)
                    .map_or(DropReason::OverByteLimit, |(_, r)| *r);
                self.dropped.push((e.key.clone(), r));
            }
        }
        self.entries = keep;
    }

    /// `trim()`: drops what no longer fits; the entries that do.
    fn trim(&mut self) -> Vec<Entry> {
        let list = self.entries.clone();
        let (keep, _) = self.fit(&list);
        if keep.len() < list.len() {
            self.write(list);
        }
        keep
    }

    /// `absorb(m)`.
    pub(crate) fn absorb(&mut self, m: &Value) -> Absorbed {
        let Some(kind) = m.get("type").and_then(Value::as_str) else {
            return Absorbed::Other;
        };
        match kind {
            "salt" => {
                if let Some(salt) = m.get("salt").and_then(Value::as_str) {
                    if is_salt(salt) && Some(salt) != self.salt() {
                        self.drop_events(EventDropReason::SaltChanged);
                        let wiped = std::mem::take(&mut self.entries);
                        self.salt = None;
                        for e in wiped {
                            self.dropped.push((e.key, DropReason::SaltChanged));
                        }
                        self.salt = Some(salt.to_owned());
                    }
                }
                Absorbed::Protocol
            }
            "recovered" => {
                if let Some(l) = m.get("limits").and_then(check_limits) {
                    self.limits = Some(l);
                    self.trim();
                }
                Absorbed::Other
            }
            "drop" => {
                let key = m.get("key");
                let before = self.entries.len();
                let rest: Vec<Entry> = self
                    .entries
                    .iter()
                    .filter(|e| key.and_then(Value::as_str) != Some(e.key.as_str()))
                    .cloned()
                    .collect();
                if rest.len() < before {
                    self.write(rest);
                    if let Some(k) = key.and_then(Value::as_str) {
                        if !self.entries.iter().any(|e| e.key == k) {
                            self.dropped.push((k.to_owned(), DropReason::ServerDrop));
                        }
                    }
                }
                Absorbed::Protocol
            }
            "state" => {
                let key = m.get("key").and_then(Value::as_str);
                let rev = m.get("rev").and_then(safe_uint);
                let token = m.get("token").and_then(Value::as_str);
                if let (Some(key), Some(rev), Some(token)) = (key, rev, token) {
                    if is_key(key) && is_token(token) {
                        self.absorb_state(key, rev, token);
                    }
                }
                Absorbed::Protocol
            }
            _ => Absorbed::Other,
        }
    }

    fn absorb_state(&mut self, key: &str, rev: u64, token: &str) {
        let mut list = self.entries.clone();
        if self.merge(&mut list, key, rev, token) {
            self.write(list);
        }
    }

    /// `merge(list, m)`: puts a valid state update into `list`; false if it changes nothing
    /// (an older revision) or is refused (too large even alone: reported).
    fn merge(&mut self, list: &mut Vec<Entry>, key: &str, rev: u64, token: &str) -> bool {
        let i = list.iter().position(|e| e.key == key);
        // Highest revision wins; an equal one replaces.
        if i.is_some_and(|i| list.get(i).is_some_and(|e| e.rev > rev)) {
            return false;
        }
        let entry = Entry {
            key: key.to_owned(),
            rev,
            token: token.to_owned(),
        };
        let (_, why) = self.fit(std::slice::from_ref(&entry));
        if let Some((_, r)) = why.into_iter().find(|(k, _)| k == key) {
            self.dropped.push((key.to_owned(), r));
            return false;
        }
        if let Some(i) = i {
            list.remove(i);
        }
        list.push(entry);
        true
    }

    /// `events.next`: the last sequence number given.
    pub(crate) const fn next_seq(&self) -> u64 {
        self.next
    }

    /// `events.queue`: the unacknowledged events, (seq, text sent), oldest first.
    pub(crate) fn queue(&self) -> &[(u64, String)] {
        &self.queue
    }

    /// `enqueue(message)`: numbers `message` (the JSON text of a plain object, as
    /// `JSON.stringify` writes it, without a `$seq` field) with the next sequence, keeps it,
    /// and returns the text to send (`{...message, "$seq": n}`: the field last); `None` when it
    /// does not fit the caps (reported as `over-event-limit`).
    pub(crate) fn enqueue(&mut self, message: &str) -> Option<String> {
        let body = message.trim_end().strip_suffix('}').unwrap_or(message);
        let seq = self.next.saturating_add(1);
        let sep = if body.trim_end().ends_with('{') {
            ""
        } else {
            ","
        };
        let text = format!(r#"{body}{sep}"$seq":{seq}}}"#);
        let n = text.len();
        if self.queue.len() >= MAX_EVENTS
            || self.queue_bytes + n > MAX_EVENT_BYTES
            || self.next >= MAX_SAFE
        {
            self.events_dropped
                .push((message.to_owned(), EventDropReason::OverEventLimit));
            return None;
        }
        self.next = seq;
        self.queue.push((seq, text.clone()));
        self.queue_bytes += n;
        Some(text)
    }

    /// `ack(seq)`: forgets the events up to `seq` (acknowledged, or already in the restored
    /// state); the counter is raised to `seq`.
    pub(crate) fn ack(&mut self, seq: u64) {
        if seq > MAX_SAFE {
            return;
        }
        let i = self.queue.iter().take_while(|(s, _)| *s <= seq).count();
        for (_, text) in self.queue.drain(..i) {
            self.queue_bytes -= text.len();
        }
        self.next = self.next.max(seq);
    }

    /// `dropEvents(reason)`: drops every unacknowledged event, reporting each.
    fn drop_events(&mut self, reason: EventDropReason) {
        self.queue_bytes = 0;
        for (_, text) in std::mem::take(&mut self.queue) {
            self.events_dropped.push((text, reason));
        }
    }

    /// `absorbBatch(m)`: everything one event caused, all or nothing. Checked whole first (a
    /// `seq` that is not a safe integer ≥ 1, `messages` not an array, a malformed `state` or
    /// `drop` in it: `None`, nothing taken, nothing acknowledged); then its `state` and
    /// `drop` messages go into the entries in one write, the events up to `seq` are
    /// acknowledged, and the application's messages come back, in order.
    pub(crate) fn absorb_batch(&mut self, m: &Value) -> Option<Vec<Value>> {
        let seq = m.get("seq").and_then(safe_uint).filter(|s| *s >= 1)?;
        let items = m.get("messages")?.as_array()?;
        // `x.type == "state"`: a string type (the JS `==` of another type is not mirrored).
        let kind = |x: &Value| x.get("type").and_then(Value::as_str).map(str::to_owned);
        for x in items {
            match kind(x).as_deref() {
                Some("state") => {
                    let key = x.get("key").and_then(Value::as_str);
                    let rev = x.get("rev").and_then(safe_uint);
                    let token = x.get("token").and_then(Value::as_str);
                    if !(key.is_some_and(is_key) && rev.is_some() && token.is_some_and(is_token)) {
                        return None;
                    }
                }
                Some("drop") if !x.get("key").and_then(Value::as_str).is_some_and(is_key) => {
                    return None;
                }
                _ => {}
            }
        }
        let mut app = Vec::new();
        let mut list = self.entries.clone();
        let mut dropped = Vec::new();
        let mut changed = false;
        for x in items {
            match kind(x).as_deref() {
                None => {}
                Some("state") => {
                    if let (Some(key), Some(rev), Some(token)) = (
                        x.get("key").and_then(Value::as_str),
                        x.get("rev").and_then(safe_uint),
                        x.get("token").and_then(Value::as_str),
                    ) {
                        changed = self.merge(&mut list, key, rev, token) || changed;
                    }
                }
                Some("drop") => {
                    let key = x.get("key").and_then(Value::as_str).unwrap_or_default();
                    if let Some(i) = list.iter().position(|e| e.key == key) {
                        list.remove(i);
                        if !dropped.iter().any(|k| k == key) {
                            dropped.push(key.to_owned());
                        }
                        changed = true;
                    }
                }
                Some("salt" | "recovered" | "batch") => {}
                Some(_) => app.push(x.clone()),
            }
        }
        if changed {
            self.write(list);
            for key in dropped {
                if !self.entries.iter().any(|e| e.key == key) {
                    self.dropped.push((key, DropReason::ServerDrop));
                }
            }
        }
        self.ack(seq);
        Some(app)
    }

    /// `bundle({})`: the recover message as sent (no form input).
    pub(crate) fn bundle(&mut self) -> String {
        let kept = self.trim();
        let tokens: Vec<&str> = kept.iter().map(|e| e.token.as_str()).collect();
        // The input is `{}` already: nothing to drop if the message is too large.
        self.message_text(&tokens, "{}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    fn key(n: u8) -> String {
        format!("{n:032x}")
    }
    const SALT_A: &str = "AAAAAAAAAAAAAAAAAAAAAA";
    const SALT_B: &str = "BBBBBBBBBBBBBBBBBBBBBB";

    /// Messages that exercise every rule: salt, ordering, equal and lower revisions, drop,
    /// a salt change, announced limits that trim, a token too large, a tiny bundle cap.
    fn script() -> Vec<Value> {
        let big = "x".repeat(300);
        vec![
            json!({"type": "state", "key": key(9), "rev": 1, "token": "early"}),
            json!({"type": "salt", "salt": SALT_A}),
            json!({"type": "state", "key": key(1), "rev": 1, "token": "a1"}),
            json!({"type": "state", "key": key(2), "rev": 1, "token": "b1"}),
            json!({"type": "state", "key": key(3), "rev": 4, "token": "c4"}),
            json!({"type": "state", "key": key(1), "rev": 2, "token": "a2"}),
            json!({"type": "state", "key": key(2), "rev": 1, "token": "b1r"}),
            json!({"type": "state", "key": key(3), "rev": 3, "token": "c3"}),
            json!({"type": "state", "key": "NOTHEX", "rev": 1, "token": "z"}),
            json!({"type": "state", "key": key(4), "rev": -1, "token": "z"}),
            json!({"type": "state", "key": key(4), "rev": 1.5, "token": "z"}),
            json!({"type": "state", "key": key(4), "rev": 2.0, "token": "d2"}),
            json!({"type": "state", "key": key(5), "rev": 1, "token": "bad token"}),
            json!({"type": "drop", "key": key(2)}),
            json!({"type": "drop", "key": key(7)}),
            json!({"type": "recovered", "restored": 1, "rejected": 0,
                   "limits": {"maxTokenBytes": 100, "maxBundleBytes": 4096, "maxEntries": 2}}),
            json!({"type": "state", "key": key(6), "rev": 1, "token": big}),
            json!({"type": "state", "key": key(5), "rev": 1, "token": "e1"}),
            json!({"type": "recovered", "limits": {"maxTokenBytes": 0, "maxBundleBytes": 1, "maxEntries": 1}}),
            json!({"type": "recovered", "limits": {"maxTokenBytes": 100, "maxBundleBytes": 80, "maxEntries": 9}}),
            json!({"type": "state", "key": key(8), "rev": 1, "token": "f1"}),
            json!({"type": "salt", "salt": SALT_A}),
            json!({"type": "salt", "salt": "short"}),
            json!({"type": "render", "id": "counter"}),
            json!({"type": "salt", "salt": SALT_B}),
            json!({"type": "state", "key": key(1), "rev": 9, "token": "a9"}),
            // Room for exactly 24 bytes of tokens: two of 10 need 25 (quotes and a comma).
            json!({"type": "recovered", "limits": {"maxTokenBytes": 100, "maxBundleBytes": 74 + 24, "maxEntries": 9}}),
            json!({"type": "state", "key": key(2), "rev": 1, "token": "bbbbbbbbbb"}),
            json!({"type": "state", "key": key(3), "rev": 1, "token": "cccccccccc"}),
            json!({"type": "state", "key": key(4), "rev": 1, "token": "dddddddd"}),
            json!({"type": "state", "key": key(5), "rev": 1, "token": "e".repeat(22)}),
            json!({"type": "state", "key": key(6), "rev": 1, "token": "f".repeat(23)}),
        ]
    }

    /// After each message: (absorbed as protocol, the bundle, the drops so far).
    fn run_rust(msgs: &[Value]) -> Vec<Value> {
        let mut s = Stash::new();
        msgs.iter()
            .map(|m| {
                let proto = s.absorb(m) == Absorbed::Protocol;
                let bundle: Value = serde_json::from_str(&s.bundle()).unwrap();
                let dropped: Vec<Value> = s
                    .dropped
                    .iter()
                    .map(|(k, r)| json!([k, r.as_str()]))
                    .collect();
                json!({"protocol": proto, "bundle": bundle, "dropped": dropped})
            })
            .collect()
    }

    #[test]
    fn follows_the_revision_rules() {
        let mut s = Stash::new();
        for m in script().iter().take(8) {
            s.absorb(m);
        }
        let got: Vec<(String, u64, &str)> = s
            .entries()
            .iter()
            .map(|e| (e.key.clone(), e.rev, e.token.as_str()))
            .collect();
        // b1r replaced b1 in place of recency (moved last), c3 < c4 ignored.
        assert_eq!(
            got,
            [(key(3), 4, "c4"), (key(1), 2, "a2"), (key(2), 1, "b1r")]
        );
        assert_eq!(
            s.bundle(),
            format!(
                r#"{{"type":"recover","salt":"{SALT_A}","entries":["c4","a2","b1r"],"input":{{}}}}"#
            )
        );
        // The entry stored before the salt was wiped by it.
        assert_eq!(s.dropped, [(key(9), DropReason::SaltChanged)]);
    }

    #[test]
    fn a_fresh_tab_sends_a_null_salt() {
        assert_eq!(
            Stash::new().bundle(),
            r#"{"type":"recover","salt":null,"entries":[],"input":{}}"#
        );
    }

    /// The same messages through the JS client's own `Stash` (node), compared after each one.
    #[test]
    fn agrees_with_the_js_stash() {
        let msgs = script();
        let client = JS_CLIENT;
        let program = format!(
            r#"
const {{ Stash }} = await import({client:?});
const m = new Map();
const storage = {{ getItem: (k) => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, String(v)), removeItem: (k) => m.delete(k) }};
const dropped = [];
const s = new Stash({{ storage, onDropped: (k, r) => dropped.push([k, r]) }});
const out = [];
for (const msg of {msgs}) {{
  const protocol = s.absorb(msg);
  const bundle = s.bundle({{}});
  out.push({{ protocol, bundle, dropped: [...dropped] }});
}}
console.log(JSON.stringify(out));
"#,
            msgs = Value::Array(msgs.clone())
        );
        let Some(js) = run_node(&program) else {
            return;
        };
        let rust = run_rust(&msgs);
        assert_eq!(js.len(), rust.len());
        for (i, (j, r)) in js.iter().zip(&rust).enumerate() {
            assert_eq!(j, r, "after message {i}: {}", msgs[i]);
        }
    }

    /// The JS client, for the tests that compare with it.
    pub(crate) const JS_CLIENT: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../client/state-recovery.js"
    );

    /// Runs `program` (an ES module, on stdin: it may be over the 128 KiB an argument may take)
    /// under node and parses the JSON it prints; `None` (skipped) when node is missing outside
    /// CI.
    pub(crate) fn run_node(program: &str) -> Option<Vec<Value>> {
        let Ok(node) = std::process::Command::new("node").arg("--version").output() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "node is needed for this test in CI"
            );
            eprintln!("skipped: node not found");
            return None;
        };
        assert!(node.status.success());
        let mut child = std::process::Command::new("node")
            .arg("--input-type=module")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(program.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(serde_json::from_slice(&out.stdout).unwrap())
    }
}
