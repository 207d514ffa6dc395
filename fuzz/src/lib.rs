//! `Arbitrary` inputs for the structure-aware targets.
//!
//! The checking lives in `state_recovery::fuzzing`; these types only tell libFuzzer's bytes how
//! to become its inputs (the main crate does not depend on `arbitrary`). Field for field they
//! mirror the entry module's types and convert into them.

use arbitrary::{Arbitrary, Result, Unstructured};
use state_recovery::fuzzing as entry;

/// A JSON-like value: a recursive enum built depth-first, at most [`Json::MAX_DEPTH`] deep and
/// at most [`Json::MAX_ITEMS`] items per array or object; floats are any `f64` (the entry
/// module turns non-finite ones into `null`).
#[derive(Debug, Clone)]
pub struct Json(pub entry::Json);

impl Json {
    /// Deepest nesting generated.
    pub const MAX_DEPTH: usize = 6;
    /// Most items of one array or object.
    pub const MAX_ITEMS: usize = 8;

    fn build(u: &mut Unstructured<'_>, depth: usize) -> Result<entry::Json> {
        let kinds: u8 = if depth >= Self::MAX_DEPTH { 5 } else { 7 };
        Ok(match u.int_in_range(0..=kinds)? {
            0 => entry::Json::Null,
            1 => entry::Json::Bool(u.arbitrary()?),
            2 => entry::Json::Int(u.arbitrary()?),
            3 => entry::Json::Uint(u.arbitrary()?),
            4 => entry::Json::Float(u.arbitrary()?),
            5 => entry::Json::Str(u.arbitrary()?),
            6 => {
                let mut items = Vec::new();
                while items.len() < Self::MAX_ITEMS && u.arbitrary()? {
                    items.push(Self::build(u, depth + 1)?);
                }
                entry::Json::Array(items)
            }
            _ => {
                let mut fields = Vec::new();
                while fields.len() < Self::MAX_ITEMS && u.arbitrary()? {
                    fields.push((u.arbitrary()?, Self::build(u, depth + 1)?));
                }
                entry::Json::Object(fields)
            }
        })
    }
}

impl<'a> Arbitrary<'a> for Json {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Self::build(u, 0).map(Json)
    }
}

/// Mirrors [`entry::RoundTrip`].
#[derive(Debug, Clone, Arbitrary)]
pub struct RoundTrip {
    value: Json,
    file: String,
    line: u32,
    column: u32,
    instance: Option<String>,
    salt: [u8; 16],
    subject: Option<String>,
    revision: u64,
    schema: u32,
    offset: u32,
}

impl From<RoundTrip> for entry::RoundTrip {
    fn from(r: RoundTrip) -> Self {
        Self {
            value: r.value.0,
            file: r.file,
            line: r.line,
            column: r.column,
            instance: r.instance,
            salt: r.salt,
            subject: r.subject,
            revision: r.revision,
            schema: r.schema,
            offset: r.offset,
        }
    }
}

/// Mirrors [`entry::Op`].
#[derive(Debug, Clone, Arbitrary)]
pub enum Op {
    Seal {
        location: u8,
        salt: u8,
        subject: u8,
        revision: u64,
        schema: u32,
        value: Json,
    },
    FlipBit {
        entry: u16,
        bit: u32,
        in_text: bool,
    },
    Splice {
        first: u16,
        second: u16,
        cut_first: u16,
        cut_second: u16,
        in_text: bool,
    },
    Move {
        entry: u16,
        location: u8,
    },
    Rescope {
        entry: u16,
        salt: u8,
        subject: u8,
    },
    Advance {
        secs: u16,
    },
    Rewind {
        secs: u16,
    },
    RotateAdd,
    RotateDrop,
    Open {
        entry: u16,
    },
    OpenBundle {
        salt: u8,
        subject: u8,
        entries: Vec<u16>,
    },
}

impl From<Op> for entry::Op {
    fn from(op: Op) -> Self {
        match op {
            Op::Seal {
                location,
                salt,
                subject,
                revision,
                schema,
                value,
            } => Self::Seal {
                location,
                salt,
                subject,
                revision,
                schema,
                value: value.0,
            },
            Op::FlipBit {
                entry,
                bit,
                in_text,
            } => Self::FlipBit {
                entry,
                bit,
                in_text,
            },
            Op::Splice {
                first,
                second,
                cut_first,
                cut_second,
                in_text,
            } => Self::Splice {
                first,
                second,
                cut_first,
                cut_second,
                in_text,
            },
            Op::Move { entry, location } => Self::Move { entry, location },
            Op::Rescope {
                entry,
                salt,
                subject,
            } => Self::Rescope {
                entry,
                salt,
                subject,
            },
            Op::Advance { secs } => Self::Advance { secs },
            Op::Rewind { secs } => Self::Rewind { secs },
            Op::RotateAdd => Self::RotateAdd,
            Op::RotateDrop => Self::RotateDrop,
            Op::Open { entry } => Self::Open { entry },
            Op::OpenBundle {
                salt,
                subject,
                entries,
            } => Self::OpenBundle {
                salt,
                subject,
                entries,
            },
        }
    }
}

/// Mirrors [`entry::Model`].
#[derive(Debug, Clone, Arbitrary)]
pub struct Model {
    skew: u8,
    ops: Vec<Op>,
}

impl From<Model> for entry::Model {
    fn from(m: Model) -> Self {
        Self {
            skew: m.skew,
            ops: m.ops.into_iter().map(Into::into).collect(),
        }
    }
}
