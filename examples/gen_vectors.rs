//! Regenerates the golden token vectors in `tests/vectors/valid/` and `tests/vectors/invalid/`:
//!
//! ```text
//! cargo run --example gen_vectors
//! ```
//!
//! Every input is fixed (peppers, salts, clock, namespace, locations), and sealing is
//! deterministic, so running this again must leave `git diff tests/vectors` empty. A diff means
//! the token format (or the MAC input, key derivation or location hashing) changed: that breaks
//! every token held by every client, so it needs a new format version, not new vectors.
//!
//! `tests/it/vectors.rs` includes this file to check exactly that, without writing anything.
//!
//! Encrypted entries (format version 2) draw a random nonce when an application seals them;
//! here each is sealed with a fixed nonce through the hidden test hook
//! `state_recovery::fuzzing::seal_encrypted_with_fixed_nonce`, recorded in the vector, and a
//! different one for every vector (never one nonce for two payloads under one key).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::print_stdout
)]

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::Serialize;
use serde_json::{json, Value};
use state_recovery::{
    KeyId, KeyRing, Limits, Location, ManualClock, OtpSettings, Pepper, Recovery, Salt, Scope,
};

/// The opening time of every vector: 2023-11-14T22:13:20Z, in step 118055.
pub(crate) const NOW: u64 = 1_700_000_000;
const STEP: u64 = OtpSettings::DEFAULT_STEP_SECS;
const SKEW: u64 = OtpSettings::DEFAULT_SKEW;
const NAMESPACE: &str = "golden";
const LOC: &str = "src/golden.rs:10:5";
const OTHER_LOC: &str = "src/golden.rs:20:5";
const NAMED_LOC: &str = "golden::app@draft";
const SUBJECT: &str = "user-42";
const UNICODE: &str =
    "h\u{e9}llo w\u{f6}rld \u{2713} \u{1F600} \"q\" back\\slash\n\t\u{0}\u{1f} </script>";

/// Bytes `first..first + 32`: the golden pepper is 0x01..=0x20.
fn bytes32(first: u8) -> [u8; 32] {
    std::array::from_fn(|i| first + i as u8)
}

/// The nonce of an encrypted vector: bytes `first..first + 24`.
fn nonce_bytes(first: u8) -> [u8; 24] {
    std::array::from_fn(|i| first.wrapping_add(i as u8))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn salt_bytes(first: u8) -> [u8; 16] {
    std::array::from_fn(|i| first + i as u8)
}

/// A key of a ring, as recorded in a vector file.
#[derive(Clone, Serialize)]
pub(crate) struct KeyEntry {
    id: String,
    key: String,
}

fn key(id: &str, first: u8) -> KeyEntry {
    let pepper = Pepper::try_from_bytes(&bytes32(first)).unwrap();
    KeyEntry {
        id: id.into(),
        key: pepper.expose_base64().to_string(),
    }
}

fn golden() -> KeyEntry {
    key("golden", 0x01)
}

/// The outcome a vector must have: the same shape as a line of `state-recovery open`.
#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum Expected {
    Opened {
        ok: bool,
        key: String,
        rev: u64,
        schema: u32,
        value: Value,
    },
    Rejected {
        ok: bool,
        error: String,
    },
}

/// One vector file. Field order is the file format; keep it stable.
#[derive(Serialize)]
pub(crate) struct Vector {
    name: String,
    description: String,
    /// The ring the token is opened with (`STATE_RECOVERY_KEYS` order: the first seals).
    keys: Vec<KeyEntry>,
    namespace: String,
    location_key: Option<String>,
    otp_step: u64,
    otp_skew: u64,
    salt: String,
    subject: Option<String>,
    /// When the token (or the token it was made from) was sealed.
    sealed_at: u64,
    /// When it is opened.
    now: u64,
    /// Opened with `open_at` this location when set, with `open` otherwise.
    location: Option<String>,
    /// The nonce an encrypted token was sealed with, as hex (absent for signed tokens, so
    /// the files of format 1 are unchanged).
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    token: String,
    expected: Expected,
}

/// How to seal one token.
#[derive(Clone)]
struct Seal {
    keys: Vec<KeyEntry>,
    namespace: &'static str,
    location_key: Option<[u8; 32]>,
    limits: Limits,
    salt: [u8; 16],
    subject: Option<&'static str>,
    at: u64,
    location: &'static str,
    rev: u64,
    schema: u32,
    value: Value,
    /// `Some`: an encrypted entry sealed with this nonce; `None`: a signed entry.
    nonce: Option<[u8; 24]>,
}

