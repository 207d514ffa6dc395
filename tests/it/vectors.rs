//! Golden token vectors (`tests/vectors/`): every valid one still opens to its recorded value,
//! every invalid one still fails with its recorded reason, and regenerating them in memory
//! gives byte-identical files. Nothing here writes them: `cargo run --example gen_vectors` does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Value};
use state_recovery::fuzzing::seal_encrypted_with_fixed_nonce;
use state_recovery::{
    inspect, EntryKind, KeyId, KeyRing, Limits, Location, ManualClock, OtpSettings, Pepper,
    Recovery, Salt, Scope,
};

#[path = "../../examples/gen_vectors.rs"]
#[allow(dead_code)]
mod gen_vectors;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    id: String,
    key: String,
}

/// The file format, read independently of the generator's own types.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Vector {
    name: String,
    description: String,
    keys: Vec<KeyEntry>,
    namespace: String,
    location_key: Option<String>,
    otp_step: u64,
    otp_skew: u64,
    salt: String,
    subject: Option<String>,
    sealed_at: u64,
    now: u64,
    location: Option<String>,
    /// The nonce of an encrypted vector (hex); absent for signed ones.
    #[serde(default)]
    nonce: Option<String>,
    token: String,
    expected: Value,
}

impl Vector {
    fn recovery(&self, keys: &[&KeyEntry], now: u64) -> Recovery {
        let ring = KeyRing::new(keys.iter().map(|k| {
            (
                KeyId::new(&k.id).unwrap(),
                Pepper::from_base64(&k.key).unwrap(),
            )
        }))
        .unwrap();
        let mut b = Recovery::builder(ring)
            .namespace(self.namespace.as_str())
            .otp(OtpSettings::new(self.otp_step, self.otp_skew).unwrap())
            .limits(Limits::default())
            .clock(ManualClock::new(now));
        if let Some(k) = &self.location_key {
            b = b.location_key(Pepper::from_base64(k).unwrap());
        }
        b.build().unwrap()
    }

    fn location(&self) -> Option<Location> {
        self.location.as_deref().map(|l| l.parse().unwrap())
    }

