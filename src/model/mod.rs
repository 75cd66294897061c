//! Domain types only: the manifest wire format, the validated desired state, diagnostics and
//! snapshots. No tokio, no I/O — every other layer speaks in these types.

/// Declares a snake_case string enum with `as_str`, `Display`, `FromStr` (errors are
/// `status::UnknownValue`) and `ALL`: the one mapping between a value and its text in JSON,
/// CLI output and SQLite.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::model::status::UnknownValue;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($text => Ok($name::$variant),)*
                    _ => Err($crate::model::status::UnknownValue {
                        kind: stringify!($name),
                        value: text.to_owned(),
                        valid: &[$($text,)*],
                    }),
                }
            }
        }
    };
}

pub mod backoff;
pub mod delivery;
pub mod desired;
pub mod diagnostic;
pub mod diff;
pub mod event;
pub mod manifest;
pub mod memory;
pub mod observed;
pub mod plan;
pub mod run;
pub mod schedule;
pub mod snapshot;
pub mod status;
pub mod stored;
pub mod time;
pub mod units;
