//! Server → client messages of the wire protocol.

use std::fmt;

use serde::ser::{SerializeSeq, SerializeStruct, Serializer};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::key::StateKey;
use crate::secret::Salt;
use crate::token::Token;

/// `{"type":"salt","salt":"<22 chars>"}`: a fresh salt for a client that had none (or sent one
/// that was not valid). The client keeps it and sends it back with its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaltMessage {
    salt: Salt,
}

impl SaltMessage {
    /// The message for `salt`.
    #[must_use]
    pub const fn new(salt: Salt) -> Self {
        Self { salt }
    }

    /// The salt.
    #[must_use]
    pub fn salt(&self) -> &Salt {
        &self.salt
    }

    /// The JSON text.
    #[must_use]
    pub fn to_json(&self) -> String {
        to_json(self)
    }
}

impl Serialize for SaltMessage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("SaltMessage", 2)?;
        m.serialize_field("type", "salt")?;
        m.serialize_field("salt", &self.salt.encode())?;
        m.end()
    }
}

/// `{"type":"state","key":"<32 hex>","rev":N,"token":"<token>"}`: one sealed update. The
/// client keeps the token with the highest `rev` per key and sends them all back on
/// reconnect. Made by [`RecoveryContext::seal`](super::RecoveryContext::seal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateUpdate {
    key: StateKey,
    rev: u64,
    token: Token,
}

impl StateUpdate {
    pub(crate) const fn new(key: StateKey, rev: u64, token: Token) -> Self {
        Self { key, rev, token }
    }

    /// The state key.
    #[must_use]
    pub const fn key(&self) -> StateKey {
        self.key
    }

    /// The revision.
    #[must_use]
    pub const fn rev(&self) -> u64 {
        self.rev
    }

    /// The token.
    #[must_use]
    pub const fn token(&self) -> &Token {
        &self.token
    }

    /// The JSON text.
    #[must_use]
    pub fn to_json(&self) -> String {
        to_json(self)
    }
}

impl Serialize for StateUpdate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("StateUpdate", 4)?;
        m.serialize_field("type", "state")?;
        m.serialize_field("key", &self.key.to_string())?;
        m.serialize_field("rev", &self.rev)?;
        m.serialize_field("token", self.token.as_str())?;
        m.end()
    }
}

/// `{"type":"recovered","restored":N,"rejected":M,"limits":{...}}`: sent once per connection
/// after the reconnect message was processed and the application restored its state. Counts
/// only: the client never learns why an entry was rejected. `restored` counts the entries the
/// application used; every other entry of the message is `rejected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename = "recovered")]
pub struct RecoveredMessage {
    /// Entries restored (used by the application).
    pub restored: usize,
    /// Entries rejected, or unused; a message refused whole counts as one.
    pub rejected: usize,
    /// The limits the client must keep its reconnect message within.
    pub limits: LimitsMessage,
    /// `"applied":N`, only on a connection that tracks events
    /// ([`Endpoint::with_events`](super::Endpoint::with_events)) and can seal: the last event
    /// sequence the restored state has applied (0: none recorded). Its presence tells the
    /// client that the server drops events it already applied, so the client numbers its
    /// messages and resends the unacknowledged ones above `N`; without it the client sends
    /// messages unnumbered, as before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<u64>,
}

/// The limits announced in [`RecoveredMessage`]: `{"maxTokenBytes":..,"maxBundleBytes":..,
/// "maxEntries":..}`. The JS client never stores a longer token and never sends a longer or
/// fuller reconnect message (it drops its oldest entries first and reports each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitsMessage {
    /// [`Limits::max_token_bytes`](crate::Limits::max_token_bytes).
    pub max_token_bytes: usize,
    /// [`Limits::max_bundle_bytes`](crate::Limits::max_bundle_bytes).
    pub max_bundle_bytes: usize,
    /// [`Limits::max_entries`](crate::Limits::max_entries).
    pub max_entries: usize,
}

impl From<&crate::Limits> for LimitsMessage {
    fn from(l: &crate::Limits) -> Self {
        Self {
            max_token_bytes: l.max_token_bytes(),
            max_bundle_bytes: l.max_bundle_bytes(),
            max_entries: l.max_entries(),
        }
    }
}

/// `{"type":"drop","key":"<32 hex>"}`: the client should forget its entry for `key`. Sent for
/// entries rejected as `expired`, which can never open again, so a tab that was away longer
/// than the window stops resending dead tokens. Nothing else is ever dropped this way: an
/// entry another worker might still open (an unknown key id during a ring roll-out, a clock
/// ahead) stays with the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropMessage {
    key: StateKey,
}

impl DropMessage {
    /// The message for `key`.
    #[must_use]
    pub const fn new(key: StateKey) -> Self {
        Self { key }
    }

