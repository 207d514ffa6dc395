//! Typed slots: one declaration per piece of state, with its key, value type, schema version,
//! default, migrations from older versions, aliases, and the version it seals.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use state_recovery::{state_key, KeyId, KeyRing, Pepper, Recovery, RecoveryContext, Slot};
//!
//! #[derive(Serialize, Deserialize, Default)]
//! struct DraftV1 { text: String }
//! #[derive(Serialize, Deserialize, Default, Debug, PartialEq)]
//! struct Draft { text: String, words: usize }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let recovery = Recovery::builder(KeyRing::single(KeyId::new("k1")?, Pepper::generate())?).build()?;
//! let mut registry = recovery.registry();
//! let draft: Slot<Draft> = Slot::<DraftV1>::declare(state_key!("draft"))
//!     .migrate(2, |old: DraftV1| Draft { words: old.text.split_whitespace().count(), text: old.text })
//!     .register(&mut registry)?;
//!
//! // A connection: restore (migrating what version 1 sealed), then seal updates.
//! let ctx = RecoveryContext::fresh(recovery.clone(), None);
//! let update = draft.seal(&ctx, &Draft { text: "hello world".into(), words: 2 })?;
//! let restored = recovery.open_entries(&ctx.scope(), [update.token().as_str()]);
//! let (value, outcome) = draft.restore(&restored);
//! assert_eq!(value.words, 2);
//! assert!(outcome.is_restored());
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::bundle::Restored;
use crate::error::{ConfigError, Reason, SealError};
use crate::key::{Location, StateKey};
use crate::protocol::{Recovered, RecoveryContext, StateUpdate};
use crate::registry::{Registry, Versions};
use crate::token::EntryKind;

/// What a slot restores from: the verified entries of a reconnect message. A [`Recovered`]
/// also learns which entries the application used, so the `recovered` counts are honest;
/// a bare [`Restored`] just answers.
pub trait Source {
    /// The verified entries.
    fn entries(&self) -> &Restored;
    /// Records whether the entry for `key` was used (`false`: it was there but unusable, or
    /// superseded by the current key).
    fn record(&self, key: StateKey, used: bool) {
        let _ = (key, used);
    }
}

impl Source for Restored {
    fn entries(&self) -> &Restored {
        self
    }
}

impl Source for Recovered {
    fn entries(&self) -> &Restored {
        self.restored()
    }
    fn record(&self, key: StateKey, used: bool) {
        self.context().record_use(key, used);
    }
}

/// Why a stored payload could not be turned into the slot's value.
enum ReadFailure {
    /// The payload is not the type of the version it claims.
    Payload,
    /// A migration on the way refused it.
    Migration { to: u32, error: String },
}

type Reader<T> = Arc<dyn Fn(&str) -> Result<T, ReadFailure> + Send + Sync>;
type Writer<T> = Arc<
    dyn Fn(&RecoveryContext, EntryKind, StateKey, u64, &T) -> Result<StateUpdate, SealError>
        + Send
        + Sync,
>;
type Default<T> = Arc<dyn Fn() -> T + Send + Sync>;

fn parse_reader<T: DeserializeOwned + 'static>() -> Reader<T> {
    Arc::new(|text: &str| serde_json::from_str(text).map_err(|_| ReadFailure::Payload))
}

/// Declares a [`Slot`]: start with [`Slot::declare`], add migrations in version order, then
/// aliases, [`seal_as`](Self::seal_as) and a default, and [`register`](Self::register) it.
/// Mistakes (a migration to a lower version, sealing as a version it does not read) are
/// reported by `register` as [`ConfigError::InvalidSlot`].
#[must_use]
pub struct SlotBuilder<T> {
    location: Location,
    schema: u32,
    readers: Vec<(u32, Reader<T>)>,
    aliases: Vec<Location>,
    writer: Option<(u32, Writer<T>)>,
    default: Option<Default<T>>,
    problem: Option<String>,
    encrypted: bool,
}

impl<T> fmt::Debug for SlotBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotBuilder")
            .field("location", &self.location)
            .field("schema", &self.schema)
            .field("encrypted", &self.encrypted)
            .finish_non_exhaustive()
    }
}

