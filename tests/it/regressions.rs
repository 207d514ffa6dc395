//! Fuzz findings, replayed through the same entry points the fuzz targets call
//! (`state_recovery::fuzzing`), plus the checked-in seed corpora of the byte-input targets so
//! that a stable `cargo test` runs their assertions too.

use std::path::Path;

use serde_json::json;
use state_recovery::fuzzing::{self, Json, Model, Op, RoundTrip};
use state_recovery::{Scope, SealError};

use crate::common;

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("seed-") {
            out.push(std::fs::read(&path).unwrap());
        }
    }
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

#[test]
fn decode_token_seeds() {
    for s in seeds("decode_token") {
        fuzzing::decode_token(&s);
    }
}

#[test]
fn open_untrusted_seeds() {
    for s in seeds("open_untrusted") {
        fuzzing::open_untrusted(&s);
    }
}

#[cfg(feature = "axum")]
#[test]
fn client_input_seeds() {
    for s in seeds("client_input") {
        fuzzing::client_input(&s);
    }
}

fn seal(location: u8, salt: u8, subject: u8, revision: u64) -> Op {
    Op::Seal {
        location,
        salt,
        subject,
        revision,
        schema: 1,
        value: Json::Object(vec![("n".into(), Json::Uint(revision))]),
    }
}

#[test]
fn model_rotation_window_and_duplicates() {
    fuzzing::model(&Model {
        skew: 1,
        ops: vec![
            seal(0, 0, 0, 1),
            seal(1, 0, 0, 2),
            seal(0, 0, 0, 3), // a second entry for location 0: duplicate in a bundle
            Op::OpenBundle {
                salt: 0,
                subject: 0,
                entries: vec![0, 1, 2],
            },
            Op::RotateAdd,
            seal(2, 1, 1, 4),
            Op::Advance { secs: 150 },
            Op::RotateDrop, // entries 0-2 now name a retired key
            Op::Open { entry: 0 },
            Op::Open { entry: 3 },
            Op::FlipBit {
                entry: 3,
                bit: 100,
                in_text: false,
            },
            Op::Splice {
                first: 3,
                second: 1,
                cut_first: 20,
                cut_second: 20,
                in_text: true,
            },
            Op::Move {
                entry: 3,
                location: 1,
            },
            Op::Rescope {
                entry: 1,
                salt: 2,
                subject: 2,
            },
            Op::Advance { secs: 300 }, // everything expires
            Op::Rewind { secs: 700 },  // and now it is from the future
            Op::OpenBundle {
                salt: 1,
                subject: 1,
                entries: vec![3, 3, 4, 5, 0, 1, 2, 3, 4],
            },
        ],
    });
}

/// The same sequence with encrypted entries among the signed ones: flips and splices of
/// format-2 tokens, relabelling between the kinds (a splice of one's head onto the other's
/// tail), duplicates across kinds in a bundle, rotation and expiry.
#[test]
fn model_encrypted_entries_side_by_side_with_signed_ones() {
    let sealed = |location, salt, subject, revision| match seal(location, salt, subject, revision) {
        Op::Seal {
            location,
            salt,
            subject,
            revision,
            schema,
            value,
        } => Op::SealEncrypted {
            location,
            salt,
            subject,
            revision,
            schema,
            value,
        },
        other => other,
    };
    let mut ops = vec![
        sealed(0, 0, 0, 1),
        seal(1, 0, 0, 2),
        seal(0, 0, 0, 3), // location 0 once of each kind: duplicates in a bundle
        sealed(2, 1, 1, 4),
        Op::OpenBundle {
            salt: 0,
            subject: 0,
            entries: vec![0, 1, 2],
        },
    ];
    for bit in [0, 9, 100, 300, 420, 500] {
        ops.push(Op::FlipBit {
            entry: 0,
            bit,
            in_text: false,
        });
    }
    ops.extend([
        Op::Splice {
            first: 0,
            second: 1,
            cut_first: 1,
            cut_second: 1,
            in_text: false,
        },
        Op::Splice {
            first: 1,
            second: 0,
            cut_first: 40,
            cut_second: 40,
            in_text: false,
        },
        Op::Move {
            entry: 0,
            location: 1,
        },
        Op::Rescope {
            entry: 3,
            salt: 1,
            subject: 2,
        },
        Op::RotateAdd,
        sealed(3, 2, 2, 5),
        Op::Advance { secs: 150 },
        Op::RotateDrop,
        Op::OpenBundle {
            salt: 2,
            subject: 2,
            entries: (0..16).collect(),
        },
        Op::Advance { secs: 300 },
        Op::OpenBundle {
            salt: 0,
            subject: 0,
            entries: vec![0, 1, 2, 3],
        },
    ]);
    fuzzing::model(&Model { skew: 1, ops });
}

