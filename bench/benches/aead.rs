//! Encrypted entries (format 2) against signed ones (format 1), measured *interleaved* as in
//! `benches/ratios.rs`: batches of the encrypted path and of the signed baseline alternate
//! (ABBA) for many rounds in the same process, so a neighbour's compile slows both sides of a
//! round. Prints a Markdown table of medians and the median of the per-round ratios.
//!
//! `cargo bench -p state-recovery-bench --bench aead` (add `-- quick` for fewer rounds).
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]
#![allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

use std::hint::black_box;

use chacha20poly1305::aead::{AeadInPlace as _, KeyInit as _};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use state_recovery::{EntryKind, Recovery, Salt, Scope, StateKey, Token};

#[path = "support/mod.rs"]
mod support;

use support::{fmt_ns, paired, Row, State, SUBJECT};

fn row(what: &str, base: &str, r: &Row) {
    println!(
        "| {what} | {} | {base} | {} | {:.3} |",
        fmt_ns(r.ours),
        fmt_ns(r.base),
        r.ratio
    );
}

/// One payload size, sealed both ways under the same recovery, salt, subject and key.
struct Pair {
    size: usize,
    state: State,
    recovery: Recovery,
    salt: Salt,
    key: StateKey,
    signed: Token,
    encrypted: Token,
}

impl Pair {
    fn new(size: usize) -> Self {
        let state = support::state_of_len(size);
        let recovery = support::recovery();
        let salt = support::salt();
        let key = support::state_key(&recovery, 0);
        let scope = Scope::new(&salt).with_subject(SUBJECT);
        let signed = recovery
            .seal_with(EntryKind::Signed, &scope, key, 7, 1, &state)
            .unwrap();
        let encrypted = recovery
            .seal_with(EntryKind::Encrypted, &scope, key, 7, 1, &state)
            .unwrap();
        Self {
            size,
            state,
            recovery,
            salt,
            key,
            signed,
            encrypted,
        }
    }

    fn scope(&self) -> Scope<'_> {
        Scope::new(&self.salt).with_subject(SUBJECT)
    }

    fn open(&self, token: &Token) -> State {
        self.recovery
            .open_at::<State>(&self.scope(), self.key, token.as_str())
            .unwrap()
            .value
    }

    fn seal(&self, kind: EntryKind) -> Token {
        self.recovery
            .seal_with(kind, &self.scope(), self.key, 7, 1, &self.state)
            .unwrap()
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let rounds = if quick { 21 } else { 81 };
    println!("| encrypted (format 2) | median | signed baseline (format 1) | median | ratio (median of rounds) |");
    println!("|---|---:|---|---:|---:|");
    for size in [200, 16 * 1024] {
        let p = Pair::new(size);
        assert_eq!(p.open(&p.encrypted), p.state);
        assert_eq!(p.open(&p.signed), p.state);
        println!(
            "| token {size} B: {} chars | | {} chars | | {:.3} |",
            p.encrypted.as_str().len(),
            p.signed.as_str().len(),
            p.encrypted.as_str().len() as f64 / p.signed.as_str().len() as f64
        );
        let r = paired(
            rounds,
            &mut || {
                black_box(p.open(&p.encrypted));
            },
            &mut || {
                black_box(p.open(&p.signed));
            },
        );
        row(&format!("open {size} B"), &format!("open {size} B"), &r);
        let r = paired(
            rounds,
            &mut || {
                black_box(p.seal(EntryKind::Encrypted));
            },
            &mut || {
                black_box(p.seal(EntryKind::Signed));
            },
        );
        row(&format!("seal {size} B"), &format!("seal {size} B"), &r);
    }

    // Where the time goes: XChaCha20-Poly1305 alone, in place, over the payload with an
    // associated data of our length (~230 B), against the whole encrypted open.
    for size in [200, 16 * 1024] {
        let p = Pair::new(size);
        let aead = XChaCha20Poly1305::new(&[7u8; 32].into());
        let nonce = XNonce::from([9u8; 24]);
        let ad = vec![0u8; 230];
        let mut buf = serde_json::to_vec(&p.state).unwrap();
        let tag = aead
            .encrypt_in_place_detached(&nonce, &ad, &mut buf)
            .unwrap();
        let ciphertext = buf.clone();
        let r = paired(
            rounds,
            &mut || {
                black_box(p.open(&p.encrypted));
            },
            &mut || {
                buf.copy_from_slice(&ciphertext);
                aead.decrypt_in_place_detached(&nonce, &ad, &mut buf, &tag)
                    .unwrap();
                black_box(&buf);
            },
        );
        row(
            &format!("open {} B (encrypted)", p.size),
            "XChaCha20-Poly1305 decrypt alone",
            &r,
        );
        // The cipher is cached per (ring key, step); building it per call instead (a 32-byte
        // key copy) would cost this much more.
        let key = [7u8; 32];
        let mut other = buf.clone();
        let r = paired(
            rounds,
            &mut || {
                other.copy_from_slice(&ciphertext);
                XChaCha20Poly1305::new(&key.into())
                    .decrypt_in_place_detached(&nonce, &ad, &mut other, &tag)
                    .unwrap();
                black_box(&other);
            },
            &mut || {
                buf.copy_from_slice(&ciphertext);
                aead.decrypt_in_place_detached(&nonce, &ad, &mut buf, &tag)
                    .unwrap();
                black_box(&buf);
            },
        );
        row(
            &format!("decrypt {} B, cipher built per call", p.size),
            "decrypt, cached cipher",
            &r,
        );
    }
}
