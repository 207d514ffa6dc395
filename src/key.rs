//! State keys: which piece of state an entry belongs to, as a keyed hash of where that state
//! is declared.
//!
//! A location has one of two forms:
//!
//! - **Named** (the default, [`state_key!("cart")`](crate::state_key)): the crate and module
//!   path of the declaration (`module_path!()`) and a name chosen by its author. Adding lines
//!   or comments, reordering items and reformatting never change it; renaming the state,
//!   renaming its module or moving it to another module does (list the old location as an
//!   alias of the slot, see [`SlotBuilder::alias`](crate::SlotBuilder::alias)).
//! - **Source** ([`source_key!()`](crate::source_key)): `file!()`, `line!()`, `column!()`.
//!   It changes with **every edit above the declaration**, so keep it for generated code
//!   (and for frameworks whose own component paths are stable).
//!
//! ```text
//! location_key = the configured location key, or
//!                HMAC-SHA256(key = "state-recovery/v1/default-location-key", msg = namespace)
//! named:  StateKey = first 16 bytes of HMAC-SHA256(location_key,
//!                        PAE["state-recovery/v2/named-key", namespace]
//!                      ‖ PAE[module, name, presence ‖ instance])
//! source: StateKey = first 16 bytes of HMAC-SHA256(location_key,
//!                        PAE["state-recovery/v1/location", namespace]
//!                      ‖ PAE[file, BE32(line), BE32(column), presence ‖ instance])
//! ```
//! (`presence` is 0x00 without an instance, 0x01 with one; both PAE blocks are
//! self-delimiting, so each concatenation is unambiguous, and the two forms start with
//! different labels, so a named key never equals a source key.)
//!
//! The key reveals no path or name to whoever does not hold the location key, is the same on
//! every worker that shares the configuration, and does not depend on the peppers, so it
//! survives their rotation.

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use crate::error::ConfigError;
use crate::mac::{self, HmacSha256};

const LOCATION_LABEL: &[u8] = b"state-recovery/v1/location";
const NAMED_LABEL: &[u8] = b"state-recovery/v2/named-key";
const DEFAULT_LOCATION_KEY_LABEL: &[u8] = b"state-recovery/v1/default-location-key";
/// The label of the key the [guard](crate::guard) hashes its store ids with.
pub(crate) const STORE_ID_LABEL: &[u8] = b"state-recovery/v1/store-id";
/// The label of the reserved state key of the applied-events entry
/// ([`Recovery::applied_key`](crate::Recovery::applied_key)).
const APPLIED_LABEL: &[u8] = b"state-recovery/v1/applied-events";

/// The longest name of a named location, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Whether `name` is a valid name for a named location: 1 to 64 bytes of
/// `[A-Za-z0-9_.-/]`. [`state_key!`](crate::state_key) checks it at compile time.
#[must_use]
pub const fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > MAX_NAME_LEN {
        return false;
    }
    let mut rest = b;
    while let [c, tail @ ..] = rest {
        let c = *c;
        if !(c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.' || c == b'/') {
            return false;
        }
        rest = tail;
    }
    true
}

/// Whether `module` looks like a `module_path!()`: non-empty, at most 256 bytes, no `@`,
/// `#`, whitespace or control characters.
fn is_valid_module(module: &str) -> bool {
    !module.is_empty()
        && module.len() <= 256
        && !module
            .chars()
            .any(|c| c == '@' || c == '#' || c.is_whitespace() || c.is_control())
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Form {
    Named {
        module: Cow<'static, str>,
        name: Cow<'static, str>,
    },
    Source {
        file: Cow<'static, str>,
        line: u32,
        column: u32,
    },
}

/// Where a piece of state is declared, with an optional instance path for components that are
/// rendered more than once (a list row, a tab). Hashed into its [`StateKey`].
///
/// Make one with [`state_key!("name")`](crate::state_key) (named, survives edits), with
/// [`source_key!()`](crate::source_key) (file, line and column: changes with every edit), or
/// with [`Location::named`] / [`Location::new`] from a framework's own component paths.
///
/// Text form (the CLI, manifests, logs): `MODULE@NAME[#INSTANCE]` or
/// `FILE:LINE:COLUMN[#INSTANCE]`. Equality and hashing ignore where a named location was
/// declared ([`declared_at`](Self::declared_at)), which only serves error messages.
#[derive(Debug, Clone)]
pub struct Location {
    form: Form,
    instance: Option<String>,
    declared_at: Option<&'static str>,
}

impl PartialEq for Location {
    fn eq(&self, other: &Self) -> bool {
        self.form == other.form && self.instance == other.instance
    }
}

impl Eq for Location {}

impl Hash for Location {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.form.hash(state);
        self.instance.hash(state);
    }
}

