//! Key manifests: the state keys an application declares, and what changed between two of them.
//!
//! An application's pieces of state ("slots") each have a [`StateKey`], a location text, the
//! schema versions they read and the one they write, and aliases (older keys still restored).
//! A [`Manifest`] lists them; [`diff`] compares the manifest of a running release (OLD) with
//! the one of the next (NEW) and says which state NEW would lose, so that a release check can
//! refuse it (`state-recovery keys diff OLD NEW`).
//!
//! The JSON form, as [`Manifest::to_json`] writes it and [`Manifest::parse`] reads it:
//!
//! ```json
//! {
//!   "format": "state-recovery-manifest/1",
//!   "namespace": "state-recovery-demo",
//!   "keys": [
//!     {
//!       "key": "0123456789abcdef0123456789abcdef",
//!       "location": "demo::components@wizard",
//!       "schema": 2,
//!       "reads": [1, 2],
//!       "writes": 1,
//!       "aliases": [
//!         { "key": "fedcba9876543210fedcba9876543210", "location": "examples/demo/components.rs:265:9" }
//!       ]
//!     }
//!   ]
//! }
//! ```
//!
//! Every field is required (`schema` and `writes` may be `null`, `reads` and `aliases` empty);
//! unknown fields are refused.
//!
//! ```
//! use state_recovery::manifest::{diff, DiffOptions, FindingKind, Manifest, ManifestKey};
//! use state_recovery::StateKey;
//!
//! let slot = |schema, reads: &[u32], writes| ManifestKey {
//!     key: StateKey::from_bytes([7; 16]),
//!     location: "app::cart@items".to_owned(),
//!     schema: Some(schema),
//!     reads: reads.to_vec(),
//!     writes: Some(writes),
//!     aliases: vec![],
//! };
//! let old = Manifest { namespace: "shop".to_owned(), keys: vec![slot(1, &[1], 1)] };
//! // Schema 2 reads 1 through a migration, but writes 2, which OLD workers cannot read.
//! let new = Manifest { namespace: "shop".to_owned(), keys: vec![slot(2, &[1, 2], 2)] };
//! assert_eq!(Manifest::parse(&new.to_json())?, new);
//!
//! let d = diff(&old, &new, DiffOptions::default());
//! assert!(d.is_breaking());
//! assert_eq!(d.findings[0].kind, FindingKind::NotBackwardCompatible);
//! // Without two releases running side by side, the same change is fine.
//! assert!(!diff(&old, &new, DiffOptions { no_overlap: true }).is_breaking());
//! # Ok::<(), state_recovery::manifest::ManifestError>(())
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::key::StateKey;

/// The value of the `format` field of every manifest this version reads and writes.
pub const FORMAT: &str = "state-recovery-manifest/1";

/// The largest manifest [`Manifest::parse`] reads, in bytes (16 MiB); larger input is refused
/// before any parsing.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;

/// How many characters of the input an error message repeats at most.
const ECHO_CHARS: usize = 64;

/// How many characters of a serde_json message an error keeps (they may quote the input).
const MESSAGE_CHARS: usize = 200;

/// The state keys one application declares, in one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The application namespace, bound into every state key and tag.
    pub namespace: String,
    /// The declared keys, one per slot or registered location.
    pub keys: Vec<ManifestKey>,
}

/// One declared state key: a slot, or a location registered without one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestKey {
    /// The key entries are sealed under.
    pub key: StateKey,
    /// Where the state is declared, as text (a component path or `FILE:LINE:COLUMN`).
    pub location: String,
    /// The current schema version; `None` for a location registered without a slot.
    pub schema: Option<u32>,
    /// The schema versions it restores: the current one and those it has migrations from.
    /// Empty for a location registered without a slot.
    pub reads: Vec<u32>,
    /// The schema version it seals with: normally `schema`, an older one while a new schema
    /// is rolled out (expand/contract). `None` for a location registered without a slot.
    pub writes: Option<u32>,
    /// Keys this state had before, still restored.
    pub aliases: Vec<ManifestAlias>,
}

/// A key a slot used to have (e.g. before its declaration moved) and still restores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestAlias {
    /// The old key.
    pub key: StateKey,
    /// Where the state used to be declared, as text.
    pub location: String,
}

