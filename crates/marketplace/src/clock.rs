//! Where a node reads the time of day: the issue time of its announcements (which orders a
//! publish against a delete, and gives `propagation_ms`).

/// The time of day a node reads: the system's, or — in a simulation — the virtual time
/// line its spans are stamped on, so that a replay computes the same times.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use p2p_otel_marketplace::WallClock;
/// let clock = WallClock::Virtual(tokio::time::Instant::now());
/// tokio::time::sleep(std::time::Duration::from_millis(3)).await;
/// assert_eq!(clock.unix_micros(), 1_767_225_600_003_000);
/// assert!(WallClock::System.unix_micros() > 1_700_000_000_000_000);
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub enum WallClock {
    /// `SystemTime::now()`.
    #[default]
    System,
    /// tokio's clock counted from this origin on the kit's virtual time line
    /// ([`capture::virtual_unix_nanos`](p2p_otel_testkit::capture::virtual_unix_nanos)).
    Virtual(tokio::time::Instant),
}

impl WallClock {
    /// Microseconds since the Unix epoch (0 if the clock is before it).
    pub fn unix_micros(&self) -> u64 {
        match self {
            WallClock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            WallClock::Virtual(origin) => {
                p2p_otel_testkit::capture::virtual_unix_nanos(*origin) / 1_000
            }
        }
    }
}
