//! Client input: recovered form fields. Untrusted, unsigned, and parsed by its own code path
//! that never touches the signed-state decoder.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;

/// Caps on the `input` part of a reconnect message, checked while it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    max_forms: usize,
    max_fields: usize,
    max_bytes: usize,
}

impl InputLimits {
    /// Default most forms: 32.
    pub const DEFAULT_MAX_FORMS: usize = 32;
    /// Default most fields, over all forms together: 512.
    pub const DEFAULT_MAX_FIELDS: usize = 512;
    /// Default largest `input` JSON text: 64 KiB.
    pub const DEFAULT_MAX_BYTES: usize = 64 * 1024;

    /// Most forms.
    #[must_use]
    pub const fn max_forms(&self) -> usize {
        self.max_forms
    }
    /// Most fields, over all forms together.
    #[must_use]
    pub const fn max_fields(&self) -> usize {
        self.max_fields
    }
    /// Largest `input` JSON text, in bytes.
    #[must_use]
    pub const fn max_bytes(&self) -> usize {
        self.max_bytes
    }
    /// With another form cap.
    #[must_use]
    pub const fn with_max_forms(mut self, n: usize) -> Self {
        self.max_forms = n;
        self
    }
    /// With another field cap.
    #[must_use]
    pub const fn with_max_fields(mut self, n: usize) -> Self {
        self.max_fields = n;
        self
    }
    /// With another byte cap.
    #[must_use]
    pub const fn with_max_bytes(mut self, n: usize) -> Self {
        self.max_bytes = n;
        self
    }
}

impl Default for InputLimits {
    fn default() -> Self {
        Self {
            max_forms: Self::DEFAULT_MAX_FORMS,
            max_fields: Self::DEFAULT_MAX_FIELDS,
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }
}

/// Why the client input was dropped (all of it: input is never half-read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// Not `{"<form>":{"<field>":"<value>" | ["<v>", ...]}}` with strings only.
    #[error("client input is not an object of forms of string fields")]
    Malformed,
    /// Over a cap of [`InputLimits`].
    #[error("client input is over a size or count limit")]
    TooLarge,
}

impl InputError {
    /// A stable kebab-case code for logs: `malformed` or `too-large`.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::TooLarge => "too-large",
        }
    }
}

/// The fields of one recovered form: field name to one or more string values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormInput {
    fields: BTreeMap<String, Vec<String>>,
}

impl FormInput {
    /// The first value of `field`.
    #[must_use]
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field)?.first().map(String::as_str)
    }

    /// Every value of `field` (checkboxes, multi-selects); empty if absent.
    #[must_use]
    pub fn get_all(&self, field: &str) -> &[String] {
        self.fields.get(field).map_or(&[], Vec::as_slice)
    }

    /// Field names and values, by name.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Number of fields.
    #[must_use]
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the form has no fields.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// Recovered form input from the reconnect message's `"input"` field: form id → field name →
/// string values.
///
/// **Untrusted.** Nothing here is signed: the browser (or an attacker) sent it. Validate it
/// exactly as you would a form submission, never feed it to the code that restores signed
/// state, and never treat a value as authorized because it looks like one. (Livewire's
/// CVE-2025-54068 came from hydrating unsigned input with the signed-state machinery.)
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientInput {
    forms: BTreeMap<String, FormInput>,
    error: Option<InputError>,
}

impl fmt::Debug for ClientInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be passwords the user was typing: show the shape only.
        f.debug_struct("ClientInput")
            .field("forms", &self.forms.len())
            .field(
                "fields",
                &self.forms.values().map(FormInput::len).sum::<usize>(),
            )
            .field("error", &self.error)
            .finish()
    }
}

