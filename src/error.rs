//! The two error families: configuration errors (detailed, at start-up) and rejections
//! (a stable reason code per entry, the same opaque answer for the client).

use std::fmt;

/// A configuration problem, found when the key ring, salt or settings are built.
///
/// These are meant for operators at start-up and say exactly what is wrong, but never include
/// key material: a bad key is named by its 1-based position in the key ring, never by its
/// value, and never by its id either (a key written where the id belongs can look like one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A pepper shorter than [`Pepper::MIN_LEN`](crate::Pepper::MIN_LEN) bytes.
    #[error("pepper is {len} bytes, at least 32 are required")]
    PepperTooShort {
        /// The length that was given.
        len: usize,
    },
    /// A pepper longer than [`Pepper::MAX_LEN`](crate::Pepper::MAX_LEN) bytes.
    #[error("pepper is {len} bytes, at most 1024 are allowed")]
    PepperTooLong {
        /// The length that was given.
        len: usize,
    },
    /// A pepper made only of zero bytes.
    #[error("pepper is all zero bytes")]
    PepperAllZero,
    /// A key with fewer than [`Pepper::MIN_DISTINCT_BYTES`](crate::Pepper::MIN_DISTINCT_BYTES)
    /// distinct byte values (such as 32 copies of one byte): it was not drawn at random. How
    /// many there are is not said.
    #[error("key has fewer than {min} distinct byte values, so it is not random: generate one with `state-recovery keygen`", min = crate::Pepper::MIN_DISTINCT_BYTES)]
    PepperLowDiversity,
    /// A key id that is empty, longer than 32 characters or outside `[A-Za-z0-9_-]`. The
    /// text is not repeated: a key written where the id belongs would leak through it.
    #[error("a key id of {len} bytes is invalid: use 1 to 32 characters from [A-Za-z0-9_-]")]
    InvalidKeyId {
        /// The length of what was given, in bytes.
        len: usize,
    },
    /// Two keys in one ring with the same id. Named by position: the id is not repeated.
    #[error("key ring entries {first} and {second} have the same id")]
    DuplicateKeyId {
        /// The 1-based position of the first entry with that id.
        first: usize,
        /// The 1-based position of the entry that repeats it.
        second: usize,
    },
    /// One key under two ids of a key ring (compared as HMAC keys, in constant time). Named
    /// by the entries' 1-based positions, never by the key.
    #[error("key ring entries {first} and {second} have the same key: give every id its own key (`state-recovery keygen`)")]
    DuplicatePepper {
        /// The position of the first entry with that key.
        first: usize,
        /// The position of the entry that repeats it.
        second: usize,
    },
    /// A location key that is one of the key ring's peppers: one key in two roles (the
    /// location key never rotates, peppers do).
    #[error("the location key is the same key as key ring entry {position}: give the location key its own key (`state-recovery keygen`)")]
    LocationKeyReusesPepper {
        /// The 1-based position of the pepper in the ring.
        position: usize,
    },
    /// A key ring with no keys.
    #[error("the key ring is empty")]
    EmptyKeyRing,
    /// A key ring string that is not `ID:KEY[,ID:KEY...]`.
    #[error("key ring entry {position} is not of the form ID:KEY")]
    KeyRingSyntax {
        /// 1-based position of the entry in the comma-separated list.
        position: usize,
    },
    /// A key that is not canonical unpadded base64url. In a key ring it comes inside
    /// [`KeyRingEntry`](Self::KeyRingEntry), which gives the position.
    #[error("key is not canonical unpadded base64url")]
    KeyEncoding,
    /// An entry of a key ring whose id or key is invalid: the entry's 1-based position and
    /// what is wrong ([`InvalidKeyId`](Self::InvalidKeyId), [`KeyEncoding`](Self::KeyEncoding)
    /// or a pepper error), never the entry's text.
    #[error("key ring entry {position}: {problem}")]
    KeyRingEntry {
        /// 1-based position of the entry in the comma-separated list.
        position: usize,
        /// What is wrong with it.
        problem: Box<ConfigError>,
    },
    /// A salt that is not 22 characters of canonical unpadded base64url (16 bytes).
    #[error("salt is not 16 bytes of canonical unpadded base64url")]
    InvalidSalt,
    /// A namespace that is empty or longer than 128 bytes.
    #[error("namespace must be 1 to 128 bytes")]
    InvalidNamespace,
    /// An OTP step of zero seconds or longer than
    /// [`OtpSettings::MAX_STEP_SECS`](crate::OtpSettings::MAX_STEP_SECS) (one day).
    #[error(
        "otp step must be 1 to {max} seconds (1 day), got {0}",
        max = crate::OtpSettings::MAX_STEP_SECS
    )]
    InvalidOtpStep(u64),
    /// An OTP skew larger than the maximum.
    #[error("otp skew must be at most {max} steps, got {0}", max = crate::OtpSettings::MAX_SKEW)]
    InvalidOtpSkew(u64),
    /// An OTP window, `step × (2 × skew + 1)`, longer than
    /// [`OtpSettings::MAX_WINDOW_SECS`](crate::OtpSettings::MAX_WINDOW_SECS) (seven days):
    /// entries would be accepted for longer than that.
    #[error(
        "otp window step × (2 × skew + 1) = {step_secs} × (2 × {skew} + 1) = {window_secs} seconds is over the maximum of {} seconds (7 days): use a shorter step or a smaller skew",
        crate::OtpSettings::MAX_WINDOW_SECS
    )]
    OtpWindowTooLong {
        /// The step, in seconds.
        step_secs: u64,
        /// The skew, in steps.
        skew: u64,
        /// `step × (2 × skew + 1)`, in seconds.
        window_secs: u64,
    },
    /// A limit set to zero or beyond what the format allows.
    #[error("limit {name} is out of range: {detail}")]
    InvalidLimit {
        /// Which limit.
        name: &'static str,
        /// What is allowed.
        detail: &'static str,
    },
    /// A location that is not `MODULE@NAME[#INSTANCE]` (a name of 1 to 64 of
    /// `[A-Za-z0-9_.-/]`) or `FILE:LINE:COLUMN[#INSTANCE]`.
    #[error("location {0:?} is not of the form MODULE@NAME or FILE:LINE:COLUMN (each optionally followed by #INSTANCE)")]
    InvalidLocation(String),
    /// A state key that is not 32 hexadecimal digits.
    #[error("a state key must be 32 hexadecimal digits")]
    InvalidStateKey,
    /// Two declarations with the same state key in one registry: the same named location
    /// declared twice, an alias that is another slot's key, or (never seen) a hash collision.
    #[error("state key collision: {first} and {second} have the same state key")]
    LocationCollision {
        /// The declaration registered first (with where it is declared, when known).
        first: String,
        /// The declaration that collided with it.
        second: String,
    },
    /// A slot declaration that cannot work (migrations out of order, an alias equal to the
    /// slot's own location, sealing as a version the slot does not read).
    #[error("slot {slot}: {problem}")]
    InvalidSlot {
        /// The slot's location.
        slot: String,
        /// What is wrong.
        problem: String,
    },
    /// The operating system's random source failed.
    #[error("the operating system's random source failed")]
    Randomness,
    /// An environment variable that is missing or not valid.
    #[error("environment variable {var}: {problem}")]
    Environment {
        /// The variable's name.
        var: &'static str,
        /// What is wrong with it (never its value).
        problem: String,
    },
}

