//! The crate's one hasher for its hash tables: ids and short names, seeded per table.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};

/// A fast hasher for keys made of ids — trace and span ids, tracing's span ids — and of
/// short names (the receiver's interned strings, a contract's names): FxHash's word-at-a-time multiply
/// mix, far cheaper than SipHash per span, finished with a full avalanche (MurmurHash3's
/// `fmix64`) over a per-table random seed. The finish matters: FxHash alone leaves the
/// low bits — the ones a hash table indexes by — depending on few input bits, so
/// sequential ids (tests, some clients) piled into a few buckets and a million-span
/// store slowed every request. The seed varies the buckets from table to table; it is not
/// a keyed hash, so it raises the cost of crafted collisions without ruling them out (the
/// receiver also bounds what one client can store).
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
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
        // The last bytes as a little-endian word, zero-padded, built without a copy: a
        // short name is mostly tail, and a variable-length copy is a call to memcpy.
        let tail = chunks.remainder();
        if !tail.is_empty() {
            let word = tail
                .iter()
                .rev()
                .fold(0u64, |word, byte| (word << 8) | u64::from(*byte));
            self.write_u64(word);
        }
    }

    /// The byte `str` hashing appends after the text, as one word.
    fn write_u8(&mut self, byte: u8) {
        self.write_u64(u64::from(byte));
    }

    /// A whole word at once: what `write` does with each 8-byte chunk, without the copy
    /// (the capture's open spans are keyed by tracing's `u64` span ids).
    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
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

/// A `HashMap` with [`IdHash`].
pub(crate) type IdMap<K, V> = HashMap<K, V, IdHash>;

/// A `HashSet` with [`IdHash`].
pub(crate) type IdSet<T> = HashSet<T, IdHash>;

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::model::{SpanId, TraceId};

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
