//! Encrypted entries (format version 2): XChaCha20-Poly1305 under a key derived per
//! (pepper, step), a random 24-byte nonce, and the PAE of the entry's header fields and
//! bindings as associated data.
//!
//! ```text
//! entry_key = HMAC(entry_root, PAE("state-recovery/v2/entry-key", namespace, key_id, BE64(n), code))
//! AD        = PAE([0x02], "state-recovery/v2/encrypted-entry", namespace, key_id, BE64(n), code,
//!                 salt, presence ‖ subject, state_key, BE64(revision), BE32(schema))
//! ciphertext ‖ tag = XChaCha20-Poly1305(entry_key, nonce, AD, payload)
//! ```
//!
//! The AD is the signed entry's MAC input without its payload, under its own version byte
//! and purpose label, so an encrypted entry is bound to exactly what a signed one is bound to.
//! The nonce is not in the AD: the AEAD binds it already (it selects the keystream and the
//! Poly1305 key). `entry_root` is derived from the pepper with its own label (`src/otp.rs`).

use chacha20poly1305::aead::generic_array::GenericArray;
use chacha20poly1305::aead::{AeadInPlace as _, KeyInit as _};
use chacha20poly1305::XChaCha20Poly1305;
use zeroize::{Zeroize as _, Zeroizing};

use crate::mac::{self, Binding, PaeSink as _, StepFields, AD_PIECES};

/// Length of an encrypted entry's nonce.
pub(crate) const NONCE_LEN: usize = 24;

/// Length of the Poly1305 tag.
pub(crate) const AEAD_TAG_LEN: usize = 16;

/// Domain-separation label of encrypted entries' associated data.
pub(crate) const ENCRYPTED_PURPOSE: &[u8] = b"state-recovery/v2/encrypted-entry";

/// The encryption key of one (ring key, step), and the part of the associated data shared by
/// every entry of that (key id, step). Both are wiped on drop: the key by chacha20poly1305
/// (its cipher type zeroizes its key on drop), the prefix, which holds the OTP code, by
/// [`Zeroizing`].
pub(crate) struct EntryCipher {
    aead: XChaCha20Poly1305,
    /// `LE64(11)` and the PAE pieces version, purpose, namespace, key id, step, code.
    ad_prefix: Zeroizing<Vec<u8>>,
}

impl EntryCipher {
    /// The cipher for `key` (the derived entry key) and the associated-data prefix of
    /// (`namespace`, `key_id`, `step`, `code`).
    pub(crate) fn new(
        key: &[u8; 32],
        version: u8,
        namespace: &[u8],
        key_id: &[u8],
        step: u64,
        code: &[u8],
    ) -> Self {
        let mut ad_prefix = Zeroizing::new(Vec::with_capacity(
            128_usize
                .saturating_add(namespace.len())
                .saturating_add(key_id.len()),
        ));
        let fields = StepFields {
            namespace,
            key_id,
            step,
            code,
        };
        mac::feed_prefix(
            &mut *ad_prefix,
            AD_PIECES,
            version,
            ENCRYPTED_PURPOSE,
            &fields,
        );
        Self {
            aead: XChaCha20Poly1305::new(GenericArray::from_slice(key)),
            ad_prefix,
        }
    }

    /// The associated data of one entry: the cached prefix, then its binding. Wiped on drop
    /// (it holds the OTP code).
    fn associated_data(&self, binding: &Binding<'_>) -> Zeroizing<Vec<u8>> {
        let subject = binding.subject.map_or(0, <[u8]>::len);
        let mut ad = Zeroizing::new(Vec::with_capacity(
            self.ad_prefix
                .len()
                .saturating_add(subject)
                .saturating_add(128),
        ));
        ad.absorb(&self.ad_prefix);
        binding.feed(&mut *ad);
        ad
    }

    /// Encrypts `buf` (the payload) in place and returns the tag.
    ///
    /// # Errors
    /// Only for a payload over chacha20poly1305's limit (2³⁸ bytes), which the token cap
    /// keeps far out of reach.
    pub(crate) fn encrypt(
        &self,
        binding: &Binding<'_>,
        nonce: &[u8; NONCE_LEN],
        buf: &mut [u8],
    ) -> Result<[u8; AEAD_TAG_LEN], ()> {
        let ad = self.associated_data(binding);
        self.aead
            .encrypt_in_place_detached(GenericArray::from_slice(nonce), &ad, buf)
            .map(Into::into)
            .map_err(|_| ())
    }

    /// Verifies the tag and, only if it verifies, decrypts `buf` in place. On failure `buf`
    /// still holds the ciphertext (chacha20poly1305 checks the tag, in constant time, before
    /// it applies the keystream).
    pub(crate) fn decrypt(
        &self,
        binding: &Binding<'_>,
        nonce: &[u8; NONCE_LEN],
        buf: &mut [u8],
        tag: &[u8; AEAD_TAG_LEN],
    ) -> bool {
        let ad = self.associated_data(binding);
        self.aead
            .decrypt_in_place_detached(
                GenericArray::from_slice(nonce),
                &ad,
                buf,
                GenericArray::from_slice(tag),
            )
            .is_ok()
    }
}

// Both fields wipe themselves on drop.
impl zeroize::ZeroizeOnDrop for EntryCipher {}