impl ClientInput {
    /// Reads the `"input"` field of a reconnect message (the whole message's JSON text) under
    /// `limits`. A missing or `null` field is empty input; anything over a cap or not strings
    /// only is dropped whole, with the error kept in [`error`](Self::error).
    #[must_use]
    pub fn from_message(message: &[u8], limits: &InputLimits) -> Self {
        #[derive(Deserialize)]
        struct Envelope<'a> {
            #[serde(borrow, default)]
            input: Option<&'a RawValue>,
        }
        match serde_json::from_slice::<Envelope<'_>>(message) {
            Ok(Envelope { input }) => Self::from_input(input, limits),
            Err(_) => Self::failed(InputError::Malformed),
        }
    }

    /// Reads the `"input"` field's JSON text itself (`None` or `null`: empty input), as
    /// [`Endpoint::recover`](super::Endpoint::recover) hands it over from the one parse of the
    /// message's envelope.
    #[must_use]
    pub fn from_input(input: Option<&RawValue>, limits: &InputLimits) -> Self {
        let Some(input) = input.filter(|raw| raw.get() != "null") else {
            return Self::default();
        };
        match Self::parse(input.get().as_bytes(), limits) {
            Ok(forms) => Self { forms, error: None },
            Err(e) => Self::failed(e),
        }
    }

    /// Parses the `input` object itself (not the whole message).
    fn parse(json: &[u8], limits: &InputLimits) -> Result<BTreeMap<String, FormInput>, InputError> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Values {
            One(String),
            Many(Vec<String>),
        }
        if json.len() > limits.max_bytes() {
            return Err(InputError::TooLarge);
        }
        // Bounded by max_bytes: the parsed form can never be larger than the text.
        let raw: BTreeMap<String, BTreeMap<String, Values>> =
            serde_json::from_slice(json).map_err(|_| InputError::Malformed)?;
        if raw.len() > limits.max_forms() {
            return Err(InputError::TooLarge);
        }
        let fields: usize = raw.values().map(BTreeMap::len).sum();
        if fields > limits.max_fields() {
            return Err(InputError::TooLarge);
        }
        Ok(raw
            .into_iter()
            .map(|(id, fields)| {
                let fields = fields
                    .into_iter()
                    .map(|(name, v)| match v {
                        Values::One(s) => (name, vec![s]),
                        Values::Many(all) => (name, all),
                    })
                    .collect();
                (id, FormInput { fields })
            })
            .collect())
    }

    fn failed(error: InputError) -> Self {
        Self {
            forms: BTreeMap::new(),
            error: Some(error),
        }
    }

    /// The fields of form `id`.
    #[must_use]
    pub fn form(&self, id: &str) -> Option<&FormInput> {
        self.forms.get(id)
    }

    /// Every form, by id.
    pub fn forms(&self) -> impl Iterator<Item = (&str, &FormInput)> {
        self.forms.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of forms.
    #[must_use]
    pub fn len(&self) -> usize {
        self.forms.len()
    }

    /// Whether there is no input.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// Why the input was dropped, if it was.
    #[must_use]
    pub fn error(&self) -> Option<InputError> {
        self.error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> ClientInput {
        ClientInput::from_message(json.as_bytes(), &InputLimits::default())
    }

    #[test]
    fn reads_strings_and_lists() {
        let i = parse(r#"{"type":"recover","input":{"f":{"a":"1","b":["x","y"]}}}"#);
        let f = i.form("f").unwrap();
        assert_eq!(f.get("a"), Some("1"));
        assert_eq!(f.get_all("b"), ["x", "y"]);
        assert_eq!(f.get_all("c"), [] as [String; 0]);
        assert_eq!(i.error(), None);
    }

    #[test]
    fn missing_or_null_is_empty() {
        assert!(parse(r#"{"type":"recover"}"#).is_empty());
        assert_eq!(parse(r#"{"input":null}"#).error(), None);
    }

    #[test]
    fn non_strings_and_junk_are_malformed() {
        for bad in [
            r#"{"input":{"f":{"a":1}}}"#,
            r#"{"input":{"f":{"a":{"b":"c"}}}}"#,
            r#"{"input":["x"]}"#,
            "not json",
        ] {
            let i = parse(bad);
            assert!(i.is_empty(), "{bad}");
            assert_eq!(i.error(), Some(InputError::Malformed), "{bad}");
        }
    }

    #[test]
    fn caps_apply() {
        let limits = InputLimits::default().with_max_forms(1);
        let i = ClientInput::from_message(br#"{"input":{"a":{},"b":{}}}"#, &limits);
        assert_eq!(i.error(), Some(InputError::TooLarge));
        let limits = InputLimits::default().with_max_fields(1);
        let i = ClientInput::from_message(br#"{"input":{"a":{"x":"1","y":"2"}}}"#, &limits);
        assert_eq!(i.error(), Some(InputError::TooLarge));
        let limits = InputLimits::default().with_max_bytes(8);
        let i = ClientInput::from_message(br#"{"input":{"a":{"x":"123456"}}}"#, &limits);
        assert_eq!(i.error(), Some(InputError::TooLarge));
    }

    #[test]
    fn debug_shows_no_values() {
        let i = parse(r#"{"input":{"login":{"password":"hunter2"}}}"#);
        assert!(!format!("{i:?}").contains("hunter2"));
    }
}
