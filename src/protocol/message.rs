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

/// `{"type":"recovered","restored":N,"rejected":M}`: sent once after the reconnect message
/// was processed. Counts only: the client never learns why an entry was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename = "recovered")]
pub struct RecoveredMessage {
    /// Entries restored.
    pub restored: usize,
    /// Entries rejected.
    pub rejected: usize,
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
        };
        assert_eq!(
            ServerMessage::from(r).to_json(),
            r#"{"type":"recovered","restored":2,"rejected":1}"#
        );
    }
}
