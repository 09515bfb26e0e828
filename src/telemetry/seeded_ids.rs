//! Trace and span ids drawn from a seed, for runs that must export the same ids every
//! time (a simulated mesh): the SDK's own generator draws from a thread-local random
//! generator seeded by the operating system.

use std::sync::Mutex;

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::IdGenerator;

use crate::splitmix::SplitMix64;
use crate::store::lock;

/// Ids from one SplitMix64 stream; never zero (an invalid id in OTLP).
#[derive(Debug)]
pub(super) struct SeededIds(Mutex<SplitMix64>);

impl SeededIds {
    pub(super) fn new(seed: u64) -> Self {
        SeededIds(Mutex::new(SplitMix64::new(seed)))
    }

    fn next_non_zero(&self) -> u64 {
        let mut stream = lock(&self.0);
        loop {
            let value = stream.next_u64();
            if value != 0 {
                return value;
            }
        }
    }
}

impl IdGenerator for SeededIds {
    fn new_trace_id(&self) -> TraceId {
        let high = u128::from(self.next_non_zero());
        let low = u128::from(self.next_non_zero());
        TraceId::from(high << 64 | low)
    }

    fn new_span_id(&self) -> SpanId {
        SpanId::from(self.next_non_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_gives_one_sequence_and_another_seed_another() {
        let ids = |seed| {
            let generator = SeededIds::new(seed);
            (generator.new_trace_id(), generator.new_span_id())
        };
        assert_eq!(ids(7), ids(7));
        assert_ne!(ids(7), ids(8));
        assert_ne!(ids(7).1, SpanId::INVALID);
    }
}
