//! Attacks on single tokens: every bit flip, truncation, splice, move, rebinding, window edge,
//! non-canonical encoding and oversized input must be refused with the documented reason.

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};
use state_recovery::{mac, Limits, Location, Reason, Recovery, Scope, StateKey, Token};

use crate::common::{self, recovery, recovery_with, ring, salt, NOW, STEP};

fn key(r: &Recovery) -> StateKey {
    r.state_key(&Location::new("src/app.rs", 10, 5))
}

fn sealed(r: &Recovery, value: &Value) -> Token {
    r.seal(&Scope::new(&salt(1)), key(r), 3, 1, value).unwrap()
}

fn reason(r: &Recovery, scope: &Scope<'_>, token: &str) -> Reason {
    r.open::<Value>(scope, token).unwrap_err().reason()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn raw(token: &Token) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(token.as_str()).unwrap()
}

#[test]
fn a_sealed_token_opens() {
    let (r, _) = recovery();
    let t = sealed(&r, &json!({"n": 1}));
    let o = r.open::<Value>(&Scope::new(&salt(1)), t.as_str()).unwrap();
    assert_eq!(o.value, json!({"n": 1}));
    assert_eq!((o.key, o.revision, o.schema), (key(&r), 3, 1));
    assert_eq!(o.step, NOW / STEP);
}

#[test]
fn every_bit_flip_of_the_decoded_bytes_is_refused() {
    let (r, _) = recovery();
    let bytes = raw(&sealed(&r, &json!({"todo": ["a", "b"], "n": 7})));
    let s1 = salt(1);
    let scope = Scope::new(&s1);
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            let got = r.open::<Value>(&scope, &b64(&b));
            let reason = got
                .expect_err(&format!("byte {i} bit {bit} opened"))
                .reason();
            // The version byte and the key id say which check fires; everything else is the MAC.
            let allowed: &[Reason] = match i {
                0 => &[Reason::UnsupportedVersion],
                1 => &[Reason::Malformed, Reason::UnknownKey],
                2 | 3 => &[Reason::Malformed, Reason::UnknownKey],
                // A flip in the step's low bit stays inside the window: the MAC catches it.
                4..=11 => &[Reason::Expired, Reason::NotYetValid, Reason::BadSignature],
                _ => &[Reason::BadSignature],
            };
            assert!(allowed.contains(&reason), "byte {i} bit {bit}: {reason}");
        }
    }
}

#[test]
fn every_bit_flip_of_the_text_is_refused() {
    let (r, _) = recovery();
    let text = sealed(&r, &json!([1, "two", null])).into_string();
    let s1 = salt(1);
    let scope = Scope::new(&s1);
    for i in 0..text.len() {
        for bit in 0..7 {
            let mut b = text.clone().into_bytes();
            b[i] ^= 1 << bit;
            let Ok(s) = String::from_utf8(b) else {
                continue;
            };
            if s == text {
                continue;
            }
            assert!(
                r.open::<Value>(&scope, &s).is_err(),
                "char {i} bit {bit} opened"
            );
        }
    }
}

#[test]
fn every_truncation_is_refused() {
    let (r, _) = recovery();
    let text = sealed(&r, &json!({"k": "v"})).into_string();
    let s1 = salt(1);
    let scope = Scope::new(&s1);
    for n in 0..text.len() {
        let got = r.open::<Value>(&scope, &text[..n]);
        let reason = got.unwrap_err().reason();
        assert!(
            [Reason::Malformed, Reason::BadSignature].contains(&reason),
            "len {n}: {reason}"
        );
    }
    let bytes = raw(&sealed(&r, &json!({"k": "v"})));
    for n in 0..bytes.len() {
        assert!(
            r.open::<Value>(&scope, &b64(&bytes[..n])).is_err(),
            "bytes {n}"
        );
    }
}

