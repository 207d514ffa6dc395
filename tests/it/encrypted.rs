//! Encrypted entries (format version 2): round trips, every attack the signed format is
//! tested against, bundles mixing both kinds, encrypted recoveries and slots, refresh, limits
//! and what never shows.

use std::collections::HashSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use state_recovery::protocol::{Endpoint, ServerMessage};
use state_recovery::token::overhead_for;
use state_recovery::{
    inspect, reconnect_message, state_key, ConfigError, EntryKind, KeyId, KeyRing, Limits,
    Location, ManualClock, OtpSettings, Reason, Recovery, RecoveryContext, SealError, Slot,
    StateKey, Token,
};
use state_recovery::{Salt, Scope};

use crate::common::{pepper, recovery, recovery_with, ring, salt, NOW, STEP};

const SECRET: &str = "the card number 4111 1111 1111 1111";

fn key(r: &Recovery) -> StateKey {
    r.state_key(&Location::new("src/app.rs", 10, 5))
}

fn encrypted(r: &Recovery, scope: &Scope<'_>, value: &Value) -> Token {
    r.seal_with(EntryKind::Encrypted, scope, key(r), 3, 1, value)
        .unwrap()
}

fn raw(token: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(token).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn reason(r: &Recovery, scope: &Scope<'_>, token: &str) -> Reason {
    r.open::<Value>(scope, token).unwrap_err().reason()
}

/// Offset of the nonce in a token whose key id is `k1` (2 bytes).
const NONCE_AT: usize = 2 + 2 + 8 + 16 + 8 + 4;

#[test]
fn both_kinds_round_trip_with_and_without_a_subject() {
    let (r, _) = recovery();
    let s = salt(1);
    for subject in [None, Some("user-42"), Some("")] {
        let scope = Scope::new(&s).with_optional_subject(subject);
        for kind in [EntryKind::Signed, EntryKind::Encrypted] {
            let value = json!({"secret": SECRET, "n": [1, 2.5, null]});
            let t = r.seal_with(kind, &scope, key(&r), 9, 4, &value).unwrap();
            let o = r.open_at::<Value>(&scope, key(&r), t.as_str()).unwrap();
            assert_eq!(o.value, value);
            assert_eq!((o.key, o.revision, o.schema), (key(&r), 9, 4));
            assert_eq!((o.step, o.kind, o.primary), (NOW / STEP, kind, true));
            let i = inspect(t.as_str(), usize::MAX).unwrap();
            assert_eq!((i.version, i.kind), (kind.version(), kind));
            assert_eq!(
                raw(t.as_str()).len(),
                overhead_for(kind, 2) + serde_json::to_vec(&value).unwrap().len()
            );
        }
    }
    // A plain `Recovery` seals signed entries.
    assert_eq!(r.entry_kind(), EntryKind::Signed);
    let t = r.seal(&Scope::new(&s), key(&r), 1, 1, &1).unwrap();
    assert_eq!(
        inspect(t.as_str(), usize::MAX).unwrap().kind,
        EntryKind::Signed
    );
}

#[test]
fn every_bit_flip_of_an_encrypted_token_is_refused() {
    let (r, _) = recovery();
    let s = salt(1);
    let scope = Scope::new(&s);
    let bytes = raw(encrypted(&r, &scope, &json!({"todo": ["a", "b"], "n": 7})).as_str());
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            let got = r.open::<Value>(&scope, &b64(&b));
            let reason = got
                .expect_err(&format!("byte {i} bit {bit} opened"))
                .reason();
            let allowed: &[Reason] = match i {
                // 2 flips to 0, 3, 6, 10, 18, 34, 66 or 130: none of them a version.
                0 => &[Reason::UnsupportedVersion],
                1..=3 => &[Reason::Malformed, Reason::UnknownKey],
                4..=11 => &[Reason::Expired, Reason::NotYetValid, Reason::BadSignature],
                // State key, revision, schema, nonce, ciphertext, tag: the AEAD.
                _ => &[Reason::BadSignature],
            };
            assert!(allowed.contains(&reason), "byte {i} bit {bit}: {reason}");
        }
    }
}

