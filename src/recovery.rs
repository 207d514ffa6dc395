//! The configured recovery: key ring, namespace, OTP settings, limits and clock, built once at
//! start-up and shared (cheaply cloned) by every connection.

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroize as _;

use crate::clock::{Clock, SystemClock};
use crate::error::ConfigError;
use crate::key::{Location, LocationHasher, StateKey};
use crate::mac::Binding;
use crate::otp::{OtpSettings, StepKey, StepKeyCache};
use crate::payload::SERDE_MAX_DEPTH;
use crate::registry::Registry;
use crate::secret::{KeyRing, Pepper, Salt};
use crate::token::{self, EntryKind};

/// Size, count and depth limits, all checked before any MAC is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    max_token_bytes: usize,
    max_bundle_bytes: usize,
    max_entries: usize,
    max_depth: usize,
}

impl Limits {
    /// Default longest token: 64 KiB of text.
    pub const DEFAULT_MAX_TOKEN_BYTES: usize = 64 * 1024;
    /// Default largest reconnect bundle: 1 MiB of JSON.
    pub const DEFAULT_MAX_BUNDLE_BYTES: usize = 1024 * 1024;
    /// Default most entries in one bundle.
    pub const DEFAULT_MAX_ENTRIES: usize = 1024;
    /// Default deepest JSON nesting of a payload.
    pub const DEFAULT_MAX_DEPTH: usize = 64;

    /// Longest token text accepted (and produced), in bytes.
    #[must_use]
    pub const fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }
    /// Largest bundle accepted, in bytes.
    #[must_use]
    pub const fn max_bundle_bytes(&self) -> usize {
        self.max_bundle_bytes
    }
    /// Most entries in one bundle.
    #[must_use]
    pub const fn max_entries(&self) -> usize {
        self.max_entries
    }
    /// Deepest JSON nesting of a payload.
    #[must_use]
    pub const fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// With another token size limit.
    #[must_use]
    pub const fn with_max_token_bytes(mut self, n: usize) -> Self {
        self.max_token_bytes = n;
        self
    }
    /// With another bundle size limit.
    #[must_use]
    pub const fn with_max_bundle_bytes(mut self, n: usize) -> Self {
        self.max_bundle_bytes = n;
        self
    }
    /// With another entry count limit.
    #[must_use]
    pub const fn with_max_entries(mut self, n: usize) -> Self {
        self.max_entries = n;
        self
    }
    /// With another JSON depth limit (at most 128, serde_json's own).
    #[must_use]
    pub const fn with_max_depth(mut self, n: usize) -> Self {
        self.max_depth = n;
        self
    }

    fn validate(&self, kind: EntryKind) -> Result<(), ConfigError> {
        let min_token = token::encoded_len(token::overhead_for(kind, 1).saturating_add(1));
        if self.max_token_bytes < min_token {
            return Err(ConfigError::InvalidLimit {
                name: "max_token_bytes",
                detail: match kind {
                    EntryKind::Encrypted => {
                        "must hold at least one minimal encrypted token (107 bytes)"
                    }
                    EntryKind::Signed => "must hold at least one minimal token (96 bytes)",
                },
            });
        }
        if self.max_bundle_bytes < self.max_token_bytes {
            return Err(ConfigError::InvalidLimit {
                name: "max_bundle_bytes",
                detail: "must be at least max_token_bytes",
            });
        }
        if self.max_entries == 0 {
            return Err(ConfigError::InvalidLimit {
                name: "max_entries",
                detail: "must be at least 1",
            });
        }
        if self.max_depth == 0 || self.max_depth > SERDE_MAX_DEPTH {
            return Err(ConfigError::InvalidLimit {
                name: "max_depth",
                detail: "must be 1 to 128",
            });
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_token_bytes: Self::DEFAULT_MAX_TOKEN_BYTES,
            max_bundle_bytes: Self::DEFAULT_MAX_BUNDLE_BYTES,
            max_entries: Self::DEFAULT_MAX_ENTRIES,
            max_depth: Self::DEFAULT_MAX_DEPTH,
        }
    }
}

/// Who an entry belongs to: the client's salt and, when the user is authenticated, their
/// subject (user id). Both are bound by every tag.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub(crate) salt: &'a Salt,
    pub(crate) subject: Option<&'a str>,
}

impl<'a> Scope<'a> {
    /// Entries of the client holding `salt`, with no authenticated subject.
    #[must_use]
    pub const fn new(salt: &'a Salt) -> Self {
        Self {
            salt,
            subject: None,
        }
    }