/// A buffer for plaintext (the payload of an encrypted entry, before encryption or after
/// decryption): every byte it ever held is wiped, on drop and whenever it grows (the old
/// allocation is wiped before it is freed; a plain `Vec` would free it as it is). It writes
/// through `io::Write`, so serde_json serializes straight into it.
#[derive(Default)]
pub(crate) struct PlainBuf(Vec<u8>);

impl PlainBuf {
    /// An empty buffer with room for `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self(Vec::with_capacity(capacity))
    }

    /// Makes room for `additional` more bytes, moving to a larger allocation by copying and
    /// wiping the old one. Only `[0, len)` is wiped: bytes are only ever written there (by
    /// appending, or in place), so the spare capacity never held any.
    #[inline]
    fn reserve(&mut self, additional: usize) {
        let needed = self.0.len().saturating_add(additional);
        if needed > self.0.capacity() {
            self.grow(needed);
        }
    }

    #[cold]
    fn grow(&mut self, needed: usize) {
        let mut bigger = Vec::with_capacity(needed.max(self.0.capacity().saturating_mul(2)));
        bigger.extend_from_slice(&self.0);
        self.0.as_mut_slice().zeroize();
        self.0 = bigger;
    }

    /// Appends `bytes`.
    #[inline]
    pub(crate) fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        self.0.extend_from_slice(bytes);
    }

    /// Wipes the contents and empties it, keeping the allocation for the next use.
    pub(crate) fn wipe(&mut self) {
        self.0.as_mut_slice().zeroize();
        self.0.clear();
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.0
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

impl std::io::Write for PlainBuf {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.extend_from_slice(buf);
        Ok(buf.len())
    }

    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for PlainBuf {
    fn drop(&mut self) {
        // `Vec::zeroize` writes zeros over the whole allocation, spare capacity included
        // (more than `wipe`, which relies on the spare capacity never holding data).
        self.0.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for PlainBuf {}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(subject: Option<&[u8]>) -> Binding<'_> {
        Binding {
            salt: &[7; 16],
            subject,
            state_key: &[9; 16],
            revision: 3,
            schema: 2,
        }
    }

    fn cipher() -> EntryCipher {
        EntryCipher::new(&[0x42; 32], 2, b"ns", b"k1", 118_055, b"12345678")
    }

    /// The associated data is the PAE of exactly the eleven pieces of SECURITY.md 2.12.
    #[test]
    fn associated_data_is_the_pae_of_its_pieces() {
        for subject in [None, Some(&b""[..]), Some(&b"user-1"[..])] {
            let presence = match subject {
                None => vec![0],
                Some(s) => [&[1][..], s].concat(),
            };
            let want = mac::pae(&[
                &[2],
                ENCRYPTED_PURPOSE,
                b"ns",
                b"k1",
                &118_055u64.to_be_bytes(),
                b"12345678",
                &[7; 16],
                &presence,
                &[9; 16],
                &3u64.to_be_bytes(),
                &2u32.to_be_bytes(),
            ]);
            assert_eq!(*cipher().associated_data(&binding(subject)), want);
        }
    }

    #[test]
    fn round_trip_and_every_binding_counts() {
        let c = cipher();
        let nonce = [0x11; NONCE_LEN];
        let mut buf = br#"{"secret":1}"#.to_vec();
        let tag = c.encrypt(&binding(None), &nonce, &mut buf).unwrap();
        assert_ne!(&buf[..], br#"{"secret":1}"#);
        let ct = buf.clone();
        assert!(c.decrypt(&binding(None), &nonce, &mut buf, &tag));
        assert_eq!(&buf[..], br#"{"secret":1}"#);

        let mut other = binding(None);
        other.revision = 4;
        for (b, n, t) in [
            (binding(Some(b"")), nonce, tag),
            (other, nonce, tag),
            (binding(None), [0x12; NONCE_LEN], tag),
            (binding(None), nonce, {
                let mut t = tag;
                t[15] ^= 1;
                t
            }),
        ] {
            let mut buf = ct.clone();
            assert!(!c.decrypt(&b, &n, &mut buf, &t));
            assert_eq!(buf, ct, "nothing is decrypted when the tag fails");
        }
        let other_key = EntryCipher::new(&[0x43; 32], 2, b"ns", b"k1", 118_055, b"12345678");
        let mut buf = ct.clone();
        assert!(!other_key.decrypt(&binding(None), &nonce, &mut buf, &tag));
        let other_code = EntryCipher::new(&[0x42; 32], 2, b"ns", b"k1", 118_055, b"12345679");
        let mut buf = ct;
        assert!(!other_code.decrypt(&binding(None), &nonce, &mut buf, &tag));
    }

    #[test]
    fn plain_buffers_grow_and_wipe() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wiped_on_drop::<PlainBuf>();
        wiped_on_drop::<EntryCipher>();
        let mut b = PlainBuf::with_capacity(2);
        for i in 0..100u8 {
            std::io::Write::write_all(&mut b, &[i; 3]).unwrap();
        }
        assert_eq!(b.len(), 300);
        assert!(b
            .as_slice()
            .chunks(3)
            .enumerate()
            .all(|(i, c)| c == [i as u8; 3]));
        let cap = b.capacity();
        b.wipe();
        assert_eq!((b.len(), b.capacity()), (0, cap));
    }
}