#[test]
fn every_truncation_and_extension_of_an_encrypted_token_is_refused() {
    let (r, _) = recovery();
    let s = salt(1);
    let scope = Scope::new(&s);
    let bytes = raw(encrypted(&r, &scope, &json!({"k": "v"})).as_str());
    let min = overhead_for(EntryKind::Encrypted, 2);
    for n in 0..bytes.len() {
        let want = if n <= min {
            Reason::Malformed
        } else {
            Reason::BadSignature
        };
        assert_eq!(reason(&r, &scope, &b64(&bytes[..n])), want, "len {n}");
    }
    for extra in [&[0u8][..], &[0; 16], &bytes[bytes.len() - 16..]] {
        let long = [&bytes[..], extra].concat();
        assert_eq!(reason(&r, &scope, &b64(&long)), Reason::BadSignature);
    }
    // A zero tag, a tag moved into the ciphertext: the AEAD.
    let n = bytes.len();
    let zero = [&bytes[..n - 16], &[0u8; 16]].concat();
    assert_eq!(reason(&r, &scope, &b64(&zero)), Reason::BadSignature);
    // Empty plaintext cannot be carried: header, nonce and tag alone are malformed (and
    // `seal` never writes one: the shortest JSON is one byte).
    let empty = [&bytes[..NONCE_AT + 24], &bytes[n - 16..]].concat();
    assert_eq!(reason(&r, &scope, &b64(&empty)), Reason::Malformed);
    let shortest = encrypted(&r, &scope, &json!(0));
    assert_eq!(raw(shortest.as_str()).len(), min + 1);
    assert!(r.open::<Value>(&scope, shortest.as_str()).is_ok());
}

#[test]
fn other_versions_are_unsupported_and_kinds_cannot_be_swapped() {
    let (r, _) = recovery();
    let s = salt(1);
    let scope = Scope::new(&s);
    let v2 = raw(encrypted(&r, &scope, &json!({"count": 41})).as_str());
    let v1 = raw(r
        .seal(&scope, key(&r), 3, 1, &json!({"count": 41}))
        .unwrap()
        .as_str());
    for v in [0u8, 3, 4, 0x82, 255] {
        for bytes in [&v1, &v2] {
            let mut b = bytes.clone();
            b[0] = v;
            assert_eq!(
                reason(&r, &scope, &b64(&b)),
                Reason::UnsupportedVersion,
                "{v}"
            );
        }
    }
    // Relabelled: each parses as the other layout and fails its tag.
    let mut b = v2.clone();
    b[0] = 1;
    assert_eq!(reason(&r, &scope, &b64(&b)), Reason::BadSignature);
    let mut b = v1.clone();
    b[0] = 2;
    assert_eq!(reason(&r, &scope, &b64(&b)), Reason::BadSignature);
}

#[test]
fn wrong_salt_subject_namespace_key_id_or_step_is_refused() {
    let (r, _) = recovery_with(ring(&[("k1", 1), ("k2", 2)]));
    let (s1, s2) = (salt(1), salt(2));
    let alice = Scope::new(&s1).with_subject("alice");
    let t = encrypted(&r, &alice, &json!(SECRET));
    assert!(r.open::<Value>(&alice, t.as_str()).is_ok());
    for wrong in [
        Scope::new(&s2).with_subject("alice"),
        Scope::new(&s1).with_subject("mallory"),
        Scope::new(&s1).with_subject("alice "),
        Scope::new(&s1).with_subject(""),
        Scope::new(&s1),
    ] {
        assert_eq!(reason(&r, &wrong, t.as_str()), Reason::BadSignature);
    }
    // Another application sharing the ring.
    let clock = ManualClock::new(NOW);
    let other_app = Recovery::builder(ring(&[("k1", 1), ("k2", 2)]))
        .namespace("another-app")
        .clock(clock)
        .build()
        .unwrap();
    assert_eq!(reason(&other_app, &alice, t.as_str()), Reason::BadSignature);
    // The same key id under another pepper.
    let (impostor, _) = recovery_with(ring(&[("k1", 9)]));
    assert_eq!(reason(&impostor, &alice, t.as_str()), Reason::BadSignature);
    // The key id rewritten to the ring's other key; the step moved inside the window.
    let mut b = raw(t.as_str());
    b[2..4].copy_from_slice(b"k2");
    assert_eq!(reason(&r, &alice, &b64(&b)), Reason::BadSignature);
    for step in [NOW / STEP - 1, NOW / STEP + 1] {
        let mut b = raw(t.as_str());
        b[4..12].copy_from_slice(&step.to_be_bytes());
        assert_eq!(reason(&r, &alice, &b64(&b)), Reason::BadSignature);
    }
    // Unknown key: a ring without k1.
    let (rotated, _) = recovery_with(ring(&[("k2", 2)]));
    assert_eq!(reason(&rotated, &alice, t.as_str()), Reason::UnknownKey);
}

