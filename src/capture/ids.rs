//! Trace and span ids for captured spans.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::{SpanId, TraceId};

/// Hands out distinct, random-looking, non-zero ids without any global state: a random
/// per-generator seed mixed with a counter through SplitMix64 (a bijection, so ids from
/// one generator never repeat).
#[derive(Debug)]
pub(crate) struct IdGenerator {
    seed: u64,
    counter: AtomicU64,
}

impl IdGenerator {
    pub(crate) fn new() -> Self {
        // `RandomState` is seeded from the OS once per thread and varied per instance.
        let seed = RandomState::new().build_hasher().finish();
        IdGenerator {
            seed,
            counter: AtomicU64::new(1),
        }
    }

    fn next_u64(&self) -> u64 {
        loop {
            let n = self.counter.fetch_add(1, Ordering::Relaxed);
            let value = splitmix64(
                self.seed
                    .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            );
            if value != 0 {
                return value;
            }
        }
    }

    pub(crate) fn span_id(&self) -> SpanId {
        SpanId::from_bytes(self.next_u64().to_be_bytes())
    }

    pub(crate) fn trace_id(&self) -> TraceId {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_be_bytes());
        TraceId::from_bytes(bytes)
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
