//! Reconnect bundles: per-entry isolation, duplicates, caps checked before any MAC, and
//! malformed input of every kind.

use serde_json::{json, Value};
use state_recovery::{reconnect_message, Limits, Location, Reason, Recovery, Scope, StateKey};

use crate::common::{recovery, ring, salt, NOW};

fn keys(r: &Recovery, n: u32) -> Vec<StateKey> {
    (0..n)
        .map(|i| r.state_key(&Location::new("src/page.rs", 1, i)))
        .collect()
}

#[test]
fn one_bad_entry_leaves_the_others_intact() {
    let (r, _) = recovery();
    let s = salt(1);
    let scope = Scope::new(&s);
    let ks = keys(&r, 3);
    let mut tokens: Vec<String> = ks
        .iter()
        .enumerate()
        .map(|(i, k)| {
            r.seal(&scope, *k, i as u64, 1, &json!({"i": i}))
                .unwrap()
                .into_string()
        })
        .collect();
    // Tamper with a character inside the middle one's tag.
    let mut mid = tokens[1].clone().into_bytes();
    let at = mid.len() - 10;
    mid[at] = if mid[at] == b'A' { b'B' } else { b'A' };
    tokens[1] = String::from_utf8(mid).unwrap();
    tokens.push("garbage".into());
    let restored = r
        .open_bundle(
            None,
            reconnect_message(&s, tokens.iter().map(String::as_str)).as_bytes(),
        )
        .unwrap();
    assert_eq!(restored.len(), 2);
    assert_eq!(
        restored.get::<Value>(&ks[0]).unwrap().unwrap().value,
        json!({"i": 0})
    );
    assert_eq!(restored.get::<Value>(&ks[2]).unwrap().unwrap().revision, 2);
    assert!(restored.get::<Value>(&ks[1]).unwrap().is_none());
    let rejected = restored.rejected();
    assert_eq!(rejected.len(), 2);
    assert_eq!(
        (rejected[0].index, rejected[0].reason),
        (1, Reason::BadSignature)
    );
    assert_eq!(rejected[0].claimed_key, Some(ks[1]));
    assert_eq!(
        (rejected[1].index, rejected[1].reason),
        (3, Reason::Malformed)
    );
}

#[test]
fn a_key_that_appears_twice_is_rejected_for_that_key() {
    let (r, _) = recovery();
    let s = salt(1);
    let scope = Scope::new(&s);
    let ks = keys(&r, 2);
    let a1 = r.seal(&scope, ks[0], 1, 1, &json!("old")).unwrap();
    let a2 = r.seal(&scope, ks[0], 2, 1, &json!("new")).unwrap();
    let b = r.seal(&scope, ks[1], 1, 1, &json!("b")).unwrap();
    let json = reconnect_message(&s, [a1.as_str(), b.as_str(), a2.as_str(), a1.as_str()]);
    let restored = r.open_bundle(None, json.as_bytes()).unwrap();
    assert!(
        restored.get::<Value>(&ks[0]).unwrap().is_none(),
        "never last-one-wins"
    );
    assert_eq!(restored.get::<String>(&ks[1]).unwrap().unwrap().value, "b");
    let dup: Vec<usize> = restored
        .rejected()
        .iter()
        .filter(|x| x.reason == Reason::DuplicateKey)
        .map(|x| x.index)
        .collect();
    assert_eq!(dup, [0, 2, 3]);
    // A forged twin cannot knock out an authentic entry: only authentic entries count.
    let json = reconnect_message(
        &s,
        [
            b.as_str(),
            &format!("{}A", &a1.as_str()[..a1.as_str().len() - 1]),
        ],
    );
    let restored = r.open_bundle(None, json.as_bytes()).unwrap();
    assert_eq!(restored.len(), 1);
}