#[test]
fn zero_truncated_and_extended_tags_are_refused() {
    let (r, _) = recovery();
    let bytes = raw(&sealed(&r, &json!("x")));
    let s1 = salt(1);
    let scope = Scope::new(&s1);
    let body = &bytes[..bytes.len() - 32];

    let zero = [body, &[0u8; 32]].concat();
    assert_eq!(reason(&r, &scope, &b64(&zero)), Reason::BadSignature);
    // A 16-byte tag: too short to hold the layout, or (with a longer payload) the parser
    // takes the last 32 bytes as the tag and the MAC fails. Never a truncated-tag check.
    let short = [body, &bytes[bytes.len() - 32..bytes.len() - 16]].concat();
    assert_eq!(reason(&r, &scope, &b64(&short)), Reason::Malformed);
    let long_payload = raw(&sealed(&r, &json!("a longer payload than sixteen bytes")));
    let n = long_payload.len();
    let short = [&long_payload[..n - 32], &long_payload[n - 32..n - 16]].concat();
    assert_eq!(reason(&r, &scope, &b64(&short)), Reason::BadSignature);
    let long = [&bytes[..], &[0u8; 1]].concat();
    assert_eq!(reason(&r, &scope, &b64(&long)), Reason::BadSignature);
    let long = [&bytes[..], &bytes[bytes.len() - 32..]].concat();
    assert_eq!(reason(&r, &scope, &b64(&long)), Reason::BadSignature);
}

#[test]
fn payloads_swapped_between_tokens_are_refused() {
    let (r, _) = recovery();
    let a = raw(&sealed(&r, &json!(111)));
    let b = raw(&sealed(&r, &json!(222)));
    let header = a.len() - 32 - 3;
    let spliced = [&a[..header], &b[header..header + 3], &a[a.len() - 32..]].concat();
    assert_eq!(
        reason(&r, &Scope::new(&salt(1)), &b64(&spliced)),
        Reason::BadSignature
    );
    let spliced = [&a[..a.len() - 32], &b[b.len() - 32..]].concat();
    assert_eq!(
        reason(&r, &Scope::new(&salt(1)), &b64(&spliced)),
        Reason::BadSignature
    );
}

#[test]
fn an_entry_moved_to_another_location_is_refused() {
    let (r, _) = recovery();
    let s1 = salt(1);
    let scope = Scope::new(&s1);
    let t = sealed(&r, &json!(5));
    let elsewhere = r.state_key(&Location::new("src/app.rs", 11, 5));
    // Asked for at another location: authentic, but not here.
    let got = r
        .open_at::<Value>(&scope, elsewhere, t.as_str())
        .unwrap_err();
    assert_eq!(got.reason(), Reason::WrongLocation);
    assert!(r.open_at::<Value>(&scope, key(&r), t.as_str()).is_ok());
    // The key field rewritten to the other location: the MAC binds it.
    let mut b = raw(&t);
    let at = 2 + 2 + 8;
    b[at..at + 16].copy_from_slice(elsewhere.as_bytes());
    assert_eq!(reason(&r, &scope, &b64(&b)), Reason::BadSignature);
}

#[test]
fn another_salt_or_subject_is_refused() {
    let (r, _) = recovery();
    let s = salt(1);
    let alice = Scope::new(&s).with_subject("alice");
    let t = r.seal(&alice, key(&r), 1, 1, &json!(1)).unwrap();
    assert!(r.open::<Value>(&alice, t.as_str()).is_ok());
    let other_salt = salt(2);
    for scope in [
        Scope::new(&other_salt).with_subject("alice"),
        Scope::new(&s).with_subject("bob"),
        Scope::new(&s).with_subject(""),
        Scope::new(&s),
    ] {
        assert_eq!(
            reason(&r, &scope, t.as_str()),
            Reason::BadSignature,
            "{scope:?}"
        );
    }
    // No subject and an empty subject are different bindings.
    let none = r.seal(&Scope::new(&s), key(&r), 1, 1, &json!(1)).unwrap();
    assert_eq!(
        reason(&r, &Scope::new(&s).with_subject(""), none.as_str()),
        Reason::BadSignature
    );
}

#[test]
fn pae_boundaries_are_unambiguous() {
    // Salt "ab" + key "c" against "a" + "bc", at the MAC level.
    let k = [7u8; 32];
    assert_ne!(
        mac::hmac_sha256(&k, &mac::pae(&[b"ab", b"c"])),
        mac::hmac_sha256(&k, &mac::pae(&[b"a", b"bc"]))
    );
    // And end to end: subject "1" with payload 23 against subject "12" with payload 3.
    let (r, _) = recovery();
    let s = salt(1);
    let t1 = r
        .seal(&Scope::new(&s).with_subject("1"), key(&r), 0, 1, &json!(23))
        .unwrap();
    let t2 = r
        .seal(&Scope::new(&s).with_subject("12"), key(&r), 0, 1, &json!(3))
        .unwrap();
    assert_ne!(
        raw(&t1)[raw(&t1).len() - 32..],
        raw(&t2)[raw(&t2).len() - 32..]
    );
    assert_eq!(
        reason(&r, &Scope::new(&s).with_subject("12"), t1.as_str()),
        Reason::BadSignature
    );
}