    /// Also bound to an authenticated user id: entries sealed for one subject never open for
    /// another, even under the same salt.
    #[must_use]
    pub const fn with_subject(mut self, subject: &'a str) -> Self {
        self.subject = Some(subject);
        self
    }

    /// The same, with an optional subject.
    #[must_use]
    pub const fn with_optional_subject(mut self, subject: Option<&'a str>) -> Self {
        self.subject = subject;
        self
    }

    /// What an entry for `state_key` at `revision` and `schema` is bound to under this scope.
    pub(crate) fn binding<'b>(
        &'b self,
        state_key: &'b [u8; 16],
        revision: u64,
        schema: u32,
    ) -> Binding<'b> {
        Binding {
            salt: self.salt.as_bytes(),
            subject: self.subject.map(str::as_bytes),
            state_key,
            revision,
            schema,
        }
    }
}

impl Inner {
    /// The step key of ring key `index` for `step` (from the cache, derived on a miss);
    /// `None` for an index outside the ring or a step the cache will not derive at `now`.
    pub(crate) fn step_key(&self, index: usize, step: u64, now: u64) -> Option<StepKey> {
        self.cache
            .get(&self.ring, index, step, &self.namespace, &self.otp, now)
    }
}

pub(crate) struct Inner {
    pub(crate) ring: KeyRing,
    pub(crate) namespace: Box<[u8]>,
    pub(crate) otp: OtpSettings,
    pub(crate) limits: Limits,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) hasher: LocationHasher,
    pub(crate) cache: StepKeyCache,
    pub(crate) kind: EntryKind,
}

/// Seals and opens entries. Build one at start-up with [`Recovery::builder`] (or
/// [`RecoveryBuilder::from_env`]) and clone it freely: clones share the step-key cache.
#[derive(Clone)]
pub struct Recovery {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recovery")
            .field("ring", &self.inner.ring)
            .field("namespace", &String::from_utf8_lossy(&self.inner.namespace))
            .field("otp", &self.inner.otp)
            .field("limits", &self.inner.limits)
            .field("kind", &self.inner.kind)
            .finish_non_exhaustive()
    }
}

impl Recovery {
    /// Starts building a recovery around a key ring.
    pub fn builder(ring: KeyRing) -> RecoveryBuilder {
        RecoveryBuilder {
            ring,
            namespace: RecoveryBuilder::DEFAULT_NAMESPACE.into(),
            otp: OtpSettings::default(),
            limits: Limits::default(),
            clock: Arc::new(SystemClock),
            location_key: None,
            kind: EntryKind::Signed,
        }
    }

    /// The kind of entry [`seal`](Self::seal) writes (and, through a
    /// [`RecoveryContext`](crate::RecoveryContext), every seal and refresh that does not ask
    /// for a kind): [`EntryKind::Signed`] unless built with
    /// [`RecoveryBuilder::encrypted`]. Opening accepts both kinds either way.
    #[must_use]
    pub fn entry_kind(&self) -> EntryKind {
        self.inner.kind
    }

    /// The state key of a location under this configuration.
    #[must_use]
    pub fn state_key(&self, location: &Location) -> StateKey {
        self.inner.hasher.key(location)
    }

    /// The reserved state key of the **applied-events entry**: the entry in which a context
    /// with events on ([`Endpoint::with_events`](crate::protocol::Endpoint::with_events))
    /// records the last event sequence it applied, sealed like any entry (bound to the salt and
    /// subject, expiring, refreshed, counted in the budget and, with a guard, in the marks).
    ///
    /// It is the first 16 bytes of `HMAC(location_key, PAE["state-recovery/v1/applied-events",
    /// namespace])`: no [`Location`] can produce it (every location's MAC input starts with
    /// another label and goes on with a second PAE block), and
    /// [`RecoveryContext::seal`](crate::RecoveryContext::seal) refuses it
    /// ([`SealError::ReservedKey`](crate::SealError::ReservedKey)), so only the events code
    /// seals it. It depends on the namespace and the location key, like every state key.
    #[must_use]
    pub fn applied_key(&self) -> StateKey {
        self.inner.hasher.applied_key()
    }

