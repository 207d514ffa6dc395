//! Shared fixtures for the benches: payloads of exact sizes, our sealed tokens, the "ideal"
//! pipeline on the same tokens, and the two peers (cookie's SignedJar, ReactPy PR #1204).
//!
//! Included by each bench with `#[path = "support/mod.rs"] mod support;`, so not every bench
//! uses every item.
#![allow(dead_code, unreachable_pub, missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![allow(clippy::arithmetic_side_effects, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use state_recovery::{
    mac, reconnect_message, KeyId, KeyRing, Location, ManualClock, OtpSettings, Pepper, Recovery,
    Salt, Scope, StateKey, Token,
};

pub type HmacSha256 = Hmac<Sha256>;

/// The payload sizes the brief asks for.
pub const SIZES: [usize; 4] = [64, 200, 1024, 16 * 1024];
/// The key id used everywhere (2 bytes, like a short rotation id).
pub const KEY_ID: &str = "k1";
/// The authenticated subject the entries are bound to.
pub const SUBJECT: &str = "user-42";
/// Fixed "now" for the fixtures with a manual clock (2023-11-14T22:13:20Z).
pub const NOW: u64 = 1_700_000_000;
/// ReactPy's (and our default) OTP interval: 4 hours.
pub const INTERVAL: u64 = 4 * 60 * 60;

/// A realistic component state: a titled to-do list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub title: String,
    pub todos: Vec<Todo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Todo {
    pub id: u32,
    pub text: String,
    pub done: bool,
}

/// A state whose JSON is exactly `n` bytes (n ≥ 24).
pub fn state_of_len(n: usize) -> State {
    const EMPTY: usize = r#"{"title":"","todos":[]}"#.len();
    assert!(n > EMPTY, "payload of {n} bytes is too small");
    let mut todos = Vec::new();
    let mut used = EMPTY;
    let mut id = 0u32;
    loop {
        let t = Todo {
            id,
            text: format!("write the benchmark report, part {id}"),
            done: id % 3 == 0,
        };
        let item = serde_json::to_vec(&t).unwrap().len() + usize::from(!todos.is_empty());
        // Keep at least 8 bytes of title.
        if used + item + 8 > n {
            break;
        }
        used += item;
        todos.push(t);
        id += 1;
    }
    let title: String = "Groceries and chores for the week "
        .chars()
        .cycle()
        .take(n - used)
        .collect();
    let s = State { title, todos };
    assert_eq!(serde_json::to_vec(&s).unwrap().len(), n);
    s
}

pub fn pepper() -> Pepper {
    Pepper::try_from_bytes(&std::array::from_fn::<u8, 32, _>(|i| {
        7 ^ (i as u8).wrapping_mul(37)
    }))
    .unwrap()
}

pub fn salt() -> Salt {
    Salt::from_bytes([0x5A; 16])
}

/// A recovery as an app would build it: default namespace, OTP step and limits, system clock.
pub fn recovery() -> Recovery {
    let ring = KeyRing::single(KeyId::new(KEY_ID).unwrap(), pepper()).unwrap();
    Recovery::builder(ring).build().unwrap()
}

