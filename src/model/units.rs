//! Human-written quantities of the manifest format: durations (`500ms`, `10s`, `5m`, `1h`),
//! memory (`256Mi`, `1Gi`, `512M`, plain bytes) and CPU (`0.5`, `2`, `500m`).
//!
//! Each type parses from the text an operator writes and serializes to one canonical text, so
//! `10000ms` and `10s` hash the same in `spec_hash`. Parsing is pure and total: bad text gives a
//! message naming the accepted forms, never a panic.

use std::borrow::Cow;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration with millisecond precision, written `<integer><unit>` with the unit
/// one of `ms`, `s`, `m`, `h`.
///
/// ```
/// use keel::model::units::Duration;
/// let d: Duration = "90s".parse().unwrap();
/// assert_eq!(d.as_millis(), 90_000);
/// assert_eq!("10000ms".parse::<Duration>().unwrap().to_string(), "10s");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    millis: u64,
}

impl Duration {
    pub const fn from_millis(millis: u64) -> Self {
        Self { millis }
    }

    pub const fn from_secs(secs: u64) -> Self {
        Self {
            millis: secs * 1000,
        }
    }

    pub const fn as_millis(self) -> u64 {
        self.millis
    }

    pub const fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.millis)
    }
}

/// Why a quantity's text was refused; the message names the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QuantityError(String);

impl std::str::FromStr for Duration {
    type Err = QuantityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || {
            QuantityError(format!(
                "invalid duration {text:?}: write a whole number followed by ms, s, m or h (e.g. \"500ms\", \"10s\", \"5m\")"
            ))
        };
        let text = text.trim();
        let digits_end = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (number, unit) = text.split_at(digits_end);
        let number: u64 = number.parse().map_err(|_| bad())?;
        let factor = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad()),
        };
        number
            .checked_mul(factor)
            .map(Duration::from_millis)
            .ok_or_else(|| QuantityError(format!("duration {text:?} is too large")))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.millis;
        if m != 0 && m % 3_600_000 == 0 {
            write!(f, "{}h", m / 3_600_000)
        } else if m != 0 && m % 60_000 == 0 {
            write!(f, "{}m", m / 60_000)
        } else if m % 1_000 == 0 {
            write!(f, "{}s", m / 1_000)
        } else {
            write!(f, "{m}ms")
        }
    }
}

/// An amount of memory in bytes, written as plain bytes or with a suffix: binary `Ki Mi Gi Ti`
/// or decimal `K M G T` (`k` is accepted for `K`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Memory {
    bytes: u64,
}

impl Memory {
    pub const fn from_bytes(bytes: u64) -> Self {
        Self { bytes }
    }

    pub const fn from_mebibytes(mib: u64) -> Self {
        Self {
            bytes: mib * 1024 * 1024,
        }
    }

    pub const fn bytes(self) -> u64 {
        self.bytes
    }
}

const MEMORY_UNITS: [(&str, u64); 9] = [
    ("Ti", 1 << 40),
    ("Gi", 1 << 30),
    ("Mi", 1 << 20),
    ("Ki", 1 << 10),
    ("T", 1_000_000_000_000),
    ("G", 1_000_000_000),
    ("M", 1_000_000),
    ("K", 1_000),
    ("k", 1_000),
];

impl std::str::FromStr for Memory {
    type Err = QuantityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || {
            QuantityError(format!(
                "invalid memory quantity {text:?}: write bytes or a number with Ki, Mi, Gi, Ti, K, M, G or T (e.g. \"256Mi\", \"1Gi\")"
            ))
        };
        let text = text.trim();
        let (number, factor) = MEMORY_UNITS
            .iter()
            .find_map(|(suffix, factor)| text.strip_suffix(suffix).map(|n| (n, *factor)))
            .unwrap_or((text, 1));
        let bytes = parse_scaled(number, factor).ok_or_else(bad)?;
        Ok(Memory { bytes })
    }
}

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Canonical form: the largest binary unit that divides exactly, so hashes are stable.
        let binary = MEMORY_UNITS.iter().take(4);
        for (suffix, factor) in binary {
            if self.bytes != 0 && self.bytes % factor == 0 {
                return write!(f, "{}{suffix}", self.bytes / factor);
            }
        }
        write!(f, "{}", self.bytes)
    }
}

/// A CPU amount in thousandths of a core, written `0.5`, `2` or `500m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cpu {
    millis: u64,
}

impl Cpu {
    pub const fn from_millicores(millis: u64) -> Self {
        Self { millis }
    }

    pub const fn millicores(self) -> u64 {
        self.millis
    }
}

