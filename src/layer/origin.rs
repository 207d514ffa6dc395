//! The `Origin` check on WebSocket upgrades (cross-site WebSocket hijacking).
//!
//! Browsers send `Origin` on every WebSocket handshake and let any page open a WebSocket to
//! any host, with that host's cookies: without this check, a page on another site could open
//! the user's session and drive it.

use axum::http::{header, HeaderMap, Uri};

/// Which origins may open a WebSocket through [`RecoverySocket`](super::RecoverySocket).
#[derive(Debug, Clone, Default)]
pub(crate) enum OriginPolicy {
    /// The `Origin`'s host and port equal the request's `Host` (scheme-insensitive).
    #[default]
    SameHost,
    /// Exactly these origins (normalized `scheme://host[:port]`); an entry that is not an
    /// origin is `None` and never matches.
    List(Vec<Option<Origin>>),
    /// Any origin (insecure).
    Any,
}

/// A parsed, normalized origin: lowercase, without a default port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    scheme: String,
    host: String,
    /// `None` when the port is absent or the scheme's default.
    port: Option<u16>,
}

/// Why an upgrade was refused (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// More than one `Origin` header, or one that is not text.
    BadHeader,
    /// `Origin: null` or not `scheme://host[:port]`.
    Opaque,
    /// An origin the policy does not allow.
    CrossOrigin,
    /// Same-host policy, and the request has no usable `Host` (or `:authority`).
    NoHost,
}

impl Refused {
    pub(crate) const fn code(self) -> &'static str {
        match self {
            Refused::BadHeader => "bad-origin-header",
            Refused::Opaque => "opaque-origin",
            Refused::CrossOrigin => "cross-origin",
            Refused::NoHost => "no-host",
        }
    }
}

const fn default_port(scheme: &str) -> Option<u16> {
    match scheme.as_bytes() {
        b"http" | b"ws" => Some(80),
        b"https" | b"wss" => Some(443),
        _ => None,
    }
}

/// `host[:port]` (IPv6 in brackets), lowercased; the port as written, if any.
fn parse_authority(authority: &str) -> Option<(String, Option<u16>)> {
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{inside}]"), port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    Some((host.to_ascii_lowercase(), port))
}

impl Origin {
    /// Parses `scheme://host[:port]` (a trailing `/` is allowed in configured origins).
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let text = text.strip_suffix('/').unwrap_or(text);
        let (scheme, authority) = text.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !scheme_ok {
            return None;
        }
        let (host, port) = parse_authority(authority)?;
        let port = port.filter(|p| Some(*p) != default_port(&scheme));
        Some(Self { scheme, host, port })
    }

    /// Whether this origin is on `host[:port]`, the request's `Host`. A `Host` without a
    /// port matches an origin on its scheme's default port (browsers omit default ports in
    /// both); the scheme is not compared (the server behind a TLS-terminating proxy cannot
    /// know it).
    fn is_on(&self, host: &str) -> bool {
        let Some((h, port)) = parse_authority(host) else {
            return false;
        };
        let effective = self.port.or_else(|| default_port(&self.scheme));
        h == self.host
            && match port {
                None => self.port.is_none(),
                Some(p) => effective == Some(p),
            }
    }
}