impl<T> SlotBuilder<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn new(location: Location, schema: u32) -> Self {
        Self {
            location,
            schema,
            readers: vec![(schema, parse_reader::<T>())],
            aliases: Vec::new(),
            writer: None,
            default: None,
            problem: None,
            encrypted: false,
        }
    }

    fn problem(mut self, problem: String) -> Self {
        self.problem.get_or_insert(problem);
        self
    }

    /// The next version: values sealed as any earlier version are read as before and then
    /// passed through `migrate`. Infallible; see [`try_migrate`](Self::try_migrate).
    pub fn migrate<U, F>(self, version: u32, migrate: F) -> SlotBuilder<U>
    where
        U: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: Fn(T) -> U + Send + Sync + 'static,
    {
        self.try_migrate(version, move |t| {
            Ok::<U, std::convert::Infallible>(migrate(t))
        })
    }

    /// The next version, with a migration that may fail: a value it refuses gives the slot's
    /// default and the outcome [`Fresh::MigrationFailed`] (reason `outdated`). The error's
    /// text goes to the outcome only, never to logs (it may quote user data).
    pub fn try_migrate<U, E, F>(self, version: u32, migrate: F) -> SlotBuilder<U>
    where
        U: Serialize + DeserializeOwned + Send + Sync + 'static,
        E: fmt::Display,
        F: Fn(T) -> Result<U, E> + Send + Sync + 'static,
    {
        let mut problem = self.problem;
        if version <= self.schema {
            problem.get_or_insert(format!(
                "a migration goes to version {version}, which is not above {}",
                self.schema
            ));
        }
        if self.writer.is_some() || self.default.is_some() {
            problem.get_or_insert(
                "seal_as and default_with must come after the last migration".to_owned(),
            );
        }
        let migrate = Arc::new(migrate);
        let mut readers: Vec<(u32, Reader<U>)> = self
            .readers
            .into_iter()
            .map(|(v, read)| {
                let migrate = Arc::clone(&migrate);
                let composed: Reader<U> = Arc::new(move |text: &str| {
                    let old = read(text)?;
                    migrate(old).map_err(|e| ReadFailure::Migration {
                        to: version,
                        error: e.to_string(),
                    })
                });
                (v, composed)
            })
            .collect();
        readers.push((version, parse_reader::<U>()));
        SlotBuilder {
            location: self.location,
            schema: version,
            readers,
            aliases: self.aliases,
            writer: None,
            default: None,
            problem,
            encrypted: self.encrypted,
        }
    }

    /// A location this state used to have (before a rename or a move to another module, or
    /// the [`source_key!`](crate::source_key) it had before it got a name). An entry under an
    /// alias is restored when there is none under the current key; the next seal moves it to
    /// the current key. Keep an alias for at least the OTP window (by default 8 hours).
    pub fn alias(mut self, old: Location) -> Self {
        self.aliases.push(old);
        self
    }

    /// Seals the value as the older `version` (converted by `downgrade`) instead of the
    /// current one: the expand phase of a two-phase deploy, while workers of the previous
    /// release (which read only `version`) still serve the same clients. `version` must be
    /// one the slot reads (it has a migration from it).
    pub fn seal_as<U, F>(mut self, version: u32, downgrade: F) -> Self
    where
        U: Serialize,
        F: Fn(&T) -> U + Send + Sync + 'static,
    {
        if !self.readers.iter().any(|(v, _)| *v == version) || version >= self.schema {
            let problem = format!(
                "seal_as({version}): not an older version this slot reads (it is at {})",
                self.schema
            );
            return self.problem(problem);
        }
        let writer: Writer<T> = Arc::new(move |ctx, kind, key, rev, value| {
            ctx.seal_with(kind, key, rev, version, &downgrade(value))
        });
        self.writer = Some((version, writer));
        self
    }

    /// Encrypts this slot's entries ([`EntryKind::Encrypted`]) whatever the recovery seals by
    /// default: use it for state the client must not read (a draft message, a search it
    /// typed, a cart with prices it was quoted). Restoring accepts the slot's signed entries
    /// too, so state sealed before the slot was marked encrypted still comes back (and its
    /// next seal is encrypted); a signed entry was readable from the moment it was sent, so
    /// accepting it exposes nothing new. May come anywhere in the declaration.
    pub fn encrypted(mut self) -> Self {
        self.encrypted = true;
        self
    }

    /// The value a component starts with when nothing usable was restored (without it,
    /// [`register`](Self::register) uses `T::default()`).
    pub fn default_with(mut self, default: impl Fn() -> T + Send + Sync + 'static) -> Self {
        self.default = Some(Arc::new(default));
        self
    }

    /// Registers the slot (its key and every alias) and returns it, with `T::default()` as
    /// its default unless [`default_with`](Self::default_with) set one.
    ///
    /// # Errors
    /// [`ConfigError::InvalidSlot`] for a declaration that cannot work;
    /// [`ConfigError::InvalidLocation`] for an invalid name;
    /// [`ConfigError::LocationCollision`] when its key or an alias is already declared
    /// (naming both declarations).
    pub fn register(self, registry: &mut Registry) -> Result<Slot<T>, ConfigError>
    where
        T: std::default::Default,
    {
        let default = self.default.clone().unwrap_or_else(|| Arc::new(T::default));
        self.register_with(registry, default)
    }

    /// [`register`](Self::register) for a type without `Default`: `default` makes the
    /// starting value.
    ///
    /// # Errors
    /// As [`register`](Self::register).
    pub fn register_with_default(
        self,
        registry: &mut Registry,
        default: impl Fn() -> T + Send + Sync + 'static,
    ) -> Result<Slot<T>, ConfigError> {
        self.register_with(registry, Arc::new(default))
    }

    fn register_with(
        self,
        registry: &mut Registry,
        default: Default<T>,
    ) -> Result<Slot<T>, ConfigError> {
        if let Some(problem) = self.problem {
            return Err(ConfigError::InvalidSlot {
                slot: self.location.described(),
                problem,
            });
        }
        let schema = self.schema;
        let (writes, writer) = match self.writer {
            Some(w) => w,
            None => {
                let w: Writer<T> = Arc::new(move |ctx, kind, key, rev, value| {
                    ctx.seal_with(kind, key, rev, schema, value)
                });
                (schema, w)
            }
        };
        let mut reads: Vec<u32> = self.readers.iter().map(|(v, _)| *v).collect();
        reads.sort_unstable();
        let versions = Versions {
            schema,
            reads,
            writes,
        };
        let (key, aliases) = registry.register_slot(&self.location, versions, &self.aliases)?;
        Ok(Slot {
            inner: Arc::new(Inner {
                key,
                aliases,
                location: self.location,
                schema,
                writes,
                readers: self.readers,
                writer,
                default,
                encrypted: self.encrypted,
            }),
        })
    }
}