/// Why an entry was rejected. The codes are stable and documented in SECURITY.md.
///
/// The reason is for the server (handler, logs, metrics); the client is told nothing more
/// than "not restored".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Reason {
    /// Not a token: bad base64, wrong structure, empty, or a bundle that does not parse.
    Malformed,
    /// A token format version this build does not read.
    UnsupportedVersion,
    /// Sealed under a key id that is not in the ring (e.g. retired by rotation).
    UnknownKey,
    /// Sealed in a time step older than the acceptance window.
    Expired,
    /// Sealed in a time step newer than the acceptance window.
    NotYetValid,
    /// The tag does not verify: forged, tampered with, moved to another user, salt or subject.
    BadSignature,
    /// Authentic, but sealed for another state key than the one asked for.
    WrongLocation,
    /// Over a limit: token size, bundle size or entry count (checked before any MAC work),
    /// or payload nesting depth (checked after the MAC, before any parsing).
    TooLarge,
    /// Two authentic entries for the same state key in one bundle; neither is restored.
    DuplicateKey,
    /// Authentic, but the payload does not deserialize into the requested type.
    InvalidPayload,
    /// Authentic, but sealed with a schema version the handler no longer reads (older than
    /// any version it migrates from), or a migration from it failed.
    Outdated,
    /// Authentic, but sealed with a schema version newer than this build reads (a worker of
    /// the previous release during a rolling deploy; see expand/contract in the README).
    NewerSchema,
    /// Authentic, but no declared slot (key or alias) claims its state key: the state was
    /// renamed or removed without an alias. Counted and logged, never silently ignored.
    Unclaimed,
    /// The endpoint requires an authenticated subject
    /// ([`Endpoint::require_subject`](crate::protocol::Endpoint::require_subject)) and the
    /// request had none: the reconnect message is refused whole, before any entry is opened.
    /// Usually the auth layer runs after the recovery layer (see the layer order in
    /// `StateRecoveryLayer::with_subject`), or the user is not logged in.
    NoSubject,
    /// Authentic, but its scope was revoked on the [guard](crate::guard::Guard)'s shared
    /// store: the subject logged out ([`Guard::revoke_subject`](crate::guard::Guard::revoke_subject)),
    /// or this client's salt was revoked ([`Guard::revoke_salt`](crate::guard::Guard::revoke_salt)),
    /// on any worker that shares the store. Every entry of the message is refused and the
    /// client is given a fresh salt, so it drops its stash.
    Revoked,
    /// Authentic, but its revision is below the highest revision sealed for its state key in
    /// this scope (salt and subject) on any worker that shares the [guard](crate::guard::Guard)'s
    /// store: an older entry replayed. (An equal revision is fine: a refresh re-seals at the
    /// same revision.)
    RolledBack,
    /// The [guard](crate::guard::Guard)'s store did not answer within its timeout, or failed,
    /// and the guard fails closed ([`GuardPolicy::FailClosed`](crate::guard::GuardPolicy)):
    /// no entry is restored, the client keeps its salt and stash (nothing is sealed over it)
    /// until the store answers again. Also every entry of a message given to the synchronous
    /// [`Endpoint::recover`](crate::protocol::Endpoint::recover) of an endpoint with a guard,
    /// which cannot consult the store.
    GuardUnavailable,
}