#[test]
fn another_location_is_wrong_location_only_after_the_aead() {
    let (r, _) = recovery();
    let s = salt(1);
    let scope = Scope::new(&s);
    let t = encrypted(&r, &scope, &json!(1));
    let elsewhere = r.state_key(&Location::new("src/app.rs", 11, 5));
    let got = r.open_at::<Value>(&scope, elsewhere, t.as_str());
    assert_eq!(got.unwrap_err().reason(), Reason::WrongLocation);
    // A forged token for another location is a bad signature, never wrong-location.
    let mut b = raw(t.as_str());
    *b.last_mut().unwrap() ^= 1;
    let got = r.open_at::<Value>(&scope, elsewhere, &b64(&b));
    assert_eq!(got.unwrap_err().reason(), Reason::BadSignature);
    // The state key is bound: rewriting it is not a move, it is a forgery.
    let mut b = raw(t.as_str());
    b[12..28].copy_from_slice(elsewhere.as_bytes());
    let got = r.open_at::<Value>(&scope, elsewhere, &b64(&b));
    assert_eq!(got.unwrap_err().reason(), Reason::BadSignature);
}

#[test]
fn encrypted_entries_expire_like_signed_ones() {
    let (r, clock) = recovery();
    let s = salt(1);
    let scope = Scope::new(&s);
    let t = encrypted(&r, &scope, &json!("x"));
    clock.advance(STEP);
    assert!(
        r.open::<Value>(&scope, t.as_str()).is_ok(),
        "inside the skew"
    );
    clock.advance(STEP);
    assert_eq!(reason(&r, &scope, t.as_str()), Reason::Expired);
    clock.set(NOW - 2 * STEP);
    assert_eq!(reason(&r, &scope, t.as_str()), Reason::NotYetValid);
}

#[test]
fn tokens_never_carry_the_payload_and_nonces_never_repeat() {
    let (r, _) = recovery();
    let s = salt(1);
    let scope = Scope::new(&s);
    let value = json!(SECRET);
    let mut nonces = HashSet::new();
    let mut tokens = HashSet::new();
    for _ in 0..500 {
        let t = encrypted(&r, &scope, &value);
        let bytes = raw(t.as_str());
        assert!(nonces.insert(bytes[NONCE_AT..NONCE_AT + 24].to_vec()));
        assert!(!bytes
            .windows(8)
            .any(|w| SECRET.as_bytes().windows(8).any(|x| x == w)));
        let i = inspect(t.as_str(), usize::MAX).unwrap();
        assert!(i.payload.is_empty());
        assert_eq!(i.payload_len, SECRET.len() + 2);
        assert!(tokens.insert(t.into_string()));
    }
    // What stays visible: the payload's length (documented in SECURITY.md).
    let a = encrypted(&r, &scope, &json!("aaaa"));
    let b = encrypted(&r, &scope, &json!("bbbbbbbb"));
    assert_eq!(raw(b.as_str()).len() - raw(a.as_str()).len(), 4);
}