/// A recovery whose window reaches back 48 hours (4 h steps, skew 12) on a manual clock, so
/// an entry sealed 40 hours ago still opens (as ReactPy's would).
pub fn recovery_48h() -> (Recovery, Arc<ManualClock>) {
    let ring = KeyRing::single(KeyId::new(KEY_ID).unwrap(), pepper()).unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let r = Recovery::builder(ring)
        .otp(OtpSettings::new(INTERVAL, 12).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    (r, clock)
}

pub fn state_key(r: &Recovery, i: usize) -> StateKey {
    r.state_key(&Location::new("src/todo.rs", 12, 9).with_instance(format!("row/{i}")))
}

/// Bytes of the MAC input (the PAE of 12 pieces) for one entry, computed from the
/// construction: LE64(12) + 12 × LE64(len) + the fields. Checked against `mac::pae`.
pub fn mac_input_len(
    namespace: &str,
    key_id: &str,
    subject: Option<&str>,
    payload: usize,
) -> usize {
    let fields = 1 // format version
        + b"state-recovery/entry".len()
        + namespace.len()
        + key_id.len()
        + 8 // time step
        + 8 // OTP code, 8 digits
        + 16 // salt
        + 1 + subject.map_or(0, str::len) // subject flag + subject
        + 16 // state key
        + 8 // revision
        + 4 // schema
        + payload;
    8 + 12 * 8 + fields
}

/// A buffer exactly as long as our MAC input, shaped like it (via the crate's own `pae`).
pub fn mac_input(payload: &[u8]) -> Vec<u8> {
    let subject = [&[1u8][..], SUBJECT.as_bytes()].concat();
    let buf = mac::pae(&[
        &[1],
        b"state-recovery/entry",
        b"state-recovery",
        KEY_ID.as_bytes(),
        &118_055u64.to_be_bytes(),
        b"12345678",
        &[0x5A; 16],
        &subject,
        &[3; 16],
        &7u64.to_be_bytes(),
        &1u32.to_be_bytes(),
        payload,
    ]);
    assert_eq!(
        buf.len(),
        mac_input_len("state-recovery", KEY_ID, Some(SUBJECT), payload.len())
    );
    buf
}

/// Where the payload sits in a decoded token: after a 38 + key-id-length byte header,
/// before the 32-byte tag.
pub fn payload_range(raw_len: usize) -> std::ops::Range<usize> {
    (38 + KEY_ID.len())..(raw_len - 32)
}

/// One payload size, sealed every way we compare.
pub struct Fixture {
    pub size: usize,
    pub state: State,
    pub payload: Vec<u8>,
    pub recovery: Recovery,
    pub salt: Salt,
    pub key: StateKey,
    pub token: Token,
    // The ideal pipeline.
    pub mac: HmacSha256,
    pub mac_input: Vec<u8>,
    pub header: Vec<u8>,
    // Peers.
    pub cookie_key: cookie::Key,
    pub jar: cookie::CookieJar,
    pub reactpy: ReactPy,
    pub reactpy_fresh: ReactPyEntry,
    pub reactpy_40h: ReactPyEntry,
    // Ours with a 48-hour window, for the 40-hour-old entry.
    pub recovery_48h: Recovery,
    pub token_40h: Token,
}

impl Fixture {
    pub fn new(size: usize) -> Self {
        let state = state_of_len(size);
        let payload = serde_json::to_vec(&state).unwrap();
        let recovery = recovery();
        let salt = salt();
        let key = state_key(&recovery, 0);
        let token = recovery
            .seal(&Scope::new(&salt).with_subject(SUBJECT), key, 7, 1, &state)
            .unwrap();
        let raw = URL_SAFE_NO_PAD.decode(token.as_str()).unwrap();
        assert_eq!(&raw[payload_range(raw.len())], &payload[..]);
        let header = raw[..payload_range(raw.len()).start].to_vec();

        let cookie_key = cookie::Key::from(&[9u8; 64]);
        let mut jar = cookie::CookieJar::new();
        jar.signed_mut(&cookie_key).add(cookie::Cookie::new(
            "state",
            String::from_utf8(payload.clone()).unwrap(),
        ));

        let reactpy = ReactPy::new();
        let reactpy_fresh = reactpy.seal("a3f1c9e07b2d4e6f8a1b3c5d7e9f0a2b", &payload, NOW);
        let reactpy_40h = reactpy.seal(
            "a3f1c9e07b2d4e6f8a1b3c5d7e9f0a2b",
            &payload,
            NOW - 40 * 3600,
        );

        let (recovery_48h, clock) = recovery_48h();
        clock.set(NOW - 40 * 3600);
        let token_40h = recovery_48h
            .seal(&Scope::new(&salt).with_subject(SUBJECT), key, 7, 1, &state)
            .unwrap();
        clock.set(NOW);

        Self {
            size,
            state,
            mac: HmacSha256::new_from_slice(&[1; 32]).unwrap(),
            mac_input: mac_input(&payload),
            header,
            payload,
            recovery,
            salt,
            key,
            token,
            cookie_key,
            jar,
            reactpy,
            reactpy_fresh,
            reactpy_40h,
            recovery_48h,
            token_40h,
        }
    }

    pub fn scope(&self) -> Scope<'_> {
        Scope::new(&self.salt).with_subject(SUBJECT)
    }

    /// Ours: `Recovery::open_at` into the typed state.
    pub fn ours_open(&self) -> State {
        self.recovery
            .open_at::<State>(&self.scope(), self.key, self.token.as_str())
            .unwrap()
            .value
    }

    /// Ours, an entry sealed 40 hours ago under a 48-hour window.
    pub fn ours_open_40h(&self) -> State {
        self.recovery_48h
            .open_at::<State>(&self.scope(), self.key, self.token_40h.as_str())
            .unwrap()
            .value
    }

    /// Ours: `Recovery::seal` of the typed state.
    pub fn ours_seal(&self) -> Token {
        self.recovery
            .seal(&self.scope(), self.key, 7, 1, &self.state)
            .unwrap()
    }

    /// The ideal open on the same token: base64url decode, one HMAC-SHA256 from a cloned,
    /// pre-keyed state over a buffer exactly as long as our MAC input, then serde_json.
    pub fn ideal_open(&self) -> State {
        let raw = URL_SAFE_NO_PAD.decode(self.token.as_str()).unwrap();
        self.ideal_rest(&raw)
    }

    /// The same with base64-simd's decoder.
    pub fn ideal_open_simd(&self) -> State {
        let raw = base64_simd::URL_SAFE_NO_PAD
            .decode_to_vec(self.token.as_str())
            .unwrap();
        self.ideal_rest(&raw)
    }

    fn ideal_rest(&self, raw: &[u8]) -> State {
        let mut m = self.mac.clone();
        m.update(&self.mac_input);
        std::hint::black_box(m.finalize().into_bytes());
        serde_json::from_slice(&raw[payload_range(raw.len())]).unwrap()
    }

    /// The ideal seal: serialize after the header, the same HMAC, base64url encode.
    pub fn ideal_seal(&self) -> String {
        let mut buf = Vec::with_capacity(self.header.len() + self.size + 32);
        buf.extend_from_slice(&self.header);
        serde_json::to_writer(&mut buf, &self.state).unwrap();
        let mut m = self.mac.clone();
        m.update(&self.mac_input);
        buf.extend_from_slice(&m.finalize().into_bytes());
        URL_SAFE_NO_PAD.encode(&buf)
    }

    /// cookie 0.18 SignedJar: verify (base64 digest decode + HMAC over name and value), then
    /// parse the value.
    pub fn jar_get_parse(&self) -> State {
        let c = self.jar.signed(&self.cookie_key).get("state").unwrap();
        serde_json::from_str(c.value()).unwrap()
    }

    /// cookie 0.18 SignedJar: serialize, then add (HMAC + base64 of the digest) to a jar.
    pub fn jar_add(&self) -> cookie::CookieJar {
        let mut jar = cookie::CookieJar::new();
        let value = serde_json::to_string(&self.state).unwrap();
        jar.signed_mut(&self.cookie_key)
            .add(cookie::Cookie::new("state", value));
        jar
    }

    pub fn reactpy_open_fresh(&self) -> State {
        self.reactpy.open(&self.reactpy_fresh, NOW).unwrap()
    }

    pub fn reactpy_open_40h(&self) -> State {
        self.reactpy.open(&self.reactpy_40h, NOW).unwrap()
    }
}

