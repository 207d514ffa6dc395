//! The `model` target: sequences of operations on tokens, keys and the clock, each outcome
//! checked against a model that knows which tokens are authentic and predicts exactly which
//! ones open, and with which reason (and claimed key) the others fail. Entries are signed or
//! encrypted; the model predicts the same outcomes for both kinds (and checks the kind).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;

use super::{key_id, recovery, Json, NOW};
use crate::error::Reason;
use crate::token;
use crate::{
    reconnect_message, Clock as _, EntryKind, Limits, Location, ManualClock, OtpSettings, Recovery,
    Salt, Scope,
};
use crate::{KeyRing, StateKey};

/// Step length of the model's clock, in seconds.
const STEP_SECS: u64 = 100;
/// Most entries the model keeps; further seals are ignored.
const MAX_ENTRIES: usize = 48;
/// Most operations run per input.
const MAX_OPS: usize = 96;
/// Bundle entry cap of the model's recovery.
const BUNDLE_CAP: usize = 8;
/// Number of fixture locations, salts and subjects (`None`, `"alice"`, `"bob"`).
const LOCATIONS: usize = 4;
const SALTS: usize = 3;
const SUBJECTS: [Option<&str>; 3] = [None, Some("alice"), Some("bob")];

/// One step of a model run. Indices are taken modulo the number of things they index.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Op {
    /// Seal a value for a location under a salt and subject: a new entry in that scope.
    Seal {
        /// Fixture location.
        location: u8,
        /// Fixture salt.
        salt: u8,
        /// Fixture subject.
        subject: u8,
        /// Revision.
        revision: u64,
        /// Schema version.
        schema: u32,
        /// Value.
        value: Json,
    },
    /// [`Op::Seal`], as an encrypted entry (format version 2). Every other operation and
    /// every prediction treats both kinds alike: the model predicts the same outcomes.
    SealEncrypted {
        /// Fixture location.
        location: u8,
        /// Fixture salt.
        salt: u8,
        /// Fixture subject.
        subject: u8,
        /// Revision.
        revision: u64,
        /// Schema version.
        schema: u32,
        /// Value.
        value: Json,
    },
    /// Flip one bit of an entry, in its text or in its decoded bytes: a new entry.
    FlipBit {
        /// Entry.
        entry: u16,
        /// Bit position (modulo the length).
        bit: u32,
        /// Flip in the base64url text rather than in the decoded bytes.
        in_text: bool,
    },
    /// Join the head of one entry to the tail of another: a new entry.
    Splice {
        /// Entry giving the head.
        first: u16,
        /// Entry giving the tail.
        second: u16,
        /// Where the head ends.
        cut_first: u16,
        /// Where the tail starts.
        cut_second: u16,
        /// Cut the text rather than the decoded bytes.
        in_text: bool,
    },
    /// Present an entry for another location.
    Move {
        /// Entry.
        entry: u16,
        /// Fixture location.
        location: u8,
    },
    /// Present an entry under another salt and subject.
    Rescope {
        /// Entry.
        entry: u16,
        /// Fixture salt.
        salt: u8,
        /// Fixture subject.
        subject: u8,
    },
    /// Move the clock forward.
    Advance {
        /// Seconds.
        secs: u16,
    },
    /// Move the clock back.
    Rewind {
        /// Seconds.
        secs: u16,
    },
    /// Put a new key first in the ring (it seals from now on).
    RotateAdd,
    /// Drop the oldest key of the ring, if there are two or more.
    RotateDrop,
    /// Open one entry where it is presented (with `open_at`), and anywhere (with `open`).
    Open {
        /// Entry.
        entry: u16,
    },
    /// Open a reconnect bundle of entries under one salt and subject.
    OpenBundle {
        /// Fixture salt.
        salt: u8,
        /// Fixture subject.
        subject: u8,
        /// Entries.
        entries: Vec<u16>,
    },
}

/// A model run: the OTP skew and the operations. Every entry is opened again at the end.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Model {
    /// OTP skew, modulo 3.
    pub skew: u8,
    /// The operations.
    pub ops: Vec<Op>,
}

/// What the model knows about an authentic token.
#[derive(Debug, Clone)]
struct Sealed {
    kind: EntryKind,
    pepper: u16,
    step: u64,
    salt: usize,
    subject: usize,
    location: usize,
    revision: u64,
    schema: u32,
    value: Value,
}