#[test]
fn caps_are_checked_before_any_mac() {
    let (r, _) = recovery();
    let s = salt(1);
    let t = r
        .seal(&Scope::new(&s), keys(&r, 1)[0], 0, 1, &json!(1))
        .unwrap();
    // Over the entry cap: the tokens past it are rejected unread, the others are opened.
    let ks = keys(&r, 2);
    let first = r.seal(&Scope::new(&s), ks[1], 0, 1, &json!(2)).unwrap();
    let mut many = vec![first.as_str()];
    many.extend(vec![t.as_str(); Limits::DEFAULT_MAX_ENTRIES + 1]);
    let restored = r
        .open_bundle(None, reconnect_message(&s, many).as_bytes())
        .unwrap();
    assert_eq!(restored.len(), 1, "the entry within the cap is restored");
    assert_eq!(
        restored.overflow(),
        2,
        "the two past the cap are counted, not kept"
    );
    assert!(restored.rejected().len() < Limits::DEFAULT_MAX_ENTRIES);
    // At the cap: all duplicates of one key, all authentic, none wins.
    let at_cap = vec![t.as_str(); Limits::DEFAULT_MAX_ENTRIES];
    let restored = r
        .open_bundle(None, reconnect_message(&s, at_cap).as_bytes())
        .unwrap();
    assert!(restored.is_empty());
    assert_eq!(restored.rejected().len(), Limits::DEFAULT_MAX_ENTRIES);
    // Over the byte cap, whatever it holds.
    let big = format!(
        "{{\"salt\":\"{}\",\"entries\":[],\"pad\":\"{}\"}}",
        s.encode(),
        "x".repeat(1 << 20)
    );
    assert_eq!(
        r.open_bundle(None, big.as_bytes()).unwrap_err().reason(),
        Reason::TooLarge
    );
    // One oversized token is refused alone.
    let huge = "A".repeat(Limits::DEFAULT_MAX_TOKEN_BYTES + 4);
    let restored = r
        .open_bundle(
            None,
            reconnect_message(&s, [huge.as_str(), t.as_str()]).as_bytes(),
        )
        .unwrap();
    assert_eq!(restored.len(), 1);
    assert_eq!(restored.rejected()[0].reason, Reason::TooLarge);
}

#[test]
fn open_entries_refuses_tokens_past_the_cap() {
    let r = Recovery::builder(ring(&[("k1", 1)]))
        .clock(state_recovery::ManualClock::new(NOW))
        .limits(Limits::default().with_max_entries(2))
        .build()
        .unwrap();
    let s = salt(1);
    let scope = Scope::new(&s);
    let ks = keys(&r, 3);
    let toks: Vec<String> = ks
        .iter()
        .map(|k| r.seal(&scope, *k, 0, 1, &json!(0)).unwrap().into_string())
        .collect();
    let restored = r.open_entries(&scope, toks.iter().map(String::as_str));
    assert_eq!(restored.len(), 2);
    assert_eq!(restored.rejected()[0].reason, Reason::TooLarge);
    assert_eq!(restored.rejected()[0].index, 2);
}

#[test]
fn malformed_bundles_are_refused_whole_without_panic() {
    let (r, _) = recovery();
    let s = salt(1).encode();
    let deep = format!(
        "{{\"salt\":\"{s}\",\"x\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"{}".to_vec(),
        b"{\"entries\":[]}".to_vec(),
        b"{\"salt\":null,\"entries\":[]}".to_vec(),
        b"{\"salt\":\"short\",\"entries\":[]}".to_vec(),
        format!("{{\"salt\":\"{s}\",\"entries\":[1]}}").into_bytes(),
        format!("{{\"salt\":\"{s}\",\"entries\":\"x\"}}").into_bytes(),
        format!("{{\"salt\":\"{s}\",\"entries\":[]}} trailing").into_bytes(),
        format!("{{\"salt\":\"{s}\",\"salt\":\"{s}\",\"entries\":[]}}").into_bytes(),
        format!("{{\"salt\":\"{s}==\",\"entries\":[]}}").into_bytes(),
        vec![0xFF; 64],
    ];
    for c in cases {
        let err = r.open_bundle(None, &c).unwrap_err();
        assert_eq!(
            err.reason(),
            Reason::Malformed,
            "{}",
            String::from_utf8_lossy(&c[..c.len().min(60)])
        );
    }
    // Deep JSON in a field we ignore is skipped without recursion: no crash, nothing restored.
    assert!(r.open_bundle(None, deep.as_bytes()).unwrap().is_empty());
    // An empty bundle with a good salt is fine and restores nothing.
    let ok = format!("{{\"salt\":\"{s}\",\"entries\":[],\"input\":{{\"f\":{{\"a\":\"b\"}}}}}}");
    assert!(r.open_bundle(None, ok.as_bytes()).unwrap().is_empty());
}

