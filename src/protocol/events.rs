//! Events exactly once: the client numbers its application messages, the context records the
//! last one applied in a sealed entry, and everything an event causes goes to the client in one
//! frame. See the [module docs](super#events-exactly-once) for the protocol and the argument.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::context::MAX_REVISION;
use super::message::Batch;

/// The field of a client message that carries its sequence number: `{"$seq":N,...}`. The JS
/// client adds it to every object it sends once the server announced `applied` in
/// `recovered`; the rest of the object is the application's.
pub const SEQ_FIELD: &str = "$seq";

/// The highest event sequence: JavaScript's `Number.MAX_SAFE_INTEGER` (2^53 − 1), as
/// [`MAX_REVISION`]. Sequences start at 1.
pub const MAX_SEQ: u64 = MAX_REVISION;

/// How far above the last applied sequence a new one may be: 2^20. A client numbers its
/// messages one by one and keeps at most a few dozen unacknowledged, so a larger jump is a
/// broken or forged client ([`EventError::TooFar`]). Without a record (nothing applied yet),
/// any sequence from 1 to [`MAX_SEQ`] is accepted.
pub const MAX_SEQ_GAP: u64 = 1 << 20;

/// The schema version of the applied-events entry's payload, `{"seq":N}`.
pub(crate) const APPLIED_SCHEMA: u32 = 1;

/// The payload of the applied-events entry.
#[derive(serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppliedPayload {
    pub(crate) seq: u64,
}

/// Why a numbered message was refused: it is not handed to the application and not
/// acknowledged (the JS client never sends one). Every other entry, and the record of what
/// was applied, stay as they were.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// `$seq` is not an integer from 1 to [`MAX_SEQ`] (a negative, fractional, exponent,
    /// string, `null` or too large value), or the field is repeated.
    #[error("the event sequence is not an integer from 1 to 2^53 - 1")]
    InvalidSeq,
    /// More than [`MAX_SEQ_GAP`] above the last applied sequence.
    #[error("event {seq} is too far above the last applied event {applied}")]
    TooFar {
        /// The sequence sent.
        seq: u64,
        /// The last applied.
        applied: u64,
    },
    /// The context does not track events ([`Endpoint::with_events`](super::Endpoint::with_events)
    /// was not set).
    #[error("this connection does not track events")]
    Disabled,
}

impl EventError {
    /// A stable kebab-case code for logs: `invalid-seq`, `seq-too-far`, `events-disabled`.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::InvalidSeq => "invalid-seq",
            Self::TooFar { .. } => "seq-too-far",
            Self::Disabled => "events-disabled",
        }
    }
}

/// What [`RecoveryContext::accept_event`](super::RecoveryContext::accept_event) decided.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Accepted {
    /// A new event: handle it, [`push`](Batch::push) everything it sends (sealed updates,
    /// renders) into the batch, and send the batch as **one** frame when done. The batch
    /// already carries the applied-events entry (unless it could not be sealed, see
    /// [`Batch::records_applied`]).
    New(Batch),
    /// Already applied (a resend after a reconnect): do not handle it; send the batch, an
    /// acknowledgement with no messages, so the client stops resending it.
    Duplicate(Batch),
}

/// One client message, classified by
/// [`RecoveryContext::incoming`](super::RecoveryContext::incoming).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Incoming {
    /// Not numbered (not a JSON object, no `$seq`, or the context does not track events):
    /// handle it as before, with no deduplication.
    Unsequenced,
    /// A new event: see [`Accepted::New`].
    New(Batch),
    /// Already applied: see [`Accepted::Duplicate`].
    Duplicate(Batch),
    /// Refused: neither handled nor acknowledged.
    Refused(EventError),
}

impl From<Result<Accepted, EventError>> for Incoming {
    fn from(r: Result<Accepted, EventError>) -> Self {
        match r {
            Ok(Accepted::New(b)) => Self::New(b),
            Ok(Accepted::Duplicate(b)) => Self::Duplicate(b),
            Err(e) => Self::Refused(e),
        }
    }
}

/// The sequence of a client message: `Ok(None)` when it is not numbered (not JSON, not an
/// object, or no `$seq` field), `Ok(Some(n))` for `"$seq":n` with `n` an integer from 1 to
/// [`MAX_SEQ`] written in plain digits, [`EventError::InvalidSeq`] for any other `$seq`
/// (including a repeated one). Reads the message once, borrowing it; the application's
/// fields are skipped, not kept.
///
/// # Errors
/// [`EventError::InvalidSeq`].
pub fn event_seq(message: &[u8]) -> Result<Option<u64>, EventError> {
    // Only an object can be numbered; this also spares a parse of every other message.
    let first = message.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Ok(None);
    }
    match serde_json::from_slice::<Numbered<'_>>(message) {
        Ok(Numbered::One(raw)) => parse_seq(raw.get()).map(Some),
        Ok(Numbered::None) => Ok(None),
        // A second `$seq` is a second spelling of the number: refused.
        Ok(Numbered::Repeated) => Err(EventError::InvalidSeq),
        // Not JSON: the application's problem, as before.
        Err(_) => Ok(None),
    }
}

