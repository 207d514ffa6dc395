//! The recovery lifecycle, clock-driven, through the transport-independent `Endpoint`, with a
//! client that keeps what the JS client keeps (the highest revision per key; an equal one
//! replaces): revisions continue after rejections, entries refresh and re-key, abandoned
//! state expires, counts are honest, and the bundle stays within its caps.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};
use state_recovery::protocol::{Endpoint, Recovered, ServerMessage};
use state_recovery::{
    reconnect_message, state_key, KeyRing, Limits, ManualClock, Reason, Recovery, Salt, Slot,
    StateKey,
};

use crate::common::{pepper, ring, NOW, STEP};

/// What the JS client keeps: the salt, and per key the highest revision's token.
#[derive(Default, Clone)]
struct Tab {
    salt: Option<Salt>,
    entries: BTreeMap<String, (u64, String)>,
    drops: usize,
}

impl Tab {
    fn message(&self) -> Option<String> {
        let salt = self.salt.as_ref()?;
        Some(reconnect_message(
            salt,
            self.entries.values().map(|(_, t)| t.as_str()),
        ))
    }

    fn absorb(&mut self, m: &ServerMessage) {
        let v: Value = serde_json::from_str(&m.to_json()).unwrap();
        match v["type"].as_str() {
            Some("salt") => {
                let s = Salt::decode(v["salt"].as_str().unwrap()).unwrap();
                if self.salt.as_ref() != Some(&s) {
                    self.entries.clear();
                    self.salt = Some(s);
                }
            }
            Some("state") => {
                let key = v["key"].as_str().unwrap().to_owned();
                let rev = v["rev"].as_u64().unwrap();
                let token = v["token"].as_str().unwrap().to_owned();
                // Highest revision wins; an equal one replaces.
                if self.entries.get(&key).map_or(true, |(r, _)| *r <= rev) {
                    self.entries.insert(key, (rev, token));
                }
            }
            Some("drop") => {
                self.entries.remove(v["key"].as_str().unwrap());
                self.drops += 1;
            }
            _ => {}
        }
    }

    /// Connects: the endpoint handles the message; the tab takes in what it is sent.
    fn connect(&mut self, endpoint: &Endpoint, restore: impl FnOnce(&Recovered)) -> Recovered {
        let msg = self.message();
        let recovered = endpoint.recover(msg.as_deref().map(str::as_bytes), Some("u1"));
        restore(&recovered);
        for m in recovered.messages() {
            self.absorb(&m);
        }
        recovered
    }

    fn take(&mut self, update: state_recovery::StateUpdate) {
        self.absorb(&update.into());
    }

    fn rev(&self, key: StateKey) -> Option<u64> {
        self.entries.get(&key.to_string()).map(|(r, _)| *r)
    }
}

fn setup(ring: KeyRing) -> (Recovery, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(NOW));
    let r = Recovery::builder(ring)
        .namespace("lifecycle")
        .clock(clock.clone())
        .build()
        .unwrap();
    (r, clock)
}

fn counter_slot(r: &Recovery) -> (Slot<u64>, Arc<state_recovery::Registry>) {
    let mut reg = r.registry();
    let slot = Slot::declare(state_key!("counter"))
        .register(&mut reg)
        .unwrap();
    (slot, Arc::new(reg))
}

fn counts(rec: &Recovered) -> (usize, usize) {
    let m = rec.recovered_message();
    (m.restored, m.rejected)
}

#[test]
fn after_an_expired_entry_the_next_update_is_one_the_client_keeps() {
    let (r, clock) = setup(ring(&[("k1", 1)]));
    let (slot, reg) = counter_slot(&r);
    let endpoint = Endpoint::new(r).with_registry(reg);
    let mut tab = Tab::default();
    let rec = tab.connect(&endpoint, |_| {});
    for n in 1..=4u64 {
        tab.take(slot.seal(rec.context(), &n).unwrap());
    }
    assert_eq!(tab.rev(slot.key()), Some(4));

    // Twelve hours away: the entry expired.
    clock.advance(3 * STEP);
    let rec = tab.connect(&endpoint, |rec| {
        let (value, outcome) = slot.restore(rec);
        assert_eq!(value, 0);
        assert_eq!(outcome.reason(), Some(Reason::Expired));
    });
    assert_eq!(counts(&rec), (0, 1));
    // The server told the client to drop the dead token...
    assert_eq!(tab.drops, 1);
    assert_eq!(tab.rev(slot.key()), None);
    // ...and continues above its revision anyway, so even a client that kept it takes the
    // next update.
    let update = slot.seal(rec.context(), &1).unwrap();
    assert_eq!(update.rev(), 5);
    tab.take(update);
    assert_eq!(tab.rev(slot.key()), Some(5));
    let (value, _) = slot.restore(&tab.connect(&endpoint, |_| {}));
    assert_eq!(value, 1);
}