#[test]
fn roundtrip_nested_value_and_unicode_location() {
    fuzzing::seal_open_roundtrip(&RoundTrip {
        value: Json::Array(vec![
            Json::Float(-0.0),
            Json::Float(f64::NAN),
            Json::Float(1e300),
            Json::Int(i64::MIN),
            Json::Uint(u64::MAX),
            Json::Str("\u{0}\"\\é\u{10ffff}".into()),
            Json::Object(vec![
                ("a".into(), Json::Null),
                ("a".into(), Json::Bool(true)),
            ]),
        ]),
        file: "src/é#:1:2".into(),
        line: u32::MAX,
        column: 0,
        instance: Some(String::new()),
        salt: [0; 16],
        subject: Some(String::new()),
        revision: u64::MAX,
        schema: u32::MAX,
        offset: u32::MAX,
    });
}

/// Found by `model` (fuzz/artifacts/model/crash-e886115a71c7c5800d674f383cf286095507a836,
/// reduced to its first operation): a value whose first object key was serde_json's private
/// raw-value token sealed fine, then opened as `invalid-payload` instead of the value. `seal`
/// now refuses such values (`SealError::Serialize`).
#[test]
fn model_serde_json_raw_value_token_as_first_key() {
    fuzzing::model(&Model {
        skew: 0,
        ops: vec![Op::Seal {
            location: 3,
            salt: 2,
            subject: 1,
            revision: 45_897_795_049_031_183,
            schema: 3_442_073_350,
            value: Json::Object(vec![(
                "$serde_json::private::RawValue".into(),
                Json::Uint(45_897_795_049_031_168),
            )]),
        }],
    });
}

