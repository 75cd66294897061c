//! A serde `Deserializer` over a positioned YAML tree, so that every error — a wrong type, an
//! unknown field, a bad duration — knows the node it happened at.
//!
//! Errors carry the innermost node; `parse` turns that into file, line, column and field path.
//! Scalars are lenient where manifests need it: a field that wants a string gets any scalar's
//! text as written (`PORT: 8080`, `cpu: 0.5`), while numbers and booleans stay typed for
//! fields that want them.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::yaml::{Document, NodeId, NodeKind, ScalarValue};
use crate::model::manifest::RAW_TEXT_NEWTYPE;

/// A deserialization error, anchored to the node that caused it when known.
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    pub node: Option<NodeId>,
    pub kind: DeErrorKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DeErrorKind {
    UnknownField {
        field: String,
        expected: &'static [&'static str],
    },
    UnknownVariant {
        variant: String,
        expected: &'static [&'static str],
    },
    MissingField(&'static str),
    Message(String),
}

/// Fields of Ring's manifests keel does not implement, with what to write instead: refused
/// with this message rather than as an unknown field (docs/manifest.md, "Coming from Ring").
const RING_ONLY: &[(&str, &str)] = &[(
    "autoscale",
    "autoscale is not supported yet; set replicas (keel runs exactly that many instances)",
)];

/// Values of Ring's manifests keel does not implement (its other runtimes), with why.
const RING_ONLY_VALUES: &[(&str, &str)] = &[
    (
        "podman",
        "runtime podman is not supported: keel runs docker and cloud-hypervisor",
    ),
    (
        "containerd",
        "runtime containerd is not supported: keel runs docker and cloud-hypervisor",
    ),
    (
        "firecracker",
        "runtime firecracker is not supported: keel runs microVMs on cloud-hypervisor (runtime: cloud-hypervisor)",
    ),
];

impl DeError {
    fn at(mut self, node: NodeId) -> Self {
        self.node.get_or_insert(node);
        self
    }

    fn new(kind: DeErrorKind) -> Self {
        Self { node: None, kind }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            DeErrorKind::UnknownField { field, expected } => {
                if let Some((_, why)) = RING_ONLY.iter().find(|(name, _)| name == field) {
                    return f.write_str(why);
                }
                write!(f, "unknown field {field:?}")?;
                suggest(f, field, expected)
            }
            DeErrorKind::UnknownVariant { variant, expected } => {
                if let Some((_, why)) = RING_ONLY_VALUES.iter().find(|(name, _)| name == variant) {
                    return f.write_str(why);
                }
                write!(f, "unknown value {variant:?}")?;
                suggest(f, variant, expected)
            }
            DeErrorKind::MissingField(field) => write!(f, "missing required field {field:?}"),
            DeErrorKind::Message(m) => f.write_str(m),
        }
    }
}

/// Appends `, did you mean "x"?` for a close match, else the list of valid names.
fn suggest(f: &mut fmt::Formatter<'_>, given: &str, expected: &[&str]) -> fmt::Result {
    match super::nearest(given, expected) {
        Some(best) => write!(f, ", did you mean {best:?}?"),
        None if expected.is_empty() => Ok(()),
        None => write!(f, "; expected one of: {}", expected.join(", ")),
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::new(DeErrorKind::Message(msg.to_string()))
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::custom(format_args!(
            "expected {}, found {}",
            humanize(exp),
            describe(unexp)
        ))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::custom(format_args!(
            "expected {}, found {}",
            humanize(exp),
            describe(unexp)
        ))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self::new(DeErrorKind::UnknownField {
            field: field.to_owned(),
            expected,
        })
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::new(DeErrorKind::UnknownVariant {
            variant: variant.to_owned(),
            expected,
        })
    }

    fn missing_field(field: &'static str) -> Self {
        Self::new(DeErrorKind::MissingField(field))
    }
}

/// serde names primitive targets by their Rust type; say what a manifest author should write.
fn humanize(exp: &dyn de::Expected) -> String {
    let text = exp.to_string();
    match text.as_str() {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number, 0 or more".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        _ => super::schema::expected_words(&text).unwrap_or(text),
    }
}

fn describe(unexp: de::Unexpected<'_>) -> String {
    match unexp {
        de::Unexpected::Unit => "null".to_owned(),
        de::Unexpected::Map => "a mapping".to_owned(),
        de::Unexpected::Seq => "a sequence".to_owned(),
        other => other.to_string(),
    }
}