#[test]
fn bundles_mix_signed_and_encrypted_entries_one_by_one() {
    let (r, _) = recovery();
    let s = salt(1);
    let scope = Scope::new(&s).with_subject("u1");
    let k: Vec<StateKey> = (0..6)
        .map(|i| r.state_key(&Location::new("src/page.rs", 1, i)))
        .collect();
    let seal = |kind, i: usize, scope: &Scope<'_>| {
        r.seal_with(kind, scope, k[i], i as u64, 1, &json!({"i": i}))
            .unwrap()
            .into_string()
    };
    let mut tampered = raw(&seal(EntryKind::Encrypted, 2, &scope));
    tampered[NONCE_AT + 30] ^= 4;
    let s2 = salt(2);
    let tokens = [
        seal(EntryKind::Signed, 0, &scope),
        seal(EntryKind::Encrypted, 1, &scope),
        b64(&tampered),
        seal(EntryKind::Encrypted, 3, &Scope::new(&s2).with_subject("u1")),
        "garbage".to_owned(),
        // One key twice, once of each kind: neither wins.
        seal(EntryKind::Signed, 4, &scope),
        seal(EntryKind::Encrypted, 4, &scope),
        seal(EntryKind::Encrypted, 5, &scope),
    ];
    let msg = reconnect_message(&s, tokens.iter().map(String::as_str));
    let restored = r.open_bundle(Some("u1"), msg.as_bytes()).unwrap();
    let got: Vec<(StateKey, EntryKind, Value)> = restored
        .accepted()
        .map(|e| (e.key, e.kind, serde_json::from_str(e.value.get()).unwrap()))
        .collect();
    let mut want = vec![
        (k[0], EntryKind::Signed, json!({"i": 0})),
        (k[1], EntryKind::Encrypted, json!({"i": 1})),
        (k[5], EntryKind::Encrypted, json!({"i": 5})),
    ];
    want.sort_by_key(|(key, _, _)| *key);
    assert_eq!(got, want);
    let typed = restored.get::<Value>(&k[1]).unwrap().unwrap();
    assert_eq!(
        (typed.kind, typed.value),
        (EntryKind::Encrypted, json!({"i": 1}))
    );
    let rejected: Vec<(usize, Reason, Option<StateKey>)> = restored
        .rejected()
        .iter()
        .map(|x| (x.index, x.reason, x.claimed_key))
        .collect();
    assert_eq!(
        rejected,
        vec![
            (2, Reason::BadSignature, Some(k[2])),
            (3, Reason::BadSignature, Some(k[3])),
            (4, Reason::Malformed, None),
            (5, Reason::DuplicateKey, Some(k[4])),
            (6, Reason::DuplicateKey, Some(k[4])),
        ]
    );
}