impl Reason {
    /// Every reason, in declaration order.
    pub const ALL: [Reason; 17] = [
        Reason::Malformed,
        Reason::UnsupportedVersion,
        Reason::UnknownKey,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::BadSignature,
        Reason::WrongLocation,
        Reason::TooLarge,
        Reason::DuplicateKey,
        Reason::InvalidPayload,
        Reason::Outdated,
        Reason::NewerSchema,
        Reason::Unclaimed,
        Reason::NoSubject,
        Reason::Revoked,
        Reason::RolledBack,
        Reason::GuardUnavailable,
    ];

    /// The stable kebab-case code, e.g. `bad-signature`.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::UnsupportedVersion => "unsupported-version",
            Reason::UnknownKey => "unknown-key",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not-yet-valid",
            Reason::BadSignature => "bad-signature",
            Reason::WrongLocation => "wrong-location",
            Reason::TooLarge => "too-large",
            Reason::DuplicateKey => "duplicate-key",
            Reason::InvalidPayload => "invalid-payload",
            Reason::Outdated => "outdated",
            Reason::NewerSchema => "newer-schema",
            Reason::Unclaimed => "unclaimed",
            Reason::NoSubject => "no-subject",
            Reason::Revoked => "revoked",
            Reason::RolledBack => "rolled-back",
            Reason::GuardUnavailable => "guard-unavailable",
        }
    }

    /// The reason for a code, if it is one of ours.
    #[must_use]
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An entry that was not restored. Opaque: ask it for its [`Reason`].
///
/// Its `Display` and `Debug` show only the reason code, never the token, payload or keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rejection {
    reason: Reason,
}

impl Rejection {
    pub(crate) const fn new(reason: Reason) -> Self {
        Self { reason }
    }

    /// Why the entry was rejected.
    #[must_use]
    pub const fn reason(&self) -> Reason {
        self.reason
    }
}