    /// An empty registry for this configuration's state keys: declare the application's
    /// slots in it at start-up.
    #[must_use]
    pub fn registry(&self) -> Registry {
        Registry::new(
            self.inner.hasher.clone(),
            String::from_utf8_lossy(&self.inner.namespace).into_owned(),
        )
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The OTP settings in force.
    #[must_use]
    pub fn otp(&self) -> &OtpSettings {
        &self.inner.otp
    }

    /// The key ring (its `Debug` shows ids only).
    #[must_use]
    pub fn key_ring(&self) -> &KeyRing {
        &self.inner.ring
    }

    /// The current time by the configured clock.
    #[must_use]
    pub fn now(&self) -> u64 {
        self.inner.clock.now()
    }

    /// The guard's store-id MAC state and whether it comes from a secret location key.
    pub(crate) fn store_ids(&self) -> (crate::mac::HmacSha256, bool) {
        self.inner.hasher.store_ids()
    }
}

/// Parses a secret's text, then wipes the text (its whole allocation) on success and on error
/// alike.
fn parse_wiping<T>(
    text: &mut String,
    parse: impl FnOnce(&str) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    let parsed = parse(text);
    text.zeroize();
    parsed
}

/// Builds a [`Recovery`]. Every setter takes `self` by value; [`build`](Self::build) checks
/// everything and fails with a [`ConfigError`].
#[must_use]
pub struct RecoveryBuilder {
    ring: KeyRing,
    namespace: String,
    otp: OtpSettings,
    limits: Limits,
    clock: Arc<dyn Clock>,
    location_key: Option<Pepper>,
    kind: EntryKind,
}

impl fmt::Debug for RecoveryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoveryBuilder")
            .field("ring", &self.ring)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl RecoveryBuilder {
    /// The namespace used when none is set.
    pub const DEFAULT_NAMESPACE: &'static str = "state-recovery";

    /// The application's namespace (purpose) string, bound into every tag and state key, so
    /// entries of one application never open in another that shares a ring.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// OTP step and skew.
    pub fn otp(mut self, otp: OtpSettings) -> Self {
        self.otp = otp;
        self
    }

    /// Size, count and depth limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The clock (the system clock by default).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// A secret key for hashing locations, so state keys reveal nothing even to someone who
    /// can enumerate candidate source locations. Unlike peppers it never rotates: changing it
    /// changes every state key. Without it, the key is derived from the namespace.
    pub fn location_key(mut self, key: Pepper) -> Self {
        self.location_key = Some(key);
        self
    }

    /// Encrypts every entry sealed through this recovery ([`Recovery::seal`], every
    /// [`RecoveryContext`](crate::RecoveryContext) seal and refresh, every
    /// [`Slot`](crate::Slot)): format version 2, XChaCha20-Poly1305 under a key derived per
    /// (pepper, step), so the client can no longer read its payloads (their length, and the
    /// header's key id, step, state key, revision and schema, it still can).
    ///
    /// Opening still accepts signed entries: state sealed before the switch keeps restoring
    /// (and is re-sealed encrypted when it is refreshed). That exposes nothing new: a signed
    /// entry was readable by its holder from the moment it was sent. To encrypt only some
    /// state, use [`SlotBuilder::encrypted`](crate::SlotBuilder::encrypted) or
    /// [`Recovery::seal_with`] instead.
    pub fn encrypted(mut self) -> Self {
        self.kind = EntryKind::Encrypted;
        self
    }

    /// Reads settings from the environment: `STATE_RECOVERY_KEYS` (required),
    /// `STATE_RECOVERY_OTP_STEP`, `STATE_RECOVERY_OTP_SKEW`, `STATE_RECOVERY_NAMESPACE`,
    /// `STATE_RECOVERY_LOCATION_KEY`.
    ///
    /// # Errors
    /// [`ConfigError::Environment`] naming the variable, or the parsing error of its value
    /// (for the OTP settings, the limits of [`OtpSettings::new`]: a step of at most a day and
    /// a window of at most seven days).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) with another source of variables (for tests and for
    /// callers with their own configuration system).
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env).
    ///
    /// The texts of `STATE_RECOVERY_KEYS` and `STATE_RECOVERY_LOCATION_KEY` that `get` returns
    /// are wiped once parsed, whether parsing succeeds or not. Copies `get` made itself, and
    /// the process environment, are not (see SECURITY.md).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut keys = get("STATE_RECOVERY_KEYS").ok_or(ConfigError::Environment {
            var: "STATE_RECOVERY_KEYS",
            problem: "not set (generate a key with `state-recovery keygen`)".into(),
        })?;
        let ring = parse_wiping(&mut keys, KeyRing::parse)?;
        let number = |var: &'static str, default: u64| -> Result<u64, ConfigError> {
            match get(var) {
                None => Ok(default),
                Some(v) => v.trim().parse().map_err(|_| ConfigError::Environment {
                    var,
                    problem: "not a non-negative integer".into(),
                }),
            }
        };
        let otp = OtpSettings::new(
            number("STATE_RECOVERY_OTP_STEP", OtpSettings::DEFAULT_STEP_SECS)?,
            number("STATE_RECOVERY_OTP_SKEW", OtpSettings::DEFAULT_SKEW)?,
        )?;
        let mut b = Recovery::builder(ring).otp(otp);
        if let Some(ns) = get("STATE_RECOVERY_NAMESPACE") {
            b = b.namespace(ns);
        }
        if let Some(mut k) = get("STATE_RECOVERY_LOCATION_KEY") {
            let key = parse_wiping(&mut k, |k| Pepper::from_base64(k.trim())).map_err(|e| {
                ConfigError::Environment {
                    var: "STATE_RECOVERY_LOCATION_KEY",
                    problem: e.to_string(),
                }
            })?;
            b = b.location_key(key);
        }
        Ok(b)
    }

    /// Checks the configuration and builds the recovery.
    ///
    /// # Errors
    /// [`ConfigError::InvalidNamespace`], [`ConfigError::InvalidLimit`], or
    /// [`ConfigError::LocationKeyReusesPepper`] when the location key is one of the ring's
    /// peppers (compared as HMAC keys).
    pub fn build(self) -> Result<Recovery, ConfigError> {
        if self.namespace.is_empty() || self.namespace.len() > 128 {
            return Err(ConfigError::InvalidNamespace);
        }
        self.limits.validate(self.kind)?;
        if let Some(position) = self
            .location_key
            .as_ref()
            .and_then(|k| self.ring.position_of_key(k))
        {
            return Err(ConfigError::LocationKeyReusesPepper { position });
        }
        let namespace: Box<[u8]> = self.namespace.as_bytes().into();
        let hasher = LocationHasher::new(
            &namespace,
            self.location_key.as_ref().map(Pepper::expose_bytes),
        );
        Ok(Recovery {
            inner: Arc::new(Inner {
                ring: self.ring,
                namespace,
                otp: self.otp,
                limits: self.limits,
                clock: self.clock,
                hasher,
                cache: StepKeyCache::default(),
                kind: self.kind,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes 0x00..=0x1f.
    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    fn from_vars(vars: &[(&str, &str)]) -> Result<RecoveryBuilder, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        RecoveryBuilder::from_lookup(|name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn secret_variables_are_wiped_after_parsing() {
        let good = format!("k1:{KEY}");
        for (text, ok) in [
            (good.clone(), true),
            (format!("k1:{KEY}="), false),
            (format!("k1:{KEY},k1:{KEY}"), false),
        ] {
            let mut text = text;
            let capacity = text.capacity();
            assert_eq!(parse_wiping(&mut text, KeyRing::parse).is_ok(), ok);
            // `String::zeroize` writes zeros over the whole allocation, then clears it.
            assert!(text.is_empty(), "{text}");
            assert_eq!(text.capacity(), capacity);
        }
        let mut lk = format!(" {KEY}\n");
        assert!(parse_wiping(&mut lk, |k| Pepper::from_base64(k.trim())).is_ok());
        assert!(lk.is_empty());
        // And through from_lookup, which hands its own strings to parse_wiping.
        let b = from_vars(&[
            ("STATE_RECOVERY_KEYS", &good),
            (
                "STATE_RECOVERY_LOCATION_KEY",
                "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8",
            ),
        ])
        .unwrap();
        assert!(b.location_key.is_some());
        assert!(b.build().is_ok());
    }

    #[test]
    fn otp_step_and_window_from_the_environment_are_capped() {
        let ring = format!("k1:{KEY}");
        let otp = |step: &str, skew: &str| {
            from_vars(&[
                ("STATE_RECOVERY_KEYS", &ring),
                ("STATE_RECOVERY_OTP_STEP", step),
                ("STATE_RECOVERY_OTP_SKEW", skew),
            ])
            .map(|b| b.otp)
        };
        assert_eq!(
            otp("18446744073709551615", "1").unwrap_err(),
            ConfigError::InvalidOtpStep(u64::MAX)
        );
        assert_eq!(
            otp("86401", "0").unwrap_err(),
            ConfigError::InvalidOtpStep(86_401)
        );
        assert_eq!(otp("86400", "3").unwrap().max_age_secs(), 604_799);
        assert!(matches!(
            otp("86400", "4"),
            Err(ConfigError::OtpWindowTooLong {
                step_secs: 86_400,
                skew: 4,
                window_secs: 777_600
            })
        ));
        assert_eq!(otp("14400", "1").unwrap(), OtpSettings::default());
    }
}
