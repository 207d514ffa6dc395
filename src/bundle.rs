//! Reconnect bundles: the salt and every token a client holds, opened entry by entry.
//!
//! Wire form (JSON): `{"salt":"<22 chars>","entries":["<token>", ...]}`, the signed part of
//! the reconnect message (`{"type":"recover",...}`, see [`protocol`](crate::protocol)). Other
//! fields are ignored here (client input rides along and is read by its own, untrusted, path).
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
    /// The revision the token claims, under the same terms as `claimed_key`. A
    /// [`RecoveryContext`](crate::RecoveryContext) continues revisions above it, so the next
    /// update for that key is one the client keeps.
    pub claimed_revision: Option<u64>,
    /// Why.
    pub reason: Reason,
}

/// What a reconnect bundle restored: accepted entries by state key, and rejected ones with
/// their reasons. One bad entry never affects another.
///
/// Its `Debug` lists the accepted entries without their payloads (as [`Opened`]'s does) and
/// the rejected ones (index, claimed key and revision, reason).
#[derive(Default, Clone)]
pub struct Restored {
    accepted: BTreeMap<StateKey, RawEntry>,
    /// Where each accepted entry was in the bundle.
    positions: BTreeMap<StateKey, usize>,
    rejected: Vec<Rejected>,
    /// Tokens past the entry cap, skipped unread (a count, so they cost no memory).
    overflow: usize,
}

impl fmt::Debug for Restored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Restored")
            .field("accepted", &self.accepted.values().collect::<Vec<_>>())
            .field("rejected", &self.rejected)
            .finish()
    }
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
            primary: e.primary,
            kind: e.kind,
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

    /// The position in the bundle of the accepted entry for `key`.
    #[must_use]
    pub fn index_of(&self, key: &StateKey) -> Option<usize> {
        self.positions.get(key).copied()
    }

    /// Accepted entries, by state key.
    pub fn accepted(&self) -> impl Iterator<Item = &RawEntry> {
        self.accepted.values()
    }

    /// Rejected entries, in bundle order (at most the entry cap; see
    /// [`overflow`](Self::overflow) for the tokens past it).
    #[must_use]
    pub fn rejected(&self) -> &[Rejected] {
        &self.rejected
    }

    /// How many tokens came after the entry cap: skipped unread, each counted as a rejected
    /// entry (`too-large`) without being kept.
    #[must_use]
    pub const fn overflow(&self) -> usize {
        self.overflow
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

    /// Removes the accepted entry for `key` (it is then neither accepted nor rejected), with
    /// its position in the bundle.
    pub(crate) fn take_accepted(&mut self, key: &StateKey) -> Option<(RawEntry, usize)> {
        let entry = self.accepted.remove(key)?;
        let index = self.positions.remove(key).unwrap_or_default();
        Some((entry, index))
    }

    /// Moves every accepted entry for which `reject` holds to the rejected ones, with
    /// `reason` (for checks after the MAC, such as the guard's), keeping bundle order.
    /// Returns how many moved.
    pub(crate) fn reject_where(
        &mut self,
        reason: Reason,
        reject: impl Fn(&RawEntry) -> bool,
    ) -> usize {
        let keys: Vec<StateKey> = self
            .accepted
            .iter()
            .filter(|(_, e)| reject(e))
            .map(|(k, _)| *k)
            .collect();
        for key in &keys {
            if let Some(entry) = self.accepted.remove(key) {
                let index = self.positions.remove(key).unwrap_or_default();
                self.rejected.push(Rejected {
                    index,
                    claimed_key: Some(*key),
                    claimed_revision: Some(entry.revision),
                    reason,
                });
            }
        }
        if !keys.is_empty() {
            self.rejected.sort_by_key(|r| r.index);
        }
        keys.len()
    }
}

/// A parsed bundle borrowing from its JSON text. Made by [`Bundle::parse`].
///
/// Its `Debug` shows counts only: the salt redacted (as [`Salt`]'s own `Debug` does), the
/// number of tokens and of those past the entry cap, never a token.
pub struct Bundle<'a> {
    salt: Salt,
    /// Each token as written; an entry with a JSON escape is kept as `Escaped` (its text is
    /// not kept) and rejected alone as `malformed`.
    entries: Vec<WireStr<'a>>,
    /// Tokens past the entry cap: skipped unread, each rejected as `too-large`.
    overflow: usize,
}