#[test]
fn revisions_continue_after_an_emergency_rotation() {
    let (r, _) = setup(ring(&[("old", 1)]));
    let (slot, _) = counter_slot(&r);
    let mut tab = Tab::default();
    let rec = tab.connect(&Endpoint::new(r), |_| {});
    for n in 1..=7u64 {
        tab.take(slot.seal(rec.context(), &n).unwrap());
    }
    // The old key is dropped from the ring: unknown-key, not dropped (another worker may
    // still have it), and the next update continues at 8.
    let (r2, _) = setup(ring(&[("new", 2)]));
    let (slot2, reg2) = counter_slot(&r2);
    let endpoint = Endpoint::new(r2).with_registry(reg2);
    let rec = tab.connect(&endpoint, |rec| {
        assert_eq!(slot2.restore(rec).1.reason(), Some(Reason::UnknownKey));
    });
    assert_eq!(tab.drops, 0);
    let update = slot2.seal(rec.context(), &100).unwrap();
    assert_eq!(update.rev(), 8);
    tab.take(update);
    assert_eq!(slot2.restore(&tab.connect(&endpoint, |_| {})).0, 100);
}

#[test]
fn a_tab_that_keeps_reconnecting_keeps_its_state_for_ten_steps() {
    let (r, clock) = setup(ring(&[("k1", 1)]));
    let (slot, reg) = counter_slot(&r);
    let endpoint = Endpoint::new(r.clone()).with_registry(reg);
    let mut tab = Tab::default();
    let rec = tab.connect(&endpoint, |_| {});
    tab.take(slot.seal(rec.context(), &42).unwrap());
    // The value never changes; the tab reconnects once per step for ten steps (each time
    // its entry is from the previous step).
    for step in 1..=10u64 {
        clock.advance(STEP);
        let rec = tab.connect(&endpoint, |rec| {
            let (value, outcome) = slot.restore(rec);
            assert_eq!(value, 42, "step {step}");
            assert!(outcome.is_restored(), "step {step}: {outcome:?}");
        });
        assert_eq!(counts(&rec), (1, 0), "step {step}");
        assert_eq!(rec.pending().len(), 1, "step {step}: refreshed");
        assert_eq!(tab.rev(slot.key()), Some(1), "same revision, new token");
    }
    // Without refresh, the same tab loses it after the window.
    let plain = Endpoint::new(r).without_refresh();
    let mut stale = tab.clone();
    clock.advance(STEP);
    let _ = stale.connect(&plain, |_| {});
    clock.advance(STEP);
    stale.connect(&plain, |rec| {
        assert_eq!(slot.restore(rec).1.reason(), Some(Reason::Expired));
    });
}

#[test]
fn abandoned_state_still_expires() {
    let (r, clock) = setup(ring(&[("k1", 1)]));
    let (slot, reg) = counter_slot(&r);
    let endpoint = Endpoint::new(r).with_registry(reg);
    let mut tab = Tab::default();
    let rec = tab.connect(&endpoint, |_| {});
    tab.take(slot.seal(rec.context(), &9).unwrap());
    // Gone for the window (one step of skew either side) and a bit: expired on return.
    clock.advance(2 * STEP);
    tab.connect(&endpoint, |rec| {
        assert_eq!(slot.restore(rec).1.reason(), Some(Reason::Expired));
    });
}

