//! The payload: JSON, with its nesting depth checked by a linear scan before serde sees it.

/// The deepest nesting serde_json itself allows; our limit can not go beyond it.
pub(crate) const SERDE_MAX_DEPTH: usize = 128;

/// Whether `json` nests arrays and objects no deeper than `max`. Strings (with escapes) are
/// skipped; anything that is not JSON is left for the parser to refuse. Linear, no allocation.
///
/// Eight bytes at a time (SWAR): per word, exact per-byte masks of quotes, backslashes and
/// brackets; a prefix XOR of the quote mask marks the bytes inside strings, so only brackets
/// outside strings count. A word with a backslash (or after one) goes byte by byte.
pub(crate) fn depth_within(json: &[u8], max: usize) -> bool {
    // A bound first: nesting never exceeds the number of `[` and `{` bytes (in strings or not).
    // Counting bytes vectorizes, so payloads with few brackets skip the exact scan.
    openers_at_most(json, max) || scan_within(json, max)
}

/// The exact scan, eight bytes at a time.
fn scan_within(json: &[u8], max: usize) -> bool {
    let mut scan = Scan::default();
    let mut words = json.chunks_exact(8);
    words.all(|w| <&[u8; 8]>::try_from(w).is_ok_and(|w| scan.word(w, max)))
        && scan.bytes(words.remainder(), max)
}

/// Whether `json` has at most `max` bytes that are `[` or `{`; stops counting early.
fn openers_at_most(json: &[u8], max: usize) -> bool {
    let mut seen: usize = 0;
    // A u8 count per chunk of at most 255 bytes cannot wrap, and vectorizes 16 or 32 wide.
    for chunk in json.chunks(255) {
        let n = chunk
            .iter()
            .fold(0u8, |n, &b| n.wrapping_add(u8::from(b | 0x20 == b'{')));
        seen = seen.saturating_add(usize::from(n));
        if seen > max {
            return false;
        }
    }
    true
}

/// The scanner's state between words.
#[derive(Default)]
struct Scan {
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl Scan {
    /// One byte at a time: the reference state machine.
    fn bytes(&mut self, json: &[u8], max: usize) -> bool {
        for &b in json {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'[' | b'{' => {
                    self.depth = self.depth.saturating_add(1);
                    if self.depth > max {
                        return false;
                    }
                }
                b']' | b'}' => self.depth = self.depth.saturating_sub(1),
                _ => {}
            }
        }
        true
    }

    /// Eight bytes at once, the same result as `bytes` on them.
    #[inline(always)]
    fn word(&mut self, word: &[u8; 8], max: usize) -> bool {
        let w = u64::from_le_bytes(*word);
        let quote = eq_high_bits(w, b'"');
        if self.escaped || eq_high_bits(w, b'\\') != 0 {
            return self.bytes(word, max);
        }
        if self.in_string && quote == 0 {
            return true;
        }
        // High bit of each byte set when an odd number of quotes precede it (or are it).
        let mut inside = quote ^ (quote << 8);
        inside ^= inside << 16;
        inside ^= inside << 32;
        if self.in_string {
            inside = !inside & HIGH;
        }
        self.in_string = inside >> 63 != 0;
        // `[`/`]` differ from `{`/`}` only in bit 5, and no other byte maps onto them.
        let folded = w | splat(0x20);
        let open = eq_high_bits(folded, b'{') & !inside;
        let close = eq_high_bits(folded, b'}') & !inside;
        if open | close == 0 {
            return true;
        }
        let (opens, closes) = (open.count_ones() as usize, close.count_ones() as usize);
        if let Some(reached) = self.depth.checked_add(opens).filter(|d| *d <= max) {
            if self.depth >= closes {
                // Never above `max` and never clamped at zero: order does not matter.
                self.depth = reached.saturating_sub(closes);
                return true;
            }
        }
        // In byte order (little-endian: low bits first).
        let mut marks = open | close;
        while marks != 0 {
            let lowest = marks & marks.wrapping_neg();
            if open & lowest != 0 {
                self.depth = self.depth.saturating_add(1);
                if self.depth > max {
                    return false;
                }
            } else {
                self.depth = self.depth.saturating_sub(1);
            }
            marks &= marks.wrapping_sub(1);
        }
        true
    }
}

const HIGH: u64 = splat(0x80);
const LOW7: u64 = splat(0x7F);

const fn splat(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

/// The high bit of every byte of `w` that equals `b`, exactly (no borrow crosses bytes).
const fn eq_high_bits(w: u64, b: u8) -> u64 {
    let x = w ^ splat(b);
    !((x & LOW7).wrapping_add(LOW7) | x) & HIGH
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_only_structure() {
        assert!(depth_within(b"1", 0));
        assert!(!depth_within(b"[]", 0));
        assert!(depth_within(b"[[1],{\"a\":[2]}]", 3));
        assert!(!depth_within(b"[[[1]]]", 2));
        assert!(depth_within(b"[\"[[[[\\\"[[\"]", 1));
        assert!(depth_within(b"{\"a\\\\\":[]}", 2));
        assert!(!depth_within(&[b'['; 65], 64));
        assert!(depth_within(&[b'['; 64], 64));
        assert!(depth_within(b"]]]][", 1));
    }

    /// The byte-at-a-time scan this one replaced, as an oracle.
    fn reference(json: &[u8], max: usize) -> bool {
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        for &b in json {
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth = depth.saturating_add(1);
                    if depth > max {
                        return false;
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        true
    }

    #[test]
    fn word_skipping_agrees_with_the_byte_scan() {
        // Every placement of the interesting bytes against the 8-byte word boundaries.
        let dense: &[u8] = b"\"\\[]{}a;\xff";
        let sparse: &[u8] =
            b"\"\\[]{}abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,:";
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for (len, alphabet) in (0..100).flat_map(|n| [(n, dense), (n, sparse)]) {
            for _ in 0..300 {
                let s: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        alphabet[(seed % alphabet.len() as u64) as usize]
                    })
                    .collect();
                for max in [0, 1, 2, 3, 5, 64] {
                    let expected = reference(&s, max);
                    assert_eq!(depth_within(&s, max), expected, "{s:?} {max}");
                    assert_eq!(scan_within(&s, max), expected, "{s:?} {max}");
                }
            }
        }
        let deep = format!(
            "{}\"{}\"{}",
            "[".repeat(3),
            "[\\\"".repeat(40),
            "]".repeat(3)
        );
        assert!(depth_within(deep.as_bytes(), 3));
        assert!(!depth_within(deep.as_bytes(), 2));
    }
}