#[test]
fn escaped_tokens_and_subjects_in_bundles() {
    let (r, _) = recovery();
    let s = salt(1);
    let scope = Scope::new(&s).with_subject("u1");
    let k = keys(&r, 1)[0];
    let t = r.seal(&scope, k, 0, 1, &json!("v")).unwrap();
    // A JSON escape in the token string is a second spelling of the same token: refused.
    assert!(t.as_str().contains('A'));
    let escaped = t.as_str().replacen('A', "\\u0041", 1);
    let json = format!(
        "{{\"salt\":\"{}\",\"entries\":[\"{escaped}\"]}}",
        s.encode()
    );
    let restored = r.open_bundle(Some("u1"), json.as_bytes()).unwrap();
    assert!(restored.is_empty());
    assert_eq!(restored.rejected()[0].reason, Reason::Malformed);
    let json = reconnect_message(&s, [t.as_str()]);
    assert_eq!(r.open_bundle(Some("u1"), json.as_bytes()).unwrap().len(), 1);
    let other = r.open_bundle(Some("u2"), json.as_bytes()).unwrap();
    assert!(other.is_empty());
    assert_eq!(other.rejected()[0].reason, Reason::BadSignature);
    assert!(r.open_bundle(None, json.as_bytes()).unwrap().is_empty());
}

/// Every spelling of a token or salt with a JSON escape in it, at several positions (first,
/// middle, last character; `-` and `_`; upper- and lower-case hex).
fn escapes(text: &str) -> Vec<String> {
    let esc = |c: char, upper: bool| {
        let e = format!("\\u{:04x}", u32::from(c));
        if upper {
            e.to_uppercase().replace("\\U", "\\u")
        } else {
            e
        }
    };
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    for at in [0, 1, chars.len() / 2, chars.len() - 1] {
        for upper in [false, true] {
            let mut s = String::new();
            for (i, c) in chars.iter().enumerate() {
                if i == at {
                    s.push_str(&esc(*c, upper));
                } else {
                    s.push(*c);
                }
            }
            out.push(s);
        }
    }
    for special in ['-', '_'] {
        if let Some(at) = text.find(special) {
            out.push(format!(
                "{}{}{}",
                &text[..at],
                esc(special, false),
                &text[at + 1..]
            ));
        }
    }
    out
}