/// The same finding at its worst: with a string under the token, serde_json reads the object
/// back as the JSON inside the string, so a state holding user-chosen map keys could open as a
/// value of another shape. Refused at seal, wherever it is nested; the same text elsewhere
/// (a string, a later key) still round-trips.
#[test]
fn serde_json_private_tokens_are_refused_at_seal() {
    let shifted: serde_json::Value =
        serde_json::from_str(r#"{"$serde_json::private::RawValue":"{\"admin\":true}"}"#).unwrap();
    assert_eq!(shifted, json!({"admin": true}));

    let (r, _) = common::recovery();
    let salt = common::salt(1);
    let scope = Scope::new(&salt);
    let key = state_recovery::StateKey::from_bytes([1; 16]);
    for bad in [
        json!({"$serde_json::private::RawValue": "{\"admin\":true}"}),
        json!({"$serde_json::private::RawValue": 1}),
        json!([1, {"a": {"$serde_json::private::Number": "1"}}]),
        json!({"$serde_json::private::": null}),
    ] {
        let err = r.seal(&scope, key, 1, 1, &bad).unwrap_err();
        assert!(matches!(err, SealError::Serialize(_)), "{bad}");
    }
    for good in [
        json!("{\"$serde_json::private::RawValue\":1}"),
        json!({"!": 1, "$serde_json::private::RawValue": "{}"}),
        json!({"$serde_json::private:": 1}),
    ] {
        let token = r.seal(&scope, key, 1, 1, &good).unwrap();
        let opened = r
            .open_at::<serde_json::Value>(&scope, key, token.as_str())
            .unwrap();
        assert_eq!(opened.value, good);
    }
}

/// Spellings of serde_json's reserved first key that the first fix (exact bytes
/// `{"$serde_json::private::` only) let through: whitespace after `{`, and JSON escapes
/// anywhere in the prefix (serde_json compares the unescaped key). Each is a raw JSON text
/// whose first object key, unescaped, starts with `$serde_json::private::`.
const RESERVED_SPELLINGS: [&str; 9] = [
    r#"{ "$serde_json::private::RawValue":"{\"admin\":true}"}"#,
    "{\n\t\r \"$serde_json::private::RawValue\" : \"{\\\"admin\\\":true}\"}",
    r#"{"\u0024serde_json::private::RawValue":"{\"admin\":true}"}"#,
    r#"{"$\u0073erde_json::private::RawValue":"{\"admin\":true}"}"#,
    r#"{"$serde_json::private\u003A\u003aRawValue":"{\"admin\":true}"}"#,
    r#"{"$serde_json::private::Raw\u0056alue":"{\"admin\":true}"}"#,
    r#"{"a":[1,{ "\u0024serde_json::private::RawValue":"{\"admin\":true}"}]}"#,
    r#"{"a":{},"b":{"$serde\u005fjson::private::RawValue":"7"}}"#,
    r#"[{"x":1},{"y":{"\u0024serde_json::private::Number":"1"}}]"#,
];

/// Ordinary payloads that only look near the reserved key: `$` in values, the text in a
/// string, as a later key, inside a longer key, one colon short, behind an escaped backslash.
const NEAR_RESERVED: [&str; 8] = [
    r#"{"price":"$5.00","$":"$$"}"#,
    r#"{"note":"$serde_json::private::RawValue"}"#,
    r#"{ "!":1, "$serde_json::private::RawValue":"{}"}"#,
    r#"{"x$serde_json::private::RawValue":1}"#,
    r#"{"$serde_json::private:RawValue":1}"#,
    r#"{"\\u0024serde_json::private::RawValue":1}"#,
    r#"["{\"$serde_json::private::RawValue\":1}", {"\u00e9": "\u0024"}]"#,
    r#"{"!": {"b": [ "\u0024serde_json::private::RawValue" ]}, "$serde_json::private::c": 2}"#,
];

/// The reserved key however it is spelled: `seal` refuses it in raw fragments (the only way
/// to write one other than verbatim), however spaced or escaped, wherever it is nested.
#[test]
fn reserved_key_in_any_spelling_is_refused_at_seal() {
    use serde_json::value::RawValue;
    #[derive(serde::Serialize)]
    struct Wrap {
        name: &'static str,
        state: Box<RawValue>,
    }
    let (r, _) = common::recovery();
    let salt = common::salt(1);
    let scope = Scope::new(&salt);
    let key = state_recovery::StateKey::from_bytes([1; 16]);
    for text in RESERVED_SPELLINGS {
        // What serde_json makes of it: another shape than the object that was written.
        let read: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_ne!(read.to_string(), text.replace([' ', '\n', '\t', '\r'], ""));
        let raw = RawValue::from_string(text.to_owned()).unwrap();
        let err = r.seal(&scope, key, 1, 1, &raw).unwrap_err();
        assert!(matches!(err, SealError::Serialize(_)), "{text}");
        let wrapped = Wrap {
            name: "x",
            state: RawValue::from_string(text.to_owned()).unwrap(),
        };
        let err = r.seal(&scope, key, 1, 1, &wrapped).unwrap_err();
        assert!(matches!(err, SealError::Serialize(_)), "{text}");
    }
}

/// An authentic token whose payload has the reserved key, however spelled (sealed by a build
/// that checked less), is `invalid-payload` at `open`, `open_at` and in a bundle, where the
/// other entries still open: it never opens as another shape (a string read as an object).
#[test]
fn reserved_key_in_any_spelling_is_refused_at_open() {
    use state_recovery::{reconnect_message, Reason, StateKey};
    let (r, _) = common::recovery();
    let salt = common::salt(1);
    let scope = Scope::new(&salt);
    let key = StateKey::from_bytes([1; 16]);
    let other = StateKey::from_bytes([2; 16]);
    // The helper seals what the crate seals.
    let plain = common::seal_bytes(1, key, 1, 1, br#"{"n":1}"#);
    assert_eq!(
        r.open::<serde_json::Value>(&scope, &plain).unwrap().value,
        json!({"n": 1})
    );
    let good = r.seal(&scope, other, 1, 1, &json!({"ok": true})).unwrap();
    for text in RESERVED_SPELLINGS
        .into_iter()
        .chain([r#"{"$serde_json::private::RawValue":"{\"admin\":true}"}"#])
    {
        let token = common::seal_bytes(1, key, 1, 1, text.as_bytes());
        let err = r.open::<serde_json::Value>(&scope, &token).unwrap_err();
        assert_eq!(err.reason(), Reason::InvalidPayload, "{text}");
        let err = r
            .open_at::<serde_json::Value>(&scope, key, &token)
            .unwrap_err();
        assert_eq!(err.reason(), Reason::InvalidPayload, "{text}");
        let bundle = reconnect_message(&salt, [token.as_str(), good.as_str()]);
        let restored = r.open_bundle(None, bundle.as_bytes()).unwrap();
        assert!(restored.raw(&key).is_none(), "{text}");
        assert_eq!(restored.get::<serde_json::Value>(&key).unwrap(), None);
        assert_eq!(restored.rejected().len(), 1);
        let rejected = restored.rejected()[0];
        assert_eq!(
            (rejected.index, rejected.claimed_key, rejected.reason),
            (0, Some(key), Reason::InvalidPayload)
        );
        assert_eq!(
            restored
                .get::<serde_json::Value>(&other)
                .unwrap()
                .unwrap()
                .value,
            json!({"ok": true})
        );
    }
}

/// What only looks near the reserved key still round-trips, sealed by the crate (as a value
/// and as a raw fragment) and sealed verbatim, spaced and escaped.
#[test]
fn payloads_near_the_reserved_key_still_round_trip() {
    use serde_json::value::RawValue;
    let (r, _) = common::recovery();
    let salt = common::salt(1);
    let scope = Scope::new(&salt);
    let key = state_recovery::StateKey::from_bytes([1; 16]);
    for text in NEAR_RESERVED {
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        let sealed = r.seal(&scope, key, 1, 1, &value).unwrap();
        let opened = r.open_at::<serde_json::Value>(&scope, key, sealed.as_str());
        assert_eq!(opened.unwrap().value, value, "{text}");
        let raw = RawValue::from_string(text.to_owned()).unwrap();
        let sealed = r.seal(&scope, key, 1, 1, &raw).unwrap();
        let opened = r.open_at::<serde_json::Value>(&scope, key, sealed.as_str());
        assert_eq!(opened.unwrap().value, value, "{text}");
        let verbatim = common::seal_bytes(1, key, 1, 1, text.as_bytes());
        let opened = r.open_at::<serde_json::Value>(&scope, key, &verbatim);
        assert_eq!(opened.unwrap().value, value, "{text}");
    }
}