    /// The state key.
    #[must_use]
    pub const fn key(&self) -> StateKey {
        self.key
    }
}

impl Serialize for DropMessage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("DropMessage", 2)?;
        m.serialize_field("type", "drop")?;
        m.serialize_field("key", &self.key.to_string())?;
        m.end()
    }
}

impl RecoveredMessage {
    /// The JSON text.
    #[must_use]
    pub fn to_json(&self) -> String {
        to_json(self)
    }
}

/// Any message this crate sends. Serializes to the variant's own JSON form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum ServerMessage {
    /// `{"type":"salt",...}`
    Salt(SaltMessage),
    /// `{"type":"state",...}`
    State(StateUpdate),
    /// `{"type":"recovered",...}`
    Recovered(RecoveredMessage),
    /// `{"type":"drop",...}`
    Drop(DropMessage),
    /// `{"type":"batch",...}`
    Batch(Batch),
}

impl ServerMessage {
    /// The JSON text.
    #[must_use]
    pub fn to_json(&self) -> String {
        to_json(self)
    }
}

impl From<SaltMessage> for ServerMessage {
    fn from(m: SaltMessage) -> Self {
        Self::Salt(m)
    }
}

impl From<StateUpdate> for ServerMessage {
    fn from(m: StateUpdate) -> Self {
        Self::State(m)
    }
}

impl From<RecoveredMessage> for ServerMessage {
    fn from(m: RecoveredMessage) -> Self {
        Self::Recovered(m)
    }
}

impl From<DropMessage> for ServerMessage {
    fn from(m: DropMessage) -> Self {
        Self::Drop(m)
    }
}

impl From<Batch> for ServerMessage {
    fn from(m: Batch) -> Self {
        Self::Batch(m)
    }
}

/// `{"type":"batch","seq":N,"messages":[...]}`: everything one event caused, in **one frame**,
/// which the client stores all or nothing in one handler run: the sealed updates (state and
/// drop messages, the applied-events entry among them) and the application's own messages
/// (renders), in order. Its `seq` acknowledges every event up to `N`: the client stops keeping
/// them for resending. An acknowledgement of a duplicate has no messages.
///
/// Made by [`RecoveryContext::accept_event`](super::RecoveryContext::accept_event); add what
/// the handler sends with [`push`](Self::push) and [`push_json`](Self::push_json), then send
/// [`to_json`](Self::to_json) as one text frame. State updates are coalesced by key (the
/// highest revision stays, where the first was), so the state a batch carries stays within
/// the bundle budget however often the handler seals.
///
/// Its `Debug` shows the sequence and counts only (application messages may hold anything
/// the user sent, updates their tokens).
#[derive(Clone, PartialEq, Eq)]
pub struct Batch {
    seq: u64,
    items: Vec<BatchItem>,
    records_applied: bool,
}

#[derive(Clone)]
enum BatchItem {
    Server(ServerMessage),
    App(Box<RawValue>),
}

impl PartialEq for BatchItem {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Server(a), Self::Server(b)) => a == b,
            (Self::App(a), Self::App(b)) => a.get() == b.get(),
            _ => false,
        }
    }
}

impl Eq for BatchItem {}

impl Serialize for BatchItem {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Server(m) => m.serialize(s),
            Self::App(raw) => raw.serialize(s),
        }
    }
}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("seq", &self.seq)
            .field("state_updates", &self.state_updates().count())
            .field("messages", &self.items.len())
            .field("records_applied", &self.records_applied)
            .finish()
    }
}

impl Batch {
    /// An empty batch for event `seq` (an acknowledgement, until something is pushed).
    #[must_use]
    pub const fn new(seq: u64) -> Self {
        Self {
            seq,
            items: Vec::new(),
            records_applied: false,
        }
    }

    /// The batch of a new event, carrying its applied-events entry.
    pub(crate) fn applied(seq: u64, update: StateUpdate) -> Self {
        Self {
            seq,
            items: vec![BatchItem::Server(update.into())],
            records_applied: true,
        }
    }

    /// The event sequence it answers (and acknowledges, with every one below it).
    #[must_use]
    pub const fn seq(&self) -> u64 {
        self.seq
    }

    /// Whether it carries the applied-events entry for [`seq`](Self::seq): false for an
    /// acknowledgement of a duplicate, and for a new event whose entry could not be sealed
    /// (the context cannot seal, or the client's entries fill the budget; logged).
    #[must_use]
    pub const fn records_applied(&self) -> bool {
        self.records_applied
    }

    /// Adds one of this crate's messages: a state update replaces an earlier one for the same
    /// key in this batch when its revision is not lower (and is dropped when it is); the
    /// items of a batch are added one by one; anything else is appended.
    pub fn push(&mut self, message: impl Into<ServerMessage>) {
        match message.into() {
            ServerMessage::Batch(b) => {
                for item in b.items {
                    self.push_item(item);
                }
            }
            m => self.push_item(BatchItem::Server(m)),
        }
    }

