//! A `Serialize` adapter that refuses non-finite floats.
//!
//! serde_json writes `NaN`, `inf` and `-inf` as `null` (JSON has no such numbers), so a value
//! holding one would seal fine and open as another value, or not at all. The formatter cannot
//! tell that `null` from a real one, so the check sits one level up: [`Finite`] wraps the
//! value's serializer and every nested one, passes every call through unchanged (the bytes are
//! exactly serde_json's), and fails `serialize_f32` / `serialize_f64` on a non-finite float,
//! setting a flag the caller reads to report [`SealError::NonFiniteFloat`](crate::SealError).

use std::cell::Cell;
use std::fmt::Display;

use serde::ser::{
    self, Serialize, SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant,
    SerializeTuple, SerializeTupleStruct, SerializeTupleVariant, Serializer,
};

/// `value`, serialized through [`Check`]; `found` is set when a non-finite float is refused.
pub(crate) struct Finite<'a, T: ?Sized> {
    pub(crate) value: &'a T,
    pub(crate) found: &'a Cell<bool>,
}

impl<T: Serialize + ?Sized> Serialize for Finite<'_, T> {
    #[inline]
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(Check {
            inner: s,
            found: self.found,
        })
    }
}

/// The wrapped serializer (and, for compound values, the wrapped compound serializer).
pub(crate) struct Check<'a, S> {
    inner: S,
    found: &'a Cell<bool>,
}

impl<'a, S> Check<'a, S> {
    fn wrap<'v, T: ?Sized>(&self, value: &'v T) -> Finite<'v, T>
    where
        'a: 'v,
    {
        Finite {
            value,
            found: self.found,
        }
    }

    fn refuse<E: ser::Error>(&self) -> E {
        self.found.set(true);
        E::custom("a non-finite float has no JSON form")
    }
}

impl<'a, S: Serializer> Serializer for Check<'a, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Check<'a, S::SerializeSeq>;
    type SerializeTuple = Check<'a, S::SerializeTuple>;
    type SerializeTupleStruct = Check<'a, S::SerializeTupleStruct>;
    type SerializeTupleVariant = Check<'a, S::SerializeTupleVariant>;
    type SerializeMap = Check<'a, S::SerializeMap>;
    type SerializeStruct = Check<'a, S::SerializeStruct>;
    type SerializeStructVariant = Check<'a, S::SerializeStructVariant>;

    fn serialize_f32(self, v: f32) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            self.inner.serialize_f32(v)
        } else {
            Err(self.refuse())
        }
    }

    fn serialize_f64(self, v: f64) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            self.inner.serialize_f64(v)
        } else {
            Err(self.refuse())
        }
    }

    fn serialize_bool(self, v: bool) -> Result<S::Ok, S::Error> {
        self.inner.serialize_bool(v)
    }
    fn serialize_i8(self, v: i8) -> Result<S::Ok, S::Error> {
        self.inner.serialize_i8(v)
    }
    fn serialize_i16(self, v: i16) -> Result<S::Ok, S::Error> {
        self.inner.serialize_i16(v)
    }
    fn serialize_i32(self, v: i32) -> Result<S::Ok, S::Error> {
        self.inner.serialize_i32(v)
    }
    fn serialize_i64(self, v: i64) -> Result<S::Ok, S::Error> {
        self.inner.serialize_i64(v)
    }
    fn serialize_i128(self, v: i128) -> Result<S::Ok, S::Error> {
        self.inner.serialize_i128(v)
    }
    fn serialize_u8(self, v: u8) -> Result<S::Ok, S::Error> {
        self.inner.serialize_u8(v)
    }
    fn serialize_u16(self, v: u16) -> Result<S::Ok, S::Error> {
        self.inner.serialize_u16(v)
    }
    fn serialize_u32(self, v: u32) -> Result<S::Ok, S::Error> {
        self.inner.serialize_u32(v)
    }
    fn serialize_u64(self, v: u64) -> Result<S::Ok, S::Error> {
        self.inner.serialize_u64(v)
    }
    fn serialize_u128(self, v: u128) -> Result<S::Ok, S::Error> {
        self.inner.serialize_u128(v)
    }
    fn serialize_char(self, v: char) -> Result<S::Ok, S::Error> {
        self.inner.serialize_char(v)
    }
    fn serialize_str(self, v: &str) -> Result<S::Ok, S::Error> {
        self.inner.serialize_str(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<S::Ok, S::Error> {
        self.inner.serialize_bytes(v)
    }
    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.inner.serialize_none()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        let value = self.wrap(value);
        self.inner.serialize_some(&value)
    }
    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit()
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit_struct(name)
    }
    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit_variant(name, index, variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        let value = self.wrap(value);
        self.inner.serialize_newtype_struct(name, &value)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        let value = self.wrap(value);
        self.inner
            .serialize_newtype_variant(name, index, variant, &value)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        let found = self.found;
        self.inner
            .serialize_seq(len)
            .map(|inner| Check { inner, found })
    }
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        let found = self.found;
        self.inner
            .serialize_tuple(len)
            .map(|inner| Check { inner, found })
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        let found = self.found;
        self.inner
            .serialize_tuple_struct(name, len)
            .map(|inner| Check { inner, found })
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        let found = self.found;
        self.inner
            .serialize_tuple_variant(name, index, variant, len)
            .map(|inner| Check { inner, found })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        let found = self.found;
        self.inner
            .serialize_map(len)
            .map(|inner| Check { inner, found })
    }
    // serde_json's raw values (and `arbitrary_precision` numbers) are structs with a reserved
    // name; passing the name through keeps them raw.
    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        let found = self.found;
        self.inner
            .serialize_struct(name, len)
            .map(|inner| Check { inner, found })
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        let found = self.found;
        self.inner
            .serialize_struct_variant(name, index, variant, len)
            .map(|inner| Check { inner, found })
    }
    fn collect_str<T: Display + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.inner.collect_str(value)
    }
    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

