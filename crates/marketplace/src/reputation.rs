//! Per-peer reputation: successes, failures and a smoothed response time, folded into a
//! score in [0, 1] that peer selection prefers.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::PeerId;

/// How quickly the smoothed response time follows new samples.
const SMOOTHING: f64 = 0.3;

/// One peer's record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeerStats {
    /// Answers received.
    pub successes: u64,
    /// Timeouts and failures.
    pub failures: u64,
    /// Exponentially smoothed response time, milliseconds; a failure counts the time
    /// waited before it was noticed.
    pub response_ms: f64,
}

impl PeerStats {
    /// `success rate (Laplace-smoothed) / (1 + response time in seconds)`: in (0, 1).
    pub fn score(&self) -> f64 {
        let rate = (self.successes as f64 + 1.0) / ((self.successes + self.failures) as f64 + 2.0);
        rate / (1.0 + self.response_ms / 1000.0)
    }

    /// Folds one response time into the smoothed one (the first sample is taken as is).
    fn sample(&mut self, elapsed: Duration) {
        let sample = elapsed.as_secs_f64() * 1000.0;
        self.response_ms = if self.successes + self.failures == 0 {
            sample
        } else {
            SMOOTHING * sample + (1.0 - SMOOTHING) * self.response_ms
        };
    }

    /// The Laplace-smoothed success rate, in (0, 1).
    pub fn success_rate(&self) -> f64 {
        (self.successes as f64 + 1.0) / ((self.successes + self.failures) as f64 + 2.0)
    }
}

/// Reputation of every peer a node has asked.
#[derive(Clone, Debug, Default)]
pub struct Reputation {
    peers: HashMap<PeerId, PeerStats>,
}

impl Reputation {
    /// Records an answer after `elapsed`.
    pub fn success(&mut self, peer: PeerId, elapsed: Duration) {
        let stats = self.peers.entry(peer).or_default();
        stats.sample(elapsed);
        stats.successes += 1;
    }

    /// Records a failure or timeout noticed after `waited`. The wait counts as a response
    /// time too: a peer that never answers must not look fast, or a slow but honest
    /// peer would rank below it.
    pub fn failure(&mut self, peer: PeerId, waited: Duration) {
        let stats = self.peers.entry(peer).or_default();
        stats.sample(waited);
        stats.failures += 1;
    }

    /// A peer's score. A peer never asked scores 1.0: optimistic, so every peer gets
    /// tried once before the scores of those that answered decide.
    pub fn score(&self, peer: &PeerId) -> f64 {
        self.peers.get(peer).map_or(1.0, PeerStats::score)
    }

    /// `candidates` ordered best score first (ties by peer id), at most `count`.
    pub fn best(&self, candidates: impl IntoIterator<Item = PeerId>, count: usize) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = candidates.into_iter().collect();
        peers.sort_by(|a, b| {
            self.score(b)
                .total_cmp(&self.score(a))
                .then_with(|| a.cmp(b))
        });
        peers.truncate(count);
        peers
    }

    /// One peer's stats, if it was ever asked.
    pub fn stats(&self, peer: &PeerId) -> Option<&PeerStats> {
        self.peers.get(peer)
    }

    /// Every peer's stats.
    pub fn snapshot(&self) -> HashMap<PeerId, PeerStats> {
        self.peers.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_and_slowness_lower_the_score_within_bounds() {
        let (fast, slow, failing) = (PeerId::random(), PeerId::random(), PeerId::random());
        let mut reputation = Reputation::default();
        for _ in 0..5 {
            reputation.success(fast, Duration::from_millis(2));
            reputation.success(slow, Duration::from_millis(800));
            reputation.failure(failing, Duration::from_millis(2));
        }
        let (f, s, x) = (
            reputation.score(&fast),
            reputation.score(&slow),
            reputation.score(&failing),
        );
        assert!(f > s && s > x, "{f} {s} {x}");
        for score in [f, s, x] {
            assert!((0.0..=1.0).contains(&score));
        }
        assert_eq!(reputation.best([failing, slow, fast], 2), vec![fast, slow]);
    }

    #[test]
    fn a_peer_that_timed_out_ranks_below_a_slow_one_that_answered() {
        // Under load an honest peer may take over a second; one timeout must still cost
        // the silent peer more than slowness costs the honest one.
        let (slow, silent) = (PeerId::random(), PeerId::random());
        let mut reputation = Reputation::default();
        reputation.success(slow, Duration::from_millis(1_500));
        reputation.failure(silent, Duration::from_secs(3));
        assert!(reputation.score(&slow) > reputation.score(&silent));
        assert_eq!(reputation.best([silent, slow], 1), vec![slow]);
    }
}
