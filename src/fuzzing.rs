//! Entry points for the fuzz targets in `fuzz/` (not part of the public API).
//!
//! Each target in `fuzz/fuzz_targets/` is one line that calls one function here; the functions
//! do the asserting, so a failed property is a panic that libFuzzer records as a crash, and
//! the same function replays a crash in `tests/it/regressions.rs`. Fixtures are deterministic:
//! fixed peppers, salts, namespace and a [`ManualClock`].
//!
//! | target | entry | property |
//! |---|---|---|
//! | `decode_token` | [`decode_token`] | total decoding of both formats; what decodes re-encodes to the same text |
//! | `open_untrusted` | [`open_untrusted`] | no token or bundle opens by chance, also behind a valid signed or encrypted header; bounded work |
//! | `seal_open_roundtrip` | [`seal_open_roundtrip`] | open(seal(x)) = x for both kinds, bound to location and scope |
//! | `model` | `model` | operation sequences (signed and encrypted seals) against a model that predicts every outcome |
//! | `client_input` | `client_input` (feature `axum`) | untrusted form input: bounded, total |
//! | `manifest` | [`manifest`] | key manifests and location texts: total; what parses re-parses the same |
// Fuzz entry points report a broken property by panicking; that is their purpose.
// Indices are reduced modulo the lengths they index and counters are tiny.
#![allow(
    clippy::panic,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod model;

use std::sync::Arc;

use serde_json::Value;

pub use self::model::{model, Model, Op};

use crate::error::Reason;
use crate::token;
use crate::{
    KeyId, KeyRing, Limits, Location, ManualClock, OtpSettings, Pepper, Recovery, Salt, Scope,
};

/// The fixed time of every fixture: 2023-11-14T22:13:20Z.
pub const NOW: u64 = 1_700_000_000;

/// The namespace of every fixture.
pub const NAMESPACE: &str = "fuzz-app";

/// The fixture pepper with index `n`: at least 30 distinct byte values (so never refused as a
/// weak key), a different key for every `n`.
#[must_use]
pub fn pepper(n: u16) -> Pepper {
    let mut bytes: [u8; 32] = std::array::from_fn(|i| 0xA5 ^ (i as u8).wrapping_mul(37));
    let [hi, lo] = n.to_be_bytes();
    bytes[0] = hi;
    bytes[1] = lo;
    Pepper::try_from_bytes(&bytes).expect("fixture pepper is valid")
}

/// The fixture key id for pepper `n`.
#[must_use]
pub fn key_id(n: u16) -> KeyId {
    KeyId::new(&format!("k{n}")).expect("fixture key id is valid")
}

/// A recovery over the fixture peppers `indices` (the first seals), with a manual clock.
#[must_use]
pub fn recovery(
    indices: &[u16],
    clock: Arc<ManualClock>,
    otp: OtpSettings,
    limits: Limits,
) -> Recovery {
    let ring = KeyRing::new(indices.iter().map(|&n| (key_id(n), pepper(n))))
        .expect("fixture ring is valid");
    Recovery::builder(ring)
        .namespace(NAMESPACE)
        .clock(clock)
        .otp(otp)
        .limits(limits)
        .build()
        .expect("fixture recovery is valid")
}

/// Seals an encrypted entry with a **fixed nonce**, for golden vectors and known-answer
/// tests only: the output is deterministic, so `examples/gen_vectors.rs` writes the same
/// bytes every time. Never use it for real state: two entries sealed with one nonce under one
/// (pepper, step) key reveal the XOR of their payloads and let the Poly1305 key be recovered.
/// No public sealing path (`Recovery::seal`, `seal_with`, `RecoveryContext`, `Slot`, the CLI)
/// can reach it; they all draw the nonce from the OS CSPRNG.
///
/// # Errors
/// As [`Recovery::seal`].
pub fn seal_encrypted_with_fixed_nonce<T: serde::Serialize + ?Sized>(
    recovery: &Recovery,
    nonce: [u8; 24],
    scope: &Scope<'_>,
    key: crate::StateKey,
    revision: u64,
    schema: u32,
    value: &T,
) -> Result<crate::Token, crate::SealError> {
    recovery
        .seal_encrypted(
            scope,
            key,
            revision,
            schema,
            value,
            crate::seal::Nonce::Fixed(nonce),
        )
        .map(|(token, _)| token)
}

