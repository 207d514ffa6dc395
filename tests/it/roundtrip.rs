//! Round trips of every kind of JSON value, by example and by property.

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use state_recovery::{Location, Scope};

use crate::common::{recovery, salt};

#[test]
fn every_kind_of_json_value_round_trips() {
    let (r, _) = recovery();
    let s = salt(9);
    let scope = Scope::new(&s).with_subject("user-1");
    let k = r.state_key(&Location::new("src/x.rs", 1, 1));
    let values = [
        json!(null),
        json!(true),
        json!(false),
        json!(0),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(i64::MAX),
        json!(-1.5e-300),
        json!(1.7976931348623157e308),
        json!(0.1),
        json!(""),
        json!("unicode: é 漢字 🦀 \u{0} \u{1f} \"quoted\" \\ / \n\t\r"),
        json!([]),
        json!({}),
        json!({"nested": {"list": [1, [2, [3, {"deep": null}]]], "s": "x"}}),
    ];
    for (rev, v) in values.iter().enumerate() {
        let t = r.seal(&scope, k, rev as u64, 7, v).unwrap();
        let o = r.open_at::<Value>(&scope, k, t.as_str()).unwrap();
        assert_eq!(&o.value, v);
        assert_eq!((o.revision, o.schema), (rev as u64, 7));
    }
}

#[test]
fn typed_values_round_trip() {
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Wizard {
        step: u8,
        draft: String,
        todos: Vec<(String, bool)>,
        extra: Option<Box<Wizard>>,
    }
    let (r, _) = recovery();
    let s = salt(3);
    let scope = Scope::new(&s);
    let k = r.state_key(&state_recovery::state_key!("wizard"));
    let w = Wizard {
        step: 2,
        draft: "half-typed".into(),
        todos: vec![("a".into(), true)],
        extra: Some(Box::new(Wizard {
            step: 1,
            draft: String::new(),
            todos: vec![],
            extra: None,
        })),
    };
    let t = r.seal(&scope, k, u64::MAX, u32::MAX, &w).unwrap();
    let o = r.open_at::<Wizard>(&scope, k, t.as_str()).unwrap();
    assert_eq!(o.value, w);
    assert_eq!((o.revision, o.schema), (u64::MAX, u32::MAX));
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn seal_then_open_returns_the_value(
        v in json_value(),
        file in "[a-z/]{1,20}\\.rs",
        line in any::<u32>(),
        column in any::<u32>(),
        instance in proptest::option::of(".{0,12}"),
        salt_bytes in any::<[u8; 16]>(),
        subject in proptest::option::of(".{0,16}"),
        rev in any::<u64>(),
        schema in any::<u32>(),
    ) {
        let (r, _) = recovery();
        let mut loc = Location::new(file, line, column);
        if let Some(i) = instance {
            loc = loc.with_instance(i);
        }
        let k = r.state_key(&loc);
        let s = state_recovery::Salt::from_bytes(salt_bytes);
        let scope = Scope::new(&s).with_optional_subject(subject.as_deref());
        let t = r.seal(&scope, k, rev, schema, &v).unwrap();
        let o = r.open_at::<Value>(&scope, k, t.as_str()).unwrap();
        prop_assert_eq!(o.value, v);
        prop_assert_eq!((o.key, o.revision, o.schema), (k, rev, schema));
    }

    #[test]
    fn arbitrary_text_never_opens_or_panics(text in ".{0,300}") {
        let (r, _) = recovery();
        let s = salt(1);
        prop_assert!(r.open::<Value>(&Scope::new(&s), &text).is_err());
        let _ = r.open_bundle(None, text.as_bytes());
    }

    #[test]
    fn arbitrary_bytes_as_a_bundle_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let (r, _) = recovery();
        if let Ok(restored) = r.open_bundle(None, &bytes) {
            prop_assert!(restored.is_empty());
        }
    }
}

