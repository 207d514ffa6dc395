//! The page and its scripts: dioxus-liveview's own glue (its interpreter and `main.js`),
//! with the one line that opens its WebSocket pointed at the adapter's socket.

use std::fmt;

/// The line of dioxus-liveview 0.7's `main.js` that opens its WebSocket: the one seam the
/// adapter changes in its script (checked when the route is built, and by a test).
pub(crate) const SOCKET_LINE: &str = "const ws = new WebSocket(WS_ADDR);";
/// What it becomes: the adapter's socket, which keeps the stash and reconnects.
const SOCKET_REPLACEMENT: &str = "const ws = window.__stateRecoveryDioxus.socket(WS_ADDR);";

/// The pinned dioxus-liveview glue does not have the shape the adapter wraps: another version
/// of dioxus-liveview than the one this adapter pins (0.7.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlueError {
    found: usize,
}

impl fmt::Display for GlueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "state-recovery-dioxus: dioxus-liveview's glue opens its WebSocket {} times where \
             0.7.10 opens it once (`{SOCKET_LINE}`); this adapter wraps dioxus-liveview =0.7.10 only",
            self.found
        )
    }
}

impl std::error::Error for GlueError {}

/// dioxus-liveview's glue for the socket at `ws_path`, as a classic script (no `<script>`
/// tags), with its WebSocket replaced by the adapter's.
pub(crate) fn script(ws_path: &str) -> Result<String, GlueError> {
    let html = dioxus_liveview::interpreter_glue(ws_path);
    patch(&html)
}

/// [`script`] on a given glue text: strips the `<script>` element around it and replaces the
/// socket line, which must occur exactly once.
fn patch(html: &str) -> Result<String, GlueError> {
    let found = html.matches(SOCKET_LINE).count();
    if found != 1 {
        return Err(GlueError { found });
    }
    let body = html.trim();
    let body = body.strip_prefix("<script>").unwrap_or(body);
    let body = body.strip_suffix("</script>").unwrap_or(body);
    Ok(body.replacen(SOCKET_LINE, SOCKET_REPLACEMENT, 1))
}

/// The page: dioxus-liveview's (a `main` element for the app), loading the adapter's module,
/// which loads the glue once its socket is defined.
pub(crate) fn page(title: &str, base: &str) -> String {
    let title = escape(title);
    format!(
        "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\"><title>{title}</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"></head>\n\
         <body><div id=\"main\"></div>\n\
         <script type=\"module\" src=\"{base}/state-recovery-dioxus.js\"></script>\n\
         </body>\n</html>\n"
    )
}

fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '&' => "&amp;".to_owned(),
            '"' => "&quot;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_glue_has_the_one_socket_line_the_adapter_replaces() {
        let s = script("/ws").unwrap();
        assert!(s.contains(SOCKET_REPLACEMENT));
        assert!(!s.contains(SOCKET_LINE));
        assert!(!s.contains("<script>"), "a classic script, not HTML");
        assert!(s.contains("class IPC"), "main.js is in it");
    }

    #[test]
    fn another_shape_of_glue_is_a_clear_error() {
        let e = patch("<script>let ws = new WebSocket(url);</script>").unwrap_err();
        assert_eq!(e, GlueError { found: 0 });
        assert!(e.to_string().contains("=0.7.10"));
        let twice = format!("{SOCKET_LINE}{SOCKET_LINE}");
        assert_eq!(patch(&twice).unwrap_err(), GlueError { found: 2 });
    }

    #[test]
    fn the_title_is_escaped() {
        let p = page("a<b>\"&", "");
        assert!(p.contains("<title>a&lt;b&gt;&quot;&amp;</title>"));
    }
}