impl<S: SerializeSeq> SerializeSeq for Check<'_, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
        let value = self.wrap(value);
        self.inner.serialize_element(&value)
    }
    fn end(self) -> Result<S::Ok, S::Error> {
        self.inner.end()
    }
}

impl<S: SerializeTuple> SerializeTuple for Check<'_, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
        let value = self.wrap(value);
        self.inner.serialize_element(&value)
    }
    fn end(self) -> Result<S::Ok, S::Error> {
        self.inner.end()
    }
}

impl<S: SerializeTupleStruct> SerializeTupleStruct for Check<'_, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
        let value = self.wrap(value);
        self.inner.serialize_field(&value)
    }
    fn end(self) -> Result<S::Ok, S::Error> {
        self.inner.end()
    }
}

impl<S: SerializeTupleVariant> SerializeTupleVariant for Check<'_, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
        let value = self.wrap(value);
        self.inner.serialize_field(&value)
    }
    fn end(self) -> Result<S::Ok, S::Error> {
        self.inner.end()
    }
}

impl<S: SerializeMap> SerializeMap for Check<'_, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), S::Error> {
        let key = self.wrap(key);
        self.inner.serialize_key(&key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
        let value = self.wrap(value);
        self.inner.serialize_value(&value)
    }
    fn serialize_entry<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &mut self,
        key: &K,
        value: &V,
    ) -> Result<(), S::Error> {
        let (key, value) = (self.wrap(key), self.wrap(value));
        self.inner.serialize_entry(&key, &value)
    }
    fn end(self) -> Result<S::Ok, S::Error> {
        self.inner.end()
    }
}

impl<S: SerializeStruct> SerializeStruct for Check<'_, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), S::Error> {
        let value = self.wrap(value);
        self.inner.serialize_field(key, &value)
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), S::Error> {
        self.inner.skip_field(key)
    }
    fn end(self) -> Result<S::Ok, S::Error> {
        self.inner.end()
    }
}