#[test]
fn an_encrypted_recovery_seals_encrypted_and_still_opens_signed_entries() {
    let clock = std::sync::Arc::new(ManualClock::new(NOW));
    let build = |encrypt: bool| {
        let b = Recovery::builder(ring(&[("k1", 1)]))
            .namespace("test-app")
            .clock(clock.clone());
        if encrypt { b.encrypted() } else { b }.build().unwrap()
    };
    let (signed, enc) = (build(false), build(true));
    assert_eq!(enc.entry_kind(), EntryKind::Encrypted);
    let s = salt(1);
    let scope = Scope::new(&s);
    let old = signed
        .seal(&scope, key(&signed), 1, 1, &json!("before"))
        .unwrap();
    let new = enc.seal(&scope, key(&enc), 2, 1, &json!("after")).unwrap();
    assert_eq!(inspect(new.as_str(), usize::MAX).unwrap().version, 2);
    // The encrypted recovery opens both; a signed recovery (same ring) too.
    for r in [&enc, &signed] {
        let o = r.open::<Value>(&scope, old.as_str()).unwrap();
        assert_eq!((o.kind, o.value), (EntryKind::Signed, json!("before")));
        let o = r.open::<Value>(&scope, new.as_str()).unwrap();
        assert_eq!((o.kind, o.value), (EntryKind::Encrypted, json!("after")));
    }
    // seal_with overrides the default either way.
    let t = enc
        .seal_with(EntryKind::Signed, &scope, key(&enc), 3, 1, &1)
        .unwrap();
    assert_eq!(
        inspect(t.as_str(), usize::MAX).unwrap().kind,
        EntryKind::Signed
    );
    // Through a context as well.
    let ctx = RecoveryContext::new(enc.clone(), salt(1), None);
    let u = ctx.seal(key(&enc), 4, 1, &json!("ctx")).unwrap();
    assert_eq!(
        inspect(u.token().as_str(), usize::MAX).unwrap().kind,
        EntryKind::Encrypted
    );
    let u = ctx
        .seal_with(EntryKind::Signed, key(&enc), 5, 1, &json!("ctx"))
        .unwrap();
    assert_eq!(
        inspect(u.token().as_str(), usize::MAX).unwrap().kind,
        EntryKind::Signed
    );
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Draft {
    text: String,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct DraftV2 {
    text: String,
    words: usize,
}

#[test]
fn an_encrypted_slot_seals_encrypted_and_restores_its_old_signed_entries() {
    let (r, _) = recovery();
    let ctx = RecoveryContext::new(r.clone(), salt(7), Some("user-1".into()));
    let reopen =
        |u: &state_recovery::StateUpdate| r.open_entries(&ctx.scope(), [u.token().as_str()]);
    // Release K: the draft is signed.
    let mut reg = r.registry();
    let plain: Slot<Draft> = Slot::declare(state_key!("draft"))
        .register(&mut reg)
        .unwrap();
    assert!(!plain.is_encrypted());
    let before = plain
        .seal(
            &ctx,
            &Draft {
                text: SECRET.into(),
            },
        )
        .unwrap();
    assert_eq!(
        inspect(before.token().as_str(), usize::MAX).unwrap().kind,
        EntryKind::Signed
    );

    // Release K+1: the same slot, encrypted, with a migration (the flag survives it).
    let mut reg = r.registry();
    let secret: Slot<DraftV2> = Slot::<Draft>::declare(state_key!("draft"))
        .encrypted()
        .migrate(2, |d: Draft| DraftV2 {
            words: d.text.split_whitespace().count(),
            text: d.text,
        })
        .register(&mut reg)
        .unwrap();
    assert!(secret.is_encrypted());
    assert_eq!(secret.entry_kind(&ctx), EntryKind::Encrypted);
    assert_eq!(secret.key(), plain.key());
    // The old signed entry still restores (migrated).
    let (v, outcome) = secret.restore(&reopen(&before));
    assert_eq!(v.text, SECRET);
    assert!(outcome.is_restored(), "{outcome:?}");
    // Its next seal is encrypted, and restores.
    let after = secret.seal(&ctx, &v).unwrap();
    let i = inspect(after.token().as_str(), usize::MAX).unwrap();
    assert_eq!((i.kind, i.schema), (EntryKind::Encrypted, 2));
    assert!(!after.token().as_str().contains("card"));
    let restored = reopen(&after);
    assert_eq!(
        restored.raw(&secret.key()).unwrap().kind,
        EntryKind::Encrypted
    );
    let (again, outcome) = secret.restore(&restored);
    assert_eq!((again, outcome.is_restored()), (v, true));
    // A slot declared without `encrypted` next to it stays signed.
    let other: Slot<u32> = Slot::declare(state_key!("counter"))
        .register(&mut reg)
        .unwrap();
    let u = other.seal(&ctx, &1).unwrap();
    assert_eq!(
        inspect(u.token().as_str(), usize::MAX).unwrap().kind,
        EntryKind::Signed
    );
    // seal_as keeps the slot encrypted.
    let mut reg = r.registry();
    let expand: Slot<DraftV2> = Slot::<Draft>::declare(state_key!("draft"))
        .migrate(2, |d: Draft| DraftV2 {
            words: 0,
            text: d.text,
        })
        .seal_as(1, |d: &DraftV2| Draft {
            text: d.text.clone(),
        })
        .encrypted()
        .register(&mut reg)
        .unwrap();
    let u = expand.seal(&ctx, &DraftV2::default()).unwrap();
    let i = inspect(u.token().as_str(), usize::MAX).unwrap();
    assert_eq!((i.kind, i.schema), (EntryKind::Encrypted, 1));
}

/// The messages' state updates.
fn updates(messages: &[ServerMessage]) -> Vec<&state_recovery::StateUpdate> {
    messages
        .iter()
        .filter_map(|m| match m {
            ServerMessage::State(u) => Some(u),
            _ => None,
        })
        .collect()
}

#[test]
fn refresh_reseals_an_encrypted_entry_encrypted_under_the_current_step() {
    for encrypt_all in [false, true] {
        let clock = std::sync::Arc::new(ManualClock::new(NOW));
        let mut b = Recovery::builder(ring(&[("k1", 1)]))
            .namespace("test-app")
            .clock(clock.clone());
        if encrypt_all {
            b = b.encrypted();
        }
        let r = b.build().unwrap();
        let endpoint = Endpoint::new(r.clone());
        let first = endpoint.recover(None, Some("u1"));
        let ctx = first.context();
        let (ka, kb) = (key(&r), r.state_key(&Location::new("src/app.rs", 20, 5)));
        let secret = ctx
            .seal_with(EntryKind::Encrypted, ka, 7, 3, &json!({"s": SECRET}))
            .unwrap();
        let plain = ctx
            .seal_with(EntryKind::Signed, kb, 2, 1, &json!("plain"))
            .unwrap();

        // A step later the client reconnects: both entries are restored and refreshed.
        clock.advance(STEP);
        let msg = reconnect_message(
            ctx.salt(),
            [secret.token().as_str(), plain.token().as_str()],
        );
        let rec = endpoint.recover(Some(msg.as_bytes()), Some("u1"));
        assert_eq!(rec.restored().len(), 2);
        assert_eq!(rec.restored().raw(&ka).unwrap().kind, EntryKind::Encrypted);
        let refreshed = updates(rec.pending());
        assert_eq!(refreshed.len(), 2);
        for u in refreshed {
            let i = inspect(u.token().as_str(), usize::MAX).unwrap();
            assert_eq!(i.step, NOW / STEP + 1, "sealed under the current step");
            let scope = rec.context().scope();
            let o = r
                .open_at::<Value>(&scope, u.key(), u.token().as_str())
                .unwrap();
            if u.key() == ka {
                // Encrypted stays encrypted: new nonce, same revision, schema and value.
                assert_eq!(i.kind, EntryKind::Encrypted);
                assert_ne!(u.token(), secret.token());
                assert_ne!(
                    i.nonce,
                    inspect(secret.token().as_str(), usize::MAX).unwrap().nonce
                );
                assert_eq!(
                    (o.revision, o.schema, o.value),
                    (7, 3, json!({"s": SECRET}))
                );
            } else {
                // Signed follows the recovery.
                let want = if encrypt_all {
                    EntryKind::Encrypted
                } else {
                    EntryKind::Signed
                };
                assert_eq!(i.kind, want);
                assert_eq!((o.revision, o.value), (2, json!("plain")));
            }
        }

        // The periodic refresh of a long-lived connection, a further step on.
        clock.advance(STEP);
        let again = rec.context().refresh();
        let u = again.iter().find(|u| u.key() == ka).unwrap();
        assert_eq!(
            inspect(u.token().as_str(), usize::MAX).unwrap().kind,
            EntryKind::Encrypted
        );
        let o = r
            .open_at::<Value>(&rec.context().scope(), ka, u.token().as_str())
            .unwrap();
        assert_eq!((o.step, o.value), (NOW / STEP + 2, json!({"s": SECRET})));
    }
}

#[test]
fn refresh_still_works_after_the_entry_left_the_window() {
    // Skew 0: an entry of the previous step is already expired for `open`, but a held one is
    // re-sealed (it was verified when it was restored), for both kinds alike.
    let clock = std::sync::Arc::new(ManualClock::new(NOW));
    let r = Recovery::builder(ring(&[("k1", 1)]))
        .otp(OtpSettings::new(STEP, 0).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    let ctx = RecoveryContext::fresh(r.clone(), None);
    ctx.seal_with(EntryKind::Encrypted, key(&r), 1, 1, &json!("e"))
        .unwrap();
    clock.advance(STEP);
    let again = ctx.refresh();
    assert_eq!(again.len(), 1);
    let o = r
        .open_at::<Value>(&ctx.scope(), key(&r), again[0].token().as_str())
        .unwrap();
    assert_eq!((o.kind, o.value), (EntryKind::Encrypted, json!("e")));
}

#[test]
fn limits_count_the_encrypted_token() {
    let (r, _) = recovery();
    let s = salt(1);
    let scope = Scope::new(&s);
    let max = r.limits().max_token_bytes();
    // A string payload whose signed token just fits: the encrypted one does not.
    let fits = |kind: EntryKind, n: usize| r.seal_with(kind, &scope, key(&r), 0, 1, &"x".repeat(n));
    // From the layout: 4 characters per 3 bytes of (overhead + the string's quotes + n).
    let estimate = max / 4 * 3 - overhead_for(EntryKind::Signed, 2) - 2;
    let n = (estimate - 3..estimate + 3)
        .rev()
        .find(|&n| fits(EntryKind::Signed, n).is_ok())
        .unwrap();
    assert!(fits(EntryKind::Signed, n + 1).is_err());
    assert!(fits(EntryKind::Signed, n).unwrap().as_str().len() <= max);
    let err = fits(EntryKind::Encrypted, n).unwrap_err();
    match err {
        SealError::TooLarge { len, max: m } => {
            assert_eq!(m, max);
            assert!(len > max && len <= max + 11, "{len}");
        }
        other => panic!("{other}"),
    }
    let t = fits(EntryKind::Encrypted, n - 8).unwrap();
    assert!(t.as_str().len() <= max);
    // The same checks as a signed entry, before any key work.
    let e = |v: &Value| r.seal_with(EntryKind::Encrypted, &scope, key(&r), 0, 1, v);
    let deep = (0..65).fold(json!(0), |v, _| json!([v]));
    assert!(matches!(e(&deep), Err(SealError::TooDeep { max: 64 })));
    let reserved = json!({"$serde_json::private::RawValue": "{}"});
    assert!(matches!(e(&reserved), Err(SealError::Serialize(_))));
    assert!(matches!(
        r.seal_with(EntryKind::Encrypted, &scope, key(&r), 0, 1, &f64::NAN),
        Err(SealError::NonFiniteFloat)
    ));
    // An encrypted recovery needs room for one minimal encrypted token.
    let build = |limit: usize| {
        Recovery::builder(KeyRing::single(KeyId::new("k").unwrap(), pepper(1)).unwrap())
            .limits(Limits::default().with_max_token_bytes(limit))
            .encrypted()
            .build()
    };
    assert!(matches!(build(106), Err(ConfigError::InvalidLimit { .. })));
    assert!(build(107).is_ok());
    let one_byte_id = overhead_for(EntryKind::Encrypted, 1) + 1;
    assert_eq!((one_byte_id * 4).div_ceil(3), 107);
    // The bundle budget counts the encrypted length.
    let ctx = RecoveryContext::new(r.clone(), salt(1), None);
    let u = ctx
        .seal_with(EntryKind::Encrypted, key(&r), 1, 1, &"y".repeat(100))
        .unwrap();
    let budget = ctx.budget();
    assert_eq!(budget.entries, 1);
    assert_eq!(budget.bytes, 80 + u.token().as_str().len() + 3);
}

#[test]
fn debug_and_errors_never_show_the_plaintext() {
    let (r, _) = recovery();
    let s = salt(1);
    let scope = Scope::new(&s);
    let t = encrypted(&r, &scope, &json!(SECRET));
    let opened = r.open::<Value>(&scope, t.as_str()).unwrap();
    let restored = r.open_entries(&scope, [t.as_str()]);
    for text in [
        format!("{opened:?}"),
        format!("{restored:?}"),
        format!("{t:?}"),
        format!("{r:?}"),
        format!("{:?}", inspect(t.as_str(), usize::MAX).unwrap()),
    ] {
        assert!(!text.contains("4111"), "{text}");
    }
    assert!(format!("{opened:?}").contains("Encrypted"));
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// The encrypted mirror of `roundtrip::seal_then_open_returns_the_value`.
    #[test]
    fn encrypted_seal_then_open_returns_the_value(
        v in json_value(),
        line in any::<u32>(),
        instance in proptest::option::of(".{0,12}"),
        salt_bytes in any::<[u8; 16]>(),
        subject in proptest::option::of(".{0,16}"),
        rev in any::<u64>(),
        schema in any::<u32>(),
    ) {
        let (r, _) = recovery();
        let mut loc = Location::new("src/prop.rs", line, 1);
        if let Some(i) = instance {
            loc = loc.with_instance(i);
        }
        let k = r.state_key(&loc);
        let s = Salt::from_bytes(salt_bytes);
        let scope = Scope::new(&s).with_optional_subject(subject.as_deref());
        let t = r.seal_with(EntryKind::Encrypted, &scope, k, rev, schema, &v).unwrap();
        let o = r.open_at::<Value>(&scope, k, t.as_str()).unwrap();
        prop_assert_eq!(o.kind, EntryKind::Encrypted);
        prop_assert_eq!(o.value, v);
        prop_assert_eq!((o.key, o.revision, o.schema), (k, rev, schema));
        // Another salt never opens it.
        let mut other = salt_bytes;
        other[0] ^= 1;
        let other = Salt::from_bytes(other);
        let wrong = Scope::new(&other).with_optional_subject(subject.as_deref());
        prop_assert_eq!(
            r.open::<Value>(&wrong, t.as_str()).unwrap_err().reason(),
            Reason::BadSignature
        );
    }
}