/// The `$seq` fields of a JSON object, read with a visitor that keeps nothing else.
enum Numbered<'a> {
    None,
    One(&'a RawValue),
    Repeated,
}

impl<'de> Deserialize<'de> for Numbered<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = Numbered<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Numbered::None;
                while let Some(IsSeq(is_seq)) = map.next_key()? {
                    match (is_seq, &out) {
                        (true, Numbered::None) => out = Numbered::One(map.next_value()?),
                        (true, _) => {
                            map.next_value::<IgnoredAny>()?;
                            out = Numbered::Repeated;
                        }
                        (false, _) => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(Fields)
    }
}

/// Whether an object key is `$seq` (escaped or not), without keeping the key.
struct IsSeq(bool);

impl<'de> Deserialize<'de> for IsSeq {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Key;
        impl Visitor<'_> for Key {
            type Value = IsSeq;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<IsSeq, E> {
                Ok(IsSeq(key == SEQ_FIELD))
            }
        }
        d.deserialize_str(Key)
    }
}

/// Plain decimal digits, no sign, fraction, exponent or leading zero, from 1 to [`MAX_SEQ`].
fn parse_seq(text: &str) -> Result<u64, EventError> {
    let b = text.as_bytes();
    if b.is_empty() || b.len() > 16 || b.first() == Some(&b'0') || !b.iter().all(u8::is_ascii_digit)
    {
        return Err(EventError::InvalidSeq);
    }
    match text.parse::<u64>() {
        Ok(n @ 1..=MAX_SEQ) => Ok(n),
        _ => Err(EventError::InvalidSeq),
    }
}

/// A stable, opaque id of one event of one client: the first 16 bytes of an HMAC, under the
/// key the guard's store ids use (derived from the location key), of the salt, the subject and
/// the sequence. The same on every worker for the same (salt, subject, sequence); unrelated
/// across clients; reveals neither the salt nor the subject. Use it as the idempotency key of
/// an effect outside sealed state (a database write, an e-mail): a resent event that a worker
/// applied before dying, but whose reply never reached the client, is applied again on the
/// next worker, with the same id. Displayed as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId([u8; 16]);

impl EventId {
    pub(crate) const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_are_plain_safe_integers() {
        let seq = |s: &str| event_seq(s.as_bytes());
        assert_eq!(seq(r#"{"type":"event","$seq":7}"#), Ok(Some(7)));
        assert_eq!(
            seq(r#" {"$seq":9007199254740991,"a":[1,{"$seq":"x"}]}"#),
            Ok(Some(MAX_SEQ))
        );
        for none in [
            r#"{"type":"event"}"#,
            r#"["$seq",1]"#,
            r#""{\"$seq\":1}""#,
            "not json",
            "{broken",
            r#"{"a":1}{"$seq":2}"#,
            r#"{"$seq":01}"#, // not JSON at all: the application's to refuse
            "",
        ] {
            assert_eq!(seq(none), Ok(None), "{none}");
        }
        for bad in [
            "0",
            "-1",
            "1.0",
            "1e3",
            "9007199254740992",
            "18446744073709551616",
            "99999999999999999999999",
            r#""5""#,
            "null",
            "true",
            "[1]",
            "{}",
        ] {
            let m = format!(r#"{{"$seq":{bad},"type":"event"}}"#);
            assert_eq!(seq(&m), Err(EventError::InvalidSeq), "{m}");
        }
        assert_eq!(seq(r#"{"$seq":1,"$seq":2}"#), Err(EventError::InvalidSeq));
        assert_eq!(
            seq(r#"{"\u0024seq":3}"#),
            Ok(Some(3)),
            "an escaped key is the same key"
        );
        assert_eq!(
            seq(r#"{"$seq":3,"\u0024seq":3}"#),
            Err(EventError::InvalidSeq)
        );
    }

    #[test]
    fn codes_are_stable() {
        assert_eq!(EventError::InvalidSeq.code(), "invalid-seq");
        assert_eq!(
            EventError::TooFar { seq: 9, applied: 1 }.code(),
            "seq-too-far"
        );
        assert_eq!(EventError::Disabled.code(), "events-disabled");
    }
}