impl<S: SerializeStructVariant> SerializeStructVariant for Check<'_, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), S::Error> {
        let value = self.wrap(value);
        self.inner.serialize_field(key, &value)
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), S::Error> {
        self.inner.skip_field(key)
    }
    fn end(self) -> Result<S::Ok, S::Error> {
        self.inner.end()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use serde::Serialize;
    use serde_json::value::RawValue;

    use super::*;

    fn through(v: &(impl Serialize + ?Sized)) -> Result<Vec<u8>, bool> {
        let found = Cell::new(false);
        let mut buf = Vec::new();
        let r = Finite {
            value: v,
            found: &found,
        }
        .serialize(&mut serde_json::Serializer::new(&mut buf));
        match (found.get(), r) {
            (true, _) => Err(true),
            (false, Ok(())) => Ok(buf),
            (false, Err(_)) => Err(false),
        }
    }

    #[derive(Serialize)]
    enum E {
        Unit,
        New(f64),
        Tuple(u8, f32),
        Struct {
            a: Option<f64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            b: Option<u8>,
        },
    }

    #[derive(Serialize)]
    struct All {
        e: Vec<E>,
        t: (u8, String, char),
        bytes: serde_bytes_like::Bytes,
        unit: (),
        raw: Box<RawValue>,
        map: BTreeMap<u32, f32>,
        big: (i128, u128),
    }

    mod serde_bytes_like {
        pub(super) struct Bytes(pub(super) Vec<u8>);
        impl serde::Serialize for Bytes {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
    }

    #[test]
    fn writes_exactly_what_serde_json_writes() {
        let v = All {
            e: vec![
                E::Unit,
                E::New(1.5),
                E::Tuple(1, -0.25),
                E::Struct { a: None, b: None },
                E::Struct {
                    a: Some(2.0),
                    b: Some(3),
                },
            ],
            t: (7, "é\"\\\u{1}".into(), 'x'),
            bytes: serde_bytes_like::Bytes(vec![1, 2, 3]),
            unit: (),
            raw: RawValue::from_string("[ 1, {\"a\" : 2} ]".into()).unwrap(),
            map: [(1, 0.5), (2, f32::MAX)].into_iter().collect(),
            big: (i128::MIN, u128::MAX),
        };
        assert_eq!(through(&v).unwrap(), serde_json::to_vec(&v).unwrap());
        let value = serde_json::json!({"a": [1, 2.5, null, {"b": "c"}], "d": -1e300});
        assert_eq!(
            through(&value).unwrap(),
            serde_json::to_vec(&value).unwrap()
        );
    }

    #[test]
    fn refuses_non_finite_floats_anywhere() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(through(&bad), Err(true));
            assert_eq!(through(&[1.0, bad]), Err(true));
            assert_eq!(through(&Some(bad)), Err(true));
            assert_eq!(through(&E::New(bad)), Err(true));
            assert_eq!(
                through(&E::Struct {
                    a: Some(bad),
                    b: None
                }),
                Err(true)
            );
            assert_eq!(through(&vec![vec![(1u8, bad)]]), Err(true));
            let m: HashMap<&str, f64> = [("k", bad)].into_iter().collect();
            assert_eq!(through(&m), Err(true));
            #[allow(clippy::cast_possible_truncation)]
            let f = bad as f32;
            assert_eq!(through(&E::Tuple(0, f)), Err(true));
            assert_eq!(through(&f), Err(true));
        }
        let m: BTreeMap<String, Vec<f32>> = [("k".into(), vec![f32::NAN])].into_iter().collect();
        assert_eq!(through(&m), Err(true));
        // A float map key: refused here first (serde_json would refuse it too).
        struct FloatKey(f64);
        impl Serialize for FloatKey {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry(&self.0, &1)?;
                m.end()
            }
        }
        assert_eq!(through(&FloatKey(f64::INFINITY)), Err(true));
        assert_eq!(through(&FloatKey(1.5)).unwrap(), br#"{"1.5":1}"#);
        // An error that is not about floats is not reported as one.
        let m: BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into_iter().collect();
        assert_eq!(through(&m), Err(false));
    }
}
