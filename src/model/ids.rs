//! Trace and span identifiers.

use std::fmt;
use std::hash::{BuildHasher, Hasher};

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

/// A fast hasher for keys made of trace and span ids (and the short names and keys the
/// receiver interns): FxHash's word-at-a-time multiply
/// mix, far cheaper than SipHash per span, finished with a full avalanche (MurmurHash3's
/// `fmix64`) over a per-table random seed. The finish matters: FxHash alone leaves the
/// low bits — the ones a hash table indexes by — depending on few input bits, so
/// sequential ids (tests, some clients) piled into a few buckets and a million-span
/// store slowed every request. The seed keeps crafted ids from colliding on purpose.
#[derive(Debug, Default)]
pub(crate) struct IdBytesHasher(u64);

impl Hasher for IdBytesHasher {
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
}

/// `HashMap`/`HashSet` hasher for ids and short names (see [`IdBytesHasher`]), seeded
/// per table.
#[derive(Clone, Debug)]
pub(crate) struct IdHash {
    seed: u64,
}

impl Default for IdHash {
    fn default() -> Self {
        IdHash {
            seed: std::collections::hash_map::RandomState::new().hash_one(0x1d_u64),
        }
    }
}

impl BuildHasher for IdHash {
    type Hasher = IdBytesHasher;

    fn build_hasher(&self) -> IdBytesHasher {
        IdBytesHasher(self.seed)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    use super::*;

    /// Sequential ids whose bytes repeat between trace and span id once hashed to a
    /// handful of values, which turned de-duplication quadratic. They must spread.
    #[test]
    fn sequential_ids_hash_apart() {
        let hasher = IdHash::default();
        let hashes: HashSet<u64> = (1..=10_000u64)
            .map(|n| {
                let mut trace = [0u8; 16];
                trace[..8].copy_from_slice(&n.to_be_bytes());
                let key = (
                    TraceId::from_bytes(trace),
                    SpanId::from_bytes(n.to_be_bytes()),
                );
                hasher.hash_one(key)
            })
            .collect();
        assert_eq!(hashes.len(), 10_000);
    }

    /// What a hash table indexes by — the low bits — must spread too: trace ids that
    /// differ only in their first bytes (a counter written big-endian) fill a table's
    /// buckets evenly.
    #[test]
    fn trace_ids_differing_in_their_first_bytes_spread_over_the_low_bits() {
        let hasher = IdHash::default();
        let buckets: HashSet<u64> = (1..=4096u64)
            .map(|n| {
                let mut trace = [0u8; 16];
                trace[..8].copy_from_slice(&n.to_be_bytes());
                trace[8] = 1;
                hasher.hash_one(TraceId::from_bytes(trace)) & 4095
            })
            .collect();
        assert!(
            buckets.len() > 2500,
            "{} of 4096 buckets used",
            buckets.len()
        );
    }
}