impl Location {
    /// A source location from its parts. `file` must not contain `#`. It changes whenever
    /// code above it is edited: prefer [`Location::named`].
    #[must_use]
    pub fn new(file: impl Into<Cow<'static, str>>, line: u32, column: u32) -> Self {
        Self {
            form: Form::Source {
                file: file.into(),
                line,
                column,
            },
            instance: None,
            declared_at: None,
        }
    }

    /// A named location: a module path (as `module_path!()` gives it, crate first) and a
    /// name (see [`is_valid_name`]; a [`Registry`](crate::Registry) refuses invalid ones).
    #[must_use]
    pub fn named(module: impl Into<Cow<'static, str>>, name: impl Into<Cow<'static, str>>) -> Self {
        Self {
            form: Form::Named {
                module: module.into(),
                name: name.into(),
            },
            instance: None,
            declared_at: None,
        }
    }

    /// The same location for one instance of a repeated component (e.g. `"todo/3"`).
    #[must_use]
    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// Records where the declaration is (`file:line:column`), for error messages only: it is
    /// not hashed. [`state_key!`](crate::state_key) sets it.
    #[must_use]
    pub const fn declared_at(mut self, site: &'static str) -> Self {
        self.declared_at = Some(site);
        self
    }

    /// Whether this is a named location.
    #[must_use]
    pub const fn is_named(&self) -> bool {
        matches!(self.form, Form::Named { .. })
    }

    /// The module path of a named location.
    #[must_use]
    pub fn module(&self) -> Option<&str> {
        match &self.form {
            Form::Named { module, .. } => Some(module),
            Form::Source { .. } => None,
        }
    }

    /// The name of a named location.
    #[must_use]
    pub fn name(&self) -> Option<&str> {
        match &self.form {
            Form::Named { name, .. } => Some(name),
            Form::Source { .. } => None,
        }
    }

    /// The file of a source location.
    #[must_use]
    pub fn file(&self) -> Option<&str> {
        match &self.form {
            Form::Source { file, .. } => Some(file),
            Form::Named { .. } => None,
        }
    }

    /// The line of a source location.
    #[must_use]
    pub const fn line(&self) -> Option<u32> {
        match &self.form {
            Form::Source { line, .. } => Some(*line),
            Form::Named { .. } => None,
        }
    }

    /// The column of a source location.
    #[must_use]
    pub const fn column(&self) -> Option<u32> {
        match &self.form {
            Form::Source { column, .. } => Some(*column),
            Form::Named { .. } => None,
        }
    }

    /// The instance path, if any.
    #[must_use]
    pub fn instance(&self) -> Option<&str> {
        self.instance.as_deref()
    }

    /// Where the declaration is, if recorded (see [`declared_at`](Self::declared_at)).
    #[must_use]
    pub const fn site(&self) -> Option<&'static str> {
        self.declared_at
    }

    /// Checks what a [`Registry`](crate::Registry) requires: a valid name and module, or a
    /// non-empty file without `#`.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let ok = match &self.form {
            Form::Named { module, name } => is_valid_name(name) && is_valid_module(module),
            Form::Source { file, .. } => !file.is_empty() && !file.contains('#'),
        };
        if ok {
            Ok(())
        } else {
            Err(ConfigError::InvalidLocation(self.to_string()))
        }
    }

    /// The location and, when known and different, where it is declared: for error messages.
    pub(crate) fn described(&self) -> String {
        match self.declared_at {
            Some(site) if self.is_named() => format!("{self} (declared at {site})"),
            _ => self.to_string(),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.form {
            Form::Named { module, name } => write!(f, "{module}@{name}")?,
            Form::Source { file, line, column } => write!(f, "{file}:{line}:{column}")?,
        }
        if let Some(i) = &self.instance {
            write!(f, "#{i}")?;
        }
        Ok(())
    }
}

impl FromStr for Location {
    type Err = ConfigError;

    /// Parses `FILE:LINE:COLUMN[#INSTANCE]` (the file may itself contain `:`) or
    /// `MODULE@NAME[#INSTANCE]`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ConfigError::InvalidLocation(s.into());
        let (pos, instance) = match s.split_once('#') {
            Some((p, i)) => (p, Some(i.to_owned())),
            None => (s, None),
        };
        let location = match parse_source(pos) {
            Some(Ok(loc)) => loc,
            Some(Err(())) => return Err(bad()),
            None => {
                let (module, name) = pos.rsplit_once('@').ok_or_else(bad)?;
                Self::named(module.to_owned(), name.to_owned())
            }
        };
        let location = Self {
            instance,
            ..location
        };
        location.validate().map_err(|_| bad())?;
        Ok(location)
    }
}