    fn push_item(&mut self, item: BatchItem) {
        if let BatchItem::Server(ServerMessage::State(new)) = &item {
            let earlier = self.items.iter_mut().find_map(|i| match i {
                BatchItem::Server(ServerMessage::State(u)) if u.key() == new.key() => Some(u),
                _ => None,
            });
            if let Some(old) = earlier {
                if old.rev() <= new.rev() {
                    *old = new.clone();
                }
                return;
            }
        }
        self.items.push(item);
    }

    /// Adds an application message (a render, ...) given as JSON text, kept verbatim.
    ///
    /// # Errors
    /// The parse error when `json` is not one JSON value; nothing is added.
    pub fn push_json(&mut self, json: &str) -> Result<(), serde_json::Error> {
        let raw = RawValue::from_string(json.to_owned())?;
        self.items.push(BatchItem::App(raw));
        Ok(())
    }

    /// The state updates it carries, in order.
    pub fn state_updates(&self) -> impl Iterator<Item = &StateUpdate> {
        self.items.iter().filter_map(|i| match i {
            BatchItem::Server(ServerMessage::State(u)) => Some(u),
            _ => None,
        })
    }

    /// How many messages it carries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether it carries nothing (an acknowledgement).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The JSON text: `{"type":"batch","seq":N,"messages":[...]}`.
    #[must_use]
    pub fn to_json(&self) -> String {
        to_json(self)
    }
}

impl Serialize for Batch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Items<'a>(&'a [BatchItem]);
        impl Serialize for Items<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.len()))?;
                for item in self.0 {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
        }
        let mut m = s.serialize_struct("Batch", 3)?;
        m.serialize_field("type", "batch")?;
        m.serialize_field("seq", &self.seq)?;
        m.serialize_field("messages", &Items(&self.items))?;
        m.end()
    }
}

/// These messages hold only strings, integers and verified JSON text, so serializing cannot
/// fail.
fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms() {
        let salt = Salt::from_bytes([7; 16]);
        let s = SaltMessage::new(salt.clone()).to_json();
        assert_eq!(
            s,
            format!(r#"{{"type":"salt","salt":"{}"}}"#, salt.encode())
        );
        let r = RecoveredMessage {
            restored: 2,
            rejected: 1,
            limits: (&crate::Limits::default()).into(),
            applied: None,
        };
        assert_eq!(
            ServerMessage::from(r).to_json(),
            r#"{"type":"recovered","restored":2,"rejected":1,"limits":{"maxTokenBytes":65536,"maxBundleBytes":1048576,"maxEntries":1024}}"#
        );
        let r = RecoveredMessage {
            applied: Some(7),
            ..r
        };
        assert!(r.to_json().ends_with(r#""maxEntries":1024},"applied":7}"#));
        let d = DropMessage::new(StateKey::from_bytes([0xab; 16]));
        assert_eq!(
            ServerMessage::from(d).to_json(),
            format!(r#"{{"type":"drop","key":"{}"}}"#, "ab".repeat(16))
        );
        let mut b = Batch::new(9);
        assert_eq!(b.to_json(), r#"{"type":"batch","seq":9,"messages":[]}"#);
        b.push(d);
        b.push_json(r#"{"type":"render","html":"<b>"}"#).unwrap();
        assert!(b.push_json("{not json").is_err());
        assert_eq!(
            ServerMessage::from(b.clone()).to_json(),
            format!(
                r#"{{"type":"batch","seq":9,"messages":[{{"type":"drop","key":"{}"}},{{"type":"render","html":"<b>"}}]}}"#,
                "ab".repeat(16)
            )
        );
        assert!(
            !format!("{b:?}").contains("render"),
            "Debug shows counts only"
        );
    }

    #[test]
    fn a_batch_keeps_one_update_per_key_the_highest() {
        let key = StateKey::from_bytes([1; 16]);
        let other = StateKey::from_bytes([2; 16]);
        let u = |k, rev, t: &str| StateUpdate::new(k, rev, Token::from_string(t.to_owned()));
        let mut b = Batch::new(1);
        b.push(u(key, 2, "two"));
        b.push(u(other, 1, "other"));
        b.push(u(key, 3, "three"));
        b.push(u(key, 1, "stale"));
        let kept: Vec<(u64, &str)> = b
            .state_updates()
            .map(|u| (u.rev(), u.token().as_str()))
            .collect();
        assert_eq!(kept, [(3, "three"), (1, "other")]);
        // A batch pushed into a batch adds its items.
        let mut outer = Batch::new(2);
        outer.push(b);
        assert_eq!((outer.seq(), outer.len()), (2, 2));
    }
}
