//! Reconnect bundles: the salt and every token a client holds, opened entry by entry.
//!
//! Wire form (JSON): `{"salt":"<22 chars>","entries":["<token>", ...]}`. Other fields are
//! ignored here (client input rides along and is read by its own, untrusted, path).
//! The bundle's byte size is checked before parsing, and the entry count while parsing, so a
//! hostile bundle never allocates more than the caps allow and never reaches a MAC.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;

use crate::error::{Reason, Rejection};
use crate::key::StateKey;
use crate::open::{json_reason, parse_json, Batch, Opened};
use crate::recovery::{Recovery, Scope};
use crate::secret::Salt;

/// An accepted entry whose payload is kept as verified, unparsed JSON until asked for.
pub type RawEntry = Opened<Box<RawValue>>;

/// An entry of a bundle that was not restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// Position of the token in the bundle.
    pub index: usize,
    /// The state key the token claims, when it decoded far enough to have one. Verified
    /// (the MAC passed) when the reason is `duplicate-key`, `invalid-payload`, or a
    /// `too-large`/`malformed` that came from the payload's JSON; otherwise only claimed.
    pub claimed_key: Option<StateKey>,
    /// Why.
    pub reason: Reason,
}

/// What a reconnect bundle restored: accepted entries by state key, and rejected ones with
/// their reasons. One bad entry never affects another.
#[derive(Debug, Default)]
pub struct Restored {
    accepted: BTreeMap<StateKey, RawEntry>,
    rejected: Vec<Rejected>,
}

impl Restored {
    /// The entry for `key` as a `T`: `Ok(None)` if the bundle had no accepted entry for it,
    /// `Err` with `invalid-payload` if its JSON is not a `T`.
    ///
    /// # Errors
    /// `invalid-payload`.
    pub fn get<T: DeserializeOwned>(&self, key: &StateKey) -> Result<Option<Opened<T>>, Rejection> {
        let Some(e) = self.accepted.get(key) else {
            return Ok(None);
        };
        let value =
            serde_json::from_str(e.value.get()).map_err(|err| Rejection::new(json_reason(&err)))?;
        Ok(Some(Opened {
            key: e.key,
            revision: e.revision,
            schema: e.schema,
            step: e.step,
            value,
        }))
    }

    /// As [`get`](Self::get), but an entry sealed with another schema version is `outdated`
    /// (a new deploy that cannot read the old shape starts that component fresh).
    ///
    /// # Errors
    /// `outdated` or `invalid-payload`.
    pub fn get_schema<T: DeserializeOwned>(
        &self,
        key: &StateKey,
        schema: u32,
    ) -> Result<Option<Opened<T>>, Rejection> {
        match self.accepted.get(key) {
            Some(e) if e.schema != schema => Err(Rejection::new(Reason::Outdated)),
            _ => self.get(key),
        }
    }

    /// The accepted entry for `key`, unparsed.
    #[must_use]
    pub fn raw(&self, key: &StateKey) -> Option<&RawEntry> {
        self.accepted.get(key)
    }

    /// Accepted entries, by state key.
    pub fn accepted(&self) -> impl Iterator<Item = &RawEntry> {
        self.accepted.values()
    }

    /// Rejected entries, in bundle order.
    #[must_use]
    pub fn rejected(&self) -> &[Rejected] {
        &self.rejected
    }

    /// Number of accepted entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.accepted.len()
    }

    /// Whether nothing was accepted.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.accepted.is_empty()
    }
}

/// A parsed bundle borrowing from its JSON text. Made by [`Bundle::parse`].
#[derive(Debug)]
pub struct Bundle<'a> {
    salt: Salt,
    entries: Vec<Cow<'a, str>>,
}

impl<'a> Bundle<'a> {
    /// Parses the JSON wire form under `limits`: the byte size first, then the salt and at
    /// most `max_entries` tokens (strings only; each later checked against the token cap).
    ///
    /// # Errors
    /// `too-large` over the byte or entry cap; `malformed` for anything that is not a bundle
    /// (including a bad salt).
    pub fn parse(json: &'a [u8], limits: &crate::Limits) -> Result<Self, Rejection> {
        if json.len() > limits.max_bundle_bytes() {
            return Err(Rejection::new(Reason::TooLarge));
        }
        let mut de = serde_json::Deserializer::from_slice(json);
        let seed = BundleSeed {
            max_entries: limits.max_entries(),
        };
        let wire = seed.deserialize(&mut de).map_err(|e| {
            Rejection::new(if e.to_string().starts_with(TOO_MANY) {
                Reason::TooLarge
            } else {
                Reason::Malformed
            })
        })?;
        de.end().map_err(|_| Rejection::new(Reason::Malformed))?;
        let salt = Salt::decode(&wire.salt).map_err(|_| Rejection::new(Reason::Malformed))?;
        Ok(Self {
            salt,
            entries: wire.entries,
        })
    }

    /// The client's salt.
    #[must_use]
    pub fn salt(&self) -> &Salt {
        &self.salt
    }