#[test]
fn a_rotation_moves_a_reconnecting_client_to_the_new_key() {
    let (old, clock) = setup(ring(&[("old", 1)]));
    let (slot, _) = counter_slot(&old);
    let mut tab = Tab::default();
    let rec = tab.connect(&Endpoint::new(old), |_| {});
    tab.take(slot.seal(rec.context(), &5).unwrap());
    let sealed_under = |tab: &Tab| {
        let token = &tab.entries.values().next().unwrap().1;
        state_recovery::inspect(token, 1 << 16).unwrap().key_id
    };
    assert_eq!(sealed_under(&tab), "old");

    // Planned rotation, step 1: every worker gets `new` first, `old` still opens.
    let both = KeyRing::new([
        (state_recovery::KeyId::new("new").unwrap(), pepper(2)),
        (state_recovery::KeyId::new("old").unwrap(), pepper(1)),
    ])
    .unwrap();
    let r = Recovery::builder(both)
        .namespace("lifecycle")
        .clock(clock.clone())
        .build()
        .unwrap();
    let rec = tab.connect(&Endpoint::new(r), |rec| {
        assert_eq!(slot.restore(rec).0, 5);
    });
    assert_eq!(rec.pending().len(), 1, "re-sealed under the new key");
    assert_eq!(sealed_under(&tab), "new");

    // Step 2: `old` is removed; nothing is lost.
    let only_new = Recovery::builder(ring(&[("new", 2)]))
        .namespace("lifecycle")
        .clock(clock)
        .build()
        .unwrap();
    tab.connect(&Endpoint::new(only_new), |rec| {
        assert_eq!(slot.restore(rec).0, 5);
    });
}

#[test]
fn counts_say_what_the_application_used() {
    let (r, _) = setup(ring(&[("k1", 1)]));
    let mut reg = r.registry();
    let kept: Slot<u64> = Slot::declare(state_key!("kept"))
        .register(&mut reg)
        .unwrap();
    let newer: Slot<u64> = Slot::declare(state_key!("newer"))
        .register(&mut reg)
        .unwrap();
    let endpoint = Endpoint::new(r.clone()).with_registry(Arc::new(reg));
    let mut tab = Tab::default();
    let rec = tab.connect(&endpoint, |_| {});
    let ctx = rec.context();
    tab.take(kept.seal(ctx, &1).unwrap());
    // Sealed by a newer release (schema 2), and state no slot claims any more.
    tab.take(ctx.seal(newer.key(), 1, 2, &2).unwrap());
    tab.take(
        ctx.seal(r.state_key(&state_key!("removed")), 1, 1, &3)
            .unwrap(),
    );
    let rec = tab.connect(&endpoint, |rec| {
        assert!(kept.restore(rec).1.is_restored());
        assert_eq!(newer.restore(rec).1.reason(), Some(Reason::NewerSchema));
    });
    assert_eq!(rec.unclaimed(), 1);
    assert_eq!(
        counts(&rec),
        (1, 2),
        "newer-schema and unclaimed are not restored"
    );
    // A message refused whole counts one, whatever refused it.
    for bad in [
        &b"not json"[..],
        br#"{"type":"recover","salt":"short"}"#,
        br#"{"type":"x"}"#,
    ] {
        let rec = endpoint.recover(Some(bad), None);
        assert_eq!(counts(&rec), (0, 1), "{}", String::from_utf8_lossy(bad));
        assert!(rec.salt_message().is_some());
    }
    // No message and an empty stash are new clients, nothing rejected.
    assert_eq!(counts(&endpoint.recover(None, None)), (0, 0));
    let empty = json!({"type": "recover", "salt": null, "entries": []}).to_string();
    assert_eq!(
        counts(&endpoint.recover(Some(empty.as_bytes()), None)),
        (0, 0)
    );
}

#[test]
fn a_stash_over_the_caps_never_costs_everything() {
    let limits = Limits::default()
        .with_max_token_bytes(512)
        .with_max_bundle_bytes(4096)
        .with_max_entries(4);
    let clock = Arc::new(ManualClock::new(NOW));
    let r = Recovery::builder(ring(&[("k1", 1)]))
        .limits(limits)
        .clock(clock)
        .build()
        .unwrap();
    let endpoint = Endpoint::new(r.clone());
    let mut tab = Tab::default();
    let rec = tab.connect(&endpoint, |_| {});
    let key = |i: u32| r.state_key(&state_key!("row", format!("{i}")));
    // The context refuses the fifth entry (the client could not send it back).
    for i in 0..4 {
        tab.take(rec.context().seal(key(i), 1, 1, &i).unwrap());
    }
    let err = rec.context().seal(key(4), 1, 1, &4).unwrap_err();
    assert!(err.to_string().contains("most entries"), "{err}");
    // A client that sends more than the cap anyway (an old client, a forged stash) loses
    // only the entries past it.
    let mut tokens: Vec<String> = tab.entries.values().map(|(_, t)| t.clone()).collect();
    tokens.push(tokens[0].clone());
    tokens.push("junk".into());
    let msg = reconnect_message(
        tab.salt.as_ref().unwrap(),
        tokens.iter().map(String::as_str),
    );
    let rec = endpoint.recover(Some(msg.as_bytes()), Some("u1"));
    assert_eq!(rec.restored().len(), 4);
    assert_eq!(rec.restored().overflow(), 2);
    assert!(rec.rejected().is_empty());
    assert_eq!(counts(&rec), (4, 2));
    // The limits are announced.
    let m: Value = serde_json::from_str(&rec.recovered_message().to_json()).unwrap();
    assert_eq!(
        m["limits"],
        json!({"maxTokenBytes": 512, "maxBundleBytes": 4096, "maxEntries": 4})
    );
}