/// `FILE:LINE:COLUMN`: `None` if the text does not end in two `:`-separated fields of digits
/// (so it may be a named location), `Some(Err)` if it does but they are out of range.
fn parse_source(pos: &str) -> Option<Result<Location, ()>> {
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let (rest, column) = pos.rsplit_once(':')?;
    let (file, line) = rest.rsplit_once(':')?;
    if !digits(line) || !digits(column) {
        return None;
    }
    Some(match (line.parse(), column.parse()) {
        (Ok(l), Ok(c)) if !file.is_empty() => Ok(Location::new(file.to_owned(), l, c)),
        _ => Err(()),
    })
}

/// The named [`Location`] of a piece of state: the calling module's `module_path!()` and a
/// name, optionally with an instance path. The name is checked at compile time (1 to 64 of
/// `[A-Za-z0-9_.-/]`). Edits, reordering and reformatting never change it; renaming the name
/// or the module does (declare the old location as an alias).
///
/// ```
/// use state_recovery::{state_key, Location};
/// let cart: Location = state_key!("cart");
/// assert_eq!(cart.name(), Some("cart"));
/// assert_eq!(cart.module(), Some(module_path!()));
/// let row = state_key!("todo", format!("row/{}", 3));
/// assert_eq!(row.instance(), Some("row/3"));
/// ```
///
/// An invalid name does not compile:
///
/// ```compile_fail
/// let _ = state_recovery::state_key!("no spaces");
/// ```
#[macro_export]
macro_rules! state_key {
    () => {
        ::core::compile_error!(
            "state_key!() needs a name, e.g. state_key!(\"cart\"); for generated code, \
             source_key!() hashes file:line:column (and changes with every edit)"
        )
    };
    ($name:literal) => {{
        const _: () = ::core::assert!(
            $crate::key::is_valid_name($name),
            "state_key!: a name is 1 to 64 of [A-Za-z0-9_.-/]"
        );
        $crate::Location::named(::core::module_path!(), $name).declared_at(::core::concat!(
            ::core::file!(),
            ":",
            ::core::line!(),
            ":",
            ::core::column!()
        ))
    }};
    ($name:literal, $instance:expr) => {
        $crate::state_key!($name).with_instance($instance)
    };
}

/// The source [`Location`] of the macro call: `file!()`, `line!()`, `column!()`, optionally
/// with an instance path. **It changes whenever lines are added above it**, so state sealed
/// by one build is not restored by the next: use it for generated code, and
/// [`state_key!("name")`](crate::state_key) everywhere else.
///
/// ```
/// use state_recovery::{source_key, Location};
/// let here: Location = source_key!();
/// assert_eq!(here.file(), Some(file!()));
/// let row = source_key!(format!("todo/{}", 3));
/// assert_eq!(row.instance(), Some("todo/3"));
/// ```
#[macro_export]
macro_rules! source_key {
    () => {
        $crate::Location::new(::core::file!(), ::core::line!(), ::core::column!())
    };
    ($instance:expr) => {
        $crate::Location::new(::core::file!(), ::core::line!(), ::core::column!())
            .with_instance($instance)
    };
}

/// The 128-bit keyed hash of a [`Location`] that names an entry on the wire.
///
/// Displayed (and parsed) as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateKey([u8; 16]);

impl StateKey {
    /// Length in bytes.
    pub const LEN: usize = 16;

    /// A key from raw bytes (for frameworks that store keys, and for tests).
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses 32 hex digits (either case).
    #[must_use]
    pub fn from_hex(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
            let hi = hex_val(*pair.first()?)?;
            let lo = hex_val(*pair.get(1)?)?;
            *o = (hi << 4) | lo;
        }
        Some(Self(out))
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c.wrapping_sub(b'0')),
        b'a'..=b'f' => Some(c.wrapping_sub(b'a').wrapping_add(10)),
        b'A'..=b'F' => Some(c.wrapping_sub(b'A').wrapping_add(10)),
        _ => None,
    }
}

impl fmt::Display for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateKey({self})")
    }
}

impl FromStr for StateKey {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s).ok_or(ConfigError::InvalidStateKey)
    }
}