impl From<Reason> for Rejection {
    fn from(reason: Reason) -> Self {
        Self::new(reason)
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "state entry rejected: {}", self.reason.code())
    }
}

impl std::error::Error for Rejection {}

/// Why a value could not be sealed. These are programming or sizing errors on the server side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// serde_json could not serialize the value (e.g. a map with non-string keys, or a
    /// `Serialize` impl that fails), or the value has an object whose first key starts with
    /// serde_json's reserved `$serde_json::private::`.
    #[error("value does not serialize to JSON")]
    Serialize(#[source] serde_json::Error),
    /// The value holds a non-finite float (NaN, infinity or minus infinity, as an `f32` or
    /// `f64`, anywhere in it, map keys included). JSON has no such numbers: serde_json would
    /// write `null`, which opens as another value or not at all, so `seal` refuses it.
    #[error("value holds a non-finite float (nan or infinity), which json cannot represent")]
    NonFiniteFloat,
    /// The serialized value nests deeper than the configured JSON depth limit.
    #[error("value nests deeper than the limit of {max} levels")]
    TooDeep {
        /// The configured limit.
        max: usize,
    },
    /// The token would be longer than the configured token size limit.
    #[error("token would be {len} bytes, over the limit of {max}")]
    TooLarge {
        /// The length the token would have.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The client's reconnect message would be over the bundle cap with this entry (the
    /// entries it already holds plus this one): the update is not handed out.
    #[error("the client's entries would take {bytes} bytes of the bundle cap of {max}")]
    OverBudget {
        /// The bundle size with this entry.
        bytes: usize,
        /// The bundle cap.
        max: usize,
    },
    /// The client already holds the most entries a bundle may carry.
    #[error("the client already holds the most entries a bundle may carry ({max})")]
    TooManyEntries {
        /// The entry cap.
        max: usize,
    },
    /// The clock reads a time before 1970 ([`Clock::checked_now`](crate::Clock::checked_now)
    /// is `None`) or past what the OTP step arithmetic covers
    /// ([`OtpSettings::covers`](crate::OtpSettings::covers); only steps of a few seconds
    /// leave any time out). Nothing is sealed at step 0 or in a saturated window.
    #[error("the clock reads a time that no OTP step covers")]
    ClockOutOfRange,
    /// The context requires an authenticated subject
    /// ([`Endpoint::require_subject`](crate::protocol::Endpoint::require_subject),
    /// [`RecoveryContext::require_subject`](crate::RecoveryContext::require_subject)) and has
    /// none: nothing is sealed, so no state is ever bound to "anonymous" by mistake.
    #[error("no authenticated subject, and this context seals only for one")]
    NoSubject,
    /// The operating system's random source failed to give an encrypted entry its nonce:
    /// nothing is sealed (there is no fallback to a counter or a weaker source).
    #[error("the operating system's random source failed")]
    Randomness,
    /// The context was made while the [guard](crate::guard::Guard)'s store was unavailable and
    /// the guard fails closed: nothing is sealed, so the client's stash (which was not
    /// restored) is not overwritten, and comes back once the store answers again.
    #[error("the guard's store was unavailable when this connection started, and the guard fails closed")]
    GuardUnavailable,
    /// The state key is the reserved key of the applied-events entry
    /// ([`Recovery::applied_key`](crate::Recovery::applied_key)): only the context's event
    /// tracking ([`RecoveryContext::accept_event`](crate::RecoveryContext::accept_event))
    /// seals it, so no application seal can forge or overwrite what the client was told was
    /// applied.
    #[error("the state key is reserved for the applied-events entry")]
    ReservedKey,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_kebab_case_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            let c = r.code();
            assert!(
                c.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{c}"
            );
            assert!(seen.insert(c));
            assert_eq!(Reason::from_code(c), Some(r));
            assert_eq!(r.to_string(), c);
        }
        assert_eq!(Reason::from_code("nope"), None);
    }

    #[test]
    fn rejection_display_is_only_the_code() {
        let r = Rejection::new(Reason::BadSignature);
        assert_eq!(r.to_string(), "state entry rejected: bad-signature");
        assert_eq!(r.reason(), Reason::BadSignature);
    }
}