#[test]
fn same_key_id_with_another_pepper_is_refused() {
    let (a, _) = recovery_with(ring(&[("k1", 1)]));
    let (b, _) = recovery_with(ring(&[("k1", 2)]));
    let t = sealed(&a, &json!(1));
    assert_eq!(
        reason(&b, &Scope::new(&salt(1)), t.as_str()),
        Reason::BadSignature
    );
}

#[test]
fn another_namespace_is_refused() {
    let (a, _) = recovery();
    let b = Recovery::builder(ring(&[("k1", 1)]))
        .namespace("another-app")
        .clock(state_recovery::ManualClock::new(NOW))
        .build()
        .unwrap();
    let t = a
        .seal(&Scope::new(&salt(1)), key(&a), 0, 1, &json!(1))
        .unwrap();
    assert_eq!(
        reason(&b, &Scope::new(&salt(1)), t.as_str()),
        Reason::BadSignature
    );
}

#[test]
fn rotation_keeps_old_entries_until_the_old_key_is_removed() {
    let (old, _) = recovery_with(ring(&[("k1", 1)]));
    let t = sealed(&old, &json!("kept"));
    let (rotated, _) = recovery_with(ring(&[("k2", 2), ("k1", 1)]));
    let s1 = salt(1);
    let scope = Scope::new(&s1);
    assert_eq!(
        rotated.open::<Value>(&scope, t.as_str()).unwrap().value,
        json!("kept")
    );
    // New entries are sealed under the new first key.
    let fresh = sealed(&rotated, &json!("new"));
    assert_eq!(
        state_recovery::inspect(fresh.as_str(), 1 << 16)
            .unwrap()
            .key_id,
        "k2"
    );
    assert_eq!(reason(&old, &scope, fresh.as_str()), Reason::UnknownKey);
    let (retired, _) = recovery_with(ring(&[("k2", 2)]));
    assert_eq!(reason(&retired, &scope, t.as_str()), Reason::UnknownKey);
    assert!(retired.open::<Value>(&scope, fresh.as_str()).is_ok());
}

#[test]
fn window_is_one_step_either_side() {
    let (r, clock) = recovery();
    let s1 = salt(1);
    let scope = Scope::new(&s1);
    let start = (NOW / STEP) * STEP; // start of the sealing step t
    clock.set(start + 10);
    let t = sealed(&r, &json!(1));
    let expect = |offset: i64| -> Result<(), Reason> {
        let at = (start as i64 + offset * STEP as i64) as u64;
        clock.set(at);
        r.open::<Value>(&scope, t.as_str())
            .map(|_| ())
            .map_err(|e| e.reason())
    };
    // Opened at t-1 (sealed "in the future" by one step), t, t+1, up to the last second.
    assert_eq!(expect(-1), Ok(()));
    assert_eq!(expect(0), Ok(()));
    assert_eq!(expect(1), Ok(()));
    clock.set(start + 2 * STEP - 1);
    assert!(r.open::<Value>(&scope, t.as_str()).is_ok());
    assert_eq!(expect(2), Err(Reason::Expired));
    assert_eq!(expect(-2), Err(Reason::NotYetValid));
    assert_eq!(expect(100), Err(Reason::Expired));
}

#[test]
fn times_near_zero_and_far_future_do_not_panic() {
    let (r, clock) = recovery();
    let s1 = salt(1);
    let scope = Scope::new(&s1);
    for now in [0, 1, STEP - 1, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
        clock.set(now);
        let t = sealed(&r, &json!(now.to_string()));
        assert!(r.open::<Value>(&scope, t.as_str()).is_ok(), "{now}");
    }
    clock.set(0);
    let t = sealed(&r, &json!(0));
    clock.set(u64::MAX);
    assert_eq!(reason(&r, &scope, t.as_str()), Reason::Expired);
    clock.set(0);
    let (far, far_clock) = recovery();
    far_clock.set(u64::MAX);
    let t = sealed(&far, &json!(0));
    assert_eq!(reason(&r, &scope, t.as_str()), Reason::NotYetValid);
}