/// Hashes locations into state keys. Cheap to clone.
#[derive(Clone)]
pub(crate) struct LocationHasher {
    /// The MAC state after `PAE[source label, namespace]`.
    source: HmacSha256,
    /// The MAC state after `PAE[named label, namespace]`.
    named: HmacSha256,
    /// A MAC state keyed with the guard's store-id key,
    /// `HMAC(lk, PAE[store-id label, namespace])`.
    store_ids: HmacSha256,
    /// Whether `lk` is a configured location key (a secret) rather than derived from the
    /// namespace.
    secret: bool,
    /// The reserved key of the applied-events entry: the first 16 bytes of
    /// `HMAC(lk, PAE[applied label, namespace])`, an input no location produces (see
    /// [`applied_key`](Self::applied_key)).
    applied: StateKey,
}

impl LocationHasher {
    /// With an explicit location key, or one derived from the namespace alone.
    pub(crate) fn new(namespace: &[u8], location_key: Option<&[u8]>) -> Self {
        let derived;
        let key = match location_key {
            Some(k) => k,
            None => {
                derived = mac::hmac_sha256(DEFAULT_LOCATION_KEY_LABEL, namespace);
                &derived
            }
        };
        let prefixed = |label: &[u8]| {
            let mut m = mac::keyed(key);
            mac::pae_update(&mut m, &[&[label], &[namespace]]);
            m
        };
        let mut id_key = zeroize::Zeroizing::new([0u8; 32]);
        mac::finalize_into(prefixed(STORE_ID_LABEL), &mut id_key);
        Self {
            source: prefixed(LOCATION_LABEL),
            named: prefixed(NAMED_LABEL),
            store_ids: mac::keyed(id_key.as_ref()),
            secret: location_key.is_some(),
            applied: truncated(prefixed(APPLIED_LABEL)),
        }
    }

    /// The reserved state key of the applied-events entry. Its MAC input is
    /// `PAE[applied label, namespace]` alone, while every location's starts with
    /// `PAE[named or source label, namespace]` (labels of other lengths) and continues with a
    /// second PAE block: no location hashes to the same input, so one could only collide by a
    /// 128-bit collision of the truncated HMAC.
    pub(crate) const fn applied_key(&self) -> StateKey {
        self.applied
    }

    /// A MAC state keyed with the store-id key (for the guard's hashed store ids), and
    /// whether that key comes from a secret location key.
    pub(crate) fn store_ids(&self) -> (HmacSha256, bool) {
        (self.store_ids.clone(), self.secret)
    }

    pub(crate) fn key(&self, loc: &Location) -> StateKey {
        let (flag, inst): (&[u8], &[u8]) = match &loc.instance {
            None => (&[0], &[]),
            Some(i) => (&[1], i.as_bytes()),
        };
        // The label and namespace are already absorbed; these pieces continue the encoding.
        let m = match &loc.form {
            Form::Named { module, name } => {
                let mut m = self.named.clone();
                mac::pae_update(
                    &mut m,
                    &[&[module.as_bytes()], &[name.as_bytes()], &[flag, inst]],
                );
                m
            }
            Form::Source { file, line, column } => {
                let mut m = self.source.clone();
                mac::pae_update(
                    &mut m,
                    &[
                        &[file.as_bytes()],
                        &[&line.to_be_bytes()],
                        &[&column.to_be_bytes()],
                        &[flag, inst],
                    ],
                );
                m
            }
        };
        truncated(m)
    }
}

