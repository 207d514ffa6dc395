//! The registry: every piece of state an application declares, by state key.
//!
//! Built once at start-up from [`Recovery::registry`](crate::Recovery::registry), it refuses
//! two declarations with the same key (naming both), lists every key as a
//! [`Manifest`](crate::Manifest) for the release check `state-recovery keys diff`, and tells
//! which restored entries no declaration claims.

use std::collections::BTreeMap;
use std::fmt;

use crate::bundle::Restored;
use crate::error::{ConfigError, Reason};
use crate::key::{Location, LocationHasher, StateKey};
use crate::manifest::{Manifest, ManifestAlias, ManifestKey};

/// What a slot declares about its versions, as the registry records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Versions {
    /// The version the slot's value type is (the newest it reads).
    pub(crate) schema: u32,
    /// Every version it reads (`schema` and those it migrates from), ascending.
    pub(crate) reads: Vec<u32>,
    /// The version it seals.
    pub(crate) writes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// Registered with [`Registry::register`]: a key, no schema information.
    Plain,
    /// A slot's current key.
    Slot {
        versions: Versions,
        aliases: Vec<StateKey>,
    },
    /// A key a slot used to have.
    Alias { of: StateKey },
}

#[derive(Debug, Clone)]
struct Declared {
    location: Location,
    kind: Kind,
}

impl Declared {
    /// The same declaration registered again (e.g. a second start of the same code path)?
    fn is_same(&self, location: &Location, kind: &Kind) -> bool {
        self.location == *location && self.location.site() == location.site() && self.kind == *kind
    }

    fn described(&self, all: &BTreeMap<StateKey, Declared>) -> String {
        match &self.kind {
            Kind::Alias { of } => {
                let slot = all
                    .get(of)
                    .map_or_else(String::new, |d| d.location.described());
                format!("{} (an alias of {slot})", self.location.described())
            }
            _ => self.location.described(),
        }
    }
}

/// Every declared state key of an application: slots (with their schema versions and
/// aliases) and plainly registered locations.
///
/// Get one from [`Recovery::registry`](crate::Recovery::registry); declare slots with
/// [`SlotBuilder::register`](crate::SlotBuilder::register). Share it (`Arc`) with the
/// connections: [`unclaimed`](Self::unclaimed) and [`report_unclaimed`](Self::report_unclaimed)
/// are read-only.
pub struct Registry {
    hasher: LocationHasher,
    namespace: String,
    keys: BTreeMap<StateKey, Declared>,
}

impl Registry {
    pub(crate) fn new(hasher: LocationHasher, namespace: String) -> Self {
        Self {
            hasher,
            namespace,
            keys: BTreeMap::new(),
        }
    }

    /// Registers a location without schema information and returns its key. Registering the
    /// same declaration again returns the same key.
    ///
    /// # Errors
    /// [`ConfigError::InvalidLocation`] for an invalid name or file;
    /// [`ConfigError::LocationCollision`] if another declaration has this key.
    pub fn register(&mut self, location: &Location) -> Result<StateKey, ConfigError> {
        location.validate()?;
        let key = self.hasher.key(location);
        self.insert(key, location, Kind::Plain)?;
        Ok(key)
    }

    /// Registers a slot's location and aliases; returns their keys.
    pub(crate) fn register_slot(
        &mut self,
        location: &Location,
        versions: Versions,
        aliases: &[Location],
    ) -> Result<(StateKey, Vec<StateKey>), ConfigError> {
        location.validate()?;
        for a in aliases {
            a.validate()?;
        }
        let key = self.hasher.key(location);
        let alias_keys: Vec<StateKey> = aliases.iter().map(|a| self.hasher.key(a)).collect();
        for (i, (a, k)) in aliases.iter().zip(&alias_keys).enumerate() {
            let problem = if *k == key {
                Some(format!("alias {a} is the slot's own location"))
            } else if alias_keys.get(..i).is_some_and(|before| before.contains(k)) {
                Some(format!("alias {a} is listed twice"))
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(ConfigError::InvalidSlot {
                    slot: location.described(),
                    problem,
                });
            }
        }
        let kind = Kind::Slot {
            versions,
            aliases: alias_keys.clone(),
        };
        // Check every key before inserting any, so a refused slot leaves nothing behind.
        let fresh = self.check(key, location, &kind)?;
        for (a, k) in aliases.iter().zip(&alias_keys) {
            self.check(*k, a, &Kind::Alias { of: key })?;
        }
        if fresh {
            for (a, k) in aliases.iter().zip(&alias_keys) {
                self.keys.insert(
                    *k,
                    Declared {
                        location: a.clone(),
                        kind: Kind::Alias { of: key },
                    },
                );
            }
            self.keys.insert(
                key,
                Declared {
                    location: location.clone(),
                    kind,
                },
            );
        }
        Ok((key, alias_keys))
    }