impl std::str::FromStr for Cpu {
    type Err = QuantityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || {
            QuantityError(format!(
                "invalid cpu quantity {text:?}: write cores (\"0.5\", \"2\") or millicores (\"500m\")"
            ))
        };
        let text = text.trim();
        let millis = match text.strip_suffix('m') {
            Some(number) => parse_scaled(number, 1),
            None => parse_scaled(text, 1000),
        }
        .ok_or_else(bad)?;
        Ok(Cpu { millis })
    }
}

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.millis % 1000 == 0 {
            write!(f, "{}", self.millis / 1000)
        } else {
            write!(f, "{}m", self.millis)
        }
    }
}

/// `number * factor` for a decimal `number` (digits, optionally one `.` and more digits), exact
/// to the unit: fractions that do not land on a whole unit are refused rather than rounded.
fn parse_scaled(number: &str, factor: u64) -> Option<u64> {
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits_only(whole) || !digits_only(frac) || frac.len() > 9 {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let mut total = whole.checked_mul(factor)?;
    if !frac.is_empty() {
        let scale = 10u64.pow(frac.len() as u32);
        let frac: u64 = frac.parse().ok()?;
        let scaled = frac.checked_mul(factor)?;
        if scaled % scale != 0 {
            return None;
        }
        total = total.checked_add(scaled / scale)?;
    }
    Some(total)
}

/// Serde and JSON Schema glue shared by the three quantity types: they read from any scalar's
/// text (YAML writes `cpu: 0.5` unquoted) and write their canonical text.
macro_rules! text_quantity {
    ($ty:ident, $name:literal, $schema:tt) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct TextVisitor;
                impl Visitor<'_> for TextVisitor {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($name)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        v.parse().map_err(E::custom)
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$ty, E> {
                        v.to_string().parse().map_err(E::custom)
                    }
                    fn visit_f64<E: de::Error>(self, v: f64) -> Result<$ty, E> {
                        v.to_string().parse().map_err(E::custom)
                    }
                }
                deserializer.deserialize_str(TextVisitor)
            }
        }

        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                stringify!($ty).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!($schema)
            }
        }
    };
}

text_quantity!(Duration, "a duration such as \"500ms\", \"10s\" or \"5m\"", {
    "type": "string",
    "description": "A duration: a whole number followed by ms, s, m or h.",
    "pattern": "^[0-9]+(ms|s|m|h)$",
    "examples": ["500ms", "10s", "5m", "1h"]
});
text_quantity!(Memory, "a memory quantity such as \"256Mi\" or \"1Gi\"", {
    "type": ["string", "integer"],
    "description": "Memory: bytes, or a number with Ki, Mi, Gi, Ti (binary) or K, M, G, T (decimal).",
    "pattern": "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|K|k|M|G|T)?$",
    "examples": ["256Mi", "1Gi"]
});
text_quantity!(Cpu, "a cpu quantity such as \"0.5\" or \"500m\"", {
    "type": ["string", "number"],
    "description": "CPU: cores (\"0.5\", \"2\") or millicores (\"500m\").",
    "pattern": "^[0-9]+(\\.[0-9]+)?m?$",
    "examples": ["0.5", "2", "500m"]
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_canonically() {
        for (text, millis, canon) in [
            ("500ms", 500, "500ms"),
            ("10s", 10_000, "10s"),
            ("10000ms", 10_000, "10s"),
            ("5m", 300_000, "5m"),
            ("1h", 3_600_000, "1h"),
            ("90s", 90_000, "90s"),
            ("0s", 0, "0s"),
        ] {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.as_millis(), millis, "{text}");
            assert_eq!(d.to_string(), canon, "{text}");
        }
        for bad in [
            "",
            "10",
            "s",
            "1.5s",
            "-1s",
            "10 sec",
            "10d",
            "99999999999999999999h",
        ] {
            assert!(bad.parse::<Duration>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn memory_parses_binary_and_decimal_units() {
        for (text, bytes, canon) in [
            ("256Mi", 256 << 20, "256Mi"),
            ("1Gi", 1 << 30, "1Gi"),
            ("1024Mi", 1 << 30, "1Gi"),
            ("0.5Gi", 512 << 20, "512Mi"),
            ("512M", 512_000_000, "500000Ki"),
            ("1000", 1000, "1000"),
        ] {
            let m: Memory = text.parse().unwrap();
            assert_eq!(m.bytes(), bytes, "{text}");
            assert_eq!(m.to_string(), canon, "{text}");
        }
        for bad in ["", "Mi", "12Xi", "-1Mi", "1.5", "1e9"] {
            assert!(bad.parse::<Memory>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn cpu_parses_cores_and_millicores() {
        for (text, millis, canon) in [
            ("0.5", 500, "500m"),
            ("2", 2000, "2"),
            ("500m", 500, "500m"),
            ("1.25", 1250, "1250m"),
        ] {
            let c: Cpu = text.parse().unwrap();
            assert_eq!(c.millicores(), millis, "{text}");
            assert_eq!(c.to_string(), canon, "{text}");
        }
        for bad in ["", "m", "0.0001", "-1", "one"] {
            assert!(bad.parse::<Cpu>().is_err(), "{bad:?} accepted");
        }
    }
}