impl fmt::Debug for Bundle<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bundle")
            .field("salt", &self.salt)
            .field("entries", &self.entries.len())
            .field("overflow", &self.overflow)
            .finish()
    }
}

impl<'a> Bundle<'a> {
    /// Parses the JSON wire form under `limits`: the byte size first, then the salt and at
    /// most `max_entries` tokens (strings only; each later checked against the token cap).
    /// Tokens past the entry cap are skipped unread and counted
    /// ([`Restored::overflow`]): a client with too many entries loses the extras, never all
    /// of them.
    ///
    /// The salt and the tokens must be written without JSON escapes (`"\u0041..."` is a
    /// second spelling of `"A..."`, and every byte string has exactly one accepted text): an
    /// escaped salt makes the bundle `malformed`, an escaped token is rejected alone as
    /// `malformed`.
    ///
    /// # Errors
    /// `too-large` over the byte cap; `malformed` for anything that is not a bundle
    /// (including a bad or escaped salt).
    pub fn parse(json: &'a [u8], limits: &crate::Limits) -> Result<Self, Rejection> {
        if json.len() > limits.max_bundle_bytes() {
            return Err(Rejection::new(Reason::TooLarge));
        }
        let mut de = serde_json::Deserializer::from_slice(json);
        let seed = BundleSeed {
            max_entries: limits.max_entries(),
        };
        let wire = seed
            .deserialize(&mut de)
            .map_err(|_| Rejection::new(Reason::Malformed))?;
        de.end().map_err(|_| Rejection::new(Reason::Malformed))?;
        Self::from_parts(wire.salt, wire.entries)
    }

    /// Opens every token for `scope`, with the tokens past the entry cap counted in
    /// [`Restored::overflow`].
    pub(crate) fn open(&self, recovery: &Recovery, scope: &Scope<'_>) -> Restored {
        let mut restored = recovery.open_wire(scope, self.entries.iter().map(|e| e.verbatim()));
        restored.overflow = self.overflow;
        restored
    }

    /// A bundle from the parts of a reconnect message parsed elsewhere: the salt as written
    /// and the `entries` array's JSON text (read with the entry cap).
    pub(crate) fn from_raw_parts(
        salt: WireStr<'_>,
        entries: Option<&'a RawValue>,
        limits: &crate::Limits,
    ) -> Result<Self, Rejection> {
        let entries = match entries {
            None => (Vec::new(), 0),
            Some(raw) => {
                let mut de = serde_json::Deserializer::from_str(raw.get());
                EntriesSeed {
                    max: limits.max_entries(),
                }
                .deserialize(&mut de)
                .map_err(|_| Rejection::new(Reason::Malformed))?
            }
        };
        Self::from_parts(salt, entries)
    }

    fn from_parts(salt: WireStr<'_>, (entries, overflow): Entries<'a>) -> Result<Self, Rejection> {
        let salt = salt
            .verbatim()
            .and_then(|s| Salt::decode(s).ok())
            .ok_or(Rejection::new(Reason::Malformed))?;
        Ok(Self {
            salt,
            entries,
            overflow,
        })
    }

    /// The client's salt.
    #[must_use]
    pub fn salt(&self) -> &Salt {
        &self.salt
    }