#[test]
fn non_canonical_base64_is_malformed() {
    let (r, _) = recovery();
    let s1 = salt(1);
    let scope = Scope::new(&s1);
    let bytes = raw(&sealed(&r, &json!({"a": "b?>"})));
    let text = b64(&bytes);
    assert!(r.open::<Value>(&scope, &text).is_ok());
    let padded = URL_SAFE.encode(&bytes);
    if padded != text {
        assert_eq!(reason(&r, &scope, &padded), Reason::Malformed);
    }
    assert_eq!(reason(&r, &scope, &format!("{text}=")), Reason::Malformed);
    assert_eq!(reason(&r, &scope, &format!("{text}==")), Reason::Malformed);
    let standard = STANDARD_NO_PAD.encode(&bytes);
    if standard != text {
        assert_eq!(reason(&r, &scope, &standard), Reason::Malformed);
    }
    for ws in [" ", "\n", "\t", "\r\n"] {
        assert_eq!(
            reason(&r, &scope, &format!("{text}{ws}")),
            Reason::Malformed
        );
        assert_eq!(
            reason(&r, &scope, &format!("{ws}{text}")),
            Reason::Malformed
        );
        let mid = text.len() / 2;
        let split = format!("{}{ws}{}", &text[..mid], &text[mid..]);
        assert_eq!(reason(&r, &scope, &split), Reason::Malformed);
    }
    // Non-zero trailing bits: find a length that leaves unused bits and set them.
    let mut trimmed = bytes.clone();
    while trimmed.len() % 3 == 0 {
        trimmed.push(b' ');
    }
    let canon = b64(&trimmed);
    let last = canon.as_bytes()[canon.len() - 1];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.iter().position(|c| *c == last).unwrap();
    let noisy = alphabet[idx | 1];
    assert_ne!(noisy, last);
    let mut bad = canon.into_bytes();
    *bad.last_mut().unwrap() = noisy;
    assert_eq!(
        reason(&r, &scope, &String::from_utf8(bad).unwrap()),
        Reason::Malformed
    );
}

#[test]
fn empty_garbage_and_non_utf8_inputs_are_malformed() {
    let (r, _) = recovery();
    let s1 = salt(1);
    let scope = Scope::new(&s1);
    for bad in [
        "", "A", "AAAAA", "====", "!!!!", "é", "\0\0\0\0", "AQ", "AQAA",
    ] {
        assert_eq!(reason(&r, &scope, bad), Reason::Malformed, "{bad:?}");
    }
    // Version bytes we do not read, whatever follows. (2 is an encrypted entry: its layout is
    // checked, and these are too short or have a bad key id.)
    assert_eq!(reason(&r, &scope, &b64(&[2])), Reason::Malformed);
    assert_eq!(reason(&r, &scope, &b64(&[2; 80])), Reason::Malformed);
    for v in [0u8, 3, 255] {
        assert_eq!(reason(&r, &scope, &b64(&[v])), Reason::UnsupportedVersion);
        assert_eq!(
            reason(&r, &scope, &b64(&[v; 80])),
            Reason::UnsupportedVersion
        );
    }
    // Non-UTF-8 bytes can only arrive inside a bundle.
    let bundle = [b"{\"salt\":\"".as_slice(), &[0xFF, 0xFE], b"\"}"].concat();
    assert_eq!(
        r.open_bundle(None, &bundle).unwrap_err().reason(),
        Reason::Malformed
    );
}

#[test]
fn oversized_input_is_refused_before_decoding() {
    let (r, _) = recovery();
    let s1 = salt(1);
    let scope = Scope::new(&s1);
    // Not base64 at all, yet "too-large" wins: the size check comes before decoding.
    let huge = "!".repeat(Limits::DEFAULT_MAX_TOKEN_BYTES + 1);
    assert_eq!(reason(&r, &scope, &huge), Reason::TooLarge);
    let at_cap = "!".repeat(Limits::DEFAULT_MAX_TOKEN_BYTES);
    assert_eq!(reason(&r, &scope, &at_cap), Reason::Malformed);
}

