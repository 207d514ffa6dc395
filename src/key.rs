//! State keys: which component an entry belongs to, as a keyed hash of its source location.
//!
//! ```text
//! location_key = the configured location key, or
//!                HMAC-SHA256(key = "state-recovery/v1/default-location-key", msg = namespace)
//! StateKey     = first 16 bytes of HMAC-SHA256(location_key,
//!                    PAE["state-recovery/v1/location", namespace]
//!                  ‖ PAE[file, BE32(line), BE32(column), presence ‖ instance])
//! ```
//! (`presence` is 0x00 without an instance, 0x01 with one; both PAE blocks are
//! self-delimiting, so the concatenation is unambiguous.)
//!
//! The key reveals no path to whoever does not hold the location key, is the same on every
//! worker that shares the configuration, and does not depend on the peppers, so it survives
//! their rotation.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use crate::error::ConfigError;
use crate::mac::{self, HmacSha256};

const LOCATION_LABEL: &[u8] = b"state-recovery/v1/location";
const DEFAULT_LOCATION_KEY_LABEL: &[u8] = b"state-recovery/v1/default-location-key";

/// The source location of a piece of component state, with an optional instance path for
/// components that are rendered more than once (a list row, a tab).
///
/// Make one with [`state_key!`](crate::state_key) at the place the state is declared, or with
/// [`Location::new`] from a framework's own component path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    file: Cow<'static, str>,
    line: u32,
    column: u32,
    instance: Option<String>,
}

impl Location {
    /// A location from its parts. `file` must not contain `#`.
    #[must_use]
    pub fn new(file: impl Into<Cow<'static, str>>, line: u32, column: u32) -> Self {
        Self {
            file: file.into(),
            line,
            column,
            instance: None,
        }
    }

    /// The same location for one instance of a repeated component (e.g. `"todo/3"`).
    #[must_use]
    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// The file part.
    #[must_use]
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The line part.
    #[must_use]
    pub const fn line(&self) -> u32 {
        self.line
    }

    /// The column part.
    #[must_use]
    pub const fn column(&self) -> u32 {
        self.column
    }

    /// The instance path, if any.
    #[must_use]
    pub fn instance(&self) -> Option<&str> {
        self.instance.as_deref()
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)?;
        if let Some(i) = &self.instance {
            write!(f, "#{i}")?;
        }
        Ok(())
    }
}

impl FromStr for Location {
    type Err = ConfigError;

    /// Parses `FILE:LINE:COLUMN[#INSTANCE]` (the file may itself contain `:`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ConfigError::InvalidLocation(s.into());
        let (pos, instance) = match s.split_once('#') {
            Some((p, i)) => (p, Some(i.to_owned())),
            None => (s, None),
        };
        let (rest, column) = pos.rsplit_once(':').ok_or_else(bad)?;
        let (file, line) = rest.rsplit_once(':').ok_or_else(bad)?;
        if file.is_empty() {
            return Err(bad());
        }
        let num = |t: &str| -> Result<u32, ConfigError> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            t.parse().map_err(|_| bad())
        };
        Ok(Self {
            file: Cow::Owned(file.to_owned()),
            line: num(line)?,
            column: num(column)?,
            instance,
        })
    }
}

/// The [`Location`] of the macro call: `file!()`, `line!()`, `column!()`, optionally with an
/// instance path.
///
/// ```
/// use state_recovery::{state_key, Location};
/// let here: Location = state_key!();
/// let row = state_key!(format!("todo/{}", 3));
/// assert_eq!(row.instance(), Some("todo/3"));
/// assert_eq!(here.file(), row.file());
/// ```
#[macro_export]
macro_rules! state_key {
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
        Self::from_hex(s).ok_or_else(|| ConfigError::InvalidLocation(s.into()))
    }
}

/// Hashes locations into state keys. Cheap to clone.
#[derive(Clone)]
pub(crate) struct LocationHasher {
    mac: HmacSha256,
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
        let mut m = mac::keyed(key);
        mac::pae_update(&mut m, &[&[LOCATION_LABEL], &[namespace]]);
        Self { mac: m }
    }

    pub(crate) fn key(&self, loc: &Location) -> StateKey {
        let mut m = self.mac.clone();
        let (flag, inst): (&[u8], &[u8]) = match &loc.instance {
            None => (&[0], &[]),
            Some(i) => (&[1], i.as_bytes()),
        };
        // The label and namespace are already absorbed; these pieces continue the encoding.
        mac::pae_update(
            &mut m,
            &[
                &[loc.file.as_bytes()],
                &[&loc.line.to_be_bytes()],
                &[&loc.column.to_be_bytes()],
                &[flag, inst],
            ],
        );
        let full = hmac::Mac::finalize(m).into_bytes();
        let mut out = [0u8; 16];
        for (o, b) in out.iter_mut().zip(full.iter()) {
            *o = *b;
        }
        StateKey(out)
    }
}

/// A set of registered locations that refuses two different locations with the same key.
///
/// Get one from [`Recovery::registry`](crate::Recovery::registry). Registering the same
/// location twice returns the same key.
pub struct Registry {
    hasher: LocationHasher,
    seen: HashMap<StateKey, Location>,
}

impl Registry {
    pub(crate) fn new(hasher: LocationHasher) -> Self {
        Self {
            hasher,
            seen: HashMap::new(),
        }
    }

    /// Registers a location and returns its key.
    ///
    /// # Errors
    /// [`ConfigError::LocationCollision`] if another location already has this key.
    pub fn register(&mut self, location: &Location) -> Result<StateKey, ConfigError> {
        let key = self.hasher.key(location);
        self.insert(key, location)
    }

    fn insert(&mut self, key: StateKey, location: &Location) -> Result<StateKey, ConfigError> {
        match self.seen.get(&key) {
            Some(prev) if prev != location => Err(ConfigError::LocationCollision {
                first: prev.to_string(),
                second: location.to_string(),
            }),
            Some(_) => Ok(key),
            None => {
                self.seen.insert(key, location.clone());
                Ok(key)
            }
        }
    }

    /// The location registered under `key`, if any.
    #[must_use]
    pub fn location(&self, key: &StateKey) -> Option<&Location> {
        self.seen.get(key)
    }

    /// The number of registered locations.
    #[must_use]
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is registered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("locations", &self.seen.len())
            .finish_non_exhaustive()
    }
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
    fn location_text_round_trips() {
        for s in [
            "src/a.rs:1:2",
            "C:\\x\\a.rs:10:20",
            "a.rs:0:0#todo/3",
            "a:1:2#",
        ] {
            let l: Location = s.parse().unwrap();
            assert_eq!(l.to_string(), s);
        }
        for bad in [
            "",
            "a.rs",
            "a.rs:1",
            ":1:2",
            "a:1:x",
            "a:-1:2",
            "a:99999999999:1",
            "a:+1:2",
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

    #[test]
    fn registry_detects_collisions() {
        let mut r = Registry::new(hasher());
        let a = crate::state_key!();
        let b = crate::state_key!("x");
        let ka = r.register(&a).unwrap();
        assert_eq!(r.register(&a).unwrap(), ka);
        assert_ne!(r.register(&b).unwrap(), ka);
        // A forced collision: another location under an existing key.
        let err = r.insert(ka, &b).unwrap_err();
        assert!(matches!(err, ConfigError::LocationCollision { .. }));
        assert_eq!(r.location(&ka), Some(&a));
        assert_eq!(r.len(), 2);
    }
}
