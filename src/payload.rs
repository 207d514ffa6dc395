//! The payload: JSON, with its nesting depth checked by a linear scan before serde sees it.

/// The deepest nesting serde_json itself allows; our limit can not go beyond it.
pub(crate) const SERDE_MAX_DEPTH: usize = 128;

/// Whether `json` nests arrays and objects no deeper than `max`. Strings (with escapes) are
/// skipped; anything that is not JSON is left for the parser to refuse. Linear, no allocation.
pub(crate) fn depth_within(json: &[u8], max: usize) -> bool {
    let mut depth: usize = 0;
    let mut in_string = false;
    let mut escaped = false;
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
}
