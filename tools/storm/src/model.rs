//! What a tab expects the demo's three components to show, and the renders read back.
//!
//! Every event the tool sends changes its component and renders it (no "quiet" changes), and
//! a change counts only once the server acknowledged it with its `state` message (the entry
//! is then in the stash, so it must survive a reconnect). After a reconnect, each component's
//! first render is parsed and compared with the expectation.

/// The demo's components, in the order of their first renders.
pub(crate) const COMPONENTS: [&str; 3] = ["counter", "todos", "wizard"];

/// The index of a component id.
pub(crate) fn component(id: &str) -> Option<usize> {
    COMPONENTS.iter().position(|c| *c == id)
}

/// One tab's three components as it expects them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Model {
    pub(crate) count: i64,
    /// (text, done), in order.
    pub(crate) todos: Vec<(String, bool)>,
    pub(crate) step: u8,
}

impl Default for Model {
    /// A fresh tab.
    fn default() -> Self {
        Self {
            count: 0,
            todos: Vec::new(),
            step: 1,
        }
    }
}

/// An event the tool sends, and what it does to the model once acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    Inc,
    Add(String),
    /// Toggle the first item (its id read from the last render).
    ToggleFirst(u32),
    /// Remove the first item.
    RemoveFirst(u32),
    Next,
    Back,
}

impl Event {
    /// Which component it targets.
    pub(crate) const fn component(&self) -> usize {
        match self {
            Self::Inc => 0,
            Self::Add(_) | Self::ToggleFirst(_) | Self::RemoveFirst(_) => 1,
            Self::Next | Self::Back => 2,
        }
    }

    /// The demo's message.
    pub(crate) fn to_json(&self) -> String {
        let (target, action, value) = match self {
            Self::Inc => ("counter", "inc", "null".to_owned()),
            Self::Add(t) => ("todos", "add", format!("\"{t}\"")),
            Self::ToggleFirst(id) => ("todos", "toggle", id.to_string()),
            Self::RemoveFirst(id) => ("todos", "remove", id.to_string()),
            Self::Next => ("wizard", "next", "null".to_owned()),
            Self::Back => ("wizard", "back", "null".to_owned()),
        };
        format!(r#"{{"type":"event","target":"{target}","action":"{action}","value":{value}}}"#)
    }
}

impl Model {
    /// The `k`-th event of tab `tab`: the components in turn, each with a change that renders
    /// (the todo list stays at one to three items; the wizard walks 1 → 3 and back). `first_todo`
    /// is the id of the first item in the last render of the list.
    pub(crate) fn event(&self, tab: usize, k: u64, first_todo: Option<u32>) -> Event {
        match k % 4 {
            0 => Event::Inc,
            1 | 3 => match (self.todos.len(), first_todo) {
                (n, Some(id)) if n >= 3 => Event::RemoveFirst(id),
                (n, Some(id)) if n >= 1 && k % 4 == 3 => Event::ToggleFirst(id),
                _ => Event::Add(format!("t{tab}-{k}")),
            },
            _ => {
                if self.step < 3 && (k / 4) % 4 < 2 || self.step == 1 {
                    Event::Next
                } else {
                    Event::Back
                }
            }
        }
    }

    /// The demo's state change for an acknowledged event.
    pub(crate) fn apply(&mut self, e: &Event) {
        match e {
            Event::Inc => self.count = self.count.saturating_add(1),
            Event::Add(t) => self.todos.push((t.clone(), false)),
            Event::ToggleFirst(_) => {
                if let Some(first) = self.todos.first_mut() {
                    first.1 = !first.1;
                }
            }
            Event::RemoveFirst(_) => {
                if !self.todos.is_empty() {
                    self.todos.remove(0);
                }
            }
            Event::Next => self.step = self.step.saturating_add(1).min(3),
            Event::Back => self.step = self.step.saturating_sub(1).max(1),
        }
    }

    /// Whether component `c`'s render shows what this model expects; the difference if not.
    pub(crate) fn check(&self, c: usize, html: &str) -> Result<(), String> {
        match c {
            0 => match attr_num(html, "data-count=\"") {
                Some(n) if n == self.count => Ok(()),
                got => Err(format!("counter: expected {}, got {got:?}", self.count)),
            },
            1 => {
                let got = todos(html);
                let want: Vec<(&str, bool)> =
                    self.todos.iter().map(|(t, d)| (t.as_str(), *d)).collect();
                let got_: Vec<(&str, bool)> =
                    got.iter().map(|(_, t, d)| (t.as_str(), *d)).collect();
                if got_ == want {
                    Ok(())
                } else {
                    Err(format!("todos: expected {want:?}, got {got_:?}"))
                }
            }
            _ => match attr_num(html, "data-step=\"") {
                Some(n) if n == i64::from(self.step) => Ok(()),
                got => Err(format!("wizard: expected step {}, got {got:?}", self.step)),
            },
        }
    }

