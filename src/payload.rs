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

/// The start of the object keys serde_json keeps for itself: an object whose first key starts
/// with it is read back (into a `serde_json::Value`, a `RawValue` or, with another crate's
/// `arbitrary_precision`, a `Number`) as the raw JSON or number it names, not as an object.
pub(crate) const RESERVED_KEY_PREFIX: &[u8] = b"$serde_json::private::";

/// Whether `json` has an object, at any depth, whose first key starts with
/// [`RESERVED_KEY_PREFIX`] once unescaped (serde_json compares the unescaped key, and skips
/// whitespace: `{ "\u0024serde_json::private::RawValue": ...}` is the same key). Linear, no
/// allocation.
///
/// Three passes, each only when the one before could not rule the key out:
/// - no `$` and no `\` at all (one vectorized pass, about 0.03 ns a byte): no such key;
/// - such a key is a `{`, JSON whitespace, a quote, then `$` or the `\` of an escape: a
///   second vectorized pass, 256 bytes at a time (about 0.1 ns a byte), looks for `{`
///   followed by whitespace or by `"$` / `"\`. serde_json's compact output has no
///   whitespace, so payloads whose strings merely hold `$` or escapes stop here;
/// - a block with a hit is checked exactly: after each of its `{`, the whitespace is skipped
///   and the key is unescaped against the prefix (usually refused at its first byte).
///
/// A `{` inside a string is checked too, harmlessly: the quote after it closes the string,
/// and in JSON the byte after a closing quote is never `$` or `\`.
pub(crate) fn has_reserved_key(json: &[u8]) -> bool {
    may_have_reserved_key(json) && braces_before_reserved_key(json)
}

/// `false` when `json` has no `$` and no `\`, without which no key unescapes to the prefix:
/// one OR-fold per 256 bytes, about 0.03 ns a byte. Most payloads stop here.
fn may_have_reserved_key(json: &[u8]) -> bool {
    json.chunks(256).any(|chunk| {
        chunk
            .iter()
            .fold(0u8, |n, &b| n | u8::from(b == b'$') | u8::from(b == b'\\'))
            != 0
    })
}

/// The rest of [`has_reserved_key`]: the `{` pass, then the exact checks.
fn braces_before_reserved_key(json: &[u8]) -> bool {
    // The triples (a, b, c) at each position but the last two (a reserved key is longer).
    let n = json.len().saturating_sub(2);
    let a = json.get(..n).unwrap_or_default();
    let b = json.get(1..n.saturating_add(1)).unwrap_or_default();
    let c = json.get(2..).unwrap_or_default();
    let mut offset = 0usize;
    for ((a, b), c) in a.chunks(256).zip(b.chunks(256)).zip(c.chunks(256)) {
        let hits = a.iter().zip(b).zip(c).fold(0u8, |n, ((&a, &b), &c)| {
            // JSON whitespace is at most b' ' (as is nothing else valid after a `{`).
            let ws = u8::from(b <= b' ');
            let key = u8::from(b == b'"') & (u8::from(c == b'$') | u8::from(c == b'\\'));
            n | (u8::from(a == b'{') & (ws | key))
        });
        if hits != 0 {
            for (i, _) in a.iter().enumerate().filter(|(_, &byte)| byte == b'{') {
                let brace = offset.saturating_add(i);
                let after = json.get(brace.saturating_add(1)..).unwrap_or_default();
                if first_key_is_reserved(after) {
                    return true;
                }
            }
        }
        offset = offset.saturating_add(a.len());
    }
    false
}

/// Whether what follows a `{` is JSON whitespace, then a string that unescapes to start with
/// the prefix.
fn first_key_is_reserved(after_brace: &[u8]) -> bool {
    let start = after_brace
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    match start.and_then(|s| after_brace.get(s..)) {
        Some([b'"', key @ ..]) => key_is_reserved(key),
        _ => false,
    }
}

/// Whether the string whose text starts at `key` (just after its opening quote) starts with
/// the prefix once unescaped. No escape other than `\u` yields a character of the prefix,
/// and neither does a quote (which would end the key).
fn key_is_reserved(mut key: &[u8]) -> bool {
    for &want in RESERVED_KEY_PREFIX {
        let (c, rest) = match key {
            [b'\\', b'u', a, b, c, d, rest @ ..] => (hex4([*a, *b, *c, *d]), rest),
            [b'\\', _, rest @ ..] => (None, rest),
            [b, rest @ ..] => (Some(*b), rest),
            [] => return false,
        };
        if c != Some(want) {
            return false;
        }
        key = rest;
    }
    true
}

