//! The demo's three stateful components: plain state, an `apply` for events and a `render`
//! to an HTML fragment. Nothing here knows about sockets or sealing.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use state_recovery::ClientInput;

/// What an event did to a component's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Nothing changed (unknown action, bad argument): no seal, no render.
    None,
    /// The state changed but the page already shows it (typing in a text field): seal only,
    /// so the field the user is typing in is not replaced under their cursor.
    Quiet,
    /// The state changed: seal and render.
    Render,
}

/// A stateful component of the page. Its state is declared as a slot in `slots.rs`.
pub(crate) trait Component: Send + Sync + 'static {
    /// Its element id on the page and name in events.
    const ID: &'static str;
    /// Applies an event `{"action": ..., "value": ...}`.
    fn apply(&mut self, action: &str, value: &Value) -> Change;
    /// The component's HTML fragment.
    fn render(&self) -> String;
    /// Takes in recovered client input (untrusted form values) after the signed state was
    /// restored or started fresh. Most components ignore it.
    fn absorb_input(&mut self, _input: &ClientInput) -> Change {
        Change::None
    }
}

/// Escapes text for HTML element content and double-quoted attributes.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Keeps at most `max` characters of untrusted text, trimmed of control characters but
/// newlines and tabs.
fn clean(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .take(max)
        .collect()
}

// ---------------------------------------------------------------------------------------------

/// A counter with +1, -1 and reset.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counter {
    pub(crate) count: i64,
}

impl Component for Counter {
    const ID: &'static str = "counter";

    fn apply(&mut self, action: &str, _value: &Value) -> Change {
        let before = self.count;
        match action {
            "inc" => self.count = self.count.saturating_add(1),
            "dec" => self.count = self.count.saturating_sub(1),
            "reset" => self.count = 0,
            _ => return Change::None,
        }
        if before == self.count {
            Change::None
        } else {
            Change::Render
        }
    }

    fn render(&self) -> String {
        format!(
            r#"<h2>Counter</h2>
<p class="big" data-count="{n}">{n}</p>
<button data-c="counter" data-a="dec">−1</button>
<button data-c="counter" data-a="inc" id="inc">+1</button>
<button data-c="counter" data-a="reset">reset</button>"#,
            n = self.count
        )
    }
}

// ---------------------------------------------------------------------------------------------

/// One item of the todo list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Todo {
    pub(crate) id: u32,
    pub(crate) text: String,
    pub(crate) done: bool,
}

/// A todo list: add, toggle, remove.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Todos {
    pub(crate) next_id: u32,
    pub(crate) items: Vec<Todo>,
}

impl Todos {
    /// The most items the list holds (state travels in a token, so it stays small).
    pub(crate) const MAX_ITEMS: usize = 50;
    /// The longest item text, in characters.
    pub(crate) const MAX_TEXT: usize = 200;

    fn id_arg(value: &Value) -> Option<u32> {
        match value {
            Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }
}

impl Component for Todos {
    const ID: &'static str = "todos";

    fn apply(&mut self, action: &str, value: &Value) -> Change {
        match action {
            "add" => {
                let text = clean(value.as_str().unwrap_or_default(), Self::MAX_TEXT);
                let text = text.trim();
                if text.is_empty() || self.items.len() >= Self::MAX_ITEMS {
                    return Change::None;
                }
                self.items.push(Todo {
                    id: self.next_id,
                    text: text.to_owned(),
                    done: false,
                });
                self.next_id = self.next_id.wrapping_add(1);
            }
            "toggle" => {
                let id = Self::id_arg(value);
                let Some(item) = self.items.iter_mut().find(|t| Some(t.id) == id) else {
                    return Change::None;
                };
                item.done = !item.done;
            }
            "remove" => {
                let id = Self::id_arg(value);
                let before = self.items.len();
                self.items.retain(|t| Some(t.id) != id);
                if self.items.len() == before {
                    return Change::None;
                }
            }
            _ => return Change::None,
        }
        Change::Render
    }