struct Inner<T> {
    key: StateKey,
    aliases: Vec<StateKey>,
    location: Location,
    schema: u32,
    writes: u32,
    readers: Vec<(u32, Reader<T>)>,
    writer: Writer<T>,
    default: Default<T>,
    encrypted: bool,
}

/// One declared piece of state of type `T`: restore it from what a client handed back
/// (migrating older versions), seal its updates (revision and schema handled for you).
/// Cheap to clone; share it between connections.
pub struct Slot<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("location", &self.inner.location)
            .field("key", &self.inner.key)
            .field("schema", &self.inner.schema)
            .field("writes", &self.inner.writes)
            .field("encrypted", &self.inner.encrypted)
            .finish_non_exhaustive()
    }
}

impl<T> Slot<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Starts declaring a slot whose values of type `T` are schema version 1.
    pub fn declare(location: Location) -> SlotBuilder<T> {
        SlotBuilder::new(location, 1)
    }

    /// Starts declaring a slot whose values of type `T` are schema `version` (for state that
    /// already had versions before it was declared as a slot).
    pub fn declare_at(location: Location, version: u32) -> SlotBuilder<T> {
        SlotBuilder::new(location, version)
    }

    /// Its state key.
    #[must_use]
    pub fn key(&self) -> StateKey {
        self.inner.key
    }

    /// The keys of its aliases, in declaration order.
    #[must_use]
    pub fn aliases(&self) -> &[StateKey] {
        &self.inner.aliases
    }

    /// Where it is declared.
    #[must_use]
    pub fn location(&self) -> &Location {
        &self.inner.location
    }

    /// The schema version of `T` (the newest it reads).
    #[must_use]
    pub fn schema(&self) -> u32 {
        self.inner.schema
    }

    /// The schema version it seals (lower than [`schema`](Self::schema) under
    /// [`SlotBuilder::seal_as`]).
    #[must_use]
    pub fn writes(&self) -> u32 {
        self.inner.writes
    }

    /// Whether the slot always seals encrypted entries ([`SlotBuilder::encrypted`]).
    /// Without it, it seals what the context's recovery seals
    /// ([`Recovery::entry_kind`](crate::Recovery::entry_kind)).
    #[must_use]
    pub fn is_encrypted(&self) -> bool {
        self.inner.encrypted
    }

    /// The kind of entry [`seal`](Self::seal) writes through `ctx`.
    #[must_use]
    pub fn entry_kind(&self, ctx: &RecoveryContext) -> EntryKind {
        if self.inner.encrypted {
            EntryKind::Encrypted
        } else {
            ctx.recovery().entry_kind()
        }
    }

    /// A fresh default value.
    #[must_use]
    pub fn default_value(&self) -> T {
        (self.inner.default)()
    }

    /// The value restored from `from` (the entry under its key, else under its first alias
    /// that has one), migrated to the current version; or the default and why. Every fresh
    /// start other than "nothing was there" is logged with `tracing` (target
    /// `state_recovery`, key and reason code; never the payload). Restoring from a
    /// [`Recovered`] records what was used, for the `recovered` counts.
    #[must_use]
    pub fn restore<S: Source + ?Sized>(&self, from: &S) -> (T, Outcome) {
        let (value, outcome, used_key) = self.restore_entries(from.entries());
        let inner = &*self.inner;
        for key in std::iter::once(&inner.key).chain(&inner.aliases) {
            if from.entries().raw(key).is_some() {
                from.record(*key, used_key == Some(*key));
            }
        }
        (value, outcome)
    }

    fn restore_entries(&self, restored: &Restored) -> (T, Outcome, Option<StateKey>) {
        let inner = &*self.inner;
        let keys = std::iter::once(&inner.key).chain(&inner.aliases);
        let Some((entry, alias)) = keys
            .clone()
            .enumerate()
            .find_map(|(i, k)| restored.raw(k).map(|e| (e, i > 0)))
        else {
            let rejected = restored
                .rejected()
                .iter()
                .find(|r| r.claimed_key.is_some_and(|c| keys.clone().any(|k| *k == c)));
            let fresh = rejected.map_or(Fresh::Missing, |r| Fresh::Rejected(r.reason));
            return (self.default_value(), Outcome::Fresh(fresh), None);
        };
        let found = entry.key;
        let schema = entry.schema;
        let read = inner
            .readers
            .iter()
            .find(|(v, _)| *v == schema)
            .map(|(_, r)| r);
        let result = match read {
            None if schema > inner.schema => Err(Fresh::Newer { schema }),
            None => Err(Fresh::Outdated { schema }),
            Some(read) => read(entry.value.get()).map_err(|f| match f {
                ReadFailure::Payload => Fresh::InvalidPayload { schema },
                ReadFailure::Migration { to, error } => Fresh::MigrationFailed {
                    from: schema,
                    to,
                    error,
                },
            }),
        };
        let revision = entry.revision;
        match result {
            Ok(value) if schema == inner.schema => {
                (value, Outcome::Restored { revision, alias }, Some(found))
            }
            Ok(value) => {
                tracing::debug!(
                    target: "state_recovery",
                    key = %inner.key,
                    from = schema,
                    to = inner.schema,
                    "state entry migrated"
                );
                (
                    value,
                    Outcome::Migrated {
                        from: schema,
                        revision,
                        alias,
                    },
                    Some(found),
                )
            }
            Err(fresh) => {
                self.log_fresh(&fresh, schema);
                (self.default_value(), Outcome::Fresh(fresh), None)
            }
        }
    }

    fn log_fresh(&self, fresh: &Fresh, schema: u32) {
        let key = &self.inner.key;
        let reason = fresh.reason().map_or("-", Reason::code);
        if let Fresh::Newer { .. } = fresh {
            tracing::warn!(
                target: "state_recovery",
                key = %key,
                reason,
                schema,
                reads = self.inner.schema,
                "state entry sealed by a newer release; starting this component fresh \
                 (the client keeps the entry until this component is sealed again)"
            );
        } else {
            tracing::info!(
                target: "state_recovery",
                key = %key,
                reason,
                schema,
                "state entry not usable; starting this component fresh"
            );
        }
    }

    /// Seals `value` for this connection at the key's next revision, as the version the slot
    /// writes, encrypted if the slot is [`encrypted`](SlotBuilder::encrypted) or the
    /// recovery encrypts ([`entry_kind`](Self::entry_kind)).
    ///
    /// # Errors
    /// [`SealError`] if the value does not serialize or is over a limit.
    pub fn seal(&self, ctx: &RecoveryContext, value: &T) -> Result<StateUpdate, SealError> {
        let key = self.inner.key;
        let rev = ctx.next_revision(key);
        (self.inner.writer)(ctx, self.entry_kind(ctx), key, rev, value)
    }
}

