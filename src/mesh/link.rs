//! The network model under a mesh's memory connections ([`Builder::link`]): what a link
//! does to each write — a one-way latency, a jitter, a bandwidth that queues writes behind
//! each other, and a loss whose segments are sent again after a retransmission timeout,
//! as TCP would (the stream stays whole and ordered: a loss costs time, never bytes). All
//! on tokio's clock, so in a paused runtime it is virtual time; every random draw comes
//! from the mesh's seed, one stream per connection end, so a simulation replays.
//!
//! [`Builder::link`]: super::Builder::link

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::splitmix::{SplitMix64, GAMMA};
use crate::store::lock;

/// What every memory connection of a mesh does to the bytes it carries, in each direction.
///
/// ```
/// use std::time::Duration;
/// use p2p_otel_testkit::mesh::Link;
///
/// // A lossy, narrow wide-area link.
/// let link = Link::new(Duration::from_millis(40))
///     .jitter(Duration::from_millis(5))
///     .bandwidth(1_000_000)
///     .loss(0.01);
/// assert_eq!(link.one_way(), Duration::from_millis(40));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Link {
    one_way: Duration,
    jitter: Duration,
    bytes_per_second: Option<u64>,
    loss: f64,
    retransmission_timeout: Duration,
}

/// Linux's smallest retransmission timeout, TCP's `TCP_RTO_MIN`.
const DEFAULT_RETRANSMISSION_TIMEOUT: Duration = Duration::from_millis(200);

/// At most this many retransmissions of one segment are modelled (the timeout doubles
/// each time, as TCP's does): beyond it the segment goes through.
const MAX_RETRANSMISSIONS: u32 = 8;

impl Link {
    /// A link that delivers each write `one_way` later, without jitter, bandwidth limit or
    /// loss.
    pub fn new(one_way: Duration) -> Self {
        Link {
            one_way,
            jitter: Duration::ZERO,
            bytes_per_second: None,
            loss: 0.0,
            retransmission_timeout: DEFAULT_RETRANSMISSION_TIMEOUT,
        }
    }

    /// Each write is delayed by a further amount drawn uniformly from `0..=up_to` (whole
    /// microseconds); writes still arrive in the order they were made.
    pub fn jitter(mut self, up_to: Duration) -> Self {
        self.jitter = up_to;
        self
    }

    /// The link carries `bytes_per_second` in each direction: a write waits for the ones
    /// before it to be sent, then takes its size over the bandwidth to send. 0 means no
    /// limit.
    pub fn bandwidth(mut self, bytes_per_second: u64) -> Self {
        self.bytes_per_second = (bytes_per_second > 0).then_some(bytes_per_second);
        self
    }

    /// Each write (a segment) is lost with `probability` (clamped to 0–1) and sent again
    /// after the retransmission timeout, which doubles at each loss of the same segment
    /// (at most 8 times); the segments behind it wait for it (the stream stays ordered).
    /// A retransmission does not take the bandwidth a second time.
    pub fn loss(mut self, probability: f64) -> Self {
        self.loss = if probability.is_nan() {
            0.0
        } else {
            probability.clamp(0.0, 1.0)
        };
        self
    }

    /// The first retransmission timeout of a lost segment (default 200 ms, Linux's
    /// minimum).
    pub fn retransmission_timeout(mut self, timeout: Duration) -> Self {
        self.retransmission_timeout = timeout;
        self
    }

    /// The one-way latency.
    pub fn one_way(&self) -> Duration {
        self.one_way
    }

    /// The jitter's bound.
    pub fn jitter_bound(&self) -> Duration {
        self.jitter
    }

    /// The bandwidth in bytes per second, if limited.
    pub fn bytes_per_second(&self) -> Option<u64> {
        self.bytes_per_second
    }

    /// The probability that a segment is lost.
    pub fn loss_probability(&self) -> f64 {
        self.loss
    }
}

/// What the links of a mesh carried so far ([`Mesh::link_stats`](super::Mesh::link_stats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkStats {
    /// Writes sent (segments), in both directions of every connection.
    pub segments: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Segments the model lost and sent again, counted once per retransmission.
    pub retransmissions: u64,
    /// A digest of every segment, each connection end's in the order it wrote them — size,
    /// the virtual instants it was sent and arrives (from the mesh's start), how often it
    /// was lost — and the ends taken as a set (writes on different connections at one
    /// instant come in libp2p's hash order): two runs that deliver the same segments at
    /// the same instants share it, and any delivery that differs changes it.
    pub deliveries_digest: u64,
}

/// Mixed into the seed for the links' draws ("link" in ASCII).
const LINK_SALT: u64 = 0x6c69_6e6b;

/// One mesh's link model: the link, the seed, and what every connection carried.
#[derive(Debug)]
pub(crate) struct Network {
    link: Link,
    /// Nodes that write through a link of their own (their uplink).
    uplinks: BTreeMap<usize, Link>,
    /// The links' draws' root, hashed once from the seed and the salt: never a stream the
    /// seed gives anything else, such as the nodes' keys.
    draws: u64,
    /// Connection ends wrapped so far: each end's random stream is numbered by it.
    ends: AtomicU64,
    /// What the links carried, under one lock taken once per write.
    carried: Mutex<Carried>,
    /// Where the deliveries digest counts time from.
    started: Instant,
}