/// A token held by the (simulated) client, and where and for whom it is presented.
#[derive(Debug, Clone)]
struct Entry {
    text: String,
    location: usize,
    salt: usize,
    subject: usize,
}

/// What the model predicts for one open.
type Prediction = Result<Sealed, (Reason, Option<StateKey>)>;

struct World {
    clock: Arc<ManualClock>,
    otp: OtpSettings,
    ring: Vec<u16>,
    next_pepper: u16,
    recovery: Recovery,
    keys: [StateKey; LOCATIONS],
    salts: [Salt; SALTS],
    authentic: HashMap<String, Sealed>,
    entries: Vec<Entry>,
}

/// Runs `input` and checks every outcome against the model.
pub fn model(input: &Model) {
    let mut w = World::new(u64::from(input.skew % 3));
    for op in input.ops.iter().take(MAX_OPS) {
        w.apply(op);
    }
    for i in 0..w.entries.len() {
        w.check_open(i);
    }
}

fn pick(n: impl Into<u64>, len: usize) -> usize {
    // len is a small non-zero constant or a checked non-zero length.
    usize::try_from(n.into() % (len.max(1) as u64)).unwrap_or(0)
}

impl World {
    fn new(skew: u64) -> Self {
        let clock = Arc::new(ManualClock::new(NOW));
        let otp = OtpSettings::new(STEP_SECS, skew).expect("fixture otp is valid");
        let recovery = build(&[0], &clock, otp);
        let keys = std::array::from_fn(|i| {
            let line = u32::try_from(i).unwrap_or(0).saturating_add(10);
            recovery.state_key(&Location::new("src/fuzz.rs", line, 5))
        });
        let salts = std::array::from_fn(|i| Salt::from_bytes([u8::try_from(i).unwrap_or(0); 16]));
        Self {
            clock,
            otp,
            ring: vec![0],
            next_pepper: 1,
            recovery,
            keys,
            salts,
            authentic: HashMap::new(),
            entries: Vec::new(),
        }
    }