#[test]
fn json_deeper_than_the_limit_is_refused() {
    let deep_ring = || ring(&[("k1", 1)]);
    let (r, _) = recovery_with(deep_ring());
    let lenient = Recovery::builder(deep_ring())
        .namespace("test-app")
        .clock(state_recovery::ManualClock::new(NOW))
        .limits(Limits::default().with_max_depth(128))
        .build()
        .unwrap();
    let mut v = json!(1);
    for _ in 0..65 {
        v = json!([v]);
    }
    // Sealing refuses it under the default limit...
    let err = r
        .seal(&Scope::new(&salt(1)), key(&r), 0, 1, &v)
        .unwrap_err();
    assert!(
        matches!(err, state_recovery::SealError::TooDeep { max: 64 }),
        "{err}"
    );
    // ...and an authentic token that carries it is refused when opened.
    let t = lenient
        .seal(&Scope::new(&salt(1)), key(&r), 0, 1, &v)
        .unwrap();
    assert_eq!(
        reason(&r, &Scope::new(&salt(1)), t.as_str()),
        Reason::TooLarge
    );
    assert!(lenient
        .open::<Value>(&Scope::new(&salt(1)), t.as_str())
        .is_ok());
}

#[test]
fn seal_errors_are_typed() {
    let (r, _) = recovery();
    let s1 = salt(1);
    let scope = Scope::new(&s1);
    let mut m = std::collections::HashMap::new();
    m.insert(vec![1u8], 1);
    let err = r.seal(&scope, key(&r), 0, 1, &m).unwrap_err();
    assert!(
        matches!(err, state_recovery::SealError::Serialize(_)),
        "{err}"
    );
    // serde_json would write NaN as null, which opens as another value: refused.
    let err = r.seal(&scope, key(&r), 0, 1, &f64::NAN).unwrap_err();
    assert!(
        matches!(err, state_recovery::SealError::NonFiniteFloat),
        "{err}"
    );
    let big = "x".repeat(Limits::DEFAULT_MAX_TOKEN_BYTES);
    let err = r.seal(&scope, key(&r), 0, 1, &big).unwrap_err();
    assert!(
        matches!(err, state_recovery::SealError::TooLarge { .. }),
        "{err}"
    );
}

#[test]
fn a_value_of_another_type_is_invalid_payload() {
    let (r, _) = recovery();
    let t = sealed(&r, &json!({"n": "not a number"}));
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Counter {
        n: u32,
    }
    let err = r
        .open::<Counter>(&Scope::new(&salt(1)), t.as_str())
        .unwrap_err();
    assert_eq!(err.reason(), Reason::InvalidPayload);
}

#[test]
fn nothing_secret_in_debug_output() {
    let (r, _) = recovery();
    let text = format!("{r:?}");
    let spec = common::ring(&[("k1", 1)]).expose_spec().to_string();
    let key_b64 = spec.split_once(':').unwrap().1;
    assert!(!text.contains(key_b64), "{text}");
    assert!(text.contains("k1"));
    let rejection = r.open::<Value>(&Scope::new(&salt(1)), "!!!!").unwrap_err();
    assert_eq!(format!("{rejection}"), "state entry rejected: malformed");
}

