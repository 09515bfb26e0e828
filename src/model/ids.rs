//! Trace and span identifiers.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ModelError;

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $len:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; $len]);

        impl $name {
            /// Wraps raw bytes.
            pub const fn from_bytes(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }

            /// Parses an id from a byte slice, as it arrives in OTLP protobuf.
            ///
            /// An empty slice, a slice of the wrong length or an all-zero id is an error:
            /// OTLP calls such ids invalid.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, ModelError> {
                let array: [u8; $len] = bytes.try_into().map_err(|_| ModelError::IdLength {
                    what: $what,
                    expected: $len,
                    got: bytes.len(),
                })?;
                if array == [0; $len] {
                    return Err(ModelError::ZeroId { what: $what });
                }
                Ok(Self(array))
            }

            /// Parses a lowercase or uppercase hex string (the OTLP JSON form).
            pub fn from_hex(hex: &str) -> Result<Self, ModelError> {
                let invalid = || ModelError::IdHex { what: $what, value: hex.to_owned() };
                if hex.len() != $len * 2 || !hex.is_ascii() {
                    return Err(invalid());
                }
                let mut bytes = [0u8; $len];
                for (i, byte) in bytes.iter_mut().enumerate() {
                    *byte = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).map_err(|_| invalid())?;
                }
                Self::from_slice(&bytes)
            }

            /// The raw bytes.
            pub const fn to_bytes(self) -> [u8; $len] {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for byte in self.0 {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let hex = String::deserialize(deserializer)?;
                Self::from_hex(&hex).map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_id!(
    /// A 16-byte W3C trace id, shown as 32 lowercase hex digits.
    ///
    /// ```
    /// use p2p_otel_testkit::model::TraceId;
    /// let id = TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap();
    /// assert_eq!(id.to_string(), "0af7651916cd43dd8448eb211c80319c");
    /// ```
    TraceId,
    16,
    "trace id"
);

hex_id!(
    /// An 8-byte span id, shown as 16 lowercase hex digits.
    ///
    /// ```
    /// use p2p_otel_testkit::model::SpanId;
    /// assert!(SpanId::from_hex("0000000000000000").is_err(), "all-zero ids are invalid");
    /// ```
    SpanId,
    8,
    "span id"
);