/// Deserializes the node `id` of `doc` as a `T`, reading mappings as if the entries whose key
/// node is in `masked` were absent (how `parse` skips a bad field to find the next problem).
pub fn from_node<'a, T: serde::Deserialize<'a>>(
    doc: &'a Document,
    id: NodeId,
    masked: &'a HashSet<NodeId>,
) -> Result<T, DeError> {
    T::deserialize(NodeDe { doc, id, masked })
}

#[derive(Clone, Copy)]
struct NodeDe<'a> {
    doc: &'a Document,
    id: NodeId,
    masked: &'a HashSet<NodeId>,
}

impl<'a> NodeDe<'a> {
    fn scalar(&self) -> Option<(&'a str, ScalarValue)> {
        match &self.doc.node(self.id).kind {
            NodeKind::Scalar(s) => Some((s.text.as_str(), s.value)),
            NodeKind::Seq(_) | NodeKind::Map(_) => None,
        }
    }

    fn any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.doc.node(self.id).kind {
            NodeKind::Scalar(s) => match s.value {
                ScalarValue::Null => visitor.visit_unit(),
                ScalarValue::Bool(b) => visitor.visit_bool(b),
                ScalarValue::Int(i) => visitor.visit_i64(i),
                ScalarValue::UInt(u) => visitor.visit_u64(u),
                ScalarValue::Float(x) => visitor.visit_f64(x),
                ScalarValue::Str => visitor.visit_str(&s.text),
            },
            NodeKind::Seq(items) => visitor.visit_seq(SeqDe {
                doc: self.doc,
                masked: self.masked,
                items: items.iter(),
            }),
            NodeKind::Map(entries) => visitor.visit_map(MapDe {
                doc: self.doc,
                masked: self.masked,
                entries: entries.iter(),
                value: None,
            }),
        };
        result.map_err(|e| e.at(self.id))
    }
}

macro_rules! forward_to_any {
    ($($method:ident)*) => {
        $(fn $method<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.any(visitor)
        })*
    };
}

impl<'a> de::Deserializer<'a> for NodeDe<'a> {
    type Error = DeError;

    forward_to_any! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32
        deserialize_u64 deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char
        deserialize_bytes deserialize_byte_buf deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier
    }

    fn deserialize_str<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some((text, value)) if value != ScalarValue::Null => {
                visitor.visit_str(text).map_err(|e: DeError| e.at(self.id))
            }
            Some(_) | None => self.any(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.doc.is_null(self.id) {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.any(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if name == RAW_TEXT_NEWTYPE {
            // The type wants a scalar's text as written; mappings and sequences as usual.
            return self.deserialize_str(visitor);
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_tuple<V: Visitor<'a>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.any(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.any(visitor)
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if self.doc.is_null(self.id) {
            // An empty block (`config:` with nothing under it) is an empty mapping.
            return visitor
                .visit_map(MapDe {
                    doc: self.doc,
                    masked: self.masked,
                    entries: [].iter(),
                    value: None,
                })
                .map_err(|e| e.at(self.id));
        }
        self.any(visitor)
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some((text, value)) if value != ScalarValue::Null => visitor
                .visit_enum(text.into_deserializer())
                .map_err(|e: DeError| e.at(self.id)),
            Some(_) | None => self.any(visitor),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct SeqDe<'a> {
    doc: &'a Document,
    masked: &'a HashSet<NodeId>,
    items: std::slice::Iter<'a, NodeId>,
}

impl<'a> de::SeqAccess<'a> for SeqDe<'a> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some(&id) => seed
                .deserialize(NodeDe {
                    doc: self.doc,
                    id,
                    masked: self.masked,
                })
                .map(Some)
                .map_err(|e| e.at(id)),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'a> {
    doc: &'a Document,
    masked: &'a HashSet<NodeId>,
    entries: std::slice::Iter<'a, (NodeId, NodeId)>,
    value: Option<NodeId>,
}

impl<'a> de::MapAccess<'a> for MapDe<'a> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let masked = self.masked;
        match self.entries.find(|(key, _)| !masked.contains(key)) {
            None => Ok(None),
            Some(&(key, value)) => {
                self.value = Some(value);
                seed.deserialize(NodeDe {
                    doc: self.doc,
                    id: key,
                    masked,
                })
                .map(Some)
                .map_err(|e| e.at(key))
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        // serde calls next_value only after a key; a missing value is a caller bug we report
        // as an error rather than a panic.
        let id = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("value requested before key"))?;
        seed.deserialize(NodeDe {
            doc: self.doc,
            id,
            masked: self.masked,
        })
        .map_err(|e| e.at(id))
    }

    fn size_hint(&self) -> Option<usize> {
        None
    }
}