    /// Opens the token as recorded; the outcome in the shape of `expected`.
    fn open(&self) -> Value {
        let r = self.recovery(&self.keys.iter().collect::<Vec<_>>(), self.now);
        let salt = Salt::decode(&self.salt).unwrap();
        let scope = Scope::new(&salt).with_optional_subject(self.subject.as_deref());
        let opened = match self.location() {
            Some(l) => r.open_at::<Value>(&scope, r.state_key(&l), &self.token),
            None => r.open::<Value>(&scope, &self.token),
        };
        match opened {
            Ok(o) => json!({"ok": true, "key": o.key.to_string(), "rev": o.revision,
                "schema": o.schema, "value": o.value}),
            Err(e) => json!({"ok": false, "error": e.reason().code()}),
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// Every vector file of `dir` (`valid` or `invalid`), by file name.
fn files(dir: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(root().join(dir)).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            out.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
    out
}

fn load(dir: &str) -> Vec<Vector> {
    let vectors: Vec<Vector> = files(dir)
        .iter()
        .map(|(file, text)| {
            let v: Vector = serde_json::from_str(text).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(format!("{}.json", v.name), *file);
            assert!(!v.description.is_empty(), "{file}");
            v
        })
        .collect();
    assert!(
        vectors.len() >= 10,
        "only {} vectors in {dir}",
        vectors.len()
    );
    vectors
}

#[test]
fn valid_vectors_still_open_to_their_values() {
    for v in load("valid") {
        assert_eq!(v.expected["ok"], true, "{}", v.name);
        assert!(v.location.is_some(), "{}", v.name);
        assert_eq!(v.open(), v.expected, "{}", v.name);
    }
}

#[test]
fn invalid_vectors_still_fail_with_their_reasons() {
    let mut reasons = std::collections::BTreeSet::new();
    for v in load("invalid") {
        let reason = v.expected["error"].as_str().unwrap().to_owned();
        assert_eq!(
            v.expected,
            json!({"ok": false, "error": reason}),
            "{}",
            v.name
        );
        assert_eq!(v.open(), v.expected, "{}", v.name);
        reasons.insert(reason);
    }
    for r in [
        "malformed",
        "unsupported-version",
        "unknown-key",
        "expired",
        "not-yet-valid",
        "bad-signature",
        "wrong-location",
        "too-large",
    ] {
        assert!(reasons.contains(r), "no vector for {r}");
    }
}

#[test]
fn sealing_the_recorded_inputs_gives_the_recorded_tokens() {
    for v in load("valid") {
        let claimed = inspect(&v.token, Limits::default().max_token_bytes()).unwrap();
        let sealer = v.keys.iter().find(|k| k.id == claimed.key_id).unwrap();
        let r = v.recovery(&[sealer], v.sealed_at);
        let salt = Salt::decode(&v.salt).unwrap();
        let scope = Scope::new(&salt).with_optional_subject(v.subject.as_deref());
        let e = &v.expected;
        let key = r.state_key(&v.location().unwrap());
        let rev = e["rev"].as_u64().unwrap();
        let schema = u32::try_from(e["schema"].as_u64().unwrap()).unwrap();
        let token = match &v.nonce {
            None => {
                assert_eq!(claimed.kind, EntryKind::Signed, "{}", v.name);
                r.seal(&scope, key, rev, schema, &e["value"]).unwrap()
            }
            Some(hex) => {
                assert_eq!(claimed.kind, EntryKind::Encrypted, "{}", v.name);
                assert_eq!(claimed.nonce.as_deref(), Some(hex.as_str()), "{}", v.name);
                let nonce: [u8; 24] = (0..24)
                    .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                    .collect::<Vec<_>>()
                    .try_into()
                    .unwrap();
                // Sealing with a random nonce opens to the same value, in another token.
                let fresh = r
                    .seal_with(EntryKind::Encrypted, &scope, key, rev, schema, &e["value"])
                    .unwrap();
                assert_ne!(fresh.as_str(), v.token, "{}", v.name);
                assert_eq!(
                    r.open_at::<Value>(&scope, key, fresh.as_str())
                        .unwrap()
                        .value,
                    e["value"]
                );
                seal_encrypted_with_fixed_nonce(&r, nonce, &scope, key, rev, schema, &e["value"])
                    .unwrap()
            }
        };
        assert_eq!(token.as_str(), v.token, "{}", v.name);
    }
}

/// Format 2 is covered as well as format 1, and format 1's files are as 0.1 wrote them.
#[test]
fn both_formats_have_valid_and_invalid_vectors() {
    let kind = |v: &Vector| inspect(&v.token, usize::MAX).map(|i| i.kind);
    let valid = load("valid");
    let encrypted = valid
        .iter()
        .filter(|v| kind(v) == Ok(EntryKind::Encrypted))
        .count();
    assert!(encrypted >= 5, "{encrypted} encrypted valid vectors");
    assert!(valid.len() - encrypted >= 19);
    for v in &valid {
        // A nonce is recorded exactly for the encrypted vectors.
        assert_eq!(
            v.nonce.is_some(),
            kind(v) == Ok(EntryKind::Encrypted),
            "{}",
            v.name
        );
    }
    let mut reasons = std::collections::BTreeSet::new();
    for v in load("invalid") {
        if v.name.contains("encrypted") {
            reasons.insert(v.expected["error"].as_str().unwrap().to_owned());
        }
    }
    for r in [
        "malformed",
        "unknown-key",
        "expired",
        "not-yet-valid",
        "bad-signature",
        "wrong-location",
        "too-large",
    ] {
        assert!(reasons.contains(r), "no encrypted vector for {r}");
    }
}

#[test]
fn regenerating_in_memory_gives_identical_files() {
    let generated: BTreeMap<String, String> = gen_vectors::generate().into_iter().collect();
    let mut on_disk = BTreeMap::new();
    for dir in ["valid", "invalid"] {
        for (file, text) in files(dir) {
            on_disk.insert(format!("{dir}/{file}"), text);
        }
    }
    assert_eq!(
        generated.keys().collect::<Vec<_>>(),
        on_disk.keys().collect::<Vec<_>>(),
        "run `cargo run --example gen_vectors` only if the format change is intended"
    );
    for (path, text) in &generated {
        assert_eq!(
            text, &on_disk[path],
            "{path} differs from a fresh generation"
        );
    }
}

#[test]
fn readme_describes_every_vector() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for dir in ["valid", "invalid"] {
        for v in load(dir) {
            assert!(readme.contains(&format!("`{}`", v.name)), "{}", v.name);
        }
    }
}
