//! Named keys, typed slots, migrations, aliases, seal-as-K and the registry, as an
//! application uses them across releases.

use serde::{Deserialize, Serialize};
use state_recovery::manifest::Manifest;
use state_recovery::{
    state_key, ConfigError, Fresh, Location, Outcome, Reason, Recovery, RecoveryContext, Restored,
    Slot, StateUpdate,
};

use crate::common::{recovery, salt, STEP};

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct V1 {
    text: String,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct V2 {
    text: String,
    words: usize,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct V3 {
    text: String,
    words: u32,
    pinned: bool,
}

fn v1_to_v2(v: V1) -> V2 {
    V2 {
        words: v.text.split_whitespace().count(),
        text: v.text,
    }
}

fn ctx(r: &Recovery) -> RecoveryContext {
    RecoveryContext::new(r.clone(), salt(7), Some("user-1".into()))
}

fn reopen(r: &Recovery, c: &RecoveryContext, updates: &[&StateUpdate]) -> Restored {
    r.open_entries(&c.scope(), updates.iter().map(|u| u.token().as_str()))
}

/// The release that wrote version 1 of the draft (version K).
fn release_1(r: &Recovery) -> Slot<V1> {
    let mut reg = r.registry();
    Slot::<V1>::declare(state_key!("draft"))
        .register(&mut reg)
        .unwrap()
}

/// Version 3, with migrations 1 → 2 → 3 (the second may fail).
fn release_3(r: &Recovery) -> Slot<V3> {
    let mut reg = r.registry();
    Slot::<V1>::declare(state_key!("draft"))
        .migrate(2, v1_to_v2)
        .try_migrate(3, |v: V2| {
            u32::try_from(v.words)
                .map(|words| V3 {
                    text: v.text,
                    words,
                    pinned: false,
                })
                .map_err(|_| "too many words")
        })
        .register(&mut reg)
        .unwrap()
}

#[test]
fn named_keys_survive_edits_and_differ_by_name_and_module() {
    let (r, _) = recovery();
    // The same declaration written at another line and column (an edit moved it).
    let before = state_key!("draft");
    let after = {
        // two comment lines
        // inserted above the declaration
        state_key!("draft")
    };
    assert_ne!(before.site(), after.site());
    assert_eq!(r.state_key(&before), r.state_key(&after));
    assert_eq!(
        r.state_key(&before),
        r.state_key(&Location::named(module_path!(), "draft"))
    );
    assert_ne!(
        r.state_key(&before),
        r.state_key(&Location::named("other::module", "draft"))
    );
    assert_ne!(r.state_key(&before), r.state_key(&state_key!("draft2")));
    // A source key moves with every edit.
    let (a, b) = (state_recovery::source_key!(), state_recovery::source_key!());
    assert_ne!(r.state_key(&a), r.state_key(&b));
}

#[test]
fn slot_round_trip_handles_revision_and_schema() {
    let (r, _) = recovery();
    let slot = release_1(&r);
    let c = ctx(&r);
    let u1 = slot.seal(&c, &V1 { text: "a".into() }).unwrap();
    let u2 = slot.seal(&c, &V1 { text: "a b".into() }).unwrap();
    assert_eq!((u1.rev(), u2.rev()), (1, 2));
    assert_eq!(u2.key(), slot.key());
    let (value, outcome) = slot.restore(&reopen(&r, &c, &[&u2]));
    assert_eq!(value.text, "a b");
    assert_eq!(
        outcome,
        Outcome::Restored {
            revision: 2,
            alias: false
        }
    );
    assert!(!outcome.needs_seal());
    // Nothing handed back: the default, and no reason.
    let (value, outcome) = slot.restore(&Restored::default());
    assert_eq!(value, V1::default());
    assert_eq!(outcome, Outcome::Fresh(Fresh::Missing));
    assert_eq!(outcome.reason(), None);
}

#[test]
fn migration_chains_read_every_older_version() {
    let (r, _) = recovery();
    let c = ctx(&r);
    let old = release_1(&r)
        .seal(
            &c,
            &V1 {
                text: "one two three".into(),
            },
        )
        .unwrap();
    let new = release_3(&r);
    assert_eq!((new.schema(), new.writes()), (3, 3));
    let (v, outcome) = new.restore(&reopen(&r, &c, &[&old]));
    assert_eq!(
        v,
        V3 {
            text: "one two three".into(),
            words: 3,
            pinned: false
        }
    );
    assert_eq!(
        outcome,
        Outcome::Migrated {
            from: 1,
            revision: 1,
            alias: false
        }
    );
    assert!(outcome.needs_seal());
    // A version-2 entry (sealed by the intermediate release) migrates once.
    let mut reg = r.registry();
    let release_2 = Slot::<V1>::declare(state_key!("draft"))
        .migrate(2, v1_to_v2)
        .register(&mut reg)
        .unwrap();
    let mid = release_2
        .seal(
            &c,
            &V2 {
                text: "x".into(),
                words: 1,
            },
        )
        .unwrap();
    let (v, outcome) = new.restore(&reopen(&r, &c, &[&mid]));
    assert_eq!((v.words, outcome.is_restored()), (1, true));
    assert!(matches!(outcome, Outcome::Migrated { from: 2, .. }));
    // Version 3 reads itself as it is.
    let cur = new.seal(&c, &v).unwrap();
    assert!(matches!(
        new.restore(&reopen(&r, &c, &[&cur])).1,
        Outcome::Restored { .. }
    ));
}

#[test]
fn a_failing_migration_gives_the_default_and_outdated() {
    let (r, _) = recovery();
    let c = ctx(&r);
    let mut reg = r.registry();
    let release_2 = Slot::<V1>::declare(state_key!("draft"))
        .migrate(2, v1_to_v2)
        .register(&mut reg)
        .unwrap();
    let huge = release_2
        .seal(
            &c,
            &V2 {
                text: "x".into(),
                words: usize::MAX,
            },
        )
        .unwrap();
    let other = release_1(&r); // an unrelated slot is not affected
    let (v, outcome) = release_3(&r).restore(&reopen(&r, &c, &[&huge]));
    assert_eq!(v, V3::default());
    assert_eq!(outcome.reason(), Some(Reason::Outdated));
    match outcome {
        Outcome::Fresh(Fresh::MigrationFailed { from, to, error }) => {
            assert_eq!((from, to, error.as_str()), (2, 3, "too many words"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        other.restore(&Restored::default()).1,
        Outcome::Fresh(Fresh::Missing)
    );
}

#[test]
fn an_old_worker_receiving_newer_state_starts_fresh_and_says_why() {
    let (r, _) = recovery();
    let c = ctx(&r);
    let newer = release_3(&r).seal(&c, &V3::default()).unwrap();
    let (v, outcome) = release_1(&r).restore(&reopen(&r, &c, &[&newer]));
    assert_eq!(v, V1::default());
    assert_eq!(outcome, Outcome::Fresh(Fresh::Newer { schema: 3 }));
    assert_eq!(outcome.reason(), Some(Reason::NewerSchema));
    assert!(!outcome.needs_seal());
}

#[test]
fn seal_as_k_keeps_old_workers_reading() {
    let (r, _) = recovery();
    let c = ctx(&r);
    let mut reg = r.registry();
    // Release K+1, expand phase: reads 1 and 2, seals 1.
    let expand = Slot::<V1>::declare(state_key!("draft"))
        .migrate(2, v1_to_v2)
        .seal_as(1, |v: &V2| V1 {
            text: v.text.clone(),
        })
        .register(&mut reg)
        .unwrap();
    assert_eq!((expand.schema(), expand.writes()), (2, 1));
    let u = expand
        .seal(
            &c,
            &V2 {
                text: "kept".into(),
                words: 1,
            },
        )
        .unwrap();
    // A release-K worker reads it as its own.
    let (v, outcome) = release_1(&r).restore(&reopen(&r, &c, &[&u]));
    assert_eq!(v.text, "kept");
    assert!(matches!(outcome, Outcome::Restored { .. }));
    // And K+1 reads it back through its migration.
    let (v, outcome) = expand.restore(&reopen(&r, &c, &[&u]));
    assert_eq!((v.text.as_str(), v.words), ("kept", 1));
    assert!(matches!(outcome, Outcome::Migrated { from: 1, .. }));
    // The manifest says so.
    let m = reg.manifest();
    let k = m.keys.iter().find(|k| k.key == expand.key()).unwrap();
    assert_eq!(
        (k.schema, k.reads.as_slice(), k.writes),
        (Some(2), &[1, 2][..], Some(1))
    );
}

#[test]
fn aliases_restore_renamed_state_and_the_current_key_wins() {
    let (r, _) = recovery();
    let c = ctx(&r);
    // The old release declared the state by source location, then by another name.
    let old_loc = Location::new("src/app.rs", 120, 9);
    let mut reg = r.registry();
    let old: Slot<V1> = Slot::declare(old_loc.clone()).register(&mut reg).unwrap();
    let old_update = old
        .seal(
            &c,
            &V1 {
                text: "from before".into(),
            },
        )
        .unwrap();

    let mut reg = r.registry();
    let renamed: Slot<V1> = Slot::declare(state_key!("notes"))
        .alias(old_loc.clone())
        .alias(state_key!("draft-old-name"))
        .register(&mut reg)
        .unwrap();
    assert_eq!(renamed.aliases().first(), Some(&r.state_key(&old_loc)));
    let (v, outcome) = renamed.restore(&reopen(&r, &c, &[&old_update]));
    assert_eq!(v.text, "from before");
    assert_eq!(
        outcome,
        Outcome::Restored {
            revision: 1,
            alias: true
        }
    );
    assert!(outcome.needs_seal());
    // Re-sealed under the current key; with both in the bundle, the current key wins.
    let current = renamed.seal(&c, &V1 { text: "now".into() }).unwrap();
    assert_eq!(current.key(), renamed.key());
    let (v, outcome) = renamed.restore(&reopen(&r, &c, &[&old_update, &current]));
    assert_eq!(v.text, "now");
    assert!(matches!(outcome, Outcome::Restored { alias: false, .. }));
    // Both keys are claimed: nothing is unclaimed.
    assert!(reg
        .unclaimed(&reopen(&r, &c, &[&old_update, &current]))
        .is_empty());
}

#[test]
fn rejected_and_invalid_entries_say_why_and_leave_others_intact() {
    let (r, clock) = recovery();
    let c = ctx(&r);
    let mut reg = r.registry();
    let a: Slot<V1> = Slot::declare(state_key!("a")).register(&mut reg).unwrap();
    let b: Slot<u32> = Slot::declare(state_key!("b")).register(&mut reg).unwrap();
    // An authentic entry for `b`'s key of the wrong shape, sealed by hand.
    let wrong = c.seal(b.key(), 5, 1, &"not a number").unwrap();
    let ok = a
        .seal(
            &c,
            &V1 {
                text: "fine".into(),
            },
        )
        .unwrap();
    let restored = reopen(&r, &c, &[&wrong, &ok]);
    let (v, outcome) = b.restore(&restored);
    assert_eq!(v, 0);
    assert_eq!(outcome, Outcome::Fresh(Fresh::InvalidPayload { schema: 1 }));
    assert_eq!(a.restore(&restored).0.text, "fine");
    // Expired: the reason of the rejection.
    clock.advance(3 * STEP);
    let (_, outcome) = a.restore(&reopen(&r, &c, &[&ok]));
    assert_eq!(outcome, Outcome::Fresh(Fresh::Rejected(Reason::Expired)));
}

#[test]
fn unclaimed_entries_are_counted() {
    let (r, _) = recovery();
    let c = ctx(&r);
    let mut reg = r.registry();
    let kept: Slot<V1> = Slot::declare(state_key!("kept"))
        .register(&mut reg)
        .unwrap();
    let gone = c
        .seal(r.state_key(&state_key!("removed")), 1, 1, &1)
        .unwrap();
    let u = kept.seal(&c, &V1::default()).unwrap();
    let restored = reopen(&r, &c, &[&u, &gone]);
    assert_eq!(reg.unclaimed(&restored), vec![gone.key()]);
    assert_eq!(reg.report_unclaimed(&restored), 1);
}

#[test]
fn two_declarations_of_one_key_are_a_start_up_error_naming_both() {
    let (r, _) = recovery();
    let mut reg = r.registry();
    Slot::<V1>::declare(state_key!("cart"))
        .register(&mut reg)
        .unwrap();
    let err = Slot::<V1>::declare(state_key!("cart"))
        .register(&mut reg)
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ConfigError::LocationCollision { .. }),
        "{err}"
    );
    // Both declarations are named, with where they are written.
    assert_eq!(
        text.matches("@cart (declared at tests/it/slots.rs:")
            .count(),
        2,
        "{text}"
    );
    // An alias that is another slot's key.
    let err = Slot::<V1>::declare(state_key!("basket"))
        .alias(state_key!("cart"))
        .register(&mut reg)
        .unwrap_err();
    assert!(err.to_string().contains("an alias of"), "{err}");
    // The refused slot left nothing behind.
    assert!(!reg.claims(&r.state_key(&state_key!("basket"))));
    // The same declaration registered twice (one code path run twice) is fine.
    let mut reg = r.registry();
    let declare =
        |reg: &mut state_recovery::Registry| Slot::<V1>::declare(state_key!("once")).register(reg);
    let k1 = declare(&mut reg).unwrap().key();
    assert_eq!(declare(&mut reg).unwrap().key(), k1);
}

#[test]
fn declarations_that_cannot_work_are_refused() {
    let (r, _) = recovery();
    let mut reg = r.registry();
    let problem = |e: ConfigError| match e {
        ConfigError::InvalidSlot { problem, .. } => problem,
        other => panic!("{other:?}"),
    };
    let e = Slot::<V1>::declare(state_key!("x"))
        .migrate(1, v1_to_v2)
        .register(&mut reg)
        .unwrap_err();
    assert!(problem(e).contains("not above 1"));
    let e = Slot::<V1>::declare(state_key!("x"))
        .seal_as(1, |v: &V1| v.clone())
        .register(&mut reg)
        .unwrap_err();
    assert!(problem(e).contains("seal_as(1)"));
    let e = Slot::<V1>::declare(state_key!("x"))
        .migrate(2, v1_to_v2)
        .seal_as(5, |v: &V2| v.words)
        .register(&mut reg)
        .unwrap_err();
    assert!(problem(e).contains("seal_as(5)"));
    let e = Slot::<V1>::declare(state_key!("x"))
        .alias(state_key!("x"))
        .register(&mut reg)
        .unwrap_err();
    assert!(problem(e).contains("own location"));
    let e = Slot::<V1>::declare(state_key!("x"))
        .alias(state_key!("y"))
        .alias(state_key!("y"))
        .register(&mut reg)
        .unwrap_err();
    assert!(problem(e).contains("twice"));
    // Names from a framework are checked at run time.
    let e = Slot::<V1>::declare(Location::named("app", "bad name"))
        .register(&mut reg)
        .unwrap_err();
    assert!(matches!(e, ConfigError::InvalidLocation(_)), "{e:?}");
    assert!(reg.is_empty());
}

#[test]
fn the_manifest_round_trips_and_lists_every_key() {
    let (r, _) = recovery();
    let mut reg = r.registry();
    let draft = declare_draft_with_alias(&mut reg);
    let plain = reg.register(&Location::new("gen/x.rs", 3, 4)).unwrap();
    let m = reg.manifest();
    assert_eq!(m.namespace, "test-app");
    assert_eq!(m.keys.len(), 2);
    let text = m.to_json();
    let back = Manifest::parse(&text).unwrap();
    assert_eq!(back, m);
    let d = m.keys.iter().find(|k| k.key == draft.key()).unwrap();
    assert_eq!(d.location, format!("{}@draft", module_path!()));
    assert_eq!(
        (d.schema, d.reads.as_slice(), d.writes),
        (Some(3), &[1, 2, 3][..], Some(3))
    );
    assert_eq!(d.aliases.len(), 1);
    assert_eq!(d.aliases[0].location, "src/old.rs:1:1");
    let p = m.keys.iter().find(|k| k.key == plain).unwrap();
    assert_eq!((p.schema, p.reads.len(), p.writes), (None, 0, None));
}

fn declare_draft_with_alias(reg: &mut state_recovery::Registry) -> Slot<V2> {
    Slot::<V1>::declare(state_key!("draft"))
        .alias(Location::new("src/old.rs", 1, 1))
        .migrate(2, v1_to_v2)
        .migrate(3, |v: V2| v)
        .register(reg)
        .unwrap()
}