    fn render(&self) -> String {
        let mut html = String::from(
            r#"<h2>Todos</h2>
<form data-c="todos" data-a="add" class="row"><input name="text" id="todo-text" placeholder="something to do" maxlength="200" autocomplete="off"><button id="todo-add">add</button></form>
<ul>"#,
        );
        for t in &self.items {
            let _ = write!(
                html,
                r#"<li class="{cls}" data-todo="{id}"><label><input type="checkbox" data-c="todos" data-a="toggle" data-v="{id}"{checked}> <span>{text}</span></label> <button data-c="todos" data-a="remove" data-v="{id}" title="remove">×</button></li>"#,
                cls = if t.done { "done" } else { "" },
                id = t.id,
                checked = if t.done { " checked" } else { "" },
                text = escape(&t.text),
            );
        }
        html.push_str("</ul>");
        let _ = write!(
            html,
            r#"<p class="muted">{} left of {}</p>"#,
            self.items.iter().filter(|t| !t.done).count(),
            self.items.len()
        );
        html
    }
}

// ---------------------------------------------------------------------------------------------

/// The wizard's state as schema version 1 sealed it (the first release of the demo).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WizardV1 {
    pub(crate) step: u8,
    pub(crate) name: String,
    pub(crate) plan: String,
    pub(crate) draft: String,
}

impl Default for WizardV1 {
    fn default() -> Self {
        let w = Wizard::default();
        Self {
            step: w.step,
            name: w.name,
            plan: w.plan,
            draft: w.draft,
        }
    }
}

/// A three-step form with a free-text draft. Schema version 2 added `email` (shown only
/// when the demo runs as version 2, `DEMO_SCHEMA=2`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Wizard {
    pub(crate) step: u8,
    pub(crate) name: String,
    pub(crate) plan: String,
    pub(crate) draft: String,
    /// New in schema version 2.
    pub(crate) email: String,
    /// The schema version this worker runs (not state: it decides what is rendered).
    #[serde(skip, default = "Wizard::current_schema")]
    pub(crate) schema: u32,
}

impl Default for Wizard {
    fn default() -> Self {
        Self {
            step: 1,
            name: String::new(),
            plan: "basic".into(),
            draft: String::new(),
            email: String::new(),
            schema: Self::current_schema(),
        }
    }
}

impl From<WizardV1> for Wizard {
    /// The migration from version 1: everything carries over, the e-mail starts empty.
    fn from(v1: WizardV1) -> Self {
        Self {
            step: v1.step,
            name: v1.name,
            plan: v1.plan,
            draft: v1.draft,
            ..Self::default()
        }
    }
}

impl From<&Wizard> for WizardV1 {
    /// What version 1 can hold of version 2 (the e-mail is dropped): for sealing as version
    /// 1 while version-1 workers still serve clients, and for running as version 1.
    fn from(w: &Wizard) -> Self {
        Self {
            step: w.step,
            name: w.name.clone(),
            plan: w.plan.clone(),
            draft: w.draft.clone(),
        }
    }
}

impl Wizard {
    /// The longest draft, in characters.
    pub(crate) const MAX_DRAFT: usize = 2000;
    /// The longest name, in characters.
    pub(crate) const MAX_NAME: usize = 100;
    /// The longest e-mail address, in characters.
    pub(crate) const MAX_EMAIL: usize = 254;
    const PLANS: [&'static str; 3] = ["basic", "team", "enterprise"];

    /// The schema version this build of the demo runs as: `DEMO_SCHEMA` (1 or 2, default 1).
    pub(crate) fn current_schema() -> u32 {
        static SCHEMA: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        *SCHEMA.get_or_init(|| match std::env::var("DEMO_SCHEMA").as_deref() {
            Ok("2") => 2,
            _ => 1,
        })
    }

    fn set(&mut self, field: &str, value: &str) -> Change {
        let (slot, max) = match field {
            "name" => (&mut self.name, Self::MAX_NAME),
            "draft" => (&mut self.draft, Self::MAX_DRAFT),
            "email" if self.schema >= 2 => (&mut self.email, Self::MAX_EMAIL),
            "plan" if Self::PLANS.contains(&value) => (&mut self.plan, Self::MAX_NAME),
            _ => return Change::None,
        };
        let value = clean(value, max);
        if *slot == value {
            return Change::None;
        }
        *slot = value;
        Change::Quiet
    }
}

impl Component for Wizard {
    const ID: &'static str = "wizard";

    fn apply(&mut self, action: &str, value: &Value) -> Change {
        match action {
            "next" if self.step < 3 => self.step = self.step.saturating_add(1),
            "back" if self.step > 1 => self.step = self.step.saturating_sub(1),
            "restart" => {
                *self = Self {
                    schema: self.schema,
                    ..Self::default()
                }
            }
            // {"field": "draft", "text": "..."}
            "set" => {
                let field = value.get("field").and_then(Value::as_str).unwrap_or("");
                let text = value.get("text").and_then(Value::as_str).unwrap_or("");
                return self.set(field, text);
            }
            _ => return Change::None,
        }
        Change::Render
    }