/// Why a manifest could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The input is larger than [`MAX_BYTES`]; it was not parsed.
    #[error("manifest is larger than {max} bytes")]
    TooLarge {
        /// The limit, in bytes.
        max: usize,
    },
    /// The input is not JSON.
    #[error("not JSON: {message} at line {line} column {column}")]
    NotJson {
        /// serde_json's description (shortened if long).
        message: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
    /// The input is JSON, but not of the manifest's shape: not an object, a missing, unknown
    /// or repeated field, or a value of the wrong type.
    #[error("{message} at line {line} column {column}")]
    Shape {
        /// serde_json's description (shortened if long).
        message: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
    /// The object has no `format` field.
    #[error("missing field `format`: expected \"{expected}\"")]
    MissingFormat {
        /// The format this version reads, [`FORMAT`].
        expected: &'static str,
    },
    /// The `format` field is not [`FORMAT`].
    #[error("format is {found}, expected \"{expected}\"")]
    WrongFormat {
        /// The value found, as JSON, shortened to 64 characters.
        found: String,
        /// The format this version reads, [`FORMAT`].
        expected: &'static str,
    },
    /// A key that is not 32 hex digits.
    #[error("{position} is not 32 hex digits")]
    InvalidKey {
        /// Where, e.g. `keys[3].key` or `keys[3].aliases[0].key`.
        position: String,
    },
    /// The same key twice: as two primary keys, two aliases, or a key and an alias.
    #[error("key {key} appears twice: at {first} and at {second}")]
    DuplicateKey {
        /// The repeated key.
        key: StateKey,
        /// Where it appears first.
        first: String,
        /// Where it appears again.
        second: String,
    },
    /// The same schema version listed twice in `reads`.
    #[error("{position} lists schema {version} more than once")]
    DuplicateRead {
        /// Where, e.g. `keys[3].reads`.
        position: String,
        /// The repeated version.
        version: u32,
    },
    /// `writes` is a version that `reads` does not list.
    #[error("{position}.writes is {writes}, which {position}.reads does not list")]
    WritesNotRead {
        /// The entry, e.g. `keys[3]`.
        position: String,
        /// The version it writes.
        writes: u32,
    },
    /// `schema` is a version that `reads` does not list.
    #[error("{position}.schema is {schema}, which {position}.reads does not list")]
    SchemaNotRead {
        /// The entry, e.g. `keys[3]`.
        position: String,
        /// The current schema version.
        schema: u32,
    },
    /// Some but not all of `schema`, `writes` and `reads` are set.
    #[error("{position} must set all of schema, writes and reads, or none (null, null, [])")]
    PartialSlot {
        /// The entry, e.g. `keys[3]`.
        position: String,
    },
}

impl Manifest {
    /// The manifest as pretty-printed JSON (2-space indent, trailing newline). Deterministic:
    /// keys sorted by key, `reads` ascending, aliases sorted by key.
    #[must_use]
    pub fn to_json(&self) -> String {
        let mut keys: Vec<WireKey> = self.keys.iter().map(WireKey::from_key).collect();
        keys.sort_by(|a, b| a.key.cmp(&b.key));
        let wire = WireManifest {
            format: FORMAT.to_owned(),
            namespace: self.namespace.clone(),
            keys: keys.into_iter().map(Object).collect(),
        };
        // Plain structs of strings and integers always serialize; were that ever to fail, the
        // empty text would not parse as a manifest, so it could not pass unnoticed.
        let mut text = serde_json::to_string_pretty(&wire).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Reads a manifest, strictly: every field present, no unknown field, keys of 32 hex
    /// digits, no key twice, `writes` and `schema` listed in `reads`.
    ///
    /// # Errors
    /// A [`ManifestError`] naming what is wrong and where.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        if text.len() > MAX_BYTES {
            return Err(ManifestError::TooLarge { max: MAX_BYTES });
        }
        // First the format alone, so that another kind of file is named as such rather than
        // by its first unknown field.
        let probe: Object<Probe> = serde_json::from_str(text).map_err(json_error)?;
        check_format(probe.0.format)?;
        let wire: Object<WireManifest> = serde_json::from_str(text).map_err(json_error)?;
        wire.0.into_manifest()
    }
}

/// Compares a running release's manifest (OLD) with the next one's (NEW).
///
/// Each OLD key needs a successor in NEW: the same key, or a NEW entry that lists it as an
/// alias. Findings come in OLD key order, then `added` in NEW key order.
#[must_use]
pub fn diff(old: &Manifest, new: &Manifest, opts: DiffOptions) -> Diff {
    let mut findings = Vec::new();
    let mut old_keys: Vec<&ManifestKey> = old.keys.iter().collect();
    old_keys.sort_by_key(|k| k.key);
    let mut new_keys: Vec<&ManifestKey> = new.keys.iter().collect();
    new_keys.sort_by_key(|k| k.key);

    if old.namespace != new.namespace {
        // Tags and keys both bind the namespace: nothing OLD sealed opens under NEW.
        let detail = format!(
            "namespace {:?} in OLD, {:?} in NEW: nothing sealed under OLD opens under NEW",
            old.namespace, new.namespace
        );
        findings.extend(old_keys.iter().map(|o| Finding {
            kind: FindingKind::NamespaceChanged,
            key: o.key,
            location: o.location.clone(),
            detail: detail.clone(),
        }));
        return Diff { findings };
    }

    let mut primary: HashMap<StateKey, &ManifestKey> = HashMap::new();
    let mut alias: HashMap<StateKey, &ManifestKey> = HashMap::new();
    for n in &new_keys {
        primary.entry(n.key).or_insert(n);
        for a in &n.aliases {
            alias.entry(a.key).or_insert(n);
        }
    }

    for o in &old_keys {
        let (successor, same_key) = match (primary.get(&o.key), alias.get(&o.key)) {
            (Some(n), _) => (*n, true),
            (None, Some(n)) => (*n, false),
            (None, None) => {
                findings.push(Finding::new(
                    FindingKind::Dropped,
                    o,
                    "no successor (same key or alias) in NEW".to_owned(),
                ));
                continue;
            }
        };
        if !same_key {
            findings.push(Finding::new(
                FindingKind::Renamed,
                o,
                format!(
                    "now {} ({}), restored through its alias; during a rolling deploy OLD \
                     workers do not know the new key and start it fresh",
                    successor.key, successor.location
                ),
            ));
        }
        compare_schemas(o, successor, same_key, opts, &mut findings);
    }

    let old_primary: HashSet<StateKey> = old_keys.iter().map(|o| o.key).collect();
    let old_alias: HashSet<StateKey> = old_keys
        .iter()
        .flat_map(|o| o.aliases.iter().map(|a| a.key))
        .collect();
    for n in &new_keys {
        let known = old_primary.contains(&n.key)
            || old_alias.contains(&n.key)
            || n.aliases.iter().any(|a| old_primary.contains(&a.key));
        if !known {
            findings.push(Finding::new(
                FindingKind::Added,
                n,
                "new key, no predecessor in OLD".to_owned(),
            ));
        }
    }
    Diff { findings }
}

