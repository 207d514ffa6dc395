//! Known answers: RFC 6238 (TOTP), PASETO's PAE examples, RFC 4231 (HMAC-SHA256),
//! draft-arciszewski-xchacha-03 (XChaCha20-Poly1305), and one full sealed token of each
//! format (signed, encrypted) recomputed independently from the documented construction.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use state_recovery::fuzzing::seal_encrypted_with_fixed_nonce;
use state_recovery::mac::{hmac_sha256, pae};
use state_recovery::otp::rfc6238_code;
use state_recovery::{
    EntryKind, KeyId, KeyRing, Location, ManualClock, OtpSettings, Pepper, Reason, Recovery, Salt,
    Scope,
};
use totp_rs::{Algorithm, TOTP};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// RFC 6238 Appendix B. The seeds are the ASCII strings of the RFC's reference code (20, 32
// and 64 bytes), 8 digits, T0 = 0, X = 30 s.
const SEED_SHA1: &[u8] = b"12345678901234567890";
const SEED_SHA256: &[u8] = b"12345678901234567890123456789012";
const SEED_SHA512: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

#[test]
fn rfc6238_appendix_b_all_18_rows() {
    #[rustfmt::skip]
    let rows: [(u64, &str, &str); 18] = [
        (59, "94287082", "SHA1"),
        (59, "46119246", "SHA256"),
        (59, "90693936", "SHA512"),
        (1_111_111_109, "07081804", "SHA1"),
        (1_111_111_109, "68084774", "SHA256"),
        (1_111_111_109, "25091201", "SHA512"),
        (1_111_111_111, "14050471", "SHA1"),
        (1_111_111_111, "67062674", "SHA256"),
        (1_111_111_111, "99943326", "SHA512"),
        (1_234_567_890, "89005924", "SHA1"),
        (1_234_567_890, "91819424", "SHA256"),
        (1_234_567_890, "93441116", "SHA512"),
        (2_000_000_000, "69279037", "SHA1"),
        (2_000_000_000, "90698825", "SHA256"),
        (2_000_000_000, "38618901", "SHA512"),
        (20_000_000_000, "65353130", "SHA1"),
        (20_000_000_000, "77737706", "SHA256"),
        (20_000_000_000, "47863826", "SHA512"),
    ];
    for (time, code, mode) in rows {
        let (algorithm, seed) = match mode {
            "SHA1" => (Algorithm::SHA1, SEED_SHA1),
            "SHA256" => (Algorithm::SHA256, SEED_SHA256),
            _ => (Algorithm::SHA512, SEED_SHA512),
        };
        assert_eq!(
            rfc6238_code(algorithm, seed, 30, time),
            code,
            "T={time} {mode}"
        );
    }
}