/// Limits small enough that inputs a little over a few KiB exercise every `too-large` path.
#[must_use]
pub fn small_limits() -> Limits {
    Limits::default()
        .with_max_token_bytes(512)
        .with_max_bundle_bytes(2048)
        .with_max_entries(4)
        .with_max_depth(8)
}

/// Re-encodes decoded token bytes field by field from their parsed layout (the inverse of
/// `token::parse` followed by `token::decode`), or the reason they do not parse.
fn reencode(bytes: &[u8]) -> Result<String, Reason> {
    let p = token::parse(bytes)?;
    let id = std::str::from_utf8(p.key_id).expect("a parsed key id is ASCII");
    let mut out = Vec::new();
    token::write_header(
        &mut out,
        p.kind(),
        &KeyId::new(id).expect("a parsed key id is valid"),
        p.step,
        &crate::StateKey::from_bytes(*p.state_key),
        p.revision,
        p.schema,
    );
    match p.body {
        token::Body::Signed { payload, tag } => {
            out.extend_from_slice(payload);
            out.extend_from_slice(tag);
        }
        token::Body::Encrypted {
            nonce,
            ciphertext,
            tag,
        } => {
            out.extend_from_slice(nonce);
            out.extend_from_slice(ciphertext);
            out.extend_from_slice(tag);
        }
    }
    assert_eq!(out, bytes, "layout does not re-encode to the same bytes");
    Ok(token::encode(&out))
}

/// Arbitrary bytes as a token: decoding never panics, checks the size first, accepts only
/// canonical base64url, and whatever decodes and parses re-encodes to the same text;
/// `inspect` agrees with the layout.
pub fn decode_token(data: &[u8]) {
    let max = small_limits().max_token_bytes();
    let decoded = token::decode(data, max);
    if data.len() > max {
        assert_eq!(decoded, Err(Reason::TooLarge));
        return;
    }
    let Ok(bytes) = decoded else {
        assert_eq!(decoded, Err(Reason::Malformed));
        return;
    };
    // Canonical: the only text for these bytes is the one we were given.
    assert_eq!(
        token::encode(&bytes).as_bytes(),
        data,
        "non-canonical base64url"
    );
    let text = std::str::from_utf8(data).expect("base64url is ASCII");
    let inspected = crate::inspect(text, max);
    match reencode(&bytes) {
        Ok(again) => {
            assert_eq!(again, text);
            let i = inspected.expect("parsed token inspects");
            assert!(!i.verified);
            assert_eq!(Some(i.kind), crate::EntryKind::from_version(i.version));
            assert_eq!(Some(&i.version), bytes.first());
            match i.kind {
                crate::EntryKind::Signed => {
                    assert_eq!(i.payload_len, i.payload.len());
                    assert_eq!(i.tag.len(), 64);
                    assert_eq!(i.nonce, None);
                }
                _ => {
                    // Only the header: nothing of the ciphertext is shown.
                    assert!(i.payload.is_empty());
                    assert!(i.payload_len >= 1);
                    assert_eq!(i.tag.len(), 32);
                    assert_eq!(i.nonce.as_ref().map(String::len), Some(48));
                }
            }
            assert_eq!(
                token::overhead_for(i.kind, i.key_id.len()).checked_add(i.payload_len),
                Some(bytes.len())
            );
        }
        Err(reason) => {
            assert!(matches!(
                reason,
                Reason::Malformed | Reason::UnsupportedVersion
            ));
            assert_eq!(inspected.map(|_| ()).map_err(|r| r.reason()), Err(reason));
        }
    }
}