    /// The tokens, in order, without the entries written with a JSON escape (which are
    /// rejected as `malformed`).
    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().filter_map(|e| e.verbatim())
    }

    /// The token at `index` of the bundle, unless it was written with an escape.
    pub(crate) fn entry(&self, index: usize) -> Option<&str> {
        self.entries.get(index).and_then(|e| e.verbatim())
    }

    /// The number of entries within the entry cap (escaped ones included).
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the bundle has no entries within the entry cap.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The reconnect message for a salt and tokens, with no client input:
/// `{"type":"recover","salt":...,"entries":[...]}`, exactly what the JS client sends first on
/// every connection (and what [`Recovery::open_bundle`] and
/// [`Endpoint::recover`](crate::protocol::Endpoint::recover) read).
#[must_use]
pub fn reconnect_message<'t>(salt: &Salt, tokens: impl IntoIterator<Item = &'t str>) -> String {
    let entries: Vec<&str> = tokens.into_iter().collect();
    serde_json::json!({ "type": "recover", "salt": salt.encode(), "entries": entries }).to_string()
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
        Ok(bundle.open(self, &scope))
    }

    /// Opens tokens one by one for `scope`. Each token is checked against the token cap before
    /// it is decoded; two authentic tokens for the same key are both rejected with
    /// `duplicate-key`. At most `max_entries` tokens are opened; the rest are `too-large`.
    pub fn open_entries<'t>(
        &self,
        scope: &Scope<'_>,
        tokens: impl IntoIterator<Item = &'t str>,
    ) -> Restored {
        self.open_wire(scope, tokens.into_iter().map(Some))
    }

    /// [`open_entries`](Self::open_entries), with `None` for an entry refused before it is
    /// read (written with a JSON escape): `malformed` at its index.
    fn open_wire<'t>(
        &self,
        scope: &Scope<'_>,
        tokens: impl IntoIterator<Item = Option<&'t str>>,
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
                    claimed_revision: None,
                    reason: Reason::TooLarge,
                });
                continue;
            }
            let Some(token) = token else {
                rejected.push(Rejected {
                    index,
                    claimed_key: None,
                    claimed_revision: None,
                    reason: Reason::Malformed,
                });
                continue;
            };
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
                    claimed_revision: f.claimed_revision,
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
                    claimed_revision: Some(entry.revision),
                    reason: Reason::DuplicateKey,
                });
            } else {
                accepted.push((key, index, entry));
            }
        }
        rejected.sort_by_key(|r| r.index);
        Restored {
            positions: accepted.iter().map(|(k, i, _)| (*k, *i)).collect(),
            accepted: accepted.into_iter().map(|(k, _, e)| (k, e)).collect(),
            rejected,
            overflow: 0,
        }
    }
}

/// The tokens within the entry cap, and how many came after it.
type Entries<'a> = (Vec<WireStr<'a>>, usize);

/// A JSON string of the wire form as it was written: borrowed from the message when it has no
/// escape (serde_json borrows exactly those strings from slice and str input), `Escaped`
/// otherwise. An escape spells the same bytes a second way, so salts and tokens written
/// with one are refused; their unescaped text is never kept (serde_json's scratch buffer is
/// reused), so memory stays bounded by the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WireStr<'a> {
    Verbatim(&'a str),
    Escaped,
}

impl<'a> WireStr<'a> {
    pub(crate) const fn verbatim(self) -> Option<&'a str> {
        match self {
            WireStr::Verbatim(s) => Some(s),
            WireStr::Escaped => None,
        }
    }
}

impl<'de: 'a, 'a> de::Deserialize<'de> for WireStr<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WireStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(WireStr::Verbatim(s))
            }
            // Only a string that needed an owned copy (unescaping) comes this way.
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(WireStr::Escaped)
            }
        }
        d.deserialize_str(V)
    }
}

struct WireBundle<'a> {
    salt: WireStr<'a>,
    entries: Entries<'a>,
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
        let mut salt: Option<WireStr<'de>> = None;
        let mut entries: Option<Entries<'de>> = None;
        while let Some(field) = map.next_key::<Cow<'de, str>>()? {
            match field.as_ref() {
                "salt" if salt.is_none() => salt = Some(map.next_value::<WireStr<'de>>()?),
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
    type Value = Entries<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed {
    type Value = Entries<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of token strings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max).min(64));
        while out.len() < self.max {
            match seq.next_element::<WireStr<'de>>()? {
                Some(t) => out.push(t),
                None => return Ok((out, 0)),
            }
        }
        // Past the cap: skipped without keeping anything (the bundle's bytes are capped).
        let mut overflow = 0usize;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            overflow = overflow.saturating_add(1);
        }
        Ok((out, overflow))
    }
}