/// Low-diversity keys, one key under two ids, and a location key that is a pepper are all
/// refused at configuration time, and no error repeats the key.
#[test]
fn weak_and_reused_keys_are_refused() {
    let assert_silent = |err: &state_recovery::ConfigError, secrets: &[&str]| {
        for text in [err.to_string(), format!("{err:?}")] {
            for s in secrets {
                assert!(!text.contains(s), "{text}");
            }
        }
    };
    let mut one = [0u8; 32];
    one[31] = 1;
    let fifteen: [u8; 32] = std::array::from_fn(|i| (i % 15) as u8 + 1);
    for weak in [[1u8; 32], one, [0xFF; 32], fifteen] {
        let text = b64(&weak);
        assert!(state_recovery::Pepper::try_from_bytes(&weak).is_err());
        assert!(state_recovery::Pepper::from_base64(&text).is_err());
        let err = state_recovery::KeyRing::parse(&format!("k1:{text}")).unwrap_err();
        assert_silent(&err, &[&text]);
    }
    // Sixteen distinct values are enough.
    let sixteen: [u8; 32] = std::array::from_fn(|i| (i % 16) as u8);
    assert!(state_recovery::Pepper::try_from_bytes(&sixteen).is_ok());

    // One pepper under two ids, as text and as values.
    let key = common::pepper(1).expose_base64().to_string();
    let err = state_recovery::KeyRing::parse(&format!("a:{key},b:{key}")).unwrap_err();
    assert_silent(&err, &[&key]);
    let id = |s: &str| state_recovery::KeyId::new(s).unwrap();
    assert!(state_recovery::KeyRing::new([
        (id("a"), common::pepper(1)),
        (id("b"), common::pepper(2)),
        (id("c"), common::pepper(1)),
    ])
    .is_err());
    // HMAC pads keys shorter than its 64-byte block with zeros: the same key with zero bytes
    // appended is the same MAC key, so it is the same pepper.
    let mut padded = URL_SAFE_NO_PAD.decode(&key).unwrap();
    padded.extend_from_slice(&[0; 7]);
    let padded = b64(&padded);
    let err = state_recovery::KeyRing::parse(&format!("a:{key},b:{padded}")).unwrap_err();
    assert_silent(&err, &[&key, &padded]);

    // A location key that is one of the ring's peppers.
    let err = Recovery::builder(ring(&[("k1", 1), ("k2", 2)]))
        .location_key(common::pepper(2))
        .build()
        .unwrap_err();
    assert_silent(&err, &[&common::pepper(2).expose_base64()]);
    let spec = ring(&[("k1", 1), ("k2", 2)]).expose_spec().to_string();
    let lk = common::pepper(1).expose_base64().to_string();
    let from_env = state_recovery::RecoveryBuilder::from_lookup(|name| match name {
        "STATE_RECOVERY_KEYS" => Some(spec.clone()),
        "STATE_RECOVERY_LOCATION_KEY" => Some(lk.clone()),
        _ => None,
    })
    .and_then(state_recovery::RecoveryBuilder::build);
    assert_silent(&from_env.unwrap_err(), &[&lk]);
    // Its own key is fine.
    assert!(Recovery::builder(ring(&[("k1", 1), ("k2", 2)]))
        .location_key(common::pepper(3))
        .build()
        .is_ok());
}

/// Keys from the OS CSPRNG always pass the checks (generate retries the negligible failures).
#[test]
fn generated_keys_always_pass() {
    for _ in 0..2_000 {
        let p = state_recovery::Pepper::generate();
        let text = p.expose_base64();
        assert!(state_recovery::Pepper::from_base64(&text).is_ok());
        assert!(state_recovery::Pepper::try_generate().is_ok());
    }
}

/// `Debug` of everything that holds tokens or restored payloads shows neither: a bundle
/// (counts only), what it restored (entries without values), an opened entry, a rejection,
/// a state update, and the endpoint's `Recovered`.
#[test]
fn debug_shows_no_tokens_or_payloads() {
    use state_recovery::protocol::Endpoint;
    use state_recovery::{reconnect_message, Bundle, RecoveryContext};
    let (r, _) = recovery();
    let s1 = salt(1);
    let scope = Scope::new(&s1);
    let secret = "hunter2-typed-by-the-user";
    let good = sealed(&r, &json!({"draft": secret}));
    let forged = {
        let mut bytes = raw(&good);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        b64(&bytes)
    };
    let message = reconnect_message(&s1, [good.as_str(), forged.as_str()]);
    // What must never show: either token, any stretch of them, the payload, the salt.
    let leaks = |text: &str| {
        for needle in [good.as_str(), forged.as_str()] {
            assert!(!text.contains(&needle[..24]), "token in {text}");
            assert!(
                !text.contains(&needle[needle.len() - 24..]),
                "token in {text}"
            );
        }
        assert!(!text.contains(secret), "payload in {text}");
        assert!(!text.contains("draft"), "payload in {text}");
        assert!(!text.contains(&s1.encode()), "salt in {text}");
    };

    let bundle = Bundle::parse(message.as_bytes(), r.limits()).unwrap();
    let text = format!("{bundle:?}");
    leaks(&text);
    assert_eq!(
        text,
        "Bundle { salt: Salt(<redacted>), entries: 2, overflow: 0 }"
    );

    let restored = r.open_bundle(None, message.as_bytes()).unwrap();
    let text = format!("{restored:?}");
    leaks(&text);
    assert!(text.contains(&key(&r).to_string()), "{text}");
    assert!(text.contains("BadSignature"), "{text}");
    let entry = restored.raw(&key(&r)).unwrap();
    leaks(&format!("{entry:?}"));
    leaks(&format!("{:?}", restored.rejected()[0]));
    let typed = restored.get::<Value>(&key(&r)).unwrap().unwrap();
    leaks(&format!("{typed:?}"));
    let opened = r.open::<Value>(&scope, good.as_str()).unwrap();
    let text = format!("{opened:?}");
    leaks(&text);
    assert!(text.contains("revision: 3"), "{text}");

    let context = RecoveryContext::new(r.clone(), s1.clone(), None);
    let update = context
        .seal(
            key(&r),
            context.next_revision(key(&r)),
            1,
            &json!({"draft": secret}),
        )
        .unwrap();
    leaks(&format!("{update:?}"));
    leaks(&format!(
        "{:?}",
        state_recovery::protocol::ServerMessage::from(update.clone())
    ));
    leaks(&format!("{context:?}"));

    let recovered = Endpoint::new(r.clone()).recover(Some(message.as_bytes()), None);
    assert_eq!(recovered.restored().len(), 1);
    leaks(&format!("{recovered:?}"));
}

