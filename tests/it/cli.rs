//! The `state-recovery` binary, run as a user would: arguments, environment, stdin.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use state_recovery::{KeyRing, Location, ManualClock, Pepper, Recovery, Salt, Scope};

use crate::common::{NOW, STEP};

const BIN: &str = env!("CARGO_BIN_EXE_state-recovery");
const VARS: [&str; 5] = [
    "STATE_RECOVERY_KEYS",
    "STATE_RECOVERY_OTP_STEP",
    "STATE_RECOVERY_OTP_SKEW",
    "STATE_RECOVERY_NAMESPACE",
    "STATE_RECOVERY_LOCATION_KEY",
];
const LOC: &str = "src/app.rs:12:9";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The stdout lines parsed as JSON.
    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// The reason codes of the stdout lines (`ok` for an opened token).
    fn outcomes(&self) -> Vec<String> {
        self.json_lines()
            .iter()
            .map(|v| match v["ok"].as_bool() {
                Some(true) => "ok".to_owned(),
                _ => v["error"].as_str().unwrap().to_owned(),
            })
            .collect()
    }

    /// A usage or configuration error: exit 2, one line on stderr, nothing on stdout.
    fn assert_fatal(&self, secrets: &[&str]) {
        assert_eq!(
            self.code, 2,
            "stdout: {} stderr: {}",
            self.stdout, self.stderr
        );
        assert!(self.stdout.is_empty(), "{}", self.stdout);
        assert!(!self.stderr.trim().is_empty());
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        for s in secrets {
            assert!(
                !self.stderr.contains(s),
                "secret in stderr: {}",
                self.stderr
            );
        }
    }
}