/// `Endpoint::require_subject` fails closed: without a subject nothing is opened (reason
/// `no-subject`), the client keeps its salt (so its stash survives), the input is dropped,
/// and the context refuses to seal; with a subject everything works as before.
#[test]
fn an_endpoint_that_requires_a_subject_restores_and_seals_nothing_without_one() {
    let (r, _) = crate::common::recovery();
    let mut reg = r.registry();
    let counter: Slot<u64> = Slot::declare(state_key!("counter"))
        .register(&mut reg)
        .unwrap();
    let open = Endpoint::new(r.clone()).with_registry(Arc::new(reg));
    let strict = open.clone().require_subject();
    assert!(strict.requires_subject() && !open.requires_subject());

    // Alice's state, sealed for her.
    let first = strict.recover(None, Some("alice"));
    assert_eq!(first.bundle_rejection(), None);
    let update = counter.seal(first.context(), &5).unwrap();
    let salt = first.context().salt().clone();
    let msg = json!({"type": "recover", "salt": salt.encode(),
        "entries": [update.token().as_str()], "input": {"f": {"q": "typed"}}})
    .to_string();

    // Without a subject: nothing restored, one rejection, the salt kept, no input.
    let anon = strict.recover(Some(msg.as_bytes()), None);
    assert_eq!(anon.bundle_rejection(), Some(Reason::NoSubject));
    assert!(anon.restored().is_empty());
    assert!(anon.rejected().is_empty(), "no entry was even opened");
    assert_eq!(anon.context().salt(), &salt);
    assert!(anon.salt_message().is_none(), "the stash is not dropped");
    assert!(anon.input().form("f").is_none());
    let rec = anon.recovered_message();
    assert_eq!((rec.restored, rec.rejected), (0, 1));
    assert_eq!(counter.restore(&anon).0, 0);
    assert!(anon.context().subject_required());
    let err = counter.seal(anon.context(), &6).unwrap_err();
    assert!(matches!(err, state_recovery::SealError::NoSubject), "{err}");
    assert_eq!(
        err.to_string(),
        "no authenticated subject, and this context seals only for one"
    );
    assert!(anon.context().refresh().is_empty());

    // No message, an unusable one, or a transport refusal: the same, with a fresh salt.
    for none in [
        strict.recover(None, None),
        strict.recover(Some(b"not json"), None),
        strict.fresh_client(None),
        strict.refused(Reason::TooLarge, None),
    ] {
        assert_eq!(none.bundle_rejection(), Some(Reason::NoSubject));
        assert!(none.context().salt_issued());
        assert!(none.context().seal(counter.key(), 1, 1, &1u64).is_err());
    }

    // With the subject, Alice's state comes back.
    let alice = strict.recover(Some(msg.as_bytes()), Some("alice"));
    assert_eq!(alice.bundle_rejection(), None);
    assert_eq!(counter.restore(&alice).0, 5);
    assert!(counter.seal(alice.context(), &6).is_ok());

    // Without `require_subject`, a missing subject is anonymous: Alice's entry does not open
    // (bad-signature), but the context seals for "anonymous" (what `require_subject` stops).
    let lax = open.recover(Some(msg.as_bytes()), None);
    assert_eq!(lax.bundle_rejection(), None);
    assert_eq!(lax.rejected()[0].reason, Reason::BadSignature);
    assert!(counter.seal(lax.context(), &7).is_ok());
}