impl OriginPolicy {
    /// `Ok` when the upgrade may proceed: no `Origin` header (not a browser), or an allowed one.
    pub(crate) fn check(&self, headers: &HeaderMap, uri: &Uri) -> Result<(), Refused> {
        if matches!(self, OriginPolicy::Any) {
            return Ok(());
        }
        let mut values = headers.get_all(header::ORIGIN).iter();
        let value = match (values.next(), values.next()) {
            (None, _) => return Ok(()),
            (Some(v), None) => v.to_str().map_err(|_| Refused::BadHeader)?,
            (Some(_), Some(_)) => return Err(Refused::BadHeader),
        };
        let origin = Origin::parse(value).ok_or(Refused::Opaque)?;
        match self {
            OriginPolicy::Any => Ok(()),
            OriginPolicy::List(allowed) => allowed
                .iter()
                .any(|a| a.as_ref() == Some(&origin))
                .then_some(())
                .ok_or(Refused::CrossOrigin),
            OriginPolicy::SameHost => {
                let mut hosts = headers.get_all(header::HOST).iter();
                let host = match (hosts.next(), hosts.next()) {
                    (Some(h), None) => h.to_str().map_err(|_| Refused::NoHost)?,
                    (None, _) => uri.authority().map(|a| a.as_str()).ok_or(Refused::NoHost)?,
                    (Some(_), Some(_)) => return Err(Refused::NoHost),
                };
                if origin.is_on(host) {
                    Ok(())
                } else {
                    Err(Refused::CrossOrigin)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(origin: Option<&str>, host: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        if let Some(x) = host {
            h.insert(header::HOST, HeaderValue::from_str(x).unwrap());
        }
        h
    }

    fn same_host(origin: &str, host: &str) -> Result<(), Refused> {
        OriginPolicy::SameHost.check(&headers(Some(origin), Some(host)), &Uri::default())
    }

    #[test]
    fn same_host_compares_host_and_port_not_scheme() {
        assert_eq!(same_host("http://127.0.0.1:3000", "127.0.0.1:3000"), Ok(()));
        assert_eq!(same_host("https://Example.COM", "example.com"), Ok(()));
        assert_eq!(same_host("https://example.com", "example.com:443"), Ok(()));
        assert_eq!(same_host("https://example.com:443", "example.com"), Ok(()));
        assert_eq!(same_host("http://example.com", "example.com"), Ok(()));
        assert_eq!(same_host("http://[::1]:8080", "[::1]:8080"), Ok(()));
        for (origin, host) in [
            ("http://127.0.0.1:3000", "127.0.0.1"), // nginx `$host` drops the port
            ("http://127.0.0.1:3001", "127.0.0.1:3000"),
            ("https://evil.example", "example.com"),
            ("https://example.com.evil.example", "example.com"),
            ("https://example.com:8443", "example.com"),
            ("https://example.com", "example.com:80"),
        ] {
            assert_eq!(
                same_host(origin, host),
                Err(Refused::CrossOrigin),
                "{origin}"
            );
        }
        for origin in [
            "null",
            "example.com",
            "https://",
            "https://a/b",
            "https://u@a",
            "1x://a",
        ] {
            assert_eq!(same_host(origin, "a"), Err(Refused::Opaque), "{origin}");
        }
        let no_host =
            OriginPolicy::SameHost.check(&headers(Some("http://a"), None), &Uri::default());
        assert_eq!(no_host, Err(Refused::NoHost));
        // HTTP/2 (extended CONNECT) has `:authority` instead of `Host`.
        let uri: Uri = "https://a.example/ws".parse().unwrap();
        let h2 = OriginPolicy::SameHost.check(&headers(Some("https://a.example"), None), &uri);
        assert_eq!(h2, Ok(()));
    }

    #[test]
    fn missing_origin_passes_and_repeated_origin_does_not() {
        let none = OriginPolicy::SameHost.check(&headers(None, Some("a")), &Uri::default());
        assert_eq!(none, Ok(()));
        let mut two = headers(Some("http://a"), Some("a"));
        two.append(header::ORIGIN, HeaderValue::from_static("http://a"));
        assert_eq!(
            OriginPolicy::SameHost.check(&two, &Uri::default()),
            Err(Refused::BadHeader)
        );
    }

    #[test]
    fn lists_match_exact_normalized_origins() {
        let list = OriginPolicy::List(
            [
                "https://App.example.com/",
                "http://localhost:8080",
                "not an origin",
            ]
            .iter()
            .map(|o| Origin::parse(o))
            .collect(),
        );
        let check = |o: &str| list.check(&headers(Some(o), Some("internal:9000")), &Uri::default());
        assert_eq!(check("https://app.example.com"), Ok(()));
        assert_eq!(check("https://app.example.com:443"), Ok(()));
        assert_eq!(check("http://localhost:8080"), Ok(()));
        assert_eq!(check("http://app.example.com"), Err(Refused::CrossOrigin));
        assert_eq!(check("http://internal:9000"), Err(Refused::CrossOrigin));
        assert_eq!(check("null"), Err(Refused::Opaque));
        let any = OriginPolicy::Any.check(&headers(Some("null"), None), &Uri::default());
        assert_eq!(any, Ok(()));
    }
}