/// The counts, and each connection end's chain of its segments by end.
#[derive(Debug, Default)]
struct Carried {
    stats: LinkStats,
    chains: BTreeMap<u64, u64>,
}

impl Network {
    pub(crate) fn new(link: Link, uplinks: BTreeMap<usize, Link>, seed: u64) -> Self {
        Network {
            link,
            uplinks,
            draws: SplitMix64::new(seed ^ LINK_SALT).next_u64(),
            ends: AtomicU64::new(0),
            carried: Mutex::default(),
            started: Instant::now(),
        }
    }

    pub(crate) fn stats(&self) -> LinkStats {
        let carried = lock(&self.carried);
        let mut chains: Vec<u64> = carried.chains.values().copied().collect();
        chains.sort_unstable();
        LinkStats {
            deliveries_digest: chains.into_iter().fold(0, mix),
            ..carried.stats
        }
    }

    /// The schedule of one more connection end's writes, on node `node` (its uplink if it
    /// has one, else the mesh's link): its draws from a stream of its own, hashed from the
    /// links' root and the end's number.
    pub(crate) fn end(&self, node: usize) -> Schedule {
        let end = self.ends.fetch_add(1, Ordering::Relaxed);
        Schedule {
            end,
            link: self.uplinks.get(&node).copied().unwrap_or(self.link),
            random: SplitMix64::new(mix(self.draws, end.wrapping_mul(GAMMA))),
            sending_until: None,
            last_due: None,
        }
    }

    /// Counts one write: `segment` as its schedule planned it.
    pub(crate) fn count(&self, segment: &Segment) {
        let since = |at: Instant| at.saturating_duration_since(self.started).as_nanos() as u64;
        let mut carried = lock(&self.carried);
        carried.stats.segments += 1;
        carried.stats.bytes += segment.bytes as u64;
        carried.stats.retransmissions += u64::from(segment.retransmissions);
        let chain = carried.chains.entry(segment.end).or_default();
        *chain = [
            segment.bytes as u64,
            since(segment.sent),
            since(segment.due),
            u64::from(segment.retransmissions),
        ]
        .into_iter()
        .fold(*chain, mix);
    }
}

/// One step of a digest: `value` folded into `digest` through SplitMix64's finaliser.
fn mix(digest: u64, value: u64) -> u64 {
    SplitMix64::new(digest ^ value).next_u64()
}

/// One write as the link model planned it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Segment {
    /// The connection end that wrote it.
    end: u64,
    bytes: usize,
    sent: Instant,
    /// When it arrives at the other end.
    pub(crate) due: Instant,
    retransmissions: u32,
}

/// When each write of one connection end arrives at the other end.
#[derive(Debug)]
pub(crate) struct Schedule {
    /// This end's number in its mesh.
    end: u64,
    link: Link,
    random: SplitMix64,
    /// Until when the link is busy sending earlier writes (with a bandwidth).
    sending_until: Option<Instant>,
    /// When the previous write arrives: none arrives before it.
    last_due: Option<Instant>,
}

impl Schedule {
    /// `bytes` written at `now`: when they arrive, and how often the model lost them.
    pub(crate) fn segment(&mut self, now: Instant, bytes: usize) -> Segment {
        let (due, retransmissions) = self.due(now, bytes);
        Segment {
            end: self.end,
            bytes,
            sent: now,
            due,
            retransmissions,
        }
    }