/// Non-finite floats have no JSON form: serde_json writes them as `null`, so a value holding
/// one sealed fine and opened as another value (`NaN` as `None`, or not at all as an `f64`).
/// `seal` refuses them wherever they are, as `f64` or `f32`, with `SealError::NonFiniteFloat`;
/// finite extremes still round-trip exactly.
#[test]
fn non_finite_floats_are_refused_at_seal() {
    use std::collections::{BTreeMap, HashMap};

    use state_recovery::protocol::RecoveryContext;
    use state_recovery::SealError;

    #[derive(Serialize, Deserialize, Debug, PartialEq, Default)]
    struct Inner {
        ratio: f64,
        scores: BTreeMap<String, f32>,
        maybe: Option<f64>,
    }
    #[derive(Serialize, Deserialize, Debug, PartialEq, Default)]
    struct Outer {
        name: String,
        inner: Vec<Inner>,
        by_id: HashMap<String, (u8, f64)>,
        single: f32,
    }
    let (r, _) = recovery();
    let s = salt(4);
    let scope = Scope::new(&s);
    let k = r.state_key(&Location::new("src/floats.rs", 1, 1));
    let with = |f64v: f64, f32v: f32, at: usize| {
        let mut o = Outer {
            name: "n".into(),
            inner: vec![Inner::default(), Inner::default()],
            ..Outer::default()
        };
        o.by_id.insert("a".into(), (1, 0.5));
        match at {
            0 => o.inner[1].ratio = f64v,
            1 => o.inner[0].maybe = Some(f64v),
            2 => {
                o.by_id.insert("b".into(), (2, f64v));
            }
            3 => o.single = f32v,
            _ => {
                o.inner[1].scores.insert("x".into(), f32v);
            }
        }
        o
    };
    for (f64v, f32v) in [
        (f64::NAN, f32::NAN),
        (f64::INFINITY, f32::INFINITY),
        (f64::NEG_INFINITY, f32::NEG_INFINITY),
    ] {
        for at in 0..5 {
            let v = with(f64v, f32v, at);
            let err = r.seal(&scope, k, 1, 1, &v).unwrap_err();
            assert!(matches!(err, SealError::NonFiniteFloat), "{at}: {err:?}");
            let text = err.to_string();
            assert_eq!(
                text,
                "value holds a non-finite float (nan or infinity), which json cannot represent"
            );
            assert!(!text.contains("NaN") && !text.contains("inf,"), "{text}");
        }
        assert!(matches!(
            r.seal(&scope, k, 1, 1, &f64v),
            Err(SealError::NonFiniteFloat)
        ));
        assert!(matches!(
            r.seal(&scope, k, 1, 1, &[Some(1.0f32), Some(f32v)]),
            Err(SealError::NonFiniteFloat)
        ));
        let m: BTreeMap<&str, BTreeMap<&str, f64>> = [("a", [("b", f64v)].into_iter().collect())]
            .into_iter()
            .collect();
        assert!(matches!(
            r.seal(&scope, k, 1, 1, &m),
            Err(SealError::NonFiniteFloat)
        ));
        // Through a connection's context too.
        let ctx = RecoveryContext::new(r.clone(), s.clone(), None);
        assert!(matches!(
            ctx.seal(k, 1, 1, &with(f64v, f32v, 4)),
            Err(SealError::NonFiniteFloat)
        ));
    }
    // Finite extremes still round-trip, bit for bit.
    let mut v = with(f64::MAX, f32::MIN_POSITIVE, 0);
    v.inner[0].maybe = Some(-0.0);
    v.inner[0].scores.insert("y".into(), f32::MAX);
    v.single = -f32::MIN_POSITIVE;
    let t = r.seal(&scope, k, 1, 1, &v).unwrap();
    let back = r.open_at::<Outer>(&scope, k, t.as_str()).unwrap().value;
    assert_eq!(back, v);
    assert!(back.inner[0].maybe.unwrap().is_sign_negative());
}