    /// `Ok(true)` if `key` is free, `Ok(false)` if it holds this very declaration already.
    fn check(&self, key: StateKey, location: &Location, kind: &Kind) -> Result<bool, ConfigError> {
        match self.keys.get(&key) {
            None => Ok(true),
            Some(prev) if prev.is_same(location, kind) => Ok(false),
            Some(prev) => {
                let second = Declared {
                    location: location.clone(),
                    kind: kind.clone(),
                };
                Err(ConfigError::LocationCollision {
                    first: prev.described(&self.keys),
                    second: second.described(&self.keys),
                })
            }
        }
    }

    fn insert(
        &mut self,
        key: StateKey,
        location: &Location,
        kind: Kind,
    ) -> Result<(), ConfigError> {
        if self.check(key, location, &kind)? {
            self.keys.insert(
                key,
                Declared {
                    location: location.clone(),
                    kind,
                },
            );
        }
        Ok(())
    }

    /// The location declared under `key` (a slot's, an alias's or a plain one), if any.
    #[must_use]
    pub fn location(&self, key: &StateKey) -> Option<&Location> {
        self.keys.get(key).map(|d| &d.location)
    }

    /// Whether some declaration (a slot, one of its aliases, or a plain location) claims
    /// `key`.
    #[must_use]
    pub fn claims(&self, key: &StateKey) -> bool {
        self.keys.contains_key(key)
    }

    /// Whether `key` is a slot's current key or a plainly registered location (not an alias):
    /// an entry the application reads under this key.
    #[must_use]
    pub fn is_slot_key(&self, key: &StateKey) -> bool {
        self.keys
            .get(key)
            .is_some_and(|d| !matches!(d.kind, Kind::Alias { .. }))
    }

    /// The state keys of accepted entries that no declaration claims, in key order.
    #[must_use]
    pub fn unclaimed(&self, restored: &Restored) -> Vec<StateKey> {
        restored
            .accepted()
            .map(|e| e.key)
            .filter(|k| !self.claims(k))
            .collect()
    }

    /// [`unclaimed`](Self::unclaimed), with one `tracing` event per entry (target
    /// `state_recovery`, the key in hex and the reason code `unclaimed`); returns the count.
    pub fn report_unclaimed(&self, restored: &Restored) -> usize {
        let unclaimed = self.unclaimed(restored);
        for key in &unclaimed {
            tracing::info!(
                target: "state_recovery",
                key = %key,
                reason = Reason::Unclaimed.code(),
                "verified entry claimed by no declared slot (renamed or removed without an alias?)"
            );
        }
        unclaimed.len()
    }

    /// Every declared key (aliases inside their slot's entry), for the release check
    /// `state-recovery keys diff OLD NEW`: write it with [`Manifest::to_json`] at build or
    /// start-up time, keep the previous release's, and refuse a release that would drop
    /// state. The keys depend on the namespace and the location key (if one is configured),
    /// so make the manifest with the production settings.
    #[must_use]
    pub fn manifest(&self) -> Manifest {
        let keys = self
            .keys
            .iter()
            .filter_map(|(key, d)| {
                let (schema, reads, writes, aliases) = match &d.kind {
                    Kind::Alias { .. } => return None,
                    Kind::Plain => (None, Vec::new(), None, Vec::new()),
                    Kind::Slot { versions, aliases } => (
                        Some(versions.schema),
                        versions.reads.clone(),
                        Some(versions.writes),
                        aliases
                            .iter()
                            .map(|a| ManifestAlias {
                                key: *a,
                                location: self
                                    .location(a)
                                    .map_or_else(String::new, ToString::to_string),
                            })
                            .collect(),
                    ),
                };
                Some(ManifestKey {
                    key: *key,
                    location: d.location.to_string(),
                    schema,
                    reads,
                    writes,
                    aliases,
                })
            })
            .collect();
        Manifest {
            namespace: self.namespace.clone(),
            keys,
        }
    }

    /// The namespace the keys were hashed under.
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The number of declared keys (slots, aliases and plain locations).
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether nothing is declared.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("namespace", &self.namespace)
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}