/// What [`Slot::restore`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The entry was read as it was sealed.
    Restored {
        /// Its revision.
        revision: u64,
        /// Whether it was found under an alias rather than the current key.
        alias: bool,
    },
    /// The entry was sealed as an older version and migrated.
    Migrated {
        /// The version it was sealed as.
        from: u32,
        /// Its revision.
        revision: u64,
        /// Whether it was found under an alias rather than the current key.
        alias: bool,
    },
    /// Nothing usable: the component starts from the slot's default.
    Fresh(Fresh),
}

impl Outcome {
    /// Whether a value came back (as sealed or migrated).
    #[must_use]
    pub const fn is_restored(&self) -> bool {
        matches!(self, Self::Restored { .. } | Self::Migrated { .. })
    }

    /// Whether the value should be sealed again at once: it came back under an alias, or as
    /// another version than the slot writes. (Re-sealing every restored value is also fine:
    /// it moves entries to the newest key and time step.)
    #[must_use]
    pub const fn needs_seal(&self) -> bool {
        matches!(
            self,
            Self::Restored { alias: true, .. } | Self::Migrated { .. }
        )
    }

    /// Why the component started fresh, as a reason code (`None` when it was restored or
    /// there was simply nothing to restore).
    #[must_use]
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Self::Fresh(f) => f.reason(),
            _ => None,
        }
    }
}