/// The first 16 bytes of a finished MAC, as a state key.
fn truncated(m: HmacSha256) -> StateKey {
    let full = hmac::Mac::finalize(m).into_bytes();
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().zip(full.iter()) {
        *o = *b;
    }
    StateKey(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> LocationHasher {
        LocationHasher::new(b"ns", Some(&[9; 32]))
    }

    #[test]
    fn keys_are_stable_distinct_and_hide_the_path() {
        let h = hasher();
        let a = Location::new("src/app.rs", 10, 5);
        assert_eq!(h.key(&a), hasher().key(&a));
        let others = [
            Location::new("src/app.rs", 10, 6),
            Location::new("src/app.rs", 11, 5),
            Location::new("src/app.r", 10, 5),
            a.clone().with_instance(""),
            a.clone().with_instance("1"),
        ];
        for o in &others {
            assert_ne!(h.key(&a), h.key(o), "{o}");
        }
        assert_ne!(
            h.key(&a),
            LocationHasher::new(b"other", Some(&[9; 32])).key(&a)
        );
        assert_ne!(
            h.key(&a),
            LocationHasher::new(b"ns", Some(&[8; 32])).key(&a)
        );
        assert_ne!(h.key(&a), LocationHasher::new(b"ns", None).key(&a));
        let shown = format!("{} {:?}", h.key(&a), h.key(&a));
        assert!(!shown.contains("app"));
    }

    #[test]
    fn the_applied_key_is_per_namespace_and_location_key_and_no_location_has_it() {
        let h = hasher();
        let applied = h.applied_key();
        assert_eq!(applied, hasher().applied_key(), "stable");
        assert_ne!(
            applied,
            LocationHasher::new(b"other", Some(&[9; 32])).applied_key()
        );
        assert_ne!(
            applied,
            LocationHasher::new(b"ns", Some(&[8; 32])).applied_key()
        );
        assert_ne!(applied, LocationHasher::new(b"ns", None).applied_key());
        // Locations spelled like the label or the namespace hash elsewhere.
        for loc in [
            Location::named("state-recovery", "v1/applied-events"),
            Location::named("ns", "applied-events"),
            Location::new("state-recovery/v1/applied-events", 0, 0),
            Location::new("ns", 0, 0),
        ] {
            assert_ne!(h.key(&loc), applied, "{loc}");
        }
    }

    #[test]
    fn named_keys_ignore_where_they_are_written() {
        let h = hasher();
        // The same name and module at two places (an "edit" moved it): the same key.
        let a = Location::named("shop::cart", "items").declared_at("src/cart.rs:10:5");
        let b = Location::named("shop::cart", "items").declared_at("src/cart.rs:42:13");
        assert_eq!(a, b);
        assert_eq!(h.key(&a), h.key(&b));
        // Macro calls on different lines and columns agree too.
        let (x, y) = (crate::state_key!("items"), {
            // a comment and a blank line above

            crate::state_key!("items")
        });
        assert_ne!(x.site(), y.site());
        assert_eq!(h.key(&x), h.key(&y));
        for other in [
            Location::named("shop::cart", "item"),
            Location::named("shop::carts", "items"),
            Location::named("shop", "cart::items"),
            a.clone().with_instance("1"),
        ] {
            assert_ne!(h.key(&a), h.key(&other), "{other}");
        }
        // A named key never equals the source key built from the same strings.
        let confusable = Location::new("shop::cart", 0, 0);
        assert_ne!(h.key(&a), h.key(&confusable));
        assert_ne!(
            h.key(&a),
            LocationHasher::new(b"ns2", Some(&[9; 32])).key(&a)
        );
    }

    #[test]
    fn names_are_checked() {
        for ok in ["cart", "a", "wizard.draft", "checkout/step-2", "A_b-9"] {
            assert!(is_valid_name(ok), "{ok}");
        }
        let long = "x".repeat(MAX_NAME_LEN + 1);
        for bad in ["", "no space", "a@b", "a#b", "é", "a:b", long.as_str()] {
            assert!(!is_valid_name(bad), "{bad}");
        }
        assert!(Location::named("m", "bad name").validate().is_err());
        assert!(Location::named("", "ok").validate().is_err());
        assert!(Location::named("m@x", "ok").validate().is_err());
        assert!(Location::new("", 1, 1).validate().is_err());
        assert!(Location::named("a::b", "ok").validate().is_ok());
    }

    #[test]
    fn location_text_round_trips() {
        for s in [
            "src/a.rs:1:2",
            "C:\\x\\a.rs:10:20",
            "a.rs:0:0#todo/3",
            "a:1:2#",
            "demo::components@wizard",
            "demo@todo#row/3",
            "src/@types/x.rs:1:2",
        ] {
            let l: Location = s.parse().unwrap();
            assert_eq!(l.to_string(), s);
        }
        assert!("demo::x@y".parse::<Location>().unwrap().is_named());
        for bad in [
            "",
            "a.rs",
            "a.rs:1",
            ":1:2",
            "a:1:x",
            "a:-1:2",
            "a:99999999999:1",
            "a:+1:2",
            "@name",
            "module@",
            "module@bad name",
            "module@a:b",
        ] {
            assert!(bad.parse::<Location>().is_err(), "{bad}");
        }
    }

    #[test]
    fn state_key_hex_round_trips() {
        let k = StateKey::from_bytes([0xAB; 16]);
        assert_eq!(StateKey::from_hex(&k.to_string()), Some(k));
        assert_eq!(StateKey::from_hex(&"AB".repeat(16)), Some(k));
        assert_eq!(StateKey::from_hex("ab"), None);
        assert_eq!(StateKey::from_hex(&"zz".repeat(16)), None);
        assert_eq!(StateKey::from_hex(&"é".repeat(16)), None);
    }
}