fn run(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for v in VARS {
        cmd.env_remove(v);
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    // The child may stop reading early (size caps): ignore a broken pipe.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Run {
        code: out.status.code().expect("exited by signal"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn key_b64(byte: u8) -> String {
    Pepper::try_from_bytes(&crate::common::pepper_bytes(byte))
        .unwrap()
        .expose_base64()
        .to_string()
}

fn ring_spec() -> String {
    format!("cli:{}", key_b64(7))
}

fn salt_text(byte: u8) -> String {
    Salt::from_bytes([byte; 16]).encode()
}

/// The environment of a configured deployment.
fn env(ring: &str) -> Vec<(&'static str, String)> {
    vec![
        ("STATE_RECOVERY_KEYS", ring.to_owned()),
        ("STATE_RECOVERY_NAMESPACE", "cli-test".to_owned()),
    ]
}

fn run_env(args: &[&str], env: &[(&'static str, String)], stdin: &[u8]) -> Run {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run(args, &pairs, stdin)
}

/// Seals `value` at [`NOW`] with the default environment; extra args after the defaults.
fn seal(value: &str, extra: &[&str]) -> String {
    let salt = salt_text(1);
    let now = NOW.to_string();
    let mut args = vec!["seal", "--salt", &salt, "--location", LOC, "--now", &now];
    args.extend_from_slice(extra);
    let r = run_env(&args, &env(&ring_spec()), value.as_bytes());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    let token = r.stdout.trim().to_owned();
    assert_eq!(r.stdout, format!("{token}\n"));
    token
}

/// Opens `input` with salt 1 at `now` (the default environment); extra args after.
fn open_at_time(input: &str, now: u64, extra: &[&str]) -> Run {
    let salt = salt_text(1);
    let now = now.to_string();
    let mut args = vec!["open", "--salt", &salt, "--now", &now];
    args.extend_from_slice(extra);
    run_env(&args, &env(&ring_spec()), input.as_bytes())
}

fn open(input: &str, extra: &[&str]) -> Run {
    open_at_time(input, NOW, extra)
}

fn tamper(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[test]
fn keygen_prints_one_ring_entry() {
    let r = run(&["keygen"], &[], b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line = r.stdout.strip_suffix('\n').unwrap();
    assert!(!line.contains('\n'));
    let ring = KeyRing::parse(line).unwrap();
    let id = ring.ids().next().unwrap().as_str().to_owned();
    assert_eq!(id.len(), 9, "{id}");
    assert!(id.starts_with('k'));
    assert!(id[1..]
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));

    let named = run(&["keygen", "--id", "prod-2024_a"], &[], b"");
    assert_eq!(named.code, 0);
    assert!(named.stdout.starts_with("prod-2024_a:"));
    assert_ne!(KeyRing::parse(named.stdout.trim()).unwrap().len(), 0);
    assert_ne!(
        named.stdout,
        run(&["keygen", "--id", "prod-2024_a"], &[], b"").stdout
    );

    for bad in ["", "a b", "a:b", &"x".repeat(33)] {
        run(&["keygen", "--id", bad], &[], b"").assert_fatal(&[]);
    }
}

#[test]
fn salt_prints_a_fresh_salt() {
    let a = run(&["salt"], &[], b"");
    let b = run(&["salt"], &[], b"");
    assert_eq!(a.code, 0);
    assert!(Salt::decode(a.stdout.strip_suffix('\n').unwrap()).is_ok());
    assert_ne!(a.stdout, b.stdout);
}

#[test]
fn seal_then_open_round_trips() {
    let value = r#"{"draft":"héllo \"there\"","step":3,"open":[true,null,1.5]}"#;
    let token = seal(value, &["--rev", "5", "--schema", "2"]);
    let r = open(&format!("{token}\n"), &[]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));

    // The key the library computes for the same namespace and location.
    let ring = KeyRing::parse(&ring_spec()).unwrap();
    let lib = Recovery::builder(ring)
        .namespace("cli-test")
        .clock(ManualClock::new(NOW))
        .build()
        .unwrap();
    let key = lib.state_key(&LOC.parse::<Location>().unwrap());
    let expected = json!({"ok": true, "key": key.to_string(), "rev": 5, "schema": 2,
        "value": serde_json::from_str::<Value>(value).unwrap()});
    assert_eq!(r.json_lines(), vec![expected]);
    assert!(
        r.stdout.starts_with(r#"{"ok":true,"key":""#),
        "{}",
        r.stdout
    );

    // The library opens what the CLI sealed.
    let salt = Salt::from_bytes([1; 16]);
    let opened = lib
        .open_at::<Value>(&Scope::new(&salt), key, &token)
        .unwrap();
    assert_eq!((opened.revision, opened.schema), (5, 2));

    // Defaults: rev 0, schema 1.
    let plain = open(&seal("null", &[]), &[]);
    assert_eq!(plain.json_lines()[0]["rev"], 0);
    assert_eq!(plain.json_lines()[0]["schema"], 1);
}

#[test]
fn tampered_token_is_a_bad_signature() {
    let token = seal("42", &[]);
    let r = open(&tamper(&token), &[]);
    assert_eq!(r.code, 1);
    assert_eq!(r.outcomes(), ["bad-signature"]);
    assert_eq!(r.stdout, "{\"ok\":false,\"error\":\"bad-signature\"}\n");
}

#[test]
fn mixed_lines_are_answered_in_order() {
    let a = seal("1", &[]);
    let b = seal("2", &[]);
    let input = format!("{a}\n\n  \n{}\r\nnot a token\n{b}\r\n\n", tamper(&b));
    let r = open(&input, &[]);
    assert_eq!(r.code, 1);
    assert_eq!(r.outcomes(), ["ok", "bad-signature", "malformed", "ok"]);
    let values: Vec<Value> = r.json_lines().iter().map(|v| v["value"].clone()).collect();
    assert_eq!(values, [json!(1), Value::Null, Value::Null, json!(2)]);

    // All good (no trailing newline either): exit 0.
    let r = open(&format!("{a}\n{b}"), &[]);
    assert_eq!((r.code, r.outcomes()), (0, vec!["ok".into(), "ok".into()]));
}

#[test]
fn no_input_opens_nothing() {
    for input in ["", "\n\n", " \r\n"] {
        let r = open(input, &[]);
        assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
    }
}

#[test]
fn other_salt_subject_or_location_is_refused() {
    let token = seal("\"x\"", &["--subject", "alice"]);
    assert_eq!(open(&token, &["--subject", "alice"]).outcomes(), ["ok"]);
    for extra in [&["--subject", "mallory"][..], &[]] {
        let r = open(&token, extra);
        assert_eq!((r.code, r.outcomes()), (1, vec!["bad-signature".into()]));
    }
    let salt2 = salt_text(2);
    let now = NOW.to_string();
    let args = [
        "open",
        "--salt",
        &salt2,
        "--now",
        &now,
        "--subject",
        "alice",
    ];
    let r = run_env(&args, &env(&ring_spec()), token.as_bytes());
    assert_eq!((r.code, r.outcomes()), (1, vec!["bad-signature".into()]));

    let plain = seal("\"y\"", &[]);
    assert_eq!(open(&plain, &["--location", LOC]).outcomes(), ["ok"]);
    for other in ["src/app.rs:12:10", "src/app.rs:12:9#row/1"] {
        let r = open(&plain, &["--location", other]);
        assert_eq!((r.code, r.outcomes()), (1, vec!["wrong-location".into()]));
    }
}

#[test]
fn the_clock_decides_expiry() {
    let token = seal("true", &[]);
    let at = |t: u64| open_at_time(&token, t, &[]).outcomes();
    assert_eq!(at(NOW + STEP), ["ok"]);
    assert_eq!(at(NOW - STEP), ["ok"]);
    assert_eq!(at(NOW + 2 * STEP), ["expired"]);
    assert_eq!(at(NOW - 2 * STEP), ["not-yet-valid"]);
    // A wider skew from the environment accepts it again.
    let mut e = env(&ring_spec());
    e.push(("STATE_RECOVERY_OTP_SKEW", "2".into()));
    let salt = salt_text(1);
    let later = (NOW + 2 * STEP).to_string();
    let r = run_env(
        &["open", "--salt", &salt, "--now", &later],
        &e,
        token.as_bytes(),
    );
    assert_eq!(r.outcomes(), ["ok"]);
}

#[test]
fn rotation_and_unknown_keys() {
    let token = seal("7", &[]);
    let salt = salt_text(1);
    let now = NOW.to_string();
    let args = ["open", "--salt", salt.as_str(), "--now", now.as_str()];
    let rotated = format!("new:{},{}", key_b64(8), ring_spec());
    let r = run_env(&args, &env(&rotated), token.as_bytes());
    assert_eq!(r.outcomes(), ["ok"]);
    let retired = format!("new:{}", key_b64(8));
    let r = run_env(&args, &env(&retired), token.as_bytes());
    assert_eq!((r.code, r.outcomes()), (1, vec!["unknown-key".into()]));
}

#[test]
fn configuration_errors_exit_2_without_key_material() {
    let key = key_b64(7);
    let salt = salt_text(1);
    let good = ring_spec();
    let rings = [
        None,
        Some(String::new()),
        Some(key.clone()),
        Some(format!("{key}:cli")),
        Some(format!("cli:{key}=")),
        Some(format!("cli:{}", &key[..20])),
        Some(format!("cli:{key},cli:{key}")),
        Some(format!("cli:{key},")),
        Some(format!("b@d:{key}")),
    ];
    for ring in &rings {
        let mut e: Vec<(&str, String)> = vec![("STATE_RECOVERY_NAMESPACE", "x".into())];
        if let Some(r) = ring {
            e.push(("STATE_RECOVERY_KEYS", r.clone()));
        }
        for cmd in ["seal", "open"] {
            let args = [cmd, "--salt", &salt, "--location", LOC];
            let r = run_env(&args, &e, b"1");
            r.assert_fatal(&[&key, &key[..20]]);
            assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
        }
    }

    let bad_env = [
        ("STATE_RECOVERY_OTP_STEP", "0"),
        ("STATE_RECOVERY_OTP_STEP", "soon"),
        ("STATE_RECOVERY_OTP_SKEW", "1000"),
        ("STATE_RECOVERY_NAMESPACE", ""),
        ("STATE_RECOVERY_LOCATION_KEY", "short"),
    ];
    for (var, val) in bad_env {
        let mut e = env(&good);
        e.retain(|(k, _)| *k != var);
        e.push((var, val.into()));
        run_env(&["open", "--salt", &salt], &e, b"").assert_fatal(&[&key]);
    }

    for bad_salt in [
        "",
        "short",
        "AAAAAAAAAAAAAAAAAAAAAB",
        "AAAAAAAAAAAAAAAAAAAAAA==",
        &key,
    ] {
        for cmd in ["seal", "open"] {
            let args = [cmd, "--salt", bad_salt, "--location", LOC];
            let r = run_env(&args, &env(&good), b"1");
            r.assert_fatal(&[&key]);
            assert!(r.stderr.contains("salt"), "{}", r.stderr);
        }
    }

    for bad_loc in ["", "src/app.rs", "src/app.rs:1", "src/app.rs:x:1", ":1:2"] {
        for cmd in ["seal", "open"] {
            let args = [cmd, "--salt", &salt, "--location", bad_loc];
            let r = run_env(&args, &env(&good), b"1");
            r.assert_fatal(&[&key]);
            assert!(r.stderr.contains("location"), "{}", r.stderr);
        }
    }

    // Usage errors are clap's, also exit 2.
    for args in [
        &["seal", "--location", LOC][..],
        &["open"],
        &["frobnicate"],
        &[],
    ] {
        let r = run_env(args, &env(&good), b"1");
        assert_eq!(r.code, 2, "{args:?}");
    }
}

#[test]
fn otp_step_and_window_over_the_caps_exit_2() {
    let salt = salt_text(1);
    let with = |vars: &[(&'static str, &str)]| {
        let mut e = env(&ring_spec());
        for (var, val) in vars {
            e.push((var, (*val).to_owned()));
        }
        run_env(&["open", "--salt", &salt], &e, b"")
    };
    // u64::MAX seconds per step would make an entry sealed at t = 0 open forever.
    for step in ["18446744073709551615", "86401", "604800"] {
        let r = with(&[("STATE_RECOVERY_OTP_STEP", step)]);
        r.assert_fatal(&[&key_b64(7)]);
        assert!(
            r.stderr.contains("otp step") && r.stderr.contains("86400"),
            "{}",
            r.stderr
        );
    }
    // A day per step is the largest step; with skew 3 the window is exactly 7 days.
    for (step, skew) in [("86400", "1"), ("86400", "3"), ("6235", "48")] {
        let r = with(&[
            ("STATE_RECOVERY_OTP_STEP", step),
            ("STATE_RECOVERY_OTP_SKEW", skew),
        ]);
        assert_eq!((r.code, r.stderr.as_str()), (0, ""), "{step} {skew}");
    }
    for (step, skew) in [("86400", "4"), ("6236", "48"), ("86399", "4")] {
        let r = with(&[
            ("STATE_RECOVERY_OTP_STEP", step),
            ("STATE_RECOVERY_OTP_SKEW", skew),
        ]);
        r.assert_fatal(&[&key_b64(7)]);
        assert!(r.stderr.contains("604800"), "{}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    }
}

#[test]
fn weak_and_reused_keys_exit_2_without_key_material() {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let salt = salt_text(1);
    let mut one = [0u8; 32];
    one[31] = 1;
    let (constant, almost_zero) = (b64(&[1; 32]), b64(&one));
    let (k7, k8) = (key_b64(7), key_b64(8));
    let cases = [
        (format!("cli:{constant}"), None, "distinct"),
        (format!("cli:{almost_zero}"), None, "distinct"),
        (format!("a:{k7},b:{k7}"), None, "same key"),
        (format!("a:{k7},b:{k8},c:{k7}"), None, "same key"),
        (format!("a:{k7},b:{k8}"), Some(k8.clone()), "location key"),
    ];
    for (ring, location_key, expected) in &cases {
        let mut e = env(ring);
        if let Some(k) = location_key {
            e.push(("STATE_RECOVERY_LOCATION_KEY", k.clone()));
        }
        for cmd in ["seal", "open"] {
            let r = run_env(&[cmd, "--salt", &salt, "--location", LOC], &e, b"1");
            r.assert_fatal(&[&constant, &almost_zero, &k7, &k8]);
            assert!(r.stderr.contains(expected), "{}", r.stderr);
            assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
        }
    }
}

#[test]
fn a_key_in_the_id_slot_is_never_printed() {
    // A key that fits the id syntax (32 base64url characters) written where the id belongs.
    let secret = key_b64(9)[..32].to_owned();
    let (k7, k8) = (key_b64(7), key_b64(8));
    let salt = salt_text(1);
    let rings = [
        (format!("{secret}:{k7}="), "entry 1"),
        (format!("k:{k7},{secret}:{}", &k8[..20]), "entry 2"),
        (format!("{secret}:{k7},{secret}:{k8}"), "entries 1 and 2"),
        (
            format!("{secret}:{k7},b:{k8},{secret}:{k7}"),
            "entries 1 and 3",
        ),
        (format!("a:{k7},{secret}:{k7}"), "entries 1 and 2"),
    ];
    for (ring, position) in &rings {
        for cmd in ["seal", "open"] {
            let r = run_env(&[cmd, "--salt", &salt, "--location", LOC], &env(ring), b"1");
            r.assert_fatal(&[&secret, &secret[..12], &k7, &k8, &k8[..20]]);
            assert!(r.stderr.contains(position), "{}", r.stderr);
            assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
        }
    }
}

#[test]
fn bad_json_exits_2_without_panicking() {
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let inputs = [
        "".to_owned(),
        "{".to_owned(),
        "{'a':1}".to_owned(),
        "nul".to_owned(),
        "1 2".to_owned(),
        "{} x".to_owned(),
        "[1]]".to_owned(),
        "\"\\ud800\"x".to_owned(),
        deep(65),
        deep(129),
        deep(200),
        deep(100_000),
        "[".repeat(100_000),
        format!("\"{}\"", "a".repeat(70_000)),
        // Fits the input cap, but not a token.
        format!("\"{}\"", "a".repeat(60_000)),
    ];
    let salt = salt_text(1);
    for input in &inputs {
        let args = ["seal", "--salt", &salt, "--location", LOC];
        let r = run_env(&args, &env(&ring_spec()), input.as_bytes());
        r.assert_fatal(&[]);
        assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    }
    // 64 levels is the limit, and fits.
    let token = seal(&deep(64), &[]);
    assert_eq!(open(&token, &[]).outcomes(), ["ok"]);
    // Invalid UTF-8.
    let args = ["seal", "--salt", &salt, "--location", LOC];
    run_env(&args, &env(&ring_spec()), b"\"\xff\"").assert_fatal(&[]);
}

#[test]
fn oversized_lines_are_too_large_and_skipped() {
    let token = seal("1", &[]);
    let long = "A".repeat(70_000);
    let input = format!("{long}\n{token}\n{long}");
    let r = open(&input, &[]);
    assert_eq!(r.code, 1);
    assert_eq!(r.outcomes(), ["too-large", "ok", "too-large"]);
    // Just at the limit: decoded (and refused as not a token), not too-large.
    let r = open(&format!("{}\r\n", "!".repeat(65_536)), &[]);
    assert_eq!(r.outcomes(), ["malformed"]);
    let r = open(&"!".repeat(65_537), &[]);
    assert_eq!(r.outcomes(), ["too-large"]);
    // Not UTF-8.
    let salt = salt_text(1);
    let r = run_env(
        &["open", "--salt", &salt],
        &env(&ring_spec()),
        b"\xff\xfe\n",
    );
    assert_eq!((r.code, r.outcomes()), (1, vec!["malformed".into()]));
}

#[test]
fn inspect_shows_unverified_fields() {
    let token = seal(r#"{"a":[1,2]}"#, &["--rev", "9", "--schema", "3"]);
    let r = run(&["inspect"], &[], format!("  {token} \n").as_bytes());
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    let v = &r.json_lines()[0];
    assert_eq!(v["verified"], false);
    assert_eq!(v["version"], 1);
    assert_eq!(v["key_id"], "cli");
    assert_eq!(v["step"], NOW / STEP);
    assert_eq!(v["rev"], 9);
    assert_eq!(v["schema"], 3);
    assert_eq!(v["payload_len"], 11);
    assert_eq!(v["payload"], json!({"a": [1, 2]}));
    assert_eq!(v["tag"].as_str().unwrap().len(), 64);
    assert_eq!(v["key"], open(&token, &[]).json_lines()[0]["key"]);
    assert!(r
        .stdout
        .starts_with("{\"verified\":false,\"version\":1,\"kind\":\"signed\",\"key_id\":"));

    // A tampered token still inspects: nothing is verified.
    assert_eq!(run(&["inspect"], &[], tamper(&token).as_bytes()).code, 0);

    for (input, reason) in [
        ("garbage!", "malformed"),
        ("", "malformed"),
        ("\n \n", "malformed"),
        ("AAAA", "unsupported-version"),
    ] {
        let r = run(&["inspect"], &[], input.as_bytes());
        assert_eq!(r.code, 1, "{input}");
        assert_eq!(r.json_lines(), vec![json!({"ok": false, "error": reason})]);
    }
    let r = run(&["inspect"], &[], "A".repeat(70_000).as_bytes());
    assert_eq!((r.code, r.outcomes()), (1, vec!["too-large".into()]));
}

#[test]
fn encrypted_entries_seal_open_and_inspect_as_header_only() {
    let secret = r#"{"card":"4111 1111 1111 1111","note":"only the server reads this"}"#;
    let token = seal(secret, &["--encrypted", "--rev", "4", "--schema", "2"]);
    // Two seals of the same value: two nonces, two tokens.
    assert_ne!(
        token,
        seal(secret, &["--encrypted", "--rev", "4", "--schema", "2"])
    );

    // `open` (with keys) decrypts, and prints the same line as for a signed entry.
    let r = open(&token, &[]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    let v = &r.json_lines()[0];
    assert_eq!((v["ok"].clone(), v["rev"].clone()), (json!(true), json!(4)));
    assert_eq!(v["value"], serde_json::from_str::<Value>(secret).unwrap());
    let signed = &open(&seal(secret, &["--rev", "4", "--schema", "2"]), &[]).json_lines()[0];
    assert_eq!(v, signed);
    // Tampered, or under another salt: bad-signature.
    assert_eq!(open(&tamper(&token), &[]).outcomes(), ["bad-signature"]);
    let other = salt_text(2);
    let now = NOW.to_string();
    let r = run_env(
        &["open", "--salt", &other, "--now", &now],
        &env(&ring_spec()),
        token.as_bytes(),
    );
    assert_eq!(r.outcomes(), ["bad-signature"]);

    // `inspect` (no keys) shows the header, never the payload.
    let r = run(&["inspect"], &[], token.as_bytes());
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    let v = &r.json_lines()[0];
    assert_eq!(v["verified"], false);
    assert_eq!(
        (v["version"].clone(), v["kind"].clone()),
        (json!(2), json!("encrypted"))
    );
    assert_eq!(
        (v["key_id"].clone(), v["step"].clone()),
        (json!("cli"), json!(NOW / STEP))
    );
    assert_eq!(
        (v["rev"].clone(), v["schema"].clone()),
        (json!(4), json!(2))
    );
    assert_eq!(v["payload"], Value::Null);
    assert_eq!(v["payload_len"], secret.len());
    assert_eq!(v["nonce"].as_str().unwrap().len(), 48);
    assert_eq!(v["tag"].as_str().unwrap().len(), 32);
    for needle in ["4111", "card", "server reads"] {
        assert!(!r.stdout.contains(needle), "{}", r.stdout);
    }
    assert!(r
        .stdout
        .starts_with("{\"verified\":false,\"version\":2,\"kind\":\"encrypted\",\"key_id\":"));
    // A signed entry has no nonce field.
    let r = run(&["inspect"], &[], seal("1", &[]).as_bytes());
    assert!(r.json_lines()[0].get("nonce").is_none(), "{}", r.stdout);
}

#[test]
fn open_agrees_with_the_golden_vectors() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut seen = 0;
    for dir in ["valid", "invalid"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if !path.extension().is_some_and(|e| e == "json") {
                continue;
            }
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let s = |k: &str| v[k].as_str().map(str::to_owned);
            let ring: Vec<String> = v["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        k["id"].as_str().unwrap(),
                        k["key"].as_str().unwrap()
                    )
                })
                .collect();
            let mut e = vec![
                ("STATE_RECOVERY_KEYS", ring.join(",")),
                ("STATE_RECOVERY_NAMESPACE", s("namespace").unwrap()),
                ("STATE_RECOVERY_OTP_STEP", v["otp_step"].to_string()),
                ("STATE_RECOVERY_OTP_SKEW", v["otp_skew"].to_string()),
            ];
            if let Some(k) = s("location_key") {
                e.push(("STATE_RECOVERY_LOCATION_KEY", k));
            }
            let (salt, now) = (s("salt").unwrap(), v["now"].to_string());
            let mut args = vec![
                "open".to_owned(),
                "--salt".into(),
                salt,
                "--now".into(),
                now,
            ];
            for flag in ["subject", "location"] {
                if let Some(x) = s(flag) {
                    args.extend([format!("--{flag}"), x]);
                }
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let token = s("token").unwrap();
            let r = run_env(&args, &e, format!("{token}\n").as_bytes());
            if token.is_empty() {
                // A blank line is skipped, not rejected.
                assert_eq!((r.code, r.stdout.as_str()), (0, ""));
                continue;
            }
            let ok = v["expected"]["ok"].as_bool().unwrap();
            assert_eq!(r.code, if ok { 0 } else { 1 }, "{}", path.display());
            assert_eq!(
                r.json_lines(),
                [v["expected"].clone()],
                "{}",
                path.display()
            );
            seen += 1;
        }
    }
    assert!(seen >= 30, "{seen}");
}

// --- keys diff ---

/// A directory under the system's temp dir, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "state-recovery-cli-{name}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// Writes `text` to `name` in the directory and returns its path.
    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mkey(byte: u8) -> String {
    format!("{byte:02x}").repeat(16)
}

/// One slot: key of 16 `byte`s, its schema, the versions it reads and writes, its aliases.
fn mslot(byte: u8, schema: u32, reads: &[u32], writes: u32, aliases: &[u8]) -> Value {
    let aliases: Vec<Value> = aliases
        .iter()
        .map(|a| json!({"key": mkey(*a), "location": format!("src/old.rs:{a}:1")}))
        .collect();
    json!({"key": mkey(byte), "location": format!("demo::components@slot{byte}"),
        "schema": schema, "reads": reads, "writes": writes, "aliases": aliases})
}

fn mdoc(namespace: &str, keys: &[Value]) -> String {
    let v = json!({"format": "state-recovery-manifest/1", "namespace": namespace, "keys": keys});
    serde_json::to_string_pretty(&v).unwrap()
}

/// `keys diff OLD NEW` on two manifests written to a fresh directory, with extra flags.
fn keys_diff(old: &str, new: &str, extra: &[&str]) -> Run {
    let dir = TempDir::new("diff");
    let (old, new) = (dir.write("old.json", old), dir.write("new.json", new));
    let mut args = vec!["keys", "diff", old.as_str(), new.as_str()];
    args.extend_from_slice(extra);
    run(&args, &[], b"")
}

/// The finding codes of a text run (the first word of each line but the summary).
fn finding_codes(r: &Run) -> Vec<String> {
    let lines: Vec<&str> = r.stdout.lines().collect();
    let (_, findings) = lines.split_last().unwrap();
    findings
        .iter()
        .map(|l| l.split("  ").next().unwrap().to_owned())
        .collect()
}

fn summary(r: &Run) -> &str {
    r.stdout.lines().last().unwrap()
}

fn base() -> Vec<Value> {
    vec![mslot(1, 1, &[1], 1, &[]), mslot(2, 1, &[1], 1, &[])]
}

#[test]
fn keys_diff_identical_manifests_exit_0() {
    let m = mdoc("demo", &base());
    let r = keys_diff(&m, &m, &[]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(
        r.stdout,
        "2 keys in OLD, 2 in NEW: 0 breaking, 0 informational\n"
    );
    let r = keys_diff(&m, &m, &["--json"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""));
}

#[test]
fn keys_diff_added_key_is_informational() {
    let mut keys = base();
    keys.push(mslot(3, 1, &[1], 1, &[]));
    let r = keys_diff(&mdoc("demo", &base()), &mdoc("demo", &keys), &[]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(finding_codes(&r), ["added"]);
    assert!(
        r.stdout
            .starts_with(&format!("added  demo::components@slot3 ({})  ", mkey(3))),
        "{}",
        r.stdout
    );
    assert_eq!(
        summary(&r),
        "2 keys in OLD, 3 in NEW: 0 breaking, 1 informational"
    );
}

#[test]
fn keys_diff_removed_key_is_dropped() {
    let r = keys_diff(
        &mdoc("demo", &base()),
        &mdoc("demo", &[mslot(2, 1, &[1], 1, &[])]),
        &[],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(finding_codes(&r), ["dropped"]);
    assert_eq!(
        r.stdout.lines().next().unwrap(),
        format!(
            "dropped  demo::components@slot1 ({})  no successor (same key or alias) in NEW",
            mkey(1)
        )
    );
    assert_eq!(
        summary(&r),
        "2 keys in OLD, 1 in NEW: 1 breaking, 0 informational"
    );
}

#[test]
fn keys_diff_renamed_with_an_alias_exit_0() {
    let new = [mslot(2, 1, &[1], 1, &[]), mslot(9, 1, &[1], 1, &[1])];
    let r = keys_diff(&mdoc("demo", &base()), &mdoc("demo", &new), &[]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(finding_codes(&r), ["renamed"]);
    let line = r.stdout.lines().next().unwrap();
    assert!(line.contains(&mkey(1)) && line.contains(&mkey(9)), "{line}");
}

#[test]
fn keys_diff_schema_bump_writing_the_new_version() {
    // A migration from 1, but NEW writes 2, which OLD workers do not read.
    let new = [mslot(1, 2, &[1, 2], 2, &[]), mslot(2, 1, &[1], 1, &[])];
    let (old, new) = (mdoc("demo", &base()), mdoc("demo", &new));
    let r = keys_diff(&old, &new, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(finding_codes(&r), ["not-backward-compatible"]);
    assert!(r.stdout.contains("seal as schema 1 first"), "{}", r.stdout);
    let r = keys_diff(&old, &new, &["--no-overlap"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(finding_codes(&r), ["schema-changed"]);
}

#[test]
fn keys_diff_schema_bump_written_as_the_old_version_exit_0() {
    let expand = [mslot(1, 2, &[1, 2], 1, &[]), mslot(2, 1, &[1], 1, &[])];
    let r = keys_diff(&mdoc("demo", &base()), &mdoc("demo", &expand), &[]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(finding_codes(&r), ["schema-changed"]);
    // And the contract step after it.
    let contract = [mslot(1, 2, &[1, 2], 2, &[]), mslot(2, 1, &[1], 1, &[])];
    let r = keys_diff(&mdoc("demo", &expand), &mdoc("demo", &contract), &[]);
    assert_eq!(
        (r.code, finding_codes(&r)),
        (0, vec!["schema-changed".into()])
    );
}

#[test]
fn keys_diff_schema_bump_without_a_migration_is_unreadable() {
    let new = [mslot(1, 2, &[2], 2, &[]), mslot(2, 1, &[1], 1, &[])];
    for extra in [&[][..], &["--no-overlap"]] {
        let r = keys_diff(&mdoc("demo", &base()), &mdoc("demo", &new), extra);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert_eq!(finding_codes(&r), ["unreadable"]);
    }
}

#[test]
fn keys_diff_namespace_changed_exit_1() {
    let r = keys_diff(&mdoc("demo", &base()), &mdoc("demo-2", &base()), &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(
        finding_codes(&r),
        ["namespace-changed", "namespace-changed"]
    );
    assert_eq!(
        summary(&r),
        "2 keys in OLD, 2 in NEW: 2 breaking, 0 informational"
    );
}

#[test]
fn keys_diff_invalid_manifests_exit_2_naming_the_file() {
    let good = mdoc("demo", &base());
    let dup = mdoc(
        "demo",
        &[mslot(1, 1, &[1], 1, &[]), mslot(2, 1, &[1], 1, &[1])],
    );
    let wrong_format = good.replace("state-recovery-manifest/1", "state-recovery-manifest/9");
    let cases = [
        ("{\"format\": ", "not JSON: "),
        ("\u{1}", "not JSON: "),
        ("[]", "expected a JSON object"),
        (
            dup.as_str(),
            "appears twice: at keys[0].key and at keys[1].aliases[0].key",
        ),
        (
            wrong_format.as_str(),
            "expected \"state-recovery-manifest/1\"",
        ),
        (
            &good.replace("\"reads\"", "\"raeds\""),
            "unknown field `raeds`",
        ),
    ];
    for (bad, message) in cases {
        for (old, new, which) in [(bad, good.as_str(), "OLD"), (good.as_str(), bad, "NEW")] {
            let r = keys_diff(old, new, &[]);
            r.assert_fatal(&[]);
            assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
            let line = r.stderr.trim_end();
            let file = if which == "OLD" {
                "old.json"
            } else {
                "new.json"
            };
            assert!(
                line.starts_with(&format!("state-recovery: {which} (")),
                "{line}"
            );
            assert!(line.contains(file), "{line}");
            assert!(line.contains(message), "{line}");
        }
    }
    // Not UTF-8.
    let dir = TempDir::new("utf8");
    let bin = dir.0.join("bin.json");
    std::fs::write(&bin, b"{\"format\": \"\xff\"}").unwrap();
    let good_path = dir.write("good.json", &good);
    let r = run(
        &["keys", "diff", &good_path, bin.to_str().unwrap()],
        &[],
        b"",
    );
    r.assert_fatal(&[]);
    assert!(
        r.stderr.contains("NEW (") && r.stderr.contains("not UTF-8"),
        "{}",
        r.stderr
    );
}

#[test]
fn keys_diff_missing_file_and_usage_errors_exit_2() {
    let dir = TempDir::new("missing");
    let good = dir.write("good.json", &mdoc("demo", &base()));
    let missing = dir.0.join("missing.json");
    let missing = missing.to_str().unwrap();
    let r = run(&["keys", "diff", missing, &good], &[], b"");
    r.assert_fatal(&[]);
    assert!(
        r.stderr.starts_with("state-recovery: OLD (") && r.stderr.contains("missing.json"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("cannot read"), "{}", r.stderr);
    let r = run(&["keys", "diff", &good, missing], &[], b"");
    r.assert_fatal(&[]);
    assert!(
        r.stderr.starts_with("state-recovery: NEW ("),
        "{}",
        r.stderr
    );
    // Over the size cap: refused without being parsed.
    let big = dir.write("big.json", &" ".repeat(16 * 1024 * 1024 + 1));
    let r = run(&["keys", "diff", &good, &big], &[], b"");
    r.assert_fatal(&[]);
    assert!(
        r.stderr.contains("NEW (") && r.stderr.contains("manifest is larger than 16777216 bytes"),
        "{}",
        r.stderr
    );
    // A directory is not a file.
    let r = run(&["keys", "diff", &good, dir.0.to_str().unwrap()], &[], b"");
    r.assert_fatal(&[]);
    // Stdin for both, a missing argument, an unknown flag.
    run(&["keys", "diff", "-", "-"], &[], b"{}").assert_fatal(&[]);
    for args in [
        &["keys", "diff", good.as_str()][..],
        &["keys", "diff", &good, &good, "--frobnicate"],
        &["keys"],
    ] {
        let r = run(args, &[], b"");
        assert_eq!(r.code, 2, "{args:?}");
        assert!(r.stdout.is_empty());
    }
}

#[test]
fn keys_diff_reads_one_manifest_from_stdin() {
    let dir = TempDir::new("stdin");
    let old = dir.write("old.json", &mdoc("demo", &base()));
    let new = mdoc("demo", &[mslot(2, 1, &[1], 1, &[])]);
    let r = run(&["keys", "diff", &old, "-"], &[], new.as_bytes());
    assert_eq!((r.code, finding_codes(&r)), (1, vec!["dropped".into()]));
    let r = run(&["keys", "diff", "-", &old], &[], new.as_bytes());
    assert_eq!((r.code, finding_codes(&r)), (0, vec!["added".into()]));
    let r = run(&["keys", "diff", &old, "-"], &[], b"nope");
    r.assert_fatal(&[]);
    assert!(r.stderr.contains("NEW (stdin): not JSON"), "{}", r.stderr);
}

#[test]
fn keys_diff_json_lines_parse() {
    // One of each: dropped, not-backward-compatible, renamed, added.
    let old = [
        mslot(1, 1, &[1], 1, &[]),
        mslot(2, 1, &[1], 1, &[]),
        mslot(3, 1, &[1], 1, &[]),
    ];
    let new = [
        mslot(2, 2, &[1, 2], 2, &[]),
        mslot(5, 1, &[1], 1, &[3]),
        mslot(6, 1, &[1], 1, &[]),
    ];
    let r = keys_diff(&mdoc("demo", &old), &mdoc("demo", &new), &["--json"]);
    assert_eq!((r.code, r.stderr.as_str()), (1, ""));
    let lines = r.json_lines();
    let got: Vec<(&str, bool, &str)> = lines
        .iter()
        .map(|v| {
            let obj = v.as_object().unwrap();
            assert_eq!(obj.len(), 5, "{v}");
            assert!(v["location"].is_string() && v["detail"].is_string(), "{v}");
            (
                v["kind"].as_str().unwrap(),
                v["breaking"].as_bool().unwrap(),
                v["key"].as_str().unwrap(),
            )
        })
        .collect();
    let (k1, k2, k3, k6) = (mkey(1), mkey(2), mkey(3), mkey(6));
    assert_eq!(
        got,
        [
            ("dropped", true, k1.as_str()),
            ("not-backward-compatible", true, k2.as_str()),
            ("renamed", false, k3.as_str()),
            ("added", false, k6.as_str()),
        ]
    );
    assert_eq!(lines[0]["location"], "demo::components@slot1");
    // The text form of the same diff: the same findings, then the summary.
    let r = keys_diff(&mdoc("demo", &old), &mdoc("demo", &new), &[]);
    assert_eq!(
        finding_codes(&r),
        ["dropped", "not-backward-compatible", "renamed", "added"]
    );
    assert_eq!(
        summary(&r),
        "3 keys in OLD, 3 in NEW: 2 breaking, 2 informational"
    );
}

#[test]
fn named_locations_seal_and_open_by_name() {
    let salt = salt_text(1);
    let now = NOW.to_string();
    let named = "shop::cart@items";
    let sealed = run_env(
        &["seal", "--salt", &salt, "--location", named, "--now", &now],
        &env(&ring_spec()),
        b"[1,2]",
    );
    assert_eq!(sealed.code, 0, "{}", sealed.stderr);
    let token = sealed.stdout.trim().to_owned();
    let open_for = |loc: &str| {
        run_env(
            &["open", "--salt", &salt, "--location", loc, "--now", &now],
            &env(&ring_spec()),
            format!("{token}\n").as_bytes(),
        )
    };
    assert_eq!(open_for(named).outcomes(), ["ok"]);
    // The same name in another module, or the source form of the same text: another key.
    assert_eq!(open_for("shop::other@items").outcomes(), ["wrong-location"]);
    assert_eq!(open_for("shop::cart:1:1").outcomes(), ["wrong-location"]);
    // Names outside the allowed characters are usage errors.
    for bad in ["shop@bad name", "shop@", "@items", "shop@a:b"] {
        run_env(
            &["seal", "--salt", &salt, "--location", bad, "--now", &now],
            &env(&ring_spec()),
            b"1",
        )
        .assert_fatal(&[]);
    }
}