/// A clock before 1970, as `SystemClock` reports it through `checked_now`.
struct Before1970;

impl state_recovery::Clock for Before1970 {
    fn now(&self) -> u64 {
        0
    }
    fn checked_now(&self) -> Option<u64> {
        None
    }
}

/// `SealError::ClockOutOfRange` fires where it means something: a clock before 1970 (it
/// sealed at step 0 before) or past what the step arithmetic covers (it sealed in a window
/// saturated at `u64::MAX`). Opening at such a time: before 1970 every entry is
/// `not-yet-valid` (the opener is behind every sealer), past the range every entry is
/// `expired`; nothing opens.
#[test]
fn a_clock_out_of_range_refuses_to_seal_and_opens_nothing() {
    use state_recovery::{ManualClock, OtpSettings, SealError};
    let s1 = salt(1);
    let scope = Scope::new(&s1);
    let build = |otp: OtpSettings, clock: std::sync::Arc<dyn state_recovery::Clock>| {
        struct Shared(std::sync::Arc<dyn state_recovery::Clock>);
        impl state_recovery::Clock for Shared {
            fn now(&self) -> u64 {
                self.0.now()
            }
            fn checked_now(&self) -> Option<u64> {
                self.0.checked_now()
            }
        }
        Recovery::builder(ring(&[("k1", 1)]))
            .namespace("test-app")
            .otp(otp)
            .clock(Shared(clock))
            .build()
            .unwrap()
    };

    // Before 1970.
    let epoch = build(
        OtpSettings::default(),
        std::sync::Arc::new(ManualClock::new(0)),
    );
    let at_zero = sealed(&epoch, &json!(1));
    assert!(epoch.open::<Value>(&scope, at_zero.as_str()).is_ok());
    let before = build(OtpSettings::default(), std::sync::Arc::new(Before1970));
    assert!(matches!(
        before.seal(&scope, key(&before), 1, 1, &json!(1)),
        Err(SealError::ClockOutOfRange)
    ));
    assert_eq!(
        reason(&before, &scope, at_zero.as_str()),
        Reason::NotYetValid
    );
    let now = sealed(&common::recovery().0, &json!(1));
    assert_eq!(reason(&before, &scope, now.as_str()), Reason::NotYetValid);
    let bundle = state_recovery::reconnect_message(&s1, [at_zero.as_str(), now.as_str()]);
    let restored = before.open_bundle(None, bundle.as_bytes()).unwrap();
    assert!(restored.is_empty());
    assert!(restored
        .rejected()
        .iter()
        .all(|r| r.reason == Reason::NotYetValid));

    // Past the covered range: with a 1 s step and a skew of 1, the last two seconds of u64.
    for (skew, last) in [(1, u64::MAX - 2), (OtpSettings::MAX_SKEW, u64::MAX - 49)] {
        let otp = OtpSettings::new(1, skew).unwrap();
        let clock = std::sync::Arc::new(ManualClock::new(last));
        let r = build(otp, clock.clone());
        let edge = sealed(&r, &json!("edge"));
        assert!(r.open::<Value>(&scope, edge.as_str()).is_ok());
        for beyond in [last + 1, u64::MAX] {
            clock.set(beyond);
            assert!(
                matches!(
                    r.seal(&scope, key(&r), 1, 1, &json!(1)),
                    Err(SealError::ClockOutOfRange)
                ),
                "{beyond}"
            );
            assert_eq!(reason(&r, &scope, edge.as_str()), Reason::Expired);
        }
    }
    // With the default 4 h step, every u64 time is covered (see
    // `times_near_zero_and_far_future_do_not_panic`).
    assert!(OtpSettings::default().covers(u64::MAX));
}
