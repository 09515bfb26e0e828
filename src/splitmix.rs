//! The crate's one seeded generator: SplitMix64 (Steele, Lea and Flood, 2014), small, fast
//! and statistically sound for what it does here — span ids, random topologies, seeded
//! keypairs — where the same seed must give the same sequence on every machine.

/// The golden-ratio increment between states.
pub(crate) const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// A SplitMix64 stream: each value is the finaliser over the state advanced by [`GAMMA`].
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// The stream starting after `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// Where the stream stands: `SplitMix64::new(stream.state())` continues it.
    pub(crate) fn state(&self) -> u64 {
        self.state
    }

    /// The next value.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value below `bound` (which must not be 0), by modulo: the bias is below
    /// `bound / 2^64`, nothing for the small bounds used here.
    pub(crate) fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::SplitMix64;

    /// The reference sequence for seed 1234567 (from the algorithm's published C code).
    #[test]
    fn matches_the_reference_sequence() {
        let mut stream = SplitMix64::new(1_234_567);
        let first: Vec<u64> = (0..3).map(|_| stream.next_u64()).collect();
        assert_eq!(
            first,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423
            ]
        );
    }
}