/// Arbitrary bytes as a token and as a reconnect bundle, under default and small limits: nothing
/// opens (a valid tag is never found by chance), nothing panics, and every rejection has a
/// reason that can come before the MAC check. The same bytes are also put behind a
/// well-formed header of each kind (a key of the ring, the current step), so they reach the
/// HMAC of a signed entry and the AEAD of an encrypted one: nothing passes either.
pub fn open_untrusted(data: &[u8]) {
    let clock = Arc::new(ManualClock::new(NOW));
    let salt = Salt::from_bytes([7; 16]);
    let scopes = [Scope::new(&salt), Scope::new(&salt).with_subject("u")];
    for limits in [Limits::default(), small_limits()] {
        let r = recovery(&[1, 2], clock.clone(), OtpSettings::default(), limits);
        if let Ok(text) = std::str::from_utf8(data) {
            for scope in &scopes {
                let err = r
                    .open::<Value>(scope, text)
                    .expect_err("arbitrary token opened");
                assert_pre_mac(err.reason());
            }
        }
        let step = OtpSettings::default().step_at(NOW);
        for kind in [crate::EntryKind::Signed, crate::EntryKind::Encrypted] {
            let mut bytes = Vec::new();
            let key = crate::StateKey::from_bytes([9; 16]);
            token::write_header(&mut bytes, kind, &key_id(2), step, &key, 1, 1);
            bytes.extend_from_slice(data);
            let text = token::encode(&bytes);
            for scope in &scopes {
                let reason = r
                    .open::<Value>(scope, &text)
                    .expect_err("arbitrary bytes behind a valid header opened")
                    .reason();
                assert!(
                    matches!(
                        reason,
                        Reason::BadSignature | Reason::Malformed | Reason::TooLarge
                    ),
                    "{kind:?}: {reason}"
                );
                // Too short for the layout is malformed; long enough is the tag's verdict.
                let fits = text.len() <= limits.max_token_bytes();
                let room = bytes.len() > token::overhead_for(kind, 2);
                let want = match (fits, room) {
                    (false, _) => Reason::TooLarge,
                    (true, false) => Reason::Malformed,
                    (true, true) => Reason::BadSignature,
                };
                assert_eq!(reason, want, "{kind:?}");
            }
        }
        for subject in [None, Some("u")] {
            let Ok(restored) = r.open_bundle(subject, data) else {
                continue;
            };
            assert!(restored.is_empty(), "arbitrary bundle restored an entry");
            // Past the entry cap, tokens are counted, not kept.
            assert!(restored.rejected().len() <= limits.max_entries());
            for (i, rejected) in restored.rejected().iter().enumerate() {
                assert_eq!(rejected.index, i);
                assert_pre_mac(rejected.reason);
            }
        }
    }
}

fn assert_pre_mac(reason: Reason) {
    assert!(
        matches!(
            reason,
            Reason::Malformed
                | Reason::UnsupportedVersion
                | Reason::UnknownKey
                | Reason::Expired
                | Reason::NotYetValid
                | Reason::BadSignature
                | Reason::TooLarge
        ),
        "unexpected reason for an unauthentic token: {reason}"
    );
}

/// A JSON-like value, as built by the fuzzer. Floats are made finite and nesting is cut off
/// at [`Json::MAX_DEPTH`] when converted.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A negative or positive integer.
    Int(i64),
    /// A non-negative integer.
    Uint(u64),
    /// A float; non-finite ones become `null`.
    Float(f64),
    /// A string.
    Str(String),
    /// An array.
    Array(Vec<Json>),
    /// An object; a repeated key keeps its last value.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// The deepest nesting kept.
    pub const MAX_DEPTH: usize = 16;

    /// As a `serde_json::Value`.
    #[must_use]
    pub fn to_value(&self) -> Value {
        self.value_at(0)
    }

    fn value_at(&self, depth: usize) -> Value {
        let inner = depth.saturating_add(1);
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Int(n) => Value::from(*n),
            Json::Uint(n) => Value::from(*n),
            Json::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Json::Str(s) => Value::String(s.clone()),
            _ if inner > Self::MAX_DEPTH => Value::Null,
            Json::Array(items) => Value::Array(items.iter().map(|j| j.value_at(inner)).collect()),
            Json::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, j)| (k.clone(), j.value_at(inner)))
                    .collect(),
            ),
        }
    }
}

/// Built depth-first, at most [`Json::GEN_MAX_DEPTH`] deep and at most [`Json::GEN_MAX_ITEMS`]
/// items per array or object; floats are any `f64` (non-finite ones become `null`).
#[cfg(feature = "arbitrary")]
impl<'a> arbitrary::Arbitrary<'a> for Json {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        Self::generate(u, 0)
    }
}

#[cfg(feature = "arbitrary")]
impl Json {
    /// Deepest nesting generated.
    pub const GEN_MAX_DEPTH: usize = 6;
    /// Most items of one generated array or object.
    pub const GEN_MAX_ITEMS: usize = 8;