    /// The tokens, in order.
    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|c| c.as_ref())
    }

    /// The number of tokens.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the bundle has no tokens.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Builds the JSON wire form of a bundle (what the JS client sends).
#[must_use]
pub fn bundle_json<'t>(salt: &Salt, tokens: impl IntoIterator<Item = &'t str>) -> String {
    let entries: Vec<&str> = tokens.into_iter().collect();
    serde_json::json!({ "salt": salt.encode(), "entries": entries }).to_string()
}

impl Recovery {
    /// Parses and opens a reconnect bundle for the (optional) authenticated `subject`.
    ///
    /// # Errors
    /// A bundle-level `too-large` or `malformed` (see [`Bundle::parse`]); per-entry problems
    /// are in [`Restored::rejected`] instead.
    pub fn open_bundle(&self, subject: Option<&str>, json: &[u8]) -> Result<Restored, Rejection> {
        let bundle = Bundle::parse(json, self.limits())?;
        let scope = Scope::new(bundle.salt()).with_optional_subject(subject);
        Ok(self.open_entries(&scope, bundle.tokens()))
    }

    /// Opens tokens one by one for `scope`. Each token is checked against the token cap before
    /// it is decoded; two authentic tokens for the same key are both rejected with
    /// `duplicate-key`. At most `max_entries` tokens are opened; the rest are `too-large`.
    pub fn open_entries<'t>(
        &self,
        scope: &Scope<'_>,
        tokens: impl IntoIterator<Item = &'t str>,
    ) -> Restored {
        let mut rejected = Vec::new();
        let mut opened: Vec<(usize, RawEntry)> = Vec::new();
        let max = self.limits().max_entries();
        let mut batch = Batch::many();
        for (index, token) in tokens.into_iter().enumerate() {
            if index >= max {
                rejected.push(Rejected {
                    index,
                    claimed_key: None,
                    reason: Reason::TooLarge,
                });
                continue;
            }
            let result = self.open_bytes_in(
                scope,
                token.as_bytes(),
                None,
                &mut batch,
                parse_json::<Box<RawValue>>,
            );
            match result {
                Ok(entry) => opened.push((index, entry)),
                Err(f) => rejected.push(Rejected {
                    index,
                    claimed_key: f.claimed,
                    reason: f.reason,
                }),
            }
        }
        // Twins: sorted by key (stably, so in bundle order within a key), every run of two or
        // more authentic entries for one key is rejected whole: neither twin wins. One sort
        // instead of three tree look-ups per entry; the map is then built from sorted input.
        opened.sort_by_key(|(_, entry)| entry.key);
        let mut accepted = Vec::with_capacity(opened.len());
        let mut twin_of: Option<StateKey> = None;
        let mut entries = opened.into_iter().peekable();
        while let Some((index, entry)) = entries.next() {
            let key = entry.key;
            let has_twin_after = entries.peek().is_some_and(|(_, next)| next.key == key);
            if has_twin_after || twin_of == Some(key) {
                twin_of = Some(key);
                rejected.push(Rejected {
                    index,
                    claimed_key: Some(key),
                    reason: Reason::DuplicateKey,
                });
            } else {
                accepted.push((key, entry));
            }
        }
        rejected.sort_by_key(|r| r.index);
        Restored {
            accepted: accepted.into_iter().collect(),
            rejected,
        }
    }
}

const TOO_MANY: &str = "state-recovery: too many entries";

struct WireBundle<'a> {
    salt: Cow<'a, str>,
    entries: Vec<Cow<'a, str>>,
}

struct BundleSeed {
    max_entries: usize,
}

impl<'de> DeserializeSeed<'de> for BundleSeed {
    type Value = WireBundle<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BundleSeed {
    type Value = WireBundle<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a reconnect bundle object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut salt: Option<Cow<'de, str>> = None;
        let mut entries: Option<Vec<Cow<'de, str>>> = None;
        while let Some(field) = map.next_key::<Cow<'de, str>>()? {
            match field.as_ref() {
                "salt" if salt.is_none() => salt = Some(map.next_value::<Cow<'de, str>>()?),
                "entries" if entries.is_none() => {
                    entries = Some(map.next_value_seed(EntriesSeed {
                        max: self.max_entries,
                    })?);
                }
                "salt" | "entries" => return Err(de::Error::custom("duplicate field")),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(WireBundle {
            salt: salt.ok_or_else(|| de::Error::missing_field("salt"))?,
            entries: entries.unwrap_or_default(),
        })
    }
}

struct EntriesSeed {
    max: usize,
}

impl<'de> DeserializeSeed<'de> for EntriesSeed {
    type Value = Vec<Cow<'de, str>>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed {
    type Value = Vec<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of token strings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max).min(64));
        while let Some(t) = seq.next_element::<Cow<'de, str>>()? {
            if out.len() >= self.max {
                return Err(de::Error::custom(TOO_MANY));
            }
            out.push(t);
        }
        Ok(out)
    }
}