/// The schema findings for OLD entry `o` and its successor `n` (both slots; locations
/// registered without a slot compare by key only).
fn compare_schemas(
    o: &ManifestKey,
    n: &ManifestKey,
    same_key: bool,
    opts: DiffOptions,
    findings: &mut Vec<Finding>,
) {
    let (Some(old_writes), Some(new_writes)) = (o.writes, n.writes) else {
        return;
    };
    if !n.reads.contains(&old_writes) {
        findings.push(Finding::new(
            FindingKind::Unreadable,
            o,
            format!(
                "OLD writes schema {old_writes}, NEW reads only {}: state sealed by OLD would \
                 start fresh under NEW (add a migration from {old_writes})",
                versions(&n.reads)
            ),
        ));
        return;
    }
    if same_key && !o.reads.contains(&new_writes) {
        let (kind, detail) = if opts.no_overlap {
            (
                FindingKind::SchemaChanged,
                format!(
                    "writes schema {old_writes} in OLD, {new_writes} in NEW, which OLD does \
                     not read; fine since OLD and NEW never run side by side"
                ),
            )
        } else {
            (
                FindingKind::NotBackwardCompatible,
                format!(
                    "NEW writes schema {new_writes}, OLD reads only {}: during a rolling \
                     deploy OLD workers start fresh what NEW sealed; seal as schema \
                     {old_writes} first (release NEW with writes {old_writes}, switch writes to \
                     {new_writes} in the release after: expand/contract)",
                    versions(&o.reads)
                ),
            )
        };
        findings.push(Finding::new(kind, o, detail));
        return;
    }
    let mut sorted_old = o.reads.clone();
    sorted_old.sort_unstable();
    let mut sorted_new = n.reads.clone();
    sorted_new.sort_unstable();
    if o.schema != n.schema || old_writes != new_writes || sorted_old != sorted_new {
        let schema = |s: Option<u32>| s.map_or_else(|| "none".to_owned(), |v| v.to_string());
        findings.push(Finding::new(
            FindingKind::SchemaChanged,
            o,
            format!(
                "schema {} reads {} writes {old_writes} in OLD, schema {} reads {} writes \
                 {new_writes} in NEW",
                schema(o.schema),
                versions(&sorted_old),
                schema(n.schema),
                versions(&sorted_new)
            ),
        ));
    }
}

/// `[1, 2]`.
fn versions(v: &[u32]) -> String {
    let items: Vec<String> = v.iter().map(u32::to_string).collect();
    format!("[{}]", items.join(", "))
}

/// Options for [`diff`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffOptions {
    /// OLD and NEW never run side by side (all OLD workers stop before any NEW one starts), so
    /// NEW may write a schema version OLD does not read: reported as `schema-changed` instead
    /// of `not-backward-compatible`.
    pub no_overlap: bool,
}

/// What [`diff`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    /// The findings, OLD keys first (in key order), then keys added in NEW.
    pub findings: Vec<Finding>,
}

impl Diff {
    /// Whether any finding means that NEW would lose state: a release check should refuse it.
    #[must_use]
    pub fn is_breaking(&self) -> bool {
        self.findings.iter().any(Finding::is_breaking)
    }
}

/// One difference between two manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What kind of difference.
    pub kind: FindingKind,
    /// The key concerned: OLD's key, or NEW's for `added`.
    pub key: StateKey,
    /// The location text of that key's entry.
    pub location: String,
    /// A sentence saying what changed and what it does to users' state.
    pub detail: String,
}

impl Finding {
    fn new(kind: FindingKind, entry: &ManifestKey, detail: String) -> Self {
        Self {
            kind,
            key: entry.key,
            location: entry.location.clone(),
            detail,
        }
    }

    /// Whether this finding means that NEW would lose state.
    #[must_use]
    pub const fn is_breaking(&self) -> bool {
        self.kind.is_breaking()
    }
}

/// The kinds of [`Finding`], each with a stable kebab-case [`code`](FindingKind::code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FindingKind {
    /// Breaking: an OLD key that is neither a key nor an alias in NEW; its state is lost.
    Dropped,
    /// Breaking: NEW's successor does not read the schema version OLD writes; that state
    /// starts fresh under NEW.
    Unreadable,
    /// Breaking (unless [`DiffOptions::no_overlap`]): NEW writes, under the same key, a schema
    /// version OLD does not read, so OLD workers lose what NEW workers sealed during a rolling
    /// deploy.
    NotBackwardCompatible,
    /// Breaking: the namespaces differ, so every key and tag changes.
    NamespaceChanged,
    /// Informational: a NEW key with no predecessor in OLD.
    Added,
    /// Informational: an OLD key that NEW restores as an alias of another key.
    Renamed,
    /// Informational: the schema versions changed, compatibly.
    SchemaChanged,
}

impl FindingKind {
    /// Every kind, breaking ones first.
    pub const ALL: [FindingKind; 7] = [
        FindingKind::Dropped,
        FindingKind::Unreadable,
        FindingKind::NotBackwardCompatible,
        FindingKind::NamespaceChanged,
        FindingKind::Added,
        FindingKind::Renamed,
        FindingKind::SchemaChanged,
    ];