impl Seal {
    fn new(value: Value) -> Self {
        Self {
            keys: vec![golden()],
            namespace: NAMESPACE,
            location_key: None,
            limits: Limits::default(),
            salt: salt_bytes(0x10),
            subject: None,
            at: NOW,
            location: LOC,
            rev: 0,
            schema: 1,
            value,
            nonce: None,
        }
    }

    /// The same, encrypted with the nonce `nonce_bytes(first)`.
    fn encrypted(self, first: u8) -> Self {
        Self {
            nonce: Some(nonce_bytes(first)),
            ..self
        }
    }

    fn recovery(&self, now: u64) -> Recovery {
        recovery(
            &self.keys,
            self.namespace,
            self.location_key.as_ref(),
            self.limits,
            now,
        )
    }

    fn token(&self) -> String {
        let r = self.recovery(self.at);
        let salt = Salt::from_bytes(self.salt);
        let scope = Scope::new(&salt).with_optional_subject(self.subject);
        let key = r.state_key(&self.location.parse::<Location>().unwrap());
        match self.nonce {
            None => r.seal(&scope, key, self.rev, self.schema, &self.value),
            Some(nonce) => state_recovery::fuzzing::seal_encrypted_with_fixed_nonce(
                &r,
                nonce,
                &scope,
                key,
                self.rev,
                self.schema,
                &self.value,
            ),
        }
        .unwrap()
        .into_string()
    }
}

fn recovery(
    keys: &[KeyEntry],
    namespace: &str,
    location_key: Option<&[u8; 32]>,
    limits: Limits,
    now: u64,
) -> Recovery {
    let ring = KeyRing::new(keys.iter().map(|k| {
        (
            KeyId::new(&k.id).unwrap(),
            Pepper::from_base64(&k.key).unwrap(),
        )
    }))
    .unwrap();
    let mut b = Recovery::builder(ring)
        .namespace(namespace)
        .otp(OtpSettings::new(STEP, SKEW).unwrap())
        .limits(limits)
        .clock(ManualClock::new(now));
    if let Some(k) = location_key {
        b = b.location_key(Pepper::try_from_bytes(k).unwrap());
    }
    b.build().unwrap()
}

/// How a vector is opened (by default: as it was sealed, at [`NOW`], at its location).
struct Open {
    keys: Vec<KeyEntry>,
    salt: [u8; 16],
    subject: Option<&'static str>,
    location: Option<&'static str>,
}

impl Open {
    fn like(seal: &Seal) -> Self {
        Self {
            keys: seal.keys.clone(),
            salt: seal.salt,
            subject: seal.subject,
            location: Some(seal.location),
        }
    }
}

/// Opens `token` the way the vector says, with default limits, and records the outcome.
fn vector(name: &str, description: &str, seal: &Seal, open: Open, token: String) -> Vector {
    let r = recovery(
        &open.keys,
        NAMESPACE,
        seal.location_key.as_ref(),
        Limits::default(),
        NOW,
    );
    let salt = Salt::from_bytes(open.salt);
    let scope = Scope::new(&salt).with_optional_subject(open.subject);
    let opened = match open.location {
        Some(l) => r.open_at::<Value>(&scope, r.state_key(&l.parse().unwrap()), &token),
        None => r.open::<Value>(&scope, &token),
    };
    let expected = match opened {
        Ok(o) => Expected::Opened {
            ok: true,
            key: o.key.to_string(),
            rev: o.revision,
            schema: o.schema,
            value: o.value,
        },
        Err(e) => Expected::Rejected {
            ok: false,
            error: e.reason().code().into(),
        },
    };
    Vector {
        name: name.into(),
        description: description.into(),
        keys: open.keys,
        namespace: NAMESPACE.into(),
        location_key: seal.location_key.map(|k| {
            Pepper::try_from_bytes(&k)
                .unwrap()
                .expose_base64()
                .to_string()
        }),
        otp_step: STEP,
        otp_skew: SKEW,
        salt: Salt::from_bytes(open.salt).encode(),
        subject: open.subject.map(Into::into),
        sealed_at: seal.at,
        now: NOW,
        location: open.location.map(Into::into),
        nonce: seal.nonce.map(|n| hex(&n)),
        token,
        expected,
    }
}