    fn generate(u: &mut arbitrary::Unstructured<'_>, depth: usize) -> arbitrary::Result<Self> {
        let kinds: u8 = if depth >= Self::GEN_MAX_DEPTH { 5 } else { 7 };
        let inner = depth.saturating_add(1);
        Ok(match u.int_in_range(0..=kinds)? {
            0 => Json::Null,
            1 => Json::Bool(u.arbitrary()?),
            2 => Json::Int(u.arbitrary()?),
            3 => Json::Uint(u.arbitrary()?),
            4 => Json::Float(u.arbitrary()?),
            5 => Json::Str(u.arbitrary()?),
            6 => {
                let mut items = Vec::new();
                while items.len() < Self::GEN_MAX_ITEMS && u.arbitrary()? {
                    items.push(Self::generate(u, inner)?);
                }
                Json::Array(items)
            }
            _ => {
                let mut fields = Vec::new();
                while fields.len() < Self::GEN_MAX_ITEMS && u.arbitrary()? {
                    fields.push((u.arbitrary()?, Self::generate(u, inner)?));
                }
                Json::Object(fields)
            }
        })
    }
}

/// Whether `v` has an object whose first key starts with `$serde_json::private::`: the values
/// `seal` refuses, because serde_json would read them back as another value.
#[must_use]
pub fn has_reserved_key(v: &Value) -> bool {
    match v {
        Value::Array(items) => items.iter().any(has_reserved_key),
        Value::Object(map) => {
            map.keys()
                .next()
                .is_some_and(|k| k.starts_with("$serde_json::private::"))
                || map.values().any(has_reserved_key)
        }
        _ => false,
    }
}

/// One seal-then-open round trip.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct RoundTrip {
    /// The value sealed.
    pub value: Json,
    /// The location's file.
    pub file: String,
    /// The location's line.
    pub line: u32,
    /// The location's column.
    pub column: u32,
    /// The location's instance path.
    pub instance: Option<String>,
    /// The client's salt.
    pub salt: [u8; 16],
    /// The authenticated subject.
    pub subject: Option<String>,
    /// The revision.
    pub revision: u64,
    /// The schema version.
    pub schema: u32,
    /// Seconds after [`NOW`] at which to seal.
    pub offset: u32,
}

/// Seal then open returns the same value, key, revision and schema, for a signed and an
/// encrypted entry alike; the token inspects to the same fields (an encrypted one to its
/// header only); opened at another location it is `wrong-location`; under another salt or
/// subject it is `bad-signature`.
pub fn seal_open_roundtrip(input: &RoundTrip) {
    for kind in [crate::EntryKind::Signed, crate::EntryKind::Encrypted] {
        roundtrip_as(input, kind);
    }
}

fn roundtrip_as(input: &RoundTrip, kind: crate::EntryKind) {
    let clock = Arc::new(ManualClock::new(
        NOW.saturating_add(u64::from(input.offset)),
    ));
    let r = recovery(&[3, 1], clock, OtpSettings::default(), Limits::default());
    let mut location = Location::new(input.file.clone(), input.line, input.column);
    if let Some(i) = &input.instance {
        location = location.with_instance(i.clone());
    }
    let key = r.state_key(&location);
    let salt = Salt::from_bytes(input.salt);
    let scope = Scope::new(&salt).with_optional_subject(input.subject.as_deref());
    let value = input.value.to_value();

    let token = match r.seal_with(kind, &scope, key, input.revision, input.schema, &value) {
        Ok(t) => t,
        Err(crate::SealError::TooLarge { len, max }) => {
            assert!(len > max);
            return;
        }
        Err(crate::SealError::Serialize(_)) if has_reserved_key(&value) => return,
        Err(e) => panic!("seal failed: {e}"),
    };
    assert!(token.as_str().len() <= r.limits().max_token_bytes());

    let opened = r
        .open_at::<Value>(&scope, key, token.as_str())
        .expect("a sealed token opens");
    assert_eq!(opened.value, value);
    assert_eq!((opened.key, opened.revision), (key, input.revision));
    assert_eq!((opened.schema, opened.kind), (input.schema, kind));
    assert_eq!(opened.step, r.otp().step_at(r.now()));

    let i = crate::inspect(token.as_str(), r.limits().max_token_bytes()).expect("inspects");
    assert_eq!((i.key_id.as_str(), i.step), ("k3", opened.step));
    assert_eq!((i.kind, i.version), (kind, kind.version()));
    assert_eq!(
        (i.key, i.rev, i.schema),
        (key.to_string(), input.revision, input.schema)
    );
    let json = serde_json::to_vec(&value).expect("a value serializes");
    if kind.is_encrypted() {
        // The header only; the ciphertext is as long as the JSON and is not the JSON.
        assert!(i.payload.is_empty());
        assert_eq!(i.payload_len, json.len());
        // (Only from 16 bytes on: a shorter ciphertext equals its plaintext by chance too
        // often for a fuzzer, 1 in 256 for one byte.)
        let bytes = token::decode(token.as_str().as_bytes(), usize::MAX).expect("decodes");
        let start = token::overhead_for(kind, 2) - 16;
        let ciphertext = &bytes[start..start + json.len()];
        if json.len() >= 16 {
            assert_ne!(ciphertext, &json[..], "the payload travelled in clear");
        }
    } else {
        assert_eq!(
            serde_json::from_slice::<Value>(&i.payload).expect("payload is JSON"),
            value
        );
    }

    let elsewhere = r.state_key(&location.clone().with_instance(format!(
        "{}/elsewhere",
        location.instance().unwrap_or_default()
    )));
    assert_ne!(elsewhere, key);
    let moved = r.open_at::<Value>(&scope, elsewhere, token.as_str());
    assert_eq!(
        moved.map(|_| ()).map_err(|e| e.reason()),
        Err(Reason::WrongLocation)
    );

    let mut other_bytes = input.salt;
    other_bytes[0] ^= 1;
    let other_salt = Salt::from_bytes(other_bytes);
    let other_subject = format!("{}x", input.subject.as_deref().unwrap_or_default());
    for wrong in [
        Scope::new(&other_salt).with_optional_subject(input.subject.as_deref()),
        Scope::new(&salt).with_subject(&other_subject),
        Scope::new(&salt).with_optional_subject(match input.subject {
            Some(_) => None,
            None => Some(""),
        }),
    ] {
        let err = r
            .open::<Value>(&wrong, token.as_str())
            .expect_err("rescoped");
        assert_eq!(err.reason(), Reason::BadSignature);
    }
}

