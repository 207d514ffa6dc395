//! Server → client messages of the wire protocol.

use serde::ser::{SerializeStruct, Serializer};
use serde::Serialize;

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

/// These messages hold only strings and integers, so serializing cannot fail.
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
        };
        assert_eq!(
            ServerMessage::from(r).to_json(),
            r#"{"type":"recovered","restored":2,"rejected":1,"limits":{"maxTokenBytes":65536,"maxBundleBytes":1048576,"maxEntries":1024}}"#
        );
        let d = DropMessage::new(StateKey::from_bytes([0xab; 16]));
        assert_eq!(
            ServerMessage::from(d).to_json(),
            format!(r#"{{"type":"drop","key":"{}"}}"#, "ab".repeat(16))
        );
    }
}