/// The verification scheme of ReactPy PR #1204 (`reactpy/core/state_recovery.py`), ported
/// faithfully: signature = hex(SHA-256(type_id || data || pepper || otp || salt || key)),
/// where otp is three TOTP codes (at t, t − mixer, t + mixer) concatenated; on a mismatch the
/// next bucket (t + interval) and then older buckets back to 48 hours are tried, computing the
/// codes for each. Data is padded base64url of the JSON. Differences: totp-rs with 8 digits
/// (the PR asks pyotp for 10, which totp-rs cannot format), and the current bucket's codes are
/// computed per check (the PR caches them per connection).
pub struct ReactPy {
    totp: totp_rs::TOTP,
    pepper: Vec<u8>,
    salt: Vec<u8>,
}

pub struct ReactPyEntry {
    pub key: String,
    pub type_id: Vec<u8>,
    pub data: String,
    pub signature: String,
}

pub const REACTPY_MAX_AGE: u64 = 48 * 3600;
pub const REACTPY_MIXER: u64 = 365 * 24 * 3600 * 3;

impl ReactPy {
    pub fn new() -> Self {
        Self {
            totp: totp_rs::TOTP::new_unchecked(
                totp_rs::Algorithm::SHA1,
                8,
                0,
                INTERVAL,
                b"0f3c2a9b8e7d6c5b4a39281706f5e4d3".to_vec(),
            ),
            pepper: b"a-long-application-pepper-string".to_vec(),
            salt: b"Xk2f9QzA".to_vec(),
        }
    }

    fn codes(&self, t: u64) -> String {
        format!(
            "{}{}{}",
            self.totp.generate(t),
            self.totp.generate(t - REACTPY_MIXER),
            self.totp.generate(t + REACTPY_MIXER)
        )
    }

    fn sign(&self, key: &str, type_id: &[u8], data: &[u8], codes: &str) -> String {
        let mut h = Sha256::new();
        h.update(type_id);
        h.update(data);
        h.update(&self.pepper);
        h.update(codes.as_bytes());
        h.update(&self.salt);
        h.update(key.as_bytes());
        h.finalize()
            .iter()
            .fold(String::with_capacity(64), |mut s, b| {
                use std::fmt::Write as _;
                let _ = write!(s, "{b:02x}");
                s
            })
    }

    pub fn seal(&self, key: &str, json: &[u8], t: u64) -> ReactPyEntry {
        let type_id = b"10".to_vec();
        let signature = self.sign(key, &type_id, json, &self.codes(t));
        ReactPyEntry {
            key: key.to_owned(),
            type_id,
            data: URL_SAFE.encode(json),
            signature,
        }
    }

