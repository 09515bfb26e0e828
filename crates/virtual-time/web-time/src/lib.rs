//! `web-time` 1.1's API for native targets, with [`Instant`] read from tokio's clock.
//!
//! The kit's workspace patches `web-time` with this crate (`[patch.crates-io]` in the root
//! `Cargo.toml`) so that every deadline libp2p measures — Kademlia's query timeouts and
//! record expiry, gossipsub's backoffs and caches, yamux's round-trip estimate — reads
//! `tokio::time::Instant::now()`. In a runtime whose clock is paused (a simulated mesh)
//! that is virtual time; everywhere else it is the real monotonic clock, as before.
//! `SystemTime` stays the system's.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let start = web_time::Instant::now();
//! tokio::time::sleep(std::time::Duration::from_secs(30)).await;
//! assert_eq!(start.elapsed(), std::time::Duration::from_secs(30));
//! # }
//! ```

pub use std::time::*;
pub use tokio::time::Instant;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_paused_clock_moves_only_when_time_is_advanced() {
        let start = Instant::now();
        assert_eq!(start.elapsed(), Duration::ZERO);
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(Instant::now() - start, Duration::from_millis(1500));
    }

    #[test]
    fn outside_a_runtime_it_is_the_real_clock() {
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(start.elapsed() >= Duration::from_millis(2));
    }
}