    /// The stable kebab-case code, e.g. `not-backward-compatible`.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            FindingKind::Dropped => "dropped",
            FindingKind::Unreadable => "unreadable",
            FindingKind::NotBackwardCompatible => "not-backward-compatible",
            FindingKind::NamespaceChanged => "namespace-changed",
            FindingKind::Added => "added",
            FindingKind::Renamed => "renamed",
            FindingKind::SchemaChanged => "schema-changed",
        }
    }

    /// Whether findings of this kind mean that NEW would lose state.
    #[must_use]
    pub const fn is_breaking(self) -> bool {
        matches!(
            self,
            FindingKind::Dropped
                | FindingKind::Unreadable
                | FindingKind::NotBackwardCompatible
                | FindingKind::NamespaceChanged
        )
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

// The wire form. serde derive accepts a struct written as a JSON array too; `Object` makes
// each of them accept only an object.

/// Only the `format` field, everything else skipped unread.
#[derive(Deserialize)]
struct Probe {
    /// `None` only when absent (`null` is a wrong format, not a missing one).
    #[serde(default, deserialize_with = "present")]
    format: Option<Value>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireManifest {
    format: String,
    namespace: String,
    keys: Vec<Object<WireKey>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireKey {
    key: String,
    location: String,
    #[serde(deserialize_with = "required")]
    schema: Option<u32>,
    reads: Vec<u32>,
    #[serde(deserialize_with = "required")]
    writes: Option<u32>,
    aliases: Vec<Object<WireAlias>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireAlias {
    key: String,
    location: String,
}

/// A nullable field that must still be present (serde lets a missing `Option` be `None`).
fn required<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Option::<u32>::deserialize(d)
}

/// A struct that deserializes from a JSON object only, never from an array.
#[derive(Serialize)]
#[serde(transparent)]
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(ObjectVisitor(PhantomData)).map(Object)
    }
}

impl WireKey {
    fn from_key(k: &ManifestKey) -> Self {
        let mut reads = k.reads.clone();
        reads.sort_unstable();
        let mut aliases: Vec<&ManifestAlias> = k.aliases.iter().collect();
        aliases.sort_by_key(|a| a.key);
        Self {
            key: k.key.to_string(),
            location: k.location.clone(),
            schema: k.schema,
            reads,
            writes: k.writes,
            aliases: aliases
                .into_iter()
                .map(|a| {
                    Object(WireAlias {
                        key: a.key.to_string(),
                        location: a.location.clone(),
                    })
                })
                .collect(),
        }
    }
}

impl WireManifest {
    fn into_manifest(self) -> Result<Manifest, ManifestError> {
        // Where each key was seen first, to name both places of a repeat.
        let mut seen: HashMap<StateKey, String> = HashMap::new();
        let mut note = |key: StateKey, position: String| match seen.get(&key) {
            Some(first) => Err(ManifestError::DuplicateKey {
                key,
                first: first.clone(),
                second: position,
            }),
            None => {
                seen.insert(key, position);
                Ok(())
            }
        };
        let mut keys = Vec::with_capacity(self.keys.len());
        for (i, Object(k)) in self.keys.into_iter().enumerate() {
            let entry = format!("keys[{i}]");
            let key = parse_key(&k.key, format!("{entry}.key"))?;
            note(key, format!("{entry}.key"))?;
            check_slot(&entry, k.schema, &k.reads, k.writes)?;
            let mut aliases = Vec::with_capacity(k.aliases.len());
            for (j, Object(a)) in k.aliases.into_iter().enumerate() {
                let position = format!("{entry}.aliases[{j}].key");
                let alias = parse_key(&a.key, position.clone())?;
                note(alias, position)?;
                aliases.push(ManifestAlias {
                    key: alias,
                    location: a.location,
                });
            }
            keys.push(ManifestKey {
                key,
                location: k.location,
                schema: k.schema,
                reads: k.reads,
                writes: k.writes,
                aliases,
            });
        }
        Ok(Manifest {
            namespace: self.namespace,
            keys,
        })
    }
}

fn parse_key(text: &str, position: String) -> Result<StateKey, ManifestError> {
    StateKey::from_hex(text).ok_or(ManifestError::InvalidKey { position })
}

/// A slot sets schema, writes and reads, both versions listed in reads; a location without a
/// slot sets none of them.
fn check_slot(
    entry: &str,
    schema: Option<u32>,
    reads: &[u32],
    writes: Option<u32>,
) -> Result<(), ManifestError> {
    let mut listed = HashSet::new();
    for &version in reads {
        if !listed.insert(version) {
            return Err(ManifestError::DuplicateRead {
                position: format!("{entry}.reads"),
                version,
            });
        }
    }
    match (schema, writes) {
        (None, None) if reads.is_empty() => Ok(()),
        (Some(schema), Some(writes)) => {
            if !listed.contains(&writes) {
                Err(ManifestError::WritesNotRead {
                    position: entry.to_owned(),
                    writes,
                })
            } else if !listed.contains(&schema) {
                Err(ManifestError::SchemaNotRead {
                    position: entry.to_owned(),
                    schema,
                })
            } else {
                Ok(())
            }
        }
        _ => Err(ManifestError::PartialSlot {
            position: entry.to_owned(),
        }),
    }
}

fn check_format(found: Option<Value>) -> Result<(), ManifestError> {
    match found {
        Some(Value::String(s)) if s == FORMAT => Ok(()),
        Some(other) => Err(ManifestError::WrongFormat {
            found: shorten(&other.to_string(), ECHO_CHARS),
            expected: FORMAT,
        }),
        None => Err(ManifestError::MissingFormat { expected: FORMAT }),
    }
}

/// serde_json's error, split into its message and position, the message shortened.
fn json_error(e: serde_json::Error) -> ManifestError {
    let (line, column) = (e.line(), e.column());
    let full = e.to_string();
    let suffix = format!(" at line {line} column {column}");
    let message = shorten(full.strip_suffix(&suffix).unwrap_or(&full), MESSAGE_CHARS);
    match e.classify() {
        serde_json::error::Category::Data => ManifestError::Shape {
            message,
            line,
            column,
        },
        _ => ManifestError::NotJson {
            message,
            line,
            column,
        },
    }
}

/// At most `max` characters of `s`, with `…` when some were cut.
fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", s.get(..cut).unwrap_or_default()),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(byte: u8) -> StateKey {
        StateKey::from_bytes([byte; 16])
    }

    fn hex(byte: u8) -> String {
        key(byte).to_string()
    }

    fn slot(byte: u8, schema: u32, reads: &[u32], writes: u32) -> ManifestKey {
        ManifestKey {
            key: key(byte),
            location: format!("app::slot@{byte}"),
            schema: Some(schema),
            reads: reads.to_vec(),
            writes: Some(writes),
            aliases: vec![],
        }
    }

    fn bare(byte: u8) -> ManifestKey {
        ManifestKey {
            key: key(byte),
            location: format!("src/app.rs:{byte}:1"),
            schema: None,
            reads: vec![],
            writes: None,
            aliases: vec![],
        }
    }

    fn with_alias(mut k: ManifestKey, byte: u8) -> ManifestKey {
        k.aliases.push(ManifestAlias {
            key: key(byte),
            location: format!("old@{byte}"),
        });
        k
    }

    fn manifest(keys: Vec<ManifestKey>) -> Manifest {
        Manifest {
            namespace: "ns".to_owned(),
            keys,
        }
    }

    fn kinds(d: &Diff) -> Vec<(FindingKind, StateKey)> {
        d.findings.iter().map(|f| (f.kind, f.key)).collect()
    }

    fn run(old: &Manifest, new: &Manifest) -> Diff {
        diff(old, new, DiffOptions::default())
    }

    // --- JSON form ---

    #[test]
    fn round_trips_and_writes_sorted() {
        let m = manifest(vec![
            with_alias(with_alias(slot(9, 2, &[2, 1], 1), 0x30), 0x20),
            bare(3),
        ]);
        let text = m.to_json();
        assert!(text.ends_with("}\n"), "{text}");
        assert!(text.starts_with("{\n  \"format\": \"state-recovery-manifest/1\",\n"));
        let back = Manifest::parse(&text).unwrap();
        // Sorted: keys by key, reads ascending, aliases by key.
        assert_eq!(back.keys[0], bare(3));
        assert_eq!(back.keys[1].reads, [1, 2]);
        assert_eq!(back.keys[1].aliases[0].key, key(0x20));
        assert_eq!(back.keys[1].aliases[1].key, key(0x30));
        assert_eq!(back.to_json(), text);
        assert_eq!(Manifest::parse(&back.to_json()).unwrap(), back);

        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            json!({
                "format": FORMAT,
                "namespace": "ns",
                "keys": [
                    {"key": hex(3), "location": "src/app.rs:3:1", "schema": null, "reads": [],
                     "writes": null, "aliases": []},
                    {"key": hex(9), "location": "app::slot@9", "schema": 2, "reads": [1, 2],
                     "writes": 1, "aliases": [
                        {"key": hex(0x20), "location": "old@32"},
                        {"key": hex(0x30), "location": "old@48"}]},
                ]
            })
        );
        let empty = manifest(vec![]);
        assert_eq!(Manifest::parse(&empty.to_json()).unwrap(), empty);
        // Upper-case hex is read (and written back in lower case).
        let upper = Manifest::parse(&doc(vec![entry(&"AB".repeat(16))]).to_string()).unwrap();
        assert_eq!(upper.keys[0].key, key(0xab));
        assert!(upper.to_json().contains(&hex(0xab)));
    }

    fn entry(k: &str) -> Value {
        json!({"key": k, "location": "l", "schema": 1, "reads": [1], "writes": 1, "aliases": []})
    }

    fn doc(keys: Vec<Value>) -> Value {
        json!({"format": FORMAT, "namespace": "ns", "keys": keys})
    }

    fn parse(v: &Value) -> Result<Manifest, ManifestError> {
        Manifest::parse(&v.to_string())
    }

    fn set(mut v: Value, key_index: usize, field: &str, value: Value) -> Value {
        v["keys"][key_index][field] = value;
        v
    }

    fn with(mut e: Value, field: &str, value: Value) -> Value {
        e[field] = value;
        e
    }

    fn remove(mut v: Value, key_index: usize, field: &str) -> Value {
        v["keys"][key_index].as_object_mut().unwrap().remove(field);
        v
    }

    #[test]
    fn refuses_what_is_not_json() {
        for text in ["", "{", "nul", "{\"format\": 1,}", "{} x", "\u{feff}{}"] {
            let err = Manifest::parse(text).unwrap_err();
            assert!(
                matches!(err, ManifestError::NotJson { .. }),
                "{text}: {err}"
            );
            assert!(err.to_string().starts_with("not JSON: "), "{err}");
            assert!(err.to_string().contains(" at line 1 column "), "{err}");
        }
        let err = Manifest::parse("{\n  \"format\": ]").unwrap_err();
        assert_eq!(
            err,
            ManifestError::NotJson {
                message: "expected value".into(),
                line: 2,
                column: 13
            }
        );
        assert_eq!(
            err.to_string(),
            "not JSON: expected value at line 2 column 13"
        );
    }

    #[test]
    fn refuses_what_is_not_an_object() {
        for text in [
            "42",
            "\"x\"",
            "null",
            "[]",
            "[\"state-recovery-manifest/1\", \"ns\", []]",
        ] {
            let err = Manifest::parse(text).unwrap_err();
            assert!(matches!(err, ManifestError::Shape { .. }), "{text}: {err}");
            assert!(err.to_string().contains("expected a JSON object"), "{err}");
        }
        // Nor an entry or alias written as an array.
        let arr = doc(vec![json!([hex(1), "l", 1, [1], 1, []])]);
        let err = parse(&arr).unwrap_err();
        assert!(err.to_string().contains("expected a JSON object"), "{err}");
        let alias = set(
            doc(vec![entry(&hex(1))]),
            0,
            "aliases",
            json!([[hex(2), "l"]]),
        );
        let err = parse(&alias).unwrap_err();
        assert!(err.to_string().contains("expected a JSON object"), "{err}");
    }

    #[test]
    fn refuses_a_missing_or_wrong_format() {
        let err = parse(&json!({"namespace": "ns", "keys": []})).unwrap_err();
        assert_eq!(err, ManifestError::MissingFormat { expected: FORMAT });
        assert_eq!(
            err.to_string(),
            "missing field `format`: expected \"state-recovery-manifest/1\""
        );
        // Another kind of file is named by its format, not by its unknown fields.
        let err = parse(&json!({"format": "state-recovery-manifest/2", "other": 1})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "format is \"state-recovery-manifest/2\", expected \"state-recovery-manifest/1\""
        );
        let err = parse(&json!({"format": null, "namespace": "ns", "keys": []})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "format is null, expected \"state-recovery-manifest/1\""
        );
        let err = parse(&json!({"format": 1})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "format is 1, expected \"state-recovery-manifest/1\""
        );
        // A long value is not echoed in full.
        let err = parse(&json!({"format": "x".repeat(10_000)})).unwrap_err();
        let ManifestError::WrongFormat { found, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(found.chars().count(), 65, "{found}");
        assert!(found.ends_with('…'));
        assert!(err.to_string().len() < 200);
        let err = parse(&json!({"format": {"a": ["é".repeat(100)]}})).unwrap_err();
        assert!(err.to_string().len() < 300, "{err}");
    }

    #[test]
    fn refuses_missing_unknown_and_mistyped_fields() {
        let good = doc(vec![entry(&hex(1))]);
        assert!(parse(&good).is_ok());
        for field in ["key", "location", "schema", "reads", "writes", "aliases"] {
            let err = parse(&remove(good.clone(), 0, field)).unwrap_err();
            assert!(matches!(err, ManifestError::Shape { .. }), "{field}: {err}");
            assert!(
                err.to_string()
                    .starts_with(&format!("missing field `{field}` at line 1")),
                "{err}"
            );
        }
        for field in ["namespace", "keys"] {
            let mut v = good.clone();
            v.as_object_mut().unwrap().remove(field);
            let err = parse(&v).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("missing field `{field}`")),
                "{err}"
            );
        }
        let alias = set(good.clone(), 0, "aliases", json!([{"key": hex(2)}]));
        assert!(parse(&alias)
            .unwrap_err()
            .to_string()
            .starts_with("missing field `location`"));

        // Typos are caught, at every level.
        let mut top = good.clone();
        top["namspace"] = json!("ns");
        let typo = set(good.clone(), 0, "raeds", json!([1]));
        let alias = set(
            good.clone(),
            0,
            "aliases",
            json!([{"key": hex(2), "location": "l", "loc": "x"}]),
        );
        for v in [top, typo, alias] {
            let err = parse(&v).unwrap_err();
            assert!(err.to_string().starts_with("unknown field `"), "{err}");
        }
        // A long unknown field name is not echoed in full.
        let long = set(good.clone(), 0, &"z".repeat(5_000), json!(1));
        let err = parse(&long).unwrap_err();
        assert!(err.to_string().len() < 300, "{err}");

        for (field, value) in [
            ("schema", json!("2")),
            ("schema", json!(-1)),
            ("schema", json!(1.5)),
            ("writes", json!(4_294_967_296_u64)),
            ("reads", json!(1)),
            ("key", json!(1)),
            ("location", json!(null)),
            ("aliases", json!({})),
        ] {
            let err = parse(&set(good.clone(), 0, field, value.clone())).unwrap_err();
            assert!(
                matches!(err, ManifestError::Shape { .. }),
                "{field} {value}: {err}"
            );
        }
        let mut dup = good.to_string();
        dup.insert_str(1, "\"namespace\": \"a\", ");
        let err = Manifest::parse(&dup).unwrap_err();
        assert!(
            err.to_string().starts_with("duplicate field `namespace`"),
            "{err}"
        );
    }

    #[test]
    fn refuses_keys_that_are_not_32_hex_digits() {
        for bad in [
            "",
            "ab",
            &"g".repeat(32),
            &"a".repeat(31),
            &"a".repeat(33),
            &"é".repeat(16),
        ] {
            let v = doc(vec![
                entry(&hex(1)),
                entry(&hex(2)),
                entry(&hex(3)),
                entry(bad),
            ]);
            let err = parse(&v).unwrap_err();
            assert_eq!(
                err,
                ManifestError::InvalidKey {
                    position: "keys[3].key".into()
                }
            );
            assert_eq!(err.to_string(), "keys[3].key is not 32 hex digits");
        }
        let v = set(
            doc(vec![entry(&hex(1))]),
            0,
            "aliases",
            json!([{"key": hex(2), "location": "a"}, {"key": "nope", "location": "b"}]),
        );
        assert_eq!(
            parse(&v).unwrap_err().to_string(),
            "keys[0].aliases[1].key is not 32 hex digits"
        );
    }

    #[test]
    fn refuses_a_key_twice() {
        let alias = |k: u8| json!([{"key": hex(k), "location": "old"}]);
        let cases = [
            (
                doc(vec![entry(&hex(1)), entry(&hex(2)), entry(&hex(1))]),
                "keys[0].key",
                "keys[2].key",
            ),
            (
                doc(vec![
                    entry(&hex(1)),
                    with(entry(&hex(2)), "aliases", alias(1)),
                ]),
                "keys[0].key",
                "keys[1].aliases[0].key",
            ),
            (
                doc(vec![
                    with(entry(&hex(2)), "aliases", alias(1)),
                    entry(&hex(1)),
                ]),
                "keys[0].aliases[0].key",
                "keys[1].key",
            ),
            (
                doc(vec![
                    with(entry(&hex(2)), "aliases", alias(9)),
                    with(entry(&hex(3)), "aliases", alias(9)),
                ]),
                "keys[0].aliases[0].key",
                "keys[1].aliases[0].key",
            ),
            (
                doc(vec![with(entry(&hex(2)), "aliases", alias(2))]),
                "keys[0].key",
                "keys[0].aliases[0].key",
            ),
        ];
        for (v, first, second) in cases {
            let err = parse(&v).unwrap_err();
            let ManifestError::DuplicateKey {
                first: f,
                second: s,
                ..
            } = &err
            else {
                panic!("{err}")
            };
            assert_eq!((f.as_str(), s.as_str()), (first, second), "{err}");
            assert!(err
                .to_string()
                .contains(&format!("at {first} and at {second}")));
        }
        // Two keys differing only in case are the same key.
        let err = parse(&doc(vec![entry(&hex(0xab)), entry(&"AB".repeat(16))])).unwrap_err();
        assert!(matches!(err, ManifestError::DuplicateKey { .. }), "{err}");
    }

    #[test]
    fn refuses_inconsistent_slots() {
        let one = |e: Value| doc(vec![e]);
        let e = || entry(&hex(1));
        let err = parse(&one(with(e(), "writes", json!(2)))).unwrap_err();
        assert_eq!(
            err,
            ManifestError::WritesNotRead {
                position: "keys[0]".into(),
                writes: 2
            }
        );
        assert_eq!(
            err.to_string(),
            "keys[0].writes is 2, which keys[0].reads does not list"
        );
        let err = parse(&one(with(e(), "schema", json!(2)))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "keys[0].schema is 2, which keys[0].reads does not list"
        );
        let err = parse(&one(with(e(), "reads", json!([1, 2, 1])))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "keys[0].reads lists schema 1 more than once"
        );
        let slot = |schema: Value, reads: Value, writes: Value| {
            with(
                with(with(e(), "schema", schema), "reads", reads),
                "writes",
                writes,
            )
        };
        for (schema, reads, writes) in [
            (json!(null), json!([1]), json!(1)),
            (json!(1), json!([1]), json!(null)),
            (json!(null), json!([1]), json!(null)),
            (json!(null), json!([]), json!(1)),
            (json!(1), json!([]), json!(null)),
        ] {
            let v = doc(vec![entry(&hex(2)), slot(schema, reads, writes)]);
            let err = parse(&v).unwrap_err();
            assert_eq!(
                err,
                ManifestError::PartialSlot {
                    position: "keys[1]".into()
                },
                "{v}"
            );
            assert_eq!(
                err.to_string(),
                "keys[1] must set all of schema, writes and reads, or none (null, null, [])"
            );
        }
        assert!(parse(&one(slot(json!(null), json!([]), json!(null)))).is_ok());
        // Writing an older version than the current one (expand/contract) is fine.
        assert!(parse(&one(slot(json!(2), json!([2, 1]), json!(1)))).is_ok());
    }

    #[test]
    fn refuses_oversized_input_unparsed() {
        let mut text = " ".repeat(MAX_BYTES);
        text.push('{');
        assert_eq!(
            Manifest::parse(&text).unwrap_err(),
            ManifestError::TooLarge { max: MAX_BYTES }
        );
        // At the cap it is parsed (and is not JSON).
        text.pop();
        assert!(matches!(
            Manifest::parse(&text).unwrap_err(),
            ManifestError::NotJson { .. }
        ));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!(
            "{{\"format\": {}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(Manifest::parse(&deep).is_err());
        let v = doc(vec![with(entry(&hex(1)), "extra", json!(null))]);
        let deep = v
            .to_string()
            .replace("null", &format!("{}{}", "[".repeat(200), "]".repeat(200)));
        assert!(Manifest::parse(&deep).is_err());
    }

    // --- diff ---

    #[test]
    fn identical_manifests_have_no_findings() {
        let m = manifest(vec![
            slot(1, 2, &[1, 2], 2),
            bare(2),
            with_alias(slot(3, 1, &[1], 1), 4),
        ]);
        let d = run(&m, &m);
        assert_eq!(d.findings, []);
        assert!(!d.is_breaking());
        // Order in the file does not matter.
        let mut shuffled = m.clone();
        shuffled.keys.reverse();
        shuffled.keys[0].reads.reverse();
        assert_eq!(run(&m, &shuffled).findings, []);
    }

    #[test]
    fn dropped_and_added() {
        let old = manifest(vec![slot(1, 1, &[1], 1), bare(2)]);
        let new = manifest(vec![slot(1, 1, &[1], 1), slot(5, 1, &[1], 1)]);
        let d = run(&old, &new);
        assert_eq!(
            kinds(&d),
            [(FindingKind::Dropped, key(2)), (FindingKind::Added, key(5))]
        );
        assert_eq!(d.findings[0].location, "src/app.rs:2:1");
        assert_eq!(
            d.findings[0].detail,
            "no successor (same key or alias) in NEW"
        );
        assert_eq!(d.findings[1].location, "app::slot@5");
        assert!(d.is_breaking());
        // Only adding is fine.
        let d = run(&manifest(vec![]), &new);
        assert_eq!(
            kinds(&d),
            [(FindingKind::Added, key(1)), (FindingKind::Added, key(5))]
        );
        assert!(!d.is_breaking());
        // Keeping only an alias of OLD is not enough: OLD's primary key needs a successor.
        let old = manifest(vec![with_alias(bare(1), 9)]);
        let new = manifest(vec![with_alias(bare(2), 9)]);
        assert_eq!(
            kinds(&run(&old, &new)),
            [(FindingKind::Dropped, key(1)), (FindingKind::Added, key(2))]
        );
    }

    #[test]
    fn renamed_through_an_alias() {
        let old = manifest(vec![slot(1, 1, &[1], 1)]);
        let new = manifest(vec![with_alias(slot(7, 1, &[1], 1), 1)]);
        let d = run(&old, &new);
        assert_eq!(kinds(&d), [(FindingKind::Renamed, key(1))]);
        assert!(!d.is_breaking());
        let f = &d.findings[0];
        assert_eq!(f.location, "app::slot@1");
        assert!(
            f.detail.contains(&hex(7)) && f.detail.contains("app::slot@7"),
            "{}",
            f.detail
        );
        assert!(f.detail.contains("OLD workers"), "{}", f.detail);
        // A rename with a new schema OLD cannot read is no rolling-deploy problem (OLD
        // workers do not see the new key), and a merge of two OLD keys is fine.
        let old = manifest(vec![slot(1, 1, &[1], 1), bare(2)]);
        let new = manifest(vec![with_alias(with_alias(slot(7, 2, &[1, 2], 2), 1), 2)]);
        let d = run(&old, &new);
        assert_eq!(
            kinds(&d),
            [
                (FindingKind::Renamed, key(1)),
                (FindingKind::SchemaChanged, key(1)),
                (FindingKind::Renamed, key(2))
            ]
        );
        assert!(!d.is_breaking());
    }

    #[test]
    fn schema_bumps() {
        let old = manifest(vec![slot(1, 1, &[1], 1)]);
        // With a migration, but writing the new version: OLD workers cannot read it.
        let writes_new = manifest(vec![slot(1, 2, &[1, 2], 2)]);
        let d = run(&old, &writes_new);
        assert_eq!(kinds(&d), [(FindingKind::NotBackwardCompatible, key(1))]);
        assert!(d.is_breaking());
        assert!(
            d.findings[0].detail.contains("seal as schema 1 first"),
            "{}",
            d.findings[0].detail
        );
        let d = diff(&old, &writes_new, DiffOptions { no_overlap: true });
        assert_eq!(kinds(&d), [(FindingKind::SchemaChanged, key(1))]);
        assert!(!d.is_breaking());

        // The same bump written as the old version first (expand), then switched (contract).
        let expand = manifest(vec![slot(1, 2, &[1, 2], 1)]);
        let d = run(&old, &expand);
        assert_eq!(kinds(&d), [(FindingKind::SchemaChanged, key(1))]);
        assert!(!d.is_breaking());
        let d = run(&expand, &writes_new);
        assert_eq!(kinds(&d), [(FindingKind::SchemaChanged, key(1))]);
        assert!(!d.is_breaking());
        assert_eq!(
            d.findings[0].detail,
            "schema 2 reads [1, 2] writes 1 in OLD, schema 2 reads [1, 2] writes 2 in NEW"
        );

        // Without a migration: OLD's state starts fresh. With no overlap too.
        let no_migration = manifest(vec![slot(1, 2, &[2], 2)]);
        for opts in [DiffOptions::default(), DiffOptions { no_overlap: true }] {
            let d = diff(&old, &no_migration, opts);
            assert_eq!(kinds(&d), [(FindingKind::Unreadable, key(1))]);
            assert!(d.is_breaking());
        }
        // Through an alias as well.
        let renamed = manifest(vec![with_alias(slot(7, 2, &[2], 2), 1)]);
        assert_eq!(
            kinds(&run(&old, &renamed)),
            [
                (FindingKind::Renamed, key(1)),
                (FindingKind::Unreadable, key(1))
            ]
        );

        // Dropping a migration from a version OLD no longer writes only changes reads.
        let d = run(&writes_new, &manifest(vec![slot(1, 2, &[2], 2)]));
        assert_eq!(kinds(&d), [(FindingKind::SchemaChanged, key(1))]);
        assert!(!d.is_breaking());
    }

    #[test]
    fn locations_without_slots_compare_by_key() {
        let old = manifest(vec![bare(1), slot(2, 1, &[1], 1)]);
        let new = manifest(vec![slot(1, 3, &[3], 3), bare(2)]);
        assert_eq!(run(&old, &new).findings, []);
    }

    #[test]
    fn namespace_change_breaks_every_key() {
        let old = manifest(vec![slot(2, 1, &[1], 1), bare(1)]);
        let mut new = old.clone();
        new.namespace = "other".to_owned();
        let d = run(&old, &new);
        assert_eq!(
            kinds(&d),
            [
                (FindingKind::NamespaceChanged, key(1)),
                (FindingKind::NamespaceChanged, key(2))
            ]
        );
        assert!(d.is_breaking());
        assert!(d.findings[0]
            .detail
            .contains("\"ns\" in OLD, \"other\" in NEW"));
        // Nothing to lose.
        let empty = manifest(vec![]);
        let d = run(
            &empty,
            &Manifest {
                namespace: "other".into(),
                keys: vec![],
            },
        );
        assert!(!d.is_breaking());
    }

    #[test]
    fn hand_built_duplicates_do_not_panic() {
        let m = manifest(vec![
            bare(1),
            bare(1),
            with_alias(bare(2), 1),
            with_alias(bare(3), 1),
        ]);
        let d = run(&m, &m);
        assert!(!d.is_breaking(), "{d:?}");
    }

    #[test]
    fn codes_are_kebab_case_and_unique() {
        let mut seen = HashSet::new();
        for k in FindingKind::ALL {
            let c = k.code();
            assert!(
                c.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{c}"
            );
            assert!(seen.insert(c));
            assert_eq!(k.to_string(), c);
        }
        let breaking: Vec<_> = FindingKind::ALL
            .into_iter()
            .filter(|k| k.is_breaking())
            .collect();
        assert_eq!(breaking.len(), 4);
    }
}