fn valid(name: &str, description: &str, seal: Seal) -> Vector {
    let keys = seal.keys.clone();
    valid_opened_by(name, description, seal, keys)
}

/// A valid vector opened with another ring than the one it was sealed with.
fn valid_opened_by(name: &str, description: &str, seal: Seal, keys: Vec<KeyEntry>) -> Vector {
    let open = Open {
        keys,
        ..Open::like(&seal)
    };
    let v = vector(name, description, &seal, open, seal.token());
    match &v.expected {
        Expected::Opened { value, .. } => assert_eq!(value, &seal.value, "{name}"),
        Expected::Rejected { error, .. } => panic!("valid vector {name} fails: {error}"),
    }
    v
}

fn invalid(name: &str, description: &str, seal: &Seal, open: Open, token: String) -> Vector {
    let v = vector(name, description, seal, open, token);
    assert!(
        matches!(v.expected, Expected::Rejected { .. }),
        "{name} opens"
    );
    v
}

fn valid_vectors() -> Vec<Vector> {
    let base = Seal::new;
    vec![
        valid("01_null", "the JSON null", base(Value::Null)),
        valid("02_bool", "the JSON true", base(json!(true))),
        valid("03_u64_max", "u64::MAX", base(json!(u64::MAX))),
        valid("04_i64_min", "i64::MIN", base(json!(i64::MIN))),
        valid(
            "05_float",
            "the float just above 1 (17 significant digits)",
            base(json!(1.000_000_000_000_000_2)),
        ),
        valid(
            "06_float_exponent",
            "a float written with an exponent",
            base(json!(-1.5e-7)),
        ),
        valid(
            "07_unicode_escapes",
            "non-ASCII, an astral character, quotes, backslash, control characters",
            base(json!(UNICODE)),
        ),
        valid(
            "08_nested_object",
            "an object with nested object and array (keys in sorted order)",
            base(json!({"form": {"name": "Ada", "tags": ["a", "b"]}, "open": true, "step": 3})),
        ),
        valid(
            "09_empty_containers",
            "empty array, object and string",
            base(json!([[], {}, ""])),
        ),
        valid(
            "10_subject",
            "bound to an authenticated subject, with revision 7 and schema 2",
            Seal {
                subject: Some(SUBJECT),
                rev: 7,
                schema: 2,
                ..base(json!({"count": 41}))
            },
        ),
        valid(
            "11_instance_path",
            "a location with an instance path",
            Seal {
                location: "src/golden.rs:10:5#todo/3",
                ..base(json!("row 3"))
            },
        ),
        valid(
            "12_previous_step",
            "sealed one step before now (inside the skew window)",
            Seal {
                at: NOW - STEP,
                ..base(json!(1))
            },
        ),
        valid(
            "13_next_step",
            "sealed one step after now (a worker whose clock runs ahead)",
            Seal {
                at: NOW + STEP,
                ..base(json!(2))
            },
        ),
        valid_opened_by(
            "14_rotated_ring",
            "sealed under `golden`, opened by a ring where a newer key `next` seals",
            base(json!("old key")),
            vec![key("next", 0x41), golden()],
        ),
        valid(
            "15_location_key",
            "state key hashed with a secret location key (0x61..=0x80)",
            Seal {
                location_key: Some(bytes32(0x61)),
                ..base(json!("hidden"))
            },
        ),
        valid(
            "16_max_revision_and_schema",
            "revision u64::MAX and schema u32::MAX",
            Seal {
                rev: u64::MAX,
                schema: u32::MAX,
                ..base(json!(0))
            },
        ),
        valid(
            "17_named_key",
            "a named location (module path + name, key derivation v2), schema 2",
            Seal {
                location: NAMED_LOC,
                schema: 2,
                ..base(json!({"text": "draft", "words": 1}))
            },
        ),
        valid(
            "18_named_key_instance",
            "a named location with an instance path",
            Seal {
                location: "golden::app@todo#row/3",
                ..base(json!("row 3"))
            },
        ),
        valid(
            "19_named_key_location_key",
            "a named location hashed with a secret location key (0x61..=0x80)",
            Seal {
                location: NAMED_LOC,
                location_key: Some(bytes32(0x61)),
                ..base(json!("hidden"))
            },
        ),
        // Format version 2: encrypted entries (added in 0.3).
        valid(
            "20_encrypted",
            "an encrypted entry (format version 2), nonce 0x30..=0x47",
            base(json!({"count": 41})).encrypted(0x30),
        ),
        valid(
            "21_encrypted_subject",
            "an encrypted entry bound to subject user-42, revision 7, schema 2",
            Seal {
                subject: Some(SUBJECT),
                rev: 7,
                schema: 2,
                ..base(json!({"count": 41}))
            }
            .encrypted(0x50),
        ),
        valid(
            "22_encrypted_unicode",
            "an encrypted entry whose payload has non-ASCII, an astral character, escapes",
            base(json!(UNICODE)).encrypted(0x70),
        ),
        valid(
            "23_encrypted_one_byte",
            "an encrypted entry with a one-byte payload (the shortest ciphertext)",
            base(json!(7)).encrypted(0x90),
        ),
        valid(
            "24_encrypted_previous_step",
            "an encrypted entry sealed one step before now (the entry key of that step)",
            Seal {
                at: NOW - STEP,
                ..base(json!(1))
            }
            .encrypted(0xB0),
        ),
        valid_opened_by(
            "25_encrypted_rotated_ring",
            "an encrypted entry sealed under `golden`, opened by the ring `next,golden`",
            base(json!("old key")).encrypted(0xD0),
            vec![key("next", 0x41), golden()],
        ),
        valid(
            "26_encrypted_named_key",
            "an encrypted entry under a named location with an instance path",
            Seal {
                location: "golden::app@draft#row/3",
                ..base(json!({"text": "draft"}))
            }
            .encrypted(0xF0),
        ),
    ]
}