/// The ASCII character of a `\u` escape's four hex digits; `None` past ASCII or not hex.
fn hex4(digits: [u8; 4]) -> Option<u8> {
    let value = digits.iter().try_fold(0u32, |v, &d| {
        char::from(d).to_digit(16).map(|d| v.wrapping_shl(4) | d)
    })?;
    u8::try_from(value).ok().filter(u8::is_ascii)
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

    /// serde's own view, as an oracle: walks valid JSON and checks each object's first key
    /// as serde_json hands it over (unescaped).
    fn oracle(json: &[u8]) -> bool {
        use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
        use std::borrow::Cow;
        struct Walk(bool);
        impl<'de> Deserialize<'de> for Walk {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(WalkVisitor)
            }
        }
        struct WalkVisitor;
        impl<'de> Visitor<'de> for WalkVisitor {
            type Value = Walk;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("json")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Walk, E> {
                Ok(Walk(false))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Walk, E> {
                Ok(Walk(false))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Walk, E> {
                Ok(Walk(false))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Walk, E> {
                Ok(Walk(false))
            }
            fn visit_str<E>(self, _: &str) -> Result<Walk, E> {
                Ok(Walk(false))
            }
            fn visit_unit<E>(self) -> Result<Walk, E> {
                Ok(Walk(false))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Walk, A::Error> {
                let mut found = false;
                while let Some(Walk(f)) = seq.next_element()? {
                    found |= f;
                }
                Ok(Walk(found))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Walk, A::Error> {
                let mut found = false;
                let mut first = true;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    found |= first && key.as_bytes().starts_with(RESERVED_KEY_PREFIX);
                    first = false;
                    let Walk(f) = map.next_value()?;
                    found |= f;
                }
                Ok(Walk(found))
            }
        }
        serde_json::from_slice::<Walk>(json).unwrap().0
    }

    #[test]
    fn reserved_keys_in_any_spelling() {
        let found = [
            r#"{"$serde_json::private::RawValue":"{}"}"#,
            r#"{ "$serde_json::private::RawValue" : "{}"}"#,
            "{\t\r\n \"$serde_json::private::Number\":\"1\"}",
            r#"{"\u0024serde_json::private::RawValue":"{}"}"#,
            r#"{"$\u0073erde_json::private::RawValue":"{}"}"#,
            r#"{"$serde_json\u003A:private::RawValue":"{}"}"#,
            r#"{"$serde_json::private\u003a\u003aRawValue":"{}"}"#,
            r#"{"$serde_json::private::Raw\u0056alue":"{}"}"#,
            r#"{"\u0024\u0073\u0065\u0072\u0064\u0065\u005f\u006a\u0073\u006f\u006e\u003a\u003a\u0070\u0072\u0069\u0076\u0061\u0074\u0065\u003a\u003a":1}"#,
            r#"{"$serde_json::private::":null}"#,
            r#"[1,{"a":[{"b":{ "\u0024serde_json::private::RawValue":"1"}}]}]"#,
            r#"{"a":{},"b":{"$serde_json::private::x":1}}"#,
        ];
        let clear = [
            r#"{"!":1,"$serde_json::private::RawValue":"{}"}"#,
            r#"{"a":"$serde_json::private::RawValue"}"#,
            r#"["{\"$serde_json::private::RawValue\":1}"]"#,
            r#"{"\\u0024serde_json::private::RawValue":1}"#,
            r#"{"$serde_json::private:":1}"#,
            r#"{"x$serde_json::private::":1}"#,
            r#"{" $serde_json::private::":1}"#,
            r#"{"\u0025serde_json::private::":1}"#,
            r#"{"\u00e9":"\u0024", "$":"$5.00"}"#,
            r#"{"\n$serde_json::private::":1}"#,
            r#"[{}, "\u0024serde_json::private::RawValue", {"a":1}]"#,
            r#"{"price":"$5","total":"$10","a":{"b":"\\\"$"}}"#,
        ];
        for json in found {
            assert!(oracle(json.as_bytes()), "oracle: {json}");
            assert!(has_reserved_key(json.as_bytes()), "{json}");
        }
        for json in clear {
            assert!(!oracle(json.as_bytes()), "oracle: {json}");
            assert!(!has_reserved_key(json.as_bytes()), "{json}");
        }
    }

    #[test]
    fn reserved_key_scan_agrees_with_serde() {
        // Random JSON with random whitespace and keys escaped at random places, against serde.
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let keys = [
            "$serde_json::private::RawValue",
            "$serde_json::private::",
            "$serde_json::private:",
            "$serde_json::privat",
            "a$serde_json::private::",
            "$",
            "price",
            "\"$serde_json::private::",
            "{",
            "{ ",
            "$5.00",
            "\n",
        ];
        fn ws(out: &mut String, next: &mut dyn FnMut(u64) -> u64) {
            for _ in 0..next(3) {
                out.push([' ', '\t', '\n', '\r'][next(4) as usize]);
            }
        }
        fn string(out: &mut String, s: &str, next: &mut dyn FnMut(u64) -> u64) {
            out.push('"');
            for c in s.chars() {
                match (c, next(4)) {
                    ('"', _) => out.push_str("\\\""),
                    ('\\', _) => out.push_str("\\\\"),
                    ('\n', _) => out.push_str("\\n"),
                    (_, 0) => {
                        let hex = format!("\\u{:04x}", u32::from(c));
                        out.push_str(&if next(2) == 0 {
                            hex.to_uppercase().replace("\\U", "\\u")
                        } else {
                            hex
                        });
                    }
                    _ => out.push(c),
                }
            }
            out.push('"');
        }
        fn value(out: &mut String, depth: u32, keys: &[&str], next: &mut dyn FnMut(u64) -> u64) {
            ws(out, next);
            match if depth > 4 { next(3) } else { next(5) } {
                0 => out.push_str("12"),
                1 => {
                    let k = keys[next(keys.len() as u64) as usize];
                    string(out, k, next);
                }
                2 => out.push_str("null"),
                3 => {
                    out.push('[');
                    for i in 0..next(3) {
                        if i > 0 {
                            out.push(',');
                        }
                        value(out, depth + 1, keys, next);
                    }
                    ws(out, next);
                    out.push(']');
                }
                _ => {
                    out.push('{');
                    for i in 0..next(3) {
                        if i > 0 {
                            out.push(',');
                        }
                        ws(out, next);
                        let k = keys[next(keys.len() as u64) as usize];
                        string(out, k, next);
                        ws(out, next);
                        out.push(':');
                        value(out, depth + 1, keys, next);
                    }
                    ws(out, next);
                    out.push('}');
                }
            }
            ws(out, next);
        }
        let (mut hits, mut misses) = (0, 0);
        for _ in 0..30_000 {
            let mut json = String::new();
            value(&mut json, 0, &keys, &mut next);
            let expected = oracle(json.as_bytes());
            assert_eq!(has_reserved_key(json.as_bytes()), expected, "{json}");
            if expected {
                hits += 1;
            } else {
                misses += 1;
            }
        }
        assert!(hits > 800 && misses > 800, "{hits} {misses}");
    }

    #[test]
    fn reserved_keys_across_block_boundaries() {
        // `{`, whitespace, the quote and the key's first byte on every side of the 256-byte
        // blocks of the vectorized pass (and at the very start).
        for key in [
            &b"$serde_json::private::"[..],
            b"\\u0024serde_json::private::",
        ] {
            for gap in [&b""[..], b" ", b"\n\t \r"] {
                for at in (1..16).chain(240..275).chain(500..515) {
                    let mut json = vec![b' '; 600];
                    json[0] = b'[';
                    let mut i = at;
                    for part in [&b"{"[..], gap, b"\"", key, b"\":1}"] {
                        json[i..i + part.len()].copy_from_slice(part);
                        i += part.len();
                    }
                    json[599] = b']';
                    assert!(oracle(&json), "{at}");
                    assert!(has_reserved_key(&json), "{at} {gap:?}");
                    // Not a first key: the same text after a comma.
                    if at < 6 {
                        continue;
                    }
                    json[at] = b',';
                    json[0..5].copy_from_slice(b"{\"\":1");
                    json[599] = b' ';
                    assert!(!oracle(&json), "{at}");
                    assert!(!has_reserved_key(&json), "{at} {gap:?}");
                }
            }
        }
    }
}