    /// The form's current values ride along on reconnect as untrusted input: they may be
    /// newer than the last sealed state (typed while the socket was down). They are only text
    /// fields, capped and escaped like any typed text, so the demo takes them.
    fn absorb_input(&mut self, input: &ClientInput) -> Change {
        let Some(form) = input.form("wizard-form") else {
            return Change::None;
        };
        let mut changed = Change::None;
        for field in ["name", "draft", "plan", "email"] {
            if let Some(v) = form.get(field) {
                if self.set(field, v) != Change::None {
                    changed = Change::Render;
                }
            }
        }
        changed
    }

    fn render(&self) -> String {
        let mut html = format!(
            r#"<h2 data-schema="{v}">Wizard <small data-step="{s}">step {s} of 3</small></h2>
<form id="wizard-form" data-recover data-c="wizard" data-a="next" autocomplete="off">"#,
            s = self.step,
            v = self.schema,
        );
        // Every field stays in the form (hidden when not on its step) so the whole draft rides
        // along on reconnect.
        let hidden = |step: u8| if self.step == step { "" } else { " hidden" };
        let _ = write!(
            html,
            r#"<div{h1}><label>Your name <input name="name" id="wizard-name" data-set="name" value="{name}" maxlength="100"></label></div>"#,
            h1 = hidden(1),
            name = escape(&self.name),
        );
        if self.schema >= 2 {
            let _ = write!(
                html,
                r#"<div{h1}><label>E-mail (new in version 2) <input name="email" id="wizard-email" data-set="email" value="{email}" maxlength="254"></label></div>"#,
                h1 = hidden(1),
                email = escape(&self.email),
            );
        }
        let _ = write!(html, r#"<div{}><p>Plan:</p>"#, hidden(2));
        for p in Self::PLANS {
            let _ = write!(
                html,
                r#"<label><input type="radio" name="plan" value="{p}" data-set="plan"{c}> {p}</label> "#,
                c = if self.plan == p { " checked" } else { "" },
            );
        }
        html.push_str("</div>");
        let _ = write!(
            html,
            r#"<div{h3}><label>Anything else? (draft)<br><textarea name="draft" id="wizard-draft" data-set="draft" rows="4" maxlength="2000">{draft}</textarea></label></div>"#,
            h3 = hidden(3),
            draft = escape(&self.draft),
        );
        html.push_str(r#"<div class="row">"#);
        if self.step > 1 {
            html.push_str(r#"<button type="button" data-c="wizard" data-a="back" id="wizard-back">back</button> "#);
        }
        if self.step < 3 {
            html.push_str(r#"<button id="wizard-next">next</button>"#);
        } else {
            html.push_str(
                r#"<button type="button" data-c="wizard" data-a="restart">start over</button>"#,
            );
        }
        html.push_str("</div></form>");
        html
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn todos_add_toggle_remove() {
        let mut t = Todos::default();
        assert_eq!(t.apply("add", &json!("  milk <b> ")), Change::Render);
        assert_eq!(t.apply("add", &json!("   ")), Change::None);
        assert_eq!(t.apply("toggle", &json!("0")), Change::Render);
        assert!(t
            .items
            .first()
            .is_some_and(|i| i.done && i.text == "milk <b>"));
        assert!(t.render().contains("milk &lt;b&gt;"));
        assert_eq!(t.apply("remove", &json!(7)), Change::None);
        assert_eq!(t.apply("remove", &json!(0)), Change::Render);
        assert!(t.items.is_empty());
    }

    #[test]
    fn wizard_steps_stay_in_range_and_fields_are_checked() {
        let mut w = Wizard::default();
        assert_eq!(w.apply("back", &Value::Null), Change::None);
        for _ in 0..5 {
            w.apply("next", &Value::Null);
        }
        assert_eq!(w.step, 3);
        let set = |f: &str, t: &str| json!({"field": f, "text": t});
        assert_eq!(w.apply("set", &set("plan", "gold")), Change::None);
        assert_eq!(w.apply("set", &set("plan", "team")), Change::Quiet);
        assert_eq!(w.apply("set", &set("step", "9")), Change::None);
        let long = "x".repeat(5000);
        assert_eq!(w.apply("set", &set("draft", &long)), Change::Quiet);
        assert_eq!(w.draft.len(), Wizard::MAX_DRAFT);
    }
}