/// Token bytes, for the vectors that edit them.
fn decode(token: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(token).unwrap()
}

fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Offsets of the header fields of a token whose key id has `id_len` bytes.
struct Layout {
    step: usize,
    rev: usize,
    schema: usize,
    /// Where a signed entry's payload, or an encrypted entry's nonce, starts.
    payload: usize,
}

fn layout(bytes: &[u8]) -> Layout {
    let id_end = 2 + usize::from(bytes[1]);
    Layout {
        step: id_end,
        rev: id_end + 8 + 16,
        schema: id_end + 8 + 16 + 8,
        payload: id_end + 8 + 16 + 8 + 4,
    }
}

/// Length of an encrypted entry's nonce and tag.
const NONCE_LEN: usize = 24;
const AEAD_TAG_LEN: usize = 16;

/// The first of `candidates`, sealed, whose token text satisfies `ok`.
fn first_token(
    candidates: impl IntoIterator<Item = Seal>,
    ok: impl Fn(&str) -> bool,
) -> (Seal, String) {
    candidates
        .into_iter()
        .map(|s| {
            let t = s.token();
            (s, t)
        })
        .find(|(_, t)| ok(t))
        .expect("no candidate fits")
}

fn invalid_vectors() -> Vec<Vector> {
    let base = Seal::new(json!({"count": 41}));
    let good = base.token();
    let same = || Open::like(&base);
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = decode(&good);
        f(&mut b);
        encode(&b)
    };
    let mut out = Vec::new();

    out.push(invalid(
        "001_flipped_tag_bit",
        "the lowest bit of the tag's last byte flipped",
        &base,
        same(),
        edit(&|b| *b.last_mut().unwrap() ^= 1),
    ));
    out.push(invalid(
        "002_truncated_tag",
        "the last byte removed (the tag then takes the payload's last byte)",
        &base,
        same(),
        edit(&|b| {
            b.pop();
        }),
    ));
    let other = Seal::new(json!({"count": 99})).token();
    out.push(invalid(
        "003_payload_swapped",
        "the payload of another entry (same length, same key) with this entry's header and tag",
        &base,
        same(),
        edit(&|b| {
            let at = layout(b).payload;
            let end = b.len() - 32;
            b[at..end].copy_from_slice(&decode(&other)[at..end]);
        }),
    ));
    out.push(invalid(
        "004_moved_location",
        "authentic, but opened for another location (open_at)",
        &base,
        Open {
            location: Some(OTHER_LOC),
            ..same()
        },
        good.clone(),
    ));
    out.push(invalid(
        "005_other_salt",
        "authentic, but opened under another salt (another user or tab)",
        &base,
        Open {
            salt: salt_bytes(0x20),
            ..same()
        },
        good.clone(),
    ));
    let alice = Seal {
        subject: Some("alice"),
        ..base.clone()
    };
    out.push(invalid(
        "006_other_subject",
        "sealed for subject alice, opened for subject mallory under the same salt",
        &alice,
        Open {
            subject: Some("mallory"),
            ..Open::like(&alice)
        },
        alice.token(),
    ));
    out.push(invalid(
        "007_subject_dropped",
        "sealed for subject alice, opened with no subject under the same salt",
        &alice,
        Open {
            subject: None,
            ..Open::like(&alice)
        },
        alice.token(),
    ));
    let old = Seal {
        at: NOW - 2 * STEP,
        ..base.clone()
    };
    out.push(invalid(
        "008_expired",
        "sealed two steps before now (skew 1)",
        &old,
        same(),
        old.token(),
    ));
    let future = Seal {
        at: NOW + 2 * STEP,
        ..base.clone()
    };
    out.push(invalid(
        "009_not_yet_valid",
        "sealed two steps after now (skew 1)",
        &future,
        same(),
        future.token(),
    ));
    let retired = Seal {
        keys: vec![key("retired", 0x21)],
        ..base.clone()
    };
    out.push(invalid(
        "010_unknown_key",
        "sealed under key `retired` (0x21..=0x40), which the ring no longer holds",
        &retired,
        same(),
        retired.token(),
    ));
    out.push(invalid(
        "011_unsupported_version",
        "the format version byte set to 3 (1 is signed, 2 encrypted)",
        &base,
        same(),
        edit(&|b| b[0] = 3),
    ));
    let candidates = |from: u64| {
        (from..).map(|rev| Seal {
            rev,
            ..base.clone()
        })
    };
    let (padded, t) = first_token(candidates(0), |t| t.len() % 4 != 0);
    let pad = "=".repeat((4 - t.len() % 4) % 4);
    out.push(invalid(
        "012_padded_base64",
        "an authentic token with base64 padding added",
        &padded,
        Open::like(&padded),
        format!("{t}{pad}"),
    ));
    let (standard, t) = first_token(candidates(0), |t| t.contains(['-', '_']));
    out.push(invalid(
        "013_standard_alphabet",
        "an authentic token in the standard base64 alphabet (+ and /) instead of base64url",
        &standard,
        Open::like(&standard),
        STANDARD_NO_PAD.encode(decode(&t)),
    ));
    let (trailing, t) = first_token(candidates(0), |t| t.len() % 4 == 2);
    let mut chars = t.into_bytes();
    let last = chars.pop().unwrap();
    // With 2 characters for the last byte, the last one carries 4 unused bits: set one.
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let index = alphabet.iter().position(|&c| c == last).unwrap();
    chars.push(alphabet[index | 1]);
    out.push(invalid(
        "014_trailing_bits",
        "an authentic token whose last character has non-zero unused bits",
        &trailing,
        Open::like(&trailing),
        String::from_utf8(chars).unwrap(),
    ));
    let nested = (0..65).fold(json!(0), |v, _| json!([v]));
    let deep = Seal {
        limits: Limits::default().with_max_depth(128),
        ..Seal::new(nested)
    };
    out.push(invalid(
        "015_too_deep_json",
        "authentic, with a payload nested 65 deep (sealed with the depth limit raised to 128)",
        &deep,
        Open::like(&deep),
        deep.token(),
    ));
    out.push(invalid(
        "016_revision_rolled_back",
        "sealed at revision 5, the revision field rewritten to 4",
        &Seal {
            rev: 5,
            ..base.clone()
        },
        same(),
        {
            let mut b = decode(
                &Seal {
                    rev: 5,
                    ..base.clone()
                }
                .token(),
            );
            let at = layout(&b).rev;
            b[at..at + 8].copy_from_slice(&4u64.to_be_bytes());
            encode(&b)
        },
    ));
    out.push(invalid(
        "017_schema_changed",
        "the schema version field rewritten from 1 to 2",
        &base,
        same(),
        edit(&|b| {
            let at = layout(b).schema;
            b[at..at + 4].copy_from_slice(&2u32.to_be_bytes());
        }),
    ));
    out.push(invalid(
        "018_step_moved",
        "the time step field moved one step back (still inside the window)",
        &base,
        same(),
        edit(&|b| {
            let at = layout(b).step;
            let step = NOW / STEP - 1;
            b[at..at + 8].copy_from_slice(&step.to_be_bytes());
        }),
    ));
    out.push(invalid(
        "019_key_id_swapped",
        "sealed under `golden`, its key id rewritten to `second`, another key of the ring",
        &base,
        Open {
            keys: vec![golden(), key("second", 0x81)],
            ..same()
        },
        edit(&|b| b[2..8].copy_from_slice(b"second")),
    ));
    let other_app = Seal {
        namespace: "golden-other",
        ..base.clone()
    };
    out.push(invalid(
        "020_other_namespace",
        "sealed by another application (namespace `golden-other`) sharing the ring",
        &other_app,
        Open {
            location: None,
            ..same()
        },
        other_app.token(),
    ));
    out.push(invalid(
        "021_empty",
        "the empty string",
        &base,
        same(),
        String::new(),
    ));
    out.push(invalid(
        "022_truncated_header",
        "the first 20 bytes only",
        &base,
        same(),
        edit(&|b| b.truncate(20)),
    ));
    let named = Seal {
        location: NAMED_LOC,
        ..Seal::new(json!({"count": 41}))
    };
    out.push(invalid(
        "023_named_key_moved_module",
        "authentic under a named location, opened for the same name in another module",
        &named,
        Open {
            location: Some("golden::other@draft"),
            ..Open::like(&named)
        },
        named.token(),
    ));
    out.push(invalid(
        "024_named_key_as_source",
        "authentic under a named location, opened for the source location of the same text",
        &named,
        Open {
            location: Some("golden::app:0:0"),
            ..Open::like(&named)
        },
        named.token(),
    ));
    out.push(invalid(
        "025_signed_relabelled_encrypted",
        "a signed token with its version byte set to 2 (the token 0.1's 011 recorded): read as \
         an encrypted layout, it fails the AEAD",
        &base,
        same(),
        edit(&|b| b[0] = 2),
    ));
    out.extend(encrypted_invalid_vectors());
    out
}

