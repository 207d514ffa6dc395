//! Signed, user-bound, expiring component state that survives losing the worker that held it.
//!
//! A server-rendered live UI keeps each component's state in the worker that holds the
//! connection. This crate lets that worker hand the state to the browser as signed entries;
//! when the browser reconnects (to any worker that shares the key ring) it hands them back and
//! they are verified, entry by entry, and restored.
//!
//! # How it works
//! Outbound: value → serde_json → PAE → HMAC-SHA256 with the step key for
//! (key id, time step) → base64url token → client. Inbound: bundle → size checks → token
//! decode → key id → time window → MAC verify → JSON depth check → serde → handler.
//! Encrypted entries (format 2, [`EntryKind::Encrypted`]) take the same path with
//! XChaCha20-Poly1305 under the entry key for (key id, time step) in place of the HMAC, the
//! same fields as associated data: see [`RecoveryBuilder::encrypted`],
//! [`SlotBuilder::encrypted`] and [`Recovery::seal_with`].
//! The modules mirror that path: [`key`] (state keys), [`secret`], [`otp`], [`mac`],
//! [`token`], `seal`, `open`, [`bundle`]. Around it: [`slot`] (typed slots with schema
//! versions, migrations and aliases: the way to declare state), the [`Registry`] of every
//! declared key and its [`manifest`] (for the release check `state-recovery keys diff`), and
//! [`protocol`] (the server's messages and the per-connection [`RecoveryContext`]).
//!
//! Declare each piece of state once, as a [`Slot`] with a named key (module path + name, so
//! it survives edits) — see [`slot`] for an example with a migration; the lower-level calls
//! below are what a slot does for you.
//!
//! ```
//! use state_recovery::{state_key, KeyId, KeyRing, ManualClock, Pepper, Recovery, Reason, Salt, Scope};
//!
//! let ring = KeyRing::single(KeyId::new("k1")?, Pepper::generate())?;
//! let recovery = Recovery::builder(ring).clock(ManualClock::new(1_700_000_000)).build()?;
//! let counter = recovery.state_key(&state_key!("counter"));
//!
//! // First connect: issue a salt; every change seals the component's entry.
//! let salt = Salt::generate();
//! let scope = Scope::new(&salt).with_subject("user-42");
//! let token = recovery.seal(&scope, counter, 7, 1, &41u32)?;
//!
//! // Reconnect, possibly on another worker with the same ring.
//! let opened = recovery.open_at::<u32>(&scope, counter, token.as_str())?;
//! assert_eq!((opened.value, opened.revision), (41, 7));
//!
//! // Another user's session: rejected, with a reason for the server only.
//! let other = Salt::generate();
//! let err = recovery.open::<u32>(&Scope::new(&other), token.as_str()).unwrap_err();
//! assert_eq!(err.reason(), Reason::BadSignature);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Why it is secure
//! Each entry's tag is a full-length HMAC-SHA256 over a length-prefixed encoding of the format
//! version, namespace, key id, time step, OTP code, salt, subject, state key, revision, schema
//! version and payload, keyed per (pepper, step), and compared with `verify_slice`. Nothing is
//! deserialized before the tag verifies; token size, bundle size and entry count are capped
//! before any MAC, JSON depth before any parsing.
//! Payloads of signed entries are readable by the client: encrypt the state it must not read
//! (the header and the payload's length stay visible). See SECURITY.md.
//!
//! # Features
//! | feature | default | what |
//! |---|---|---|
//! | `axum` | yes | the axum/tower layer and extractors; rejection reasons go to `tracing` |
//! | `cli` | no | the `state-recovery` binary |
//! | `redis` | no | [`guard::RedisStore`]: the revocation and rollback guard's store for clusters |

mod aead;
pub mod bundle;
mod clock;
mod error;
mod finite;
#[doc(hidden)]
pub mod fuzzing;
pub mod guard;
pub mod key;
#[cfg(feature = "axum")]
pub mod layer;
pub mod mac;
pub mod manifest;
mod open;
pub mod otp;
mod payload;
pub mod protocol;
mod recovery;
mod registry;
mod seal;
pub mod secret;
pub mod slot;
pub mod token;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use bundle::{reconnect_message, Bundle, RawEntry, Rejected, Restored};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{ConfigError, Reason, Rejection, SealError};
pub use key::{Location, StateKey};
#[cfg(feature = "axum")]
pub use layer::{
    ClientInput, Recovered, RecoveryHandle, RecoverySession, RecoverySocket, StateRecoveryLayer,
};
pub use manifest::Manifest;
pub use open::Opened;
pub use otp::OtpSettings;
pub use protocol::{RecoveryContext, StateUpdate};
pub use recovery::{Limits, Recovery, RecoveryBuilder, Scope};
pub use registry::Registry;
pub use secret::{KeyId, KeyRing, Pepper, Salt};
pub use slot::{Fresh, Outcome, Slot, SlotBuilder, Source};
pub use token::{inspect, EntryKind, Inspected, Token};