/// Why a slot started from its default.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fresh {
    /// The client handed back no entry for this slot (a new client, or new state).
    Missing,
    /// Its entry was rejected (expired, forged, ...): the reason code.
    Rejected(Reason),
    /// Sealed as a version older than any this slot migrates from (reason `outdated`).
    Outdated {
        /// The version it was sealed as.
        schema: u32,
    },
    /// Sealed as a version newer than this build reads (reason `newer-schema`): a worker of
    /// the previous release during a rolling deploy.
    Newer {
        /// The version it was sealed as.
        schema: u32,
    },
    /// A migration refused the value (reason `outdated`).
    MigrationFailed {
        /// The version it was sealed as.
        from: u32,
        /// The version whose migration failed.
        to: u32,
        /// The migration's error text (for the application; it is not logged).
        error: String,
    },
    /// Authentic, but not the type of the version it claims (reason `invalid-payload`).
    InvalidPayload {
        /// The version it was sealed as.
        schema: u32,
    },
}

impl Fresh {
    /// The reason code (`None` for [`Fresh::Missing`]).
    #[must_use]
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Self::Missing => None,
            Self::Rejected(r) => Some(*r),
            Self::Outdated { .. } | Self::MigrationFailed { .. } => Some(Reason::Outdated),
            Self::Newer { .. } => Some(Reason::NewerSchema),
            Self::InvalidPayload { .. } => Some(Reason::InvalidPayload),
        }
    }
}