    /// The model a render shows (a fresh tab's first connection, or after a loss).
    pub(crate) fn read(&mut self, c: usize, html: &str) {
        match c {
            0 => self.count = attr_num(html, "data-count=\"").unwrap_or(0),
            1 => self.todos = todos(html).into_iter().map(|(_, t, d)| (t, d)).collect(),
            _ => {
                self.step = attr_num(html, "data-step=\"")
                    .and_then(|n| u8::try_from(n).ok())
                    .unwrap_or(1);
            }
        }
    }
}

/// The integer after `attr` (e.g. `data-count="`) up to the next quote.
fn attr_num(html: &str, attr: &str) -> Option<i64> {
    let rest = &html[html.find(attr)? + attr.len()..];
    rest[..rest.find('"')?].parse().ok()
}

/// The todo list's items as rendered: (id, text, done). Texts the tool writes need no
/// unescaping.
pub(crate) fn todos(html: &str) -> Vec<(u32, String, bool)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find("<li class=\"") {
        rest = &rest[at + "<li class=\"".len()..];
        let Some(q) = rest.find('"') else { break };
        let done = &rest[..q] == "done";
        let id = attr_num(rest, "data-todo=\"").and_then(|n| u32::try_from(n).ok());
        let text = rest.find("<span>").and_then(|s| {
            let t = &rest[s + "<span>".len()..];
            t.find("</span>").map(|e| t[..e].to_owned())
        });
        match (id, text) {
            (Some(id), Some(text)) => out.push((id, text, done)),
            _ => break,
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const TODOS: &str = r#"<h2>Todos</h2>
<form data-c="todos" data-a="add" class="row"><input name="text" id="todo-text"></form>
<ul><li class="done" data-todo="4"><label><input type="checkbox" data-c="todos" data-a="toggle" data-v="4" checked> <span>t1-5</span></label> <button>×</button></li><li class="" data-todo="7"><label><input type="checkbox"> <span>t1-9</span></label></li></ul><p class="muted">1 left of 2</p>"#;

    #[test]
    fn reads_the_demos_renders() {
        assert_eq!(
            todos(TODOS),
            [(4, "t1-5".to_owned(), true), (7, "t1-9".to_owned(), false)]
        );
        let m = Model {
            count: -3,
            todos: vec![("t1-5".into(), true), ("t1-9".into(), false)],
            step: 2,
        };
        assert!(m
            .check(0, r#"<p class="big" data-count="-3">-3</p>"#)
            .is_ok());
        assert!(m.check(0, r#"<p data-count="3">"#).is_err());
        assert!(m.check(1, TODOS).is_ok());
        assert!(m
            .check(2, r#"<h2 data-schema="1">Wizard <small data-step="2">"#)
            .is_ok());
        let mut fresh = Model::default();
        fresh.read(1, TODOS);
        fresh.read(0, r#"data-count="-3""#);
        fresh.read(2, r#"data-step="2""#);
        assert_eq!(fresh, m);
    }

    #[test]
    fn events_always_change_their_component() {
        let mut m = Model::default();
        let mut ids = 0_u32;
        let mut first: Option<u32> = None;
        for k in 0..400 {
            let e = m.event(7, k, first);
            let before = m.clone();
            m.apply(&e);
            assert_ne!(m, before, "event {k} {e:?} changed nothing");
            assert!(m.todos.len() <= 3);
            // The demo's ids: sequential on add; the first item's id after a removal.
            match e {
                Event::Add(_) => {
                    if first.is_none() {
                        first = Some(ids);
                    }
                    ids += 1;
                }
                Event::RemoveFirst(_) => {
                    first = (!m.todos.is_empty()).then(|| ids - m.todos.len() as u32)
                }
                _ => {}
            }
        }
        assert_eq!(
            Event::Add("t1-2".into()).to_json(),
            r#"{"type":"event","target":"todos","action":"add","value":"t1-2"}"#
        );
    }
}