/// Attacks on encrypted entries (format version 2): the same fields are bound as in a
/// signed entry, so the same attacks fail the same way, plus the nonce, the ciphertext and
/// the kind.
fn encrypted_invalid_vectors() -> Vec<Vector> {
    let base = Seal::new(json!({"count": 41})).encrypted(0x30);
    let good = base.token();
    let same = || Open::like(&base);
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = decode(&good);
        f(&mut b);
        encode(&b)
    };
    let mut out = Vec::new();
    out.push(invalid(
        "026_encrypted_flipped_tag_bit",
        "encrypted: the lowest bit of the Poly1305 tag's last byte flipped",
        &base,
        same(),
        edit(&|b| *b.last_mut().unwrap() ^= 1),
    ));
    out.push(invalid(
        "027_encrypted_flipped_ciphertext_bit",
        "encrypted: one bit of the ciphertext's first byte flipped (a malleable stream cipher \
         without the tag would turn it into a payload bit)",
        &base,
        same(),
        edit(&|b| {
            let at = layout(b).payload + NONCE_LEN;
            b[at] ^= 0x01;
        }),
    ));
    out.push(invalid(
        "028_encrypted_flipped_nonce_bit",
        "encrypted: one bit of the nonce flipped",
        &base,
        same(),
        edit(&|b| {
            let at = layout(b).payload;
            b[at] ^= 0x80;
        }),
    ));
    out.push(invalid(
        "029_encrypted_revision_rolled_back",
        "encrypted: the revision field (associated data) rewritten 0 → 1",
        &base,
        same(),
        edit(&|b| {
            let at = layout(b).rev;
            b[at..at + 8].copy_from_slice(&1u64.to_be_bytes());
        }),
    ));
    out.push(invalid(
        "030_encrypted_step_moved",
        "encrypted: the time step moved one step back (another step's entry key)",
        &base,
        same(),
        edit(&|b| {
            let at = layout(b).step;
            b[at..at + 8].copy_from_slice(&(NOW / STEP - 1).to_be_bytes());
        }),
    ));
    out.push(invalid(
        "031_encrypted_other_salt",
        "encrypted: authentic, but opened under another salt",
        &base,
        Open {
            salt: salt_bytes(0x20),
            ..same()
        },
        good.clone(),
    ));
    let alice = Seal {
        subject: Some("alice"),
        ..base.clone()
    }
    .encrypted(0x38);
    out.push(invalid(
        "032_encrypted_other_subject",
        "encrypted: sealed for subject alice, opened for mallory under the same salt",
        &alice,
        Open {
            subject: Some("mallory"),
            ..Open::like(&alice)
        },
        alice.token(),
    ));
    out.push(invalid(
        "033_encrypted_subject_dropped",
        "encrypted: sealed for subject alice, opened with no subject",
        &alice,
        Open {
            subject: None,
            ..Open::like(&alice)
        },
        alice.token(),
    ));
    let other_app = Seal {
        namespace: "golden-other",
        ..base.clone()
    }
    .encrypted(0x40);
    out.push(invalid(
        "034_encrypted_other_namespace",
        "encrypted: sealed by another application (namespace `golden-other`) sharing the ring",
        &other_app,
        Open {
            location: None,
            ..same()
        },
        other_app.token(),
    ));
    out.push(invalid(
        "035_encrypted_key_id_swapped",
        "encrypted: key id rewritten to `second`, another key of the ring",
        &base,
        Open {
            keys: vec![golden(), key("second", 0x81)],
            ..same()
        },
        edit(&|b| b[2..8].copy_from_slice(b"second")),
    ));
    out.push(invalid(
        "036_encrypted_moved_location",
        "encrypted: authentic, opened for another location (after the AEAD check)",
        &base,
        Open {
            location: Some(OTHER_LOC),
            ..same()
        },
        good.clone(),
    ));
    let old = Seal {
        at: NOW - 2 * STEP,
        ..base.clone()
    }
    .encrypted(0x48);
    out.push(invalid(
        "037_encrypted_expired",
        "encrypted: sealed two steps before now (skew 1)",
        &old,
        same(),
        old.token(),
    ));
    let future = Seal {
        at: NOW + 2 * STEP,
        ..base.clone()
    }
    .encrypted(0x58);
    out.push(invalid(
        "038_encrypted_not_yet_valid",
        "encrypted: sealed two steps after now (skew 1)",
        &future,
        same(),
        future.token(),
    ));
    let retired = Seal {
        keys: vec![key("retired", 0x21)],
        ..base.clone()
    }
    .encrypted(0x60);
    out.push(invalid(
        "039_encrypted_unknown_key",
        "encrypted: sealed under key `retired`, which the ring no longer holds",
        &retired,
        same(),
        retired.token(),
    ));
    out.push(invalid(
        "040_encrypted_truncated",
        "encrypted: header, nonce and tag with no ciphertext (shorter than nonce + 1 + tag)",
        &base,
        same(),
        edit(&|b| {
            let at = layout(b).payload + NONCE_LEN;
            let tag = b[b.len() - AEAD_TAG_LEN..].to_vec();
            b.truncate(at);
            b.extend_from_slice(&tag);
        }),
    ));
    out.push(invalid(
        "041_encrypted_relabelled_signed",
        "encrypted: the version byte set to 1 (read as a signed layout, it fails the MAC)",
        &base,
        same(),
        edit(&|b| b[0] = 1),
    ));
    let nested = (0..65).fold(json!(0), |v, _| json!([v]));
    let deep = Seal {
        limits: Limits::default().with_max_depth(128),
        ..Seal::new(nested)
    }
    .encrypted(0x68);
    out.push(invalid(
        "042_encrypted_too_deep_json",
        "encrypted: authentic, with a payload nested 65 deep (checked after decryption)",
        &deep,
        Open::like(&deep),
        deep.token(),
    ));
    out
}

/// Every vector file, as (path under `tests/vectors/`, contents).
pub(crate) fn generate() -> Vec<(String, String)> {
    let files = |dir: &str, vectors: Vec<Vector>| {
        vectors
            .into_iter()
            .map(|v| {
                let text = serde_json::to_string_pretty(&v).unwrap() + "\n";
                (format!("{dir}/{}.json", v.name), text)
            })
            .collect::<Vec<_>>()
    };
    let mut all = files("valid", valid_vectors());
    all.extend(files("invalid", invalid_vectors()));
    all
}

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    for dir in ["valid", "invalid"] {
        let dir = root.join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                std::fs::remove_file(path).unwrap();
            }
        }
    }
    let files = generate();
    for (path, text) in &files {
        std::fs::write(root.join(path), text).unwrap();
    }
    println!("wrote {} vectors to {}", files.len(), root.display());
}