    /// `_deserialize`: decode, current bucket, the next one, then back to `REACTPY_MAX_AGE`.
    pub fn open<T: serde::de::DeserializeOwned>(&self, e: &ReactPyEntry, now: u64) -> Option<T> {
        let data = URL_SAFE.decode(&e.data).ok()?;
        let check = |t: u64| self.sign(&e.key, &e.type_id, &data, &self.codes(t)) == e.signature;
        let ok = check(now) || check(now + INTERVAL) || {
            let mut past = now;
            loop {
                past -= INTERVAL;
                if check(past) {
                    break true;
                }
                if past < now - REACTPY_MAX_AGE {
                    break false;
                }
            }
        };
        if !ok {
            return None;
        }
        serde_json::from_slice(&data).ok()
    }
}

/// A bundle of `n` entries of `size`-byte payloads, and the same tokens for the ideal.
pub struct BundleFixture {
    pub recovery: Recovery,
    pub json: Vec<u8>,
    pub tokens: Vec<Token>,
    pub mac: HmacSha256,
    pub mac_input: Vec<u8>,
}

impl BundleFixture {
    pub fn new(n: usize, size: usize) -> Self {
        let recovery = recovery();
        let salt = salt();
        let state = state_of_len(size);
        let payload = serde_json::to_vec(&state).unwrap();
        let scope = Scope::new(&salt).with_subject(SUBJECT);
        let tokens: Vec<Token> = (0..n)
            .map(|i| {
                recovery
                    .seal(&scope, state_key(&recovery, i), 7, 1, &state)
                    .unwrap()
            })
            .collect();
        let json = reconnect_message(&salt, tokens.iter().map(Token::as_str)).into_bytes();
        Self {
            recovery,
            json,
            tokens,
            mac: HmacSha256::new_from_slice(&[1; 32]).unwrap(),
            mac_input: mac_input(&payload),
        }
    }

    /// Ours: `Recovery::open_bundle`, entries kept as verified raw JSON.
    pub fn ours(&self) -> state_recovery::Restored {
        let r = self
            .recovery
            .open_bundle(Some(SUBJECT), &self.json)
            .unwrap();
        debug_assert_eq!(r.len(), self.tokens.len());
        r
    }

    /// Ours, end to end: `open_bundle`, then `get::<State>` of every accepted entry.
    pub fn ours_typed(&self) -> usize {
        let r = self.ours();
        r.accepted()
            .map(|e| {
                r.get::<State>(&e.key)
                    .unwrap()
                    .map_or(0, |o| o.value.todos.len())
            })
            .sum()
    }

    /// n × the ideal pipeline (decode, HMAC over our MAC input length, parse).
    pub fn ideal(&self) -> usize {
        self.tokens
            .iter()
            .map(|t| {
                let raw = URL_SAFE_NO_PAD.decode(t.as_str()).unwrap();
                let mut m = self.mac.clone();
                m.update(&self.mac_input);
                std::hint::black_box(m.finalize().into_bytes());
                let s: State = serde_json::from_slice(&raw[payload_range(raw.len())]).unwrap();
                s.todos.len()
            })
            .sum()
    }
}

// Interleaved measurement: batches of ours and of the baseline alternate (ABBA), so a
// neighbour that slows one batch slows its partner too.

/// Wall time of one batch.
const BATCH: Duration = Duration::from_millis(2);

fn time_batch(f: &mut dyn FnMut(), iters: u64) -> f64 {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

fn calibrate(f: &mut dyn FnMut()) -> u64 {
    for _ in 0..3 {
        f(); // warm caches and the step-key cache
    }
    let mut iters = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        if t.elapsed() >= BATCH / 4 || iters >= 1 << 24 {
            let per = t.elapsed().as_nanos().max(1) as f64 / iters as f64;
            return ((BATCH.as_nanos() as f64 / per) as u64).max(1);
        }
        iters *= 2;
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A duration in ns, as ns, µs or ms (the interleaved tables).
pub fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

pub struct Row {
    pub ours: f64,
    pub base: f64,
    pub ratio: f64,
}

pub fn paired(rounds: usize, a: &mut dyn FnMut(), b: &mut dyn FnMut()) -> Row {
    let (na, nb) = (calibrate(a), calibrate(b));
    let (mut ta, mut tb, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        let (x, y) = if i % 2 == 0 {
            let x = time_batch(a, na);
            (x, time_batch(b, nb))
        } else {
            let y = time_batch(b, nb);
            (time_batch(a, na), y)
        };
        ta.push(x);
        tb.push(y);
        r.push(x / y);
    }
    Row {
        ours: median(&mut ta),
        base: median(&mut tb),
        ratio: median(&mut r),
    }
}