/// SECURITY.md 2.6: one accepted text per token and salt, in a bundle too. An escaped salt
/// refuses the message whole (`malformed`, as a bad salt does); an escaped entry is refused
/// alone (`malformed`) and the others open. Through `Bundle::parse` / `open_bundle` and the
/// reconnect-message envelope of `Endpoint::recover`.
#[test]
fn escaped_salts_and_entries_are_malformed() {
    use state_recovery::protocol::Endpoint;
    use state_recovery::Bundle;
    let (r, _) = recovery();
    let s = salt(1);
    let scope = Scope::new(&s);
    let ks = keys(&r, 2);
    let a = r.seal(&scope, ks[0], 1, 1, &json!("a")).unwrap();
    let b = r.seal(&scope, ks[1], 1, 1, &json!("b")).unwrap();
    let endpoint = Endpoint::new(r.clone());
    let message = |salt: &str, entries: &[&str]| {
        let entries: Vec<String> = entries.iter().map(|e| format!("\"{e}\"")).collect();
        format!(
            "{{\"type\":\"recover\",\"salt\":\"{salt}\",\"entries\":[{}],\
             \"input\":{{\"f\":{{\"q\":\"typed\"}}}}}}",
            entries.join(",")
        )
    };
    // The unescaped message opens both.
    let plain = message(&s.encode(), &[a.as_str(), b.as_str()]);
    assert_eq!(r.open_bundle(None, plain.as_bytes()).unwrap().len(), 2);
    assert_eq!(
        endpoint
            .recover(Some(plain.as_bytes()), None)
            .restored()
            .len(),
        2
    );

    let salts = escapes(&s.encode());
    assert!(salts.len() >= 8);
    for salt in &salts {
        let m = message(salt, &[a.as_str(), b.as_str()]);
        let err = r.open_bundle(None, m.as_bytes()).unwrap_err();
        assert_eq!(err.reason(), Reason::Malformed, "{salt}");
        assert_eq!(
            Bundle::parse(m.as_bytes(), r.limits())
                .unwrap_err()
                .reason(),
            Reason::Malformed
        );
        let recovered = endpoint.recover(Some(m.as_bytes()), None);
        assert_eq!(
            recovered.bundle_rejection(),
            Some(Reason::Malformed),
            "{salt}"
        );
        assert!(recovered.restored().is_empty());
        assert!(recovered.salt_message().is_some(), "a new salt is issued");
        // As for a bad salt: the client input is still read.
        assert_eq!(
            recovered.input().form("f").and_then(|f| f.get("q")),
            Some("typed")
        );
    }

    let entries = escapes(a.as_str());
    assert!(entries.len() >= 8);
    for entry in &entries {
        let m = message(&s.encode(), &[entry, b.as_str()]);
        let bundle = Bundle::parse(m.as_bytes(), r.limits()).unwrap();
        assert_eq!((bundle.len(), bundle.tokens().count()), (2, 1));
        for restored in [
            r.open_bundle(None, m.as_bytes()).unwrap(),
            endpoint.recover(Some(m.as_bytes()), None).into_parts().0,
        ] {
            assert!(restored.raw(&ks[0]).is_none(), "{entry}");
            assert_eq!(
                restored.get::<Value>(&ks[1]).unwrap().unwrap().value,
                json!("b")
            );
            let rejected = restored.rejected();
            assert_eq!(rejected.len(), 1);
            assert_eq!(
                (
                    rejected[0].index,
                    rejected[0].reason,
                    rejected[0].claimed_key
                ),
                (0, Reason::Malformed, None)
            );
        }
        // Second position, and the endpoint re-holds the right token for the restored one.
        let m = message(&s.encode(), &[b.as_str(), entry]);
        let recovered = endpoint.recover(Some(m.as_bytes()), None);
        assert_eq!(recovered.restored().len(), 1);
        assert_eq!(recovered.rejected()[0].index, 1);
        assert_eq!(recovered.rejected()[0].reason, Reason::Malformed);
    }

    // Past the entry cap, escaped or not, entries are still skipped unread (too-large).
    let capped = Recovery::builder(ring(&[("k1", 1)]))
        .namespace("test-app")
        .clock(state_recovery::ManualClock::new(NOW))
        .limits(Limits::default().with_max_entries(2))
        .build()
        .unwrap();
    let m = message(
        &s.encode(),
        &[
            entries[0].as_str(),
            b.as_str(),
            entries[1].as_str(),
            a.as_str(),
        ],
    );
    for restored in [
        capped.open_bundle(None, m.as_bytes()).unwrap(),
        Endpoint::new(capped.clone())
            .recover(Some(m.as_bytes()), None)
            .into_parts()
            .0,
    ] {
        assert_eq!(restored.len(), 1);
        let got: Vec<(usize, Reason)> = restored
            .rejected()
            .iter()
            .map(|x| (x.index, x.reason))
            .collect();
        assert_eq!(got, [(0, Reason::Malformed)]);
        assert_eq!(restored.overflow(), 2, "the two past the cap are counted");
    }
}

#[test]
fn schema_versions_and_types_are_checked_on_get() {
    let (r, _) = recovery();
    let s = salt(1);
    let k = keys(&r, 1)[0];
    let t = r.seal(&Scope::new(&s), k, 4, 2, &json!({"n": 1})).unwrap();
    let restored = r
        .open_bundle(None, reconnect_message(&s, [t.as_str()]).as_bytes())
        .unwrap();
    assert_eq!(
        restored.get_schema::<Value>(&k, 3).unwrap_err().reason(),
        Reason::Outdated
    );
    assert!(restored.get_schema::<Value>(&k, 2).unwrap().is_some());
    assert_eq!(
        restored.get::<u32>(&k).unwrap_err().reason(),
        Reason::InvalidPayload
    );
    assert_eq!(restored.raw(&k).unwrap().value.get(), "{\"n\":1}");
    assert_eq!(restored.accepted().count(), 1);
}