    /// When `bytes` written at `now` arrive, and how many times the model lost them.
    fn due(&mut self, now: Instant, bytes: usize) -> (Instant, u32) {
        let start = self.sending_until.map_or(now, |busy| busy.max(now));
        let sent = match self.link.bytes_per_second {
            Some(rate) => {
                let nanos = (bytes as u128 * 1_000_000_000).div_ceil(u128::from(rate));
                later(
                    start,
                    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)),
                )
            }
            None => start,
        };
        self.sending_until = Some(sent);
        let mut delay = self.link.one_way.saturating_add(self.jitter());
        let mut retransmissions = 0;
        let mut timeout = self.link.retransmission_timeout;
        while retransmissions < MAX_RETRANSMISSIONS && self.unit() < self.link.loss {
            delay = delay.saturating_add(timeout);
            timeout = timeout.saturating_mul(2);
            retransmissions += 1;
        }
        (self.after_the_last(later(sent, delay)), retransmissions)
    }

    fn jitter(&mut self) -> Duration {
        let micros = u64::try_from(self.link.jitter.as_micros()).unwrap_or(u64::MAX);
        if micros == 0 {
            return Duration::ZERO;
        }
        let draw = self.random.next_u64();
        Duration::from_micros(micros.checked_add(1).map_or(draw, |span| draw % span))
    }

    /// When the end of the stream, closed at `now`, arrives: after the last write, one
    /// latency later; never lost, and no draw taken.
    pub(crate) fn close_due(&mut self, now: Instant) -> Instant {
        self.after_the_last(later(now, self.link.one_way))
    }

    /// `due`, or the previous write's arrival if that is later: the stream stays ordered.
    fn after_the_last(&mut self, due: Instant) -> Instant {
        let due = self.last_due.map_or(due, |last| last.max(due));
        self.last_due = Some(due);
        due
    }

    /// A draw in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        if self.link.loss == 0.0 {
            return 1.0;
        }
        (self.random.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `after` past `at`, or as far as tokio's clock goes.
fn later(at: Instant, after: Duration) -> Instant {
    at.checked_add(after)
        .unwrap_or_else(|| at + Duration::from_secs(86_400 * 365 * 30))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(link: Link, seed: u64) -> Schedule {
        Network::new(link, BTreeMap::new(), seed).end(0)
    }

    #[tokio::test(start_paused = true)]
    async fn extreme_settings_saturate_instead_of_overflowing() {
        let now = Instant::now();
        let link = Link::new(Duration::MAX)
            .jitter(Duration::MAX)
            .loss(1.0)
            .retransmission_timeout(Duration::MAX);
        let mut line = schedule(link, 1);
        let (due, lost) = line.due(now, 1);
        assert!(due > now);
        assert_eq!(lost, MAX_RETRANSMISSIONS);
        assert!(line.close_due(now) >= due);
    }

    #[tokio::test(start_paused = true)]
    async fn the_deliveries_digest_follows_every_segment_in_order() {
        let digest = |sizes: &[usize]| {
            let network = Network::new(Link::new(Duration::from_millis(5)), BTreeMap::new(), 1);
            let mut line = network.end(0);
            for size in sizes {
                network.count(&line.segment(Instant::now(), *size));
            }
            network.stats().deliveries_digest
        };
        assert_eq!(digest(&[1, 2, 3]), digest(&[1, 2, 3]));
        assert_ne!(digest(&[1, 2, 3]), digest(&[1, 3, 2]));
        assert_ne!(digest(&[1, 2, 3]), digest(&[1, 2]));
    }

    #[test]
    fn the_links_draws_are_not_the_keys_streams() {
        // Node 1's key stream starts from `seed ^ GAMMA` (transport::seeded_keypair).
        let mut keys = SplitMix64::new(GAMMA);
        let mut line = schedule(Link::new(Duration::ZERO).loss(0.5), 0);
        assert_ne!(line.random.next_u64(), keys.next_u64());
    }

    #[tokio::test(start_paused = true)]
    async fn latency_alone_delays_every_write_by_it() {
        let now = Instant::now();
        let mut line = schedule(Link::new(Duration::from_millis(20)), 1);
        assert_eq!(line.due(now, 10), (now + Duration::from_millis(20), 0));
        assert_eq!(line.due(now, 10_000), (now + Duration::from_millis(20), 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_bandwidth_queues_writes_behind_each_other() {
        let now = Instant::now();
        let link = Link::new(Duration::from_millis(10)).bandwidth(1_000);
        let mut line = schedule(link, 1);
        // 500 bytes at 1 kB/s: half a second to send, then the latency.
        assert_eq!(line.due(now, 500).0, now + Duration::from_millis(510));
        // The next waits for the first to be sent.
        assert_eq!(line.due(now, 500).0, now + Duration::from_millis(1_010));
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_stays_within_its_bound_keeps_order_and_replays_for_a_seed() {
        let now = Instant::now();
        let link = Link::new(Duration::from_millis(10)).jitter(Duration::from_millis(5));
        let draws = |seed| {
            let mut line = schedule(link, seed);
            (0..100).map(|_| line.due(now, 1).0).collect::<Vec<_>>()
        };
        let dues = draws(3);
        assert!(dues.windows(2).all(|pair| pair[0] <= pair[1]), "in order");
        assert!(dues
            .iter()
            .all(|due| *due >= now + Duration::from_millis(10)
                && *due <= now + Duration::from_millis(15)));
        assert_eq!(dues, draws(3));
        assert_ne!(dues, draws(4));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_segment_arrives_a_retransmission_timeout_later_and_holds_the_next() {
        let now = Instant::now();
        let link = Link::new(Duration::from_millis(10)).loss(1.0);
        let mut line = schedule(link, 1);
        // Always lost: eight retransmissions, 200 ms doubling each time.
        let (due, lost) = line.due(now, 1);
        assert_eq!(lost, MAX_RETRANSMISSIONS);
        assert_eq!(due, now + Duration::from_millis(10 + 200 * 255));
        let link = Link::new(Duration::from_millis(10)).loss(0.01);
        let mut line = schedule(link, 1);
        let runs: Vec<(Instant, u32)> = (0..10_000).map(|_| line.due(now, 1)).collect();
        let lost: u32 = runs.iter().map(|(_, lost)| lost).sum();
        assert!((50..=150).contains(&lost), "about 1 % of 10,000: {lost}");
        assert!(
            runs.windows(2).all(|pair| pair[0].0 <= pair[1].0),
            "in order"
        );
    }
}