/// Arbitrary bytes as a reconnect message's untrusted client input (the layer's
/// `ClientInput::from_message`), under default and small caps: never panics; either dropped
/// whole (empty, with an error) or within the caps and re-read identically from its own
/// canonical JSON; and the same bytes as a reconnect bundle restore no signed state.
#[cfg(feature = "axum")]
pub fn client_input(data: &[u8]) {
    use crate::layer::{ClientInput, InputLimits};

    let small = InputLimits::default()
        .with_max_forms(4)
        .with_max_fields(8)
        .with_max_bytes(512);
    for limits in [InputLimits::default(), small] {
        let input = ClientInput::from_message(data, &limits);
        if input.error().is_some() {
            assert!(input.is_empty(), "dropped input kept forms");
            continue;
        }
        assert!(input.len() <= limits.max_forms());
        let fields: usize = input.forms().map(|(_, f)| f.len()).sum();
        assert!(fields <= limits.max_fields());
        let mut forms = serde_json::Map::new();
        for (id, form) in input.forms() {
            let mut obj = serde_json::Map::new();
            for (name, values) in form.fields() {
                assert_eq!(form.get(name), values.first().map(String::as_str));
                assert_eq!(form.get_all(name), values);
                obj.insert(name.to_owned(), Value::from(values.to_vec()));
            }
            forms.insert(id.to_owned(), Value::Object(obj));
        }
        // Canonical text can be longer than what was sent (arrays for single values).
        let message = serde_json::json!({ "input": forms }).to_string();
        let again =
            ClientInput::from_message(message.as_bytes(), &limits.with_max_bytes(usize::MAX));
        assert_eq!(again, input, "client input does not re-read identically");
    }
    let r = recovery(
        &[1, 2],
        Arc::new(ManualClock::new(NOW)),
        OtpSettings::default(),
        Limits::default(),
    );
    if let Ok(restored) = r.open_bundle(None, data) {
        assert!(restored.is_empty(), "client input restored signed state");
    }
}

/// Key manifests (`state-recovery keys diff` input) and location texts (`--location`): never
/// a panic; a manifest that parses writes and re-parses to itself and has no breaking
/// difference from itself; a location that parses prints and re-parses to itself.
pub fn manifest(data: &[u8]) {
    use crate::manifest::{diff, DiffOptions, Manifest};

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = Manifest::parse(text) {
        let again = Manifest::parse(&m.to_json()).expect("a written manifest parses");
        assert_eq!(Manifest::parse(&again.to_json()).as_ref(), Ok(&again));
        assert!(!diff(&m, &m, DiffOptions::default()).is_breaking());
    }
    for line in text.lines().take(16) {
        if let Ok(loc) = line.parse::<Location>() {
            let shown = loc.to_string();
            assert_eq!(shown.parse::<Location>().as_ref(), Ok(&loc), "{line:?}");
        }
    }
}
