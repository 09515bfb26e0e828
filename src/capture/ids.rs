//! Trace and span ids for captured spans.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use crate::model::{SpanId, TraceId};
use crate::splitmix::SplitMix64;

/// Hands out distinct, random-looking, non-zero ids without any global state: a random
/// per-generator seed mixed with a counter through SplitMix64 (a bijection, so ids from
/// one generator never repeat). It lives under the capture's lock, which every span takes
/// anyway, so its counter needs no atomic operation of its own.
#[derive(Debug)]
pub(crate) struct IdGenerator {
    stream: SplitMix64,
}

impl Default for IdGenerator {
    fn default() -> Self {
        IdGenerator::new()
    }
}

impl IdGenerator {
    pub(crate) fn new() -> Self {
        // `RandomState` is seeded from the OS once per thread and varied per instance.
        let seed = RandomState::new().build_hasher().finish();
        IdGenerator {
            stream: SplitMix64::new(seed),
        }
    }

    fn next_u64(&mut self) -> u64 {
        loop {
            let value = self.stream.next_u64();
            if value != 0 {
                return value;
            }
        }
    }

    pub(crate) fn span_id(&mut self) -> SpanId {
        SpanId::from_bytes(self.next_u64().to_be_bytes())
    }

    pub(crate) fn trace_id(&mut self) -> TraceId {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_be_bytes());
        TraceId::from_bytes(bytes)
    }
}