    fn scope(&self, salt: usize, subject: usize) -> Scope<'_> {
        Scope::new(&self.salts[salt]).with_optional_subject(SUBJECTS[subject])
    }

    fn entry(&self, n: u16) -> Option<&Entry> {
        self.entries.get(pick(n, self.entries.len()))
    }

    fn push(&mut self, e: Entry) {
        if self.entries.len() < MAX_ENTRIES {
            self.entries.push(e);
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Seal {
                location,
                salt,
                subject,
                revision,
                schema,
                value,
            } => self.seal(
                EntryKind::Signed,
                (*location, *salt, *subject),
                *revision,
                *schema,
                value,
            ),
            Op::SealEncrypted {
                location,
                salt,
                subject,
                revision,
                schema,
                value,
            } => self.seal(
                EntryKind::Encrypted,
                (*location, *salt, *subject),
                *revision,
                *schema,
                value,
            ),
            Op::FlipBit {
                entry,
                bit,
                in_text,
            } => {
                let Some(e) = self.entry(*entry).cloned() else {
                    return;
                };
                let text = edit(&e.text, *in_text, |b| {
                    let i = pick(*bit, b.len().saturating_mul(8));
                    if let Some(byte) = b.get_mut(i / 8) {
                        *byte ^= 1 << (i % 8);
                    }
                });
                self.push(Entry { text, ..e });
            }
            Op::Splice {
                first,
                second,
                cut_first,
                cut_second,
                in_text,
            } => {
                let (Some(a), Some(b)) = (self.entry(*first), self.entry(*second)) else {
                    return;
                };
                let (a, tail) = (a.clone(), b.text.clone());
                let text = edit(&a.text, *in_text, |head| {
                    let tail = if *in_text {
                        tail.into_bytes()
                    } else {
                        token::decode(tail.as_bytes(), usize::MAX).unwrap_or_default()
                    };
                    head.truncate(pick(*cut_first, head.len().saturating_add(1)));
                    let from = pick(*cut_second, tail.len().saturating_add(1));
                    head.extend_from_slice(tail.get(from..).unwrap_or_default());
                });
                self.push(Entry { text, ..a });
            }
            Op::Move { entry, location } => {
                let i = pick(*entry, self.entries.len());
                if let Some(e) = self.entries.get_mut(i) {
                    e.location = pick(*location, LOCATIONS);
                }
            }
            Op::Rescope {
                entry,
                salt,
                subject,
            } => {
                let i = pick(*entry, self.entries.len());
                if let Some(e) = self.entries.get_mut(i) {
                    e.salt = pick(*salt, SALTS);
                    e.subject = pick(*subject, SUBJECTS.len());
                }
            }
            Op::Advance { secs } => self.clock.advance(u64::from(*secs)),
            Op::Rewind { secs } => self
                .clock
                .set(self.clock.now().saturating_sub(u64::from(*secs))),
            Op::RotateAdd => {
                if self.ring.len() < KeyRing::MAX_KEYS {
                    self.ring.insert(0, self.next_pepper);
                    self.next_pepper = self.next_pepper.saturating_add(1);
                    self.recovery = build(&self.ring, &self.clock, self.otp);
                }
            }
            Op::RotateDrop => {
                if self.ring.len() > 1 {
                    self.ring.pop();
                    self.recovery = build(&self.ring, &self.clock, self.otp);
                }
            }
            Op::Open { entry } => {
                if !self.entries.is_empty() {
                    self.check_open(pick(*entry, self.entries.len()));
                }
            }
            Op::OpenBundle {
                salt,
                subject,
                entries,
            } => self.check_bundle(pick(*salt, SALTS), pick(*subject, SUBJECTS.len()), entries),
        }
    }

    /// Seals a value of `kind` for (location, salt, subject): a new entry in that scope.
    fn seal(
        &mut self,
        kind: EntryKind,
        (location, salt, subject): (u8, u8, u8),
        revision: u64,
        schema: u32,
        value: &Json,
    ) {
        let (l, s, u) = (
            pick(location, LOCATIONS),
            pick(salt, SALTS),
            pick(subject, SUBJECTS.len()),
        );
        let value = value.to_value();
        let sealed = self.recovery.seal_with(
            kind,
            &self.scope(s, u),
            self.keys[l],
            revision,
            schema,
            &value,
        );
        if super::has_reserved_key(&value) {
            assert!(matches!(sealed, Err(crate::SealError::Serialize(_))));
            return;
        }
        let token = sealed.expect("a small value seals");
        let sealed = Sealed {
            kind,
            pepper: self.ring[0],
            step: self.otp.step_at(self.clock.now()),
            salt: s,
            subject: u,
            location: l,
            revision,
            schema,
            value,
        };
        let text = token.into_string();
        self.authentic.insert(text.clone(), sealed);
        self.push(Entry {
            text,
            location: l,
            salt: s,
            subject: u,
        });
    }

    /// The model's verdict on `text` presented under (`salt`, `subject`), at `expected`.
    fn predict(
        &self,
        text: &str,
        salt: usize,
        subject: usize,
        expected: Option<usize>,
    ) -> Prediction {
        let window = |step: u64| {
            let current = self.clock.now() / STEP_SECS;
            let skew = self.otp.skew();
            if step.saturating_add(skew) < current {
                Err(Reason::Expired)
            } else if step > current.saturating_add(skew) {
                Err(Reason::NotYetValid)
            } else {
                Ok(())
            }
        };
        let Some(s) = self.authentic.get(text) else {
            // Not a token any worker sealed: it fails wherever the checks before the MAC put it.
            let i = crate::inspect(text, self.recovery.limits().max_token_bytes())
                .map_err(|e| (e.reason(), None))?;
            let claimed = Some(StateKey::from_hex(&i.key).expect("inspect gives hex"));
            let in_ring = self.ring.iter().any(|&p| key_id(p).as_str() == i.key_id);
            let reason = if in_ring {
                window(i.step).err().unwrap_or(Reason::BadSignature)
            } else {
                Reason::UnknownKey
            };
            return Err((reason, claimed));
        };
        let claimed = Some(self.keys[s.location]);
        let fail = |r: Reason| Err((r, claimed));
        if !self.ring.contains(&s.pepper) {
            return fail(Reason::UnknownKey);
        }
        if let Err(r) = window(s.step) {
            return fail(r);
        }
        if (s.salt, s.subject) != (salt, subject) {
            return fail(Reason::BadSignature);
        }
        if expected.is_some_and(|l| l != s.location) {
            return fail(Reason::WrongLocation);
        }
        Ok(s.clone())
    }

    fn check_open(&self, i: usize) {
        let e = &self.entries[i];
        let scope = self.scope(e.salt, e.subject);
        let at = self
            .recovery
            .open_at::<Value>(&scope, self.keys[e.location], &e.text);
        let anywhere = self.recovery.open::<Value>(&scope, &e.text);
        for (got, expected) in [(at, Some(e.location)), (anywhere, None)] {
            match (got, self.predict(&e.text, e.salt, e.subject, expected)) {
                (Ok(o), Ok(s)) => {
                    assert_eq!(o.key, self.keys[s.location]);
                    assert_eq!(o.kind, s.kind);
                    assert_eq!(
                        (o.revision, o.schema, o.step),
                        (s.revision, s.schema, s.step)
                    );
                    assert_eq!(o.value, s.value);
                }
                (Err(r), Err((reason, _))) => assert_eq!(r.reason(), reason, "entry {i}: {e:?}"),
                (got, want) => panic!("entry {i} {e:?}: got {got:?}, model says {want:?}"),
            }
        }
    }

    fn check_bundle(&self, salt: usize, subject: usize, picks: &[u16]) {
        let texts: Vec<&str> = picks
            .iter()
            .filter_map(|&n| self.entry(n))
            .map(|e| e.text.as_str())
            .collect();
        let json = reconnect_message(&self.salts[salt], texts.iter().copied());
        let got = self
            .recovery
            .open_bundle(SUBJECTS[subject], json.as_bytes());
        let restored = got.expect("a bundle of tokens parses");
        // Past the entry cap, tokens are only counted; the model judges the rest.
        let over = texts.len().saturating_sub(BUNDLE_CAP);
        assert_eq!(restored.overflow(), over, "tokens past the entry cap");
        let texts = &texts[..texts.len() - over];

        // Predict each entry alone, then withdraw every key that verified more than once.
        let mut verdicts: Vec<Prediction> = texts
            .iter()
            .map(|t| self.predict(t, salt, subject, None))
            .collect();
        let mut counts: BTreeMap<StateKey, usize> = BTreeMap::new();
        for s in verdicts.iter().flatten() {
            *counts.entry(self.keys[s.location]).or_default() += 1;
        }
        for v in &mut verdicts {
            if let Ok(s) = v {
                let key = self.keys[s.location];
                if counts.get(&key).is_some_and(|&n| n > 1) {
                    *v = Err((Reason::DuplicateKey, Some(key)));
                }
            }
        }

        let rejected: Vec<(usize, Reason, Option<StateKey>)> = restored
            .rejected()
            .iter()
            .map(|r| (r.index, r.reason, r.claimed_key))
            .collect();
        let want: Vec<(usize, Reason, Option<StateKey>)> = verdicts
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().err().map(|(r, k)| (i, *r, *k)))
            .collect();
        assert_eq!(rejected, want, "rejections of bundle {texts:?}");
        let accepted: Vec<&Sealed> = verdicts.iter().flatten().collect();
        assert_eq!(restored.len(), accepted.len());
        for s in accepted {
            let key = self.keys[s.location];
            let raw = restored.raw(&key).expect("predicted entry restored");
            assert_eq!(
                (raw.revision, raw.schema, raw.step, raw.kind),
                (s.revision, s.schema, s.step, s.kind)
            );
            let value: Value = serde_json::from_str(raw.value.get()).expect("restored JSON");
            assert_eq!(value, s.value);
        }
    }
}

fn build(ring: &[u16], clock: &Arc<ManualClock>, otp: OtpSettings) -> Recovery {
    recovery(
        ring,
        clock.clone(),
        otp,
        Limits::default().with_max_entries(BUNDLE_CAP),
    )
}

/// Applies `f` to the text's bytes, or to its decoded bytes (re-encoding the result); text
/// that does not decode is edited as text.
fn edit(text: &str, in_text: bool, f: impl FnOnce(&mut Vec<u8>)) -> String {
    let decoded = if in_text {
        None
    } else {
        token::decode(text.as_bytes(), usize::MAX).ok()
    };
    match decoded {
        Some(mut bytes) => {
            f(&mut bytes);
            token::encode(&bytes)
        }
        None => {
            let mut bytes = text.as_bytes().to_vec();
            f(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }
}