#[test]
fn pae_paseto_spec_examples() {
    // PASETO, docs/01-Protocol-Versions/Common.md, "PAE Definition".
    assert_eq!(pae(&[]), b"\x00\x00\x00\x00\x00\x00\x00\x00");
    assert_eq!(
        pae(&[b""]),
        b"\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    );
    assert_eq!(
        pae(&[b"test"]),
        b"\x01\x00\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00test"
    );
}

#[test]
fn pae_derived_examples() {
    // Worked by hand from the definition (not from the spec): two pieces, and one piece that
    // contains the bytes of that two-piece encoding's tail, which must not collide with it.
    let two = pae(&[b"Paragon", b"Initiative"]);
    assert_eq!(
        hex(&two),
        "0200000000000000\
         0700000000000000\
         50617261676f6e\
         0a00000000000000\
         496e6974696174697665"
    );
    let one = pae(&[b"Paragon\x0a\x00\x00\x00\x00\x00\x00\x00Initiative"]);
    assert_eq!(
        hex(&one),
        "0100000000000000\
         1900000000000000\
         50617261676f6e0a00000000000000496e6974696174697665"
    );
    assert_ne!(one, two);
}

#[test]
fn hmac_sha256_rfc4231() {
    // RFC 4231 section 4; case 5 (output truncated to 128 bits) does not apply: tags here are
    // never truncated.
    let long_key = [0xaa; 131];
    let key4: Vec<u8> = (0x01..=0x19).collect();
    let cases: [(u8, &[u8], &[u8], &str); 6] = [
        (
            1,
            &[0x0b; 20],
            b"Hi There",
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        ),
        (
            2,
            b"Jefe",
            b"what do ya want for nothing?",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            3,
            &[0xaa; 20],
            &[0xdd; 50],
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
        ),
        (
            4,
            &key4,
            &[0xcd; 50],
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        ),
        (
            6,
            &long_key,
            b"Test Using Larger Than Block-Size Key - Hash Key First",
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        ),
        (
            7,
            &long_key,
            b"This is a test using a larger than block-size key and a larger than block-size \
              data. The key needs to be hashed before being used by the HMAC algorithm.",
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        ),
    ];
    for (case, key, data, want) in cases {
        assert_eq!(hex(&hmac_sha256(key, data)), want, "RFC 4231 case {case}");
    }
}

// The fixed inputs of the full-token known answer.
const PEPPER: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"; // bytes 0x00..=0x1f
const KEY_ID: &str = "kat1";
const NAMESPACE: &str = "kat-app";
const NOW: u64 = 1_700_000_000;
const STEP_SECS: u64 = 14_400;
const SALT: [u8; 16] = [
    0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff,
];
const SUBJECT: &str = "user-42";
const REVISION: u64 = 7;
const SCHEMA: u32 = 2;
const PAYLOAD: &str = r#"{"count":41}"#;
/// The token the crate seals for the inputs above. Changing it changes the wire format or the
/// MAC construction: bump the format version and write it down.
const TOKEN: &str = "AQRrYXQxAAAAAAABzScM4g_kMw48U5VWET68LthgAAAAAAAAAAcAAAACeyJjb3VudCI6NDF9yHI_56FMsGe1vs1ThswTkBWwFdLz-aiALmUcVIjziOI";

fn h(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().into()
}

/// PAE written out again here, so the test does not lean on the crate's own.
fn pae_here(pieces: &[&[u8]]) -> Vec<u8> {
    let mut out = (pieces.len() as u64).to_le_bytes().to_vec();
    for p in pieces {
        out.extend_from_slice(&(p.len() as u64).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

#[test]
fn sealed_token_matches_the_documented_construction() {
    let pepper = URL_SAFE_NO_PAD.decode(PEPPER).unwrap();
    assert_eq!(pepper, (0u8..32).collect::<Vec<_>>());
    let ring = KeyRing::single(
        KeyId::new(KEY_ID).unwrap(),
        Pepper::from_base64(PEPPER).unwrap(),
    )
    .unwrap();
    let recovery = Recovery::builder(ring)
        .namespace(NAMESPACE)
        .otp(OtpSettings::new(STEP_SECS, 1).unwrap())
        .clock(ManualClock::new(NOW))
        .build()
        .unwrap();
    let location = Location::new("src/counter.rs", 12, 9);
    let key = recovery.state_key(&location);
    let salt = Salt::from_bytes(SALT);
    let scope = Scope::new(&salt).with_subject(SUBJECT);
    let value: serde_json::Value = serde_json::from_str(PAYLOAD).unwrap();
    let token = recovery
        .seal(&scope, key, REVISION, SCHEMA, &value)
        .unwrap();
    assert_eq!(token.as_str(), TOKEN);

    // State key (src/key.rs): HMAC-SHA256 keyed with the location key, here the default one,
    // HMAC(label, namespace), over PAE[label, namespace] followed by
    // PAE[file, BE32(line), BE32(column), 0x00 (no instance)], first 16 bytes.
    let location_key = h(
        b"state-recovery/v1/default-location-key",
        NAMESPACE.as_bytes(),
    );
    let mut loc_input = pae_here(&[b"state-recovery/v1/location", NAMESPACE.as_bytes()]);
    loc_input.extend(pae_here(&[
        b"src/counter.rs",
        &12u32.to_be_bytes(),
        &9u32.to_be_bytes(),
        &[0],
    ]));
    assert_eq!(&h(&location_key, &loc_input)[..16], key.as_bytes());

    // Layout (src/token.rs).
    let bytes = URL_SAFE_NO_PAD.decode(TOKEN).unwrap();
    let step = NOW / STEP_SECS;
    assert_eq!(step, 118_055);
    let mut header = vec![1u8, 4];
    header.extend_from_slice(KEY_ID.as_bytes());
    header.extend_from_slice(&step.to_be_bytes());
    header.extend_from_slice(key.as_bytes());
    header.extend_from_slice(&REVISION.to_be_bytes());
    header.extend_from_slice(&SCHEMA.to_be_bytes());
    let (head, rest) = bytes.split_at(header.len());
    assert_eq!(head, header);
    let (payload, tag) = rest.split_at(rest.len() - 32);
    assert_eq!(payload, PAYLOAD.as_bytes());

    // Keys (src/otp.rs): two labelled derivations from the pepper; the code is RFC 6238
    // (HMAC-SHA1, 8 digits) of the TOTP secret at the time step, computed with totp-rs's own
    // time-based API; the step key is keyed by mac_root over the PAE of the step's fields.
    let mac_root = h(&pepper, b"state-recovery/v1/mac-root");
    let totp_secret = h(&pepper, b"state-recovery/v1/totp-secret");
    let totp = TOTP::new_unchecked(Algorithm::SHA1, 8, 1, STEP_SECS, totp_secret.to_vec());
    let code = totp.generate(NOW);
    assert_eq!(code.len(), 8);
    assert_eq!(
        code,
        rfc6238_code(Algorithm::SHA1, &totp_secret, STEP_SECS, NOW)
    );
    let step_key = h(
        &mac_root,
        &pae_here(&[
            b"state-recovery/v1/step-key",
            NAMESPACE.as_bytes(),
            KEY_ID.as_bytes(),
            &step.to_be_bytes(),
            code.as_bytes(),
        ]),
    );

    // Tag (src/mac.rs): HMAC(step_key, PAE[version, purpose, namespace, key id, BE64(step),
    // code, salt, 0x01 || subject, state key, BE64(revision), BE32(schema), payload]).
    let mut subject = vec![1u8];
    subject.extend_from_slice(SUBJECT.as_bytes());
    let mac_input = pae_here(&[
        &[1],
        b"state-recovery/entry",
        NAMESPACE.as_bytes(),
        KEY_ID.as_bytes(),
        &step.to_be_bytes(),
        code.as_bytes(),
        &SALT,
        &subject,
        key.as_bytes(),
        &REVISION.to_be_bytes(),
        &SCHEMA.to_be_bytes(),
        PAYLOAD.as_bytes(),
    ]);
    assert_eq!(tag, h(&step_key, &mac_input));

    // And it opens, to the same value, only for this scope.
    let opened = recovery
        .open_at::<serde_json::Value>(&scope, key, TOKEN)
        .unwrap();
    assert_eq!(
        (opened.value, opened.revision, opened.schema),
        (value, REVISION, SCHEMA)
    );
    assert!(recovery
        .open::<serde_json::Value>(&Scope::new(&salt), TOKEN)
        .is_err());
}

/// The named state key (key derivation v2, src/key.rs) recomputed from its documented
/// construction: HMAC-SHA256 keyed with the location key over PAE[label, namespace] followed
/// by PAE[module, name, presence ‖ instance], first 16 bytes. The file, line and column of
/// the declaration take no part.
#[test]
fn named_state_key_follows_the_documented_construction() {
    let ring = KeyRing::single(
        KeyId::new(KEY_ID).unwrap(),
        Pepper::from_base64(PEPPER).unwrap(),
    )
    .unwrap();
    let recovery = Recovery::builder(ring)
        .namespace(NAMESPACE)
        .build()
        .unwrap();
    let location_key = h(
        b"state-recovery/v1/default-location-key",
        NAMESPACE.as_bytes(),
    );
    let expect = |module: &str, name: &str, instance: Option<&str>| {
        let mut input = pae_here(&[b"state-recovery/v2/named-key", NAMESPACE.as_bytes()]);
        let presence: Vec<u8> = match instance {
            None => vec![0],
            Some(i) => [&[1u8][..], i.as_bytes()].concat(),
        };
        input.extend(pae_here(&[module.as_bytes(), name.as_bytes(), &presence]));
        h(&location_key, &input)[..16].to_vec()
    };
    let plain = Location::named("shop::cart", "items").declared_at("src/cart.rs:3:1");
    assert_eq!(
        recovery.state_key(&plain).as_bytes().to_vec(),
        expect("shop::cart", "items", None)
    );
    let row = Location::named("shop::cart", "items").with_instance("row/3");
    assert_eq!(
        recovery.state_key(&row).as_bytes().to_vec(),
        expect("shop::cart", "items", Some("row/3"))
    );
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// The AEAD the encrypted format uses, on the published answer: draft-arciszewski-xchacha-03,
/// appendix A.3.1 (XChaCha20-Poly1305 AEAD). A wrong cipher, nonce size or tag placement in
/// the dependency fails here before any token does.
#[test]
fn xchacha20_poly1305_draft_arciszewski_a_3_1() {
    let plaintext = b"Ladies and Gentlemen of the class of '99: If I could offer you only one \
                      tip for the future, sunscreen would be it.";
    let aad = unhex("50515253c0c1c2c3c4c5c6c7");
    let key = unhex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
    let nonce = unhex("404142434445464748494a4b4c4d4e4f5051525354555657");
    let ciphertext = "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb\
                      731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452\
                      2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9\
                      21f9664c97637da9768812f615c68b13b52e";
    let tag = "c0875924c1c7987947deafd8780acf49";
    let aead = XChaCha20Poly1305::new_from_slice(&key).unwrap();
    let sealed = aead
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .unwrap();
    assert_eq!(hex(&sealed), format!("{ciphertext}{tag}"));
}

/// The nonce of the encrypted known answer: bytes 0xA0..=0xB7. (Applications never choose
/// one: every public seal draws it from the OS CSPRNG.)
const NONCE: [u8; 24] = [
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
    0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7,
];
/// The encrypted token the crate seals for the inputs of [`TOKEN`] and [`NONCE`]. Changing it
/// changes format 2 or its key derivation: bump the format version and write it down.
const TOKEN_V2: &str = "AgRrYXQxAAAAAAABzScM4g_kMw48U5VWET68LthgAAAAAAAAAAcAAAACoKGio6SlpqeoqaqrrK2ur7CxsrO0tba3ugQX_X1jQDoIYp_MMqa1uaOcxFmkIn8hNKVtyg";

#[test]
fn encrypted_token_matches_the_documented_construction() {
    let pepper = URL_SAFE_NO_PAD.decode(PEPPER).unwrap();
    let ring = KeyRing::single(
        KeyId::new(KEY_ID).unwrap(),
        Pepper::from_base64(PEPPER).unwrap(),
    )
    .unwrap();
    let recovery = Recovery::builder(ring)
        .namespace(NAMESPACE)
        .otp(OtpSettings::new(STEP_SECS, 1).unwrap())
        .clock(ManualClock::new(NOW))
        .build()
        .unwrap();
    let key = recovery.state_key(&Location::new("src/counter.rs", 12, 9));
    let salt = Salt::from_bytes(SALT);
    let scope = Scope::new(&salt).with_subject(SUBJECT);
    let value: serde_json::Value = serde_json::from_str(PAYLOAD).unwrap();
    let token =
        seal_encrypted_with_fixed_nonce(&recovery, NONCE, &scope, key, REVISION, SCHEMA, &value)
            .unwrap();

    // Recomputed from SECURITY.md 2.12 alone: keys, associated data, AEAD, layout.
    let step = NOW / STEP_SECS;
    let totp_secret = h(&pepper, b"state-recovery/v1/totp-secret");
    let code =
        TOTP::new_unchecked(Algorithm::SHA1, 8, 1, STEP_SECS, totp_secret.to_vec()).generate(NOW);
    let entry_root = h(&pepper, b"state-recovery/v2/entry-root");
    let entry_key = h(
        &entry_root,
        &pae_here(&[
            b"state-recovery/v2/entry-key",
            NAMESPACE.as_bytes(),
            KEY_ID.as_bytes(),
            &step.to_be_bytes(),
            code.as_bytes(),
        ]),
    );
    let mut subject = vec![1u8];
    subject.extend_from_slice(SUBJECT.as_bytes());
    let ad = pae_here(&[
        &[2],
        b"state-recovery/v2/encrypted-entry",
        NAMESPACE.as_bytes(),
        KEY_ID.as_bytes(),
        &step.to_be_bytes(),
        code.as_bytes(),
        &SALT,
        &subject,
        key.as_bytes(),
        &REVISION.to_be_bytes(),
        &SCHEMA.to_be_bytes(),
    ]);
    let sealed = XChaCha20Poly1305::new_from_slice(&entry_key)
        .unwrap()
        .encrypt(
            XNonce::from_slice(&NONCE),
            Payload {
                msg: PAYLOAD.as_bytes(),
                aad: &ad,
            },
        )
        .unwrap();
    let mut raw = vec![2u8, KEY_ID.len() as u8];
    raw.extend_from_slice(KEY_ID.as_bytes());
    raw.extend_from_slice(&step.to_be_bytes());
    raw.extend_from_slice(key.as_bytes());
    raw.extend_from_slice(&REVISION.to_be_bytes());
    raw.extend_from_slice(&SCHEMA.to_be_bytes());
    raw.extend_from_slice(&NONCE);
    raw.extend_from_slice(&sealed); // ciphertext ‖ 16-byte tag
    assert_eq!(sealed.len(), PAYLOAD.len() + 16);
    assert_eq!(URL_SAFE_NO_PAD.encode(&raw), token.as_str());
    assert_eq!(token.as_str(), TOKEN_V2);

    // The payload is not in the token, in any encoding the token could carry.
    let bytes = URL_SAFE_NO_PAD.decode(TOKEN_V2).unwrap();
    assert!(!bytes
        .windows(PAYLOAD.len())
        .any(|w| w == PAYLOAD.as_bytes()));

    // The entry key is not the signed format's step key: that key does not decrypt it.
    let mac_root = h(&pepper, b"state-recovery/v1/mac-root");
    let step_key = h(
        &mac_root,
        &pae_here(&[
            b"state-recovery/v1/step-key",
            NAMESPACE.as_bytes(),
            KEY_ID.as_bytes(),
            &step.to_be_bytes(),
            code.as_bytes(),
        ]),
    );
    assert_ne!(step_key, entry_key);
    let with_step_key = XChaCha20Poly1305::new_from_slice(&step_key)
        .unwrap()
        .decrypt(
            XNonce::from_slice(&NONCE),
            Payload {
                msg: &sealed,
                aad: &ad,
            },
        );
    assert!(with_step_key.is_err());

    // It opens, to the same value, as an encrypted entry, only for this scope.
    let opened = recovery
        .open_at::<serde_json::Value>(&scope, key, TOKEN_V2)
        .unwrap();
    assert_eq!(
        (opened.value, opened.revision, opened.schema, opened.kind),
        (value, REVISION, SCHEMA, EntryKind::Encrypted)
    );
    let other = recovery.open::<serde_json::Value>(&Scope::new(&salt), TOKEN_V2);
    assert_eq!(other.unwrap_err().reason(), Reason::BadSignature);
}
