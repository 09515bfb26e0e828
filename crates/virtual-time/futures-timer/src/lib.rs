//! `futures-timer` 3.0's API — [`Delay::new`], [`Delay::reset`], `Future<Output = ()>` —
//! on tokio's clock.
//!
//! The kit's workspace patches `futures-timer` with this crate (`[patch.crates-io]` in
//! the root `Cargo.toml`), so every timer libp2p starts — gossipsub's heartbeat,
//! Kademlia's bootstrap and substream timeouts, request-response's request timeout, idle
//! connections, dial timeouts — is a `tokio::time::Sleep`. In a runtime whose clock is
//! paused (a simulated mesh) the timers fire in virtual time, as soon as every task is
//! idle; in any other runtime they fire in real time, as futures-timer's did.
//!
//! A `Delay`'s deadline is fixed when it is created (or reset), like futures-timer's, even
//! if it is first polled later. Created outside a runtime (a behaviour built before the
//! runtime starts), its deadline is read from the real clock, which a runtime's clock
//! starts from. Polled outside any tokio runtime, or in one without its time driver, it
//! waits on a thread of its own (one per delay: fine for the rare delay polled there, not
//! for an executor other than tokio driving a whole swarm). A delay first polled in a
//! runtime stays bound to it, as any tokio timer: that runtime must be driven.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let start = tokio::time::Instant::now();
//! futures_timer::Delay::new(std::time::Duration::from_secs(10)).await;
//! assert_eq!(start.elapsed(), std::time::Duration::from_secs(10)); // virtual seconds
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// A future that completes once its duration has passed on tokio's clock.
pub struct Delay {
    deadline: Instant,
    /// The runtime's timer, created at the first poll inside a runtime.
    sleep: Option<Pin<Box<Sleep>>>,
    /// The thread that waits when polled outside any runtime.
    outside: Option<Arc<Mutex<Outside>>>,
}

/// What a waiting thread shares with its `Delay`.
#[derive(Default)]
struct Outside {
    fired: bool,
    waker: Option<Waker>,
}

impl Delay {
    /// A delay that completes `dur` from now.
    pub fn new(dur: Duration) -> Delay {
        Delay {
            deadline: deadline_after(dur),
            sleep: None,
            outside: None,
        }
    }

    /// Restarts the delay: it completes `dur` from now.
    pub fn reset(&mut self, dur: Duration) {
        self.deadline = deadline_after(dur);
        if let Some(sleep) = &mut self.sleep {
            sleep.as_mut().reset(self.deadline);
        }
        self.outside = None;
    }
}

/// `now + dur`, or about 30 years from now when that overflows (as tokio's own
/// far-future deadline).
fn deadline_after(dur: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(dur)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
}

impl Future for Delay {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.sleep.is_none()
            && this.outside.is_none()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            // A runtime built without its time driver refuses timers (tokio panics): such a
            // delay waits on a thread of its own instead, like one outside any runtime.
            let deadline = this.deadline;
            this.sleep =
                std::panic::catch_unwind(|| Box::pin(tokio::time::sleep_until(deadline))).ok();
        }
        if let Some(sleep) = &mut this.sleep {
            return sleep.as_mut().poll(cx);
        }
        let outside = this.outside.get_or_insert_with(|| {
            let shared = Arc::new(Mutex::new(Outside::default()));
            let waiting = Arc::clone(&shared);
            let deadline = this.deadline.into_std();
            std::thread::spawn(move || {
                std::thread::sleep(deadline.saturating_duration_since(std::time::Instant::now()));
                let waker = match waiting.lock() {
                    Ok(mut state) => {
                        state.fired = true;
                        state.waker.take()
                    }
                    Err(_) => None,
                };
                if let Some(waker) = waker {
                    waker.wake();
                }
            });
            shared
        });
        match outside.lock() {
            Ok(state) if state.fired => Poll::Ready(()),
            Ok(mut state) => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
            // A waiting thread never panics while holding the lock; if one did, the
            // deadline is as good as passed.
            Err(_) => Poll::Ready(()),
        }
    }
}

impl fmt::Debug for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delay")
            .field(
                "remaining",
                &self.deadline.saturating_duration_since(Instant::now()),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fires_at_its_deadline_in_virtual_time() {
        let start = Instant::now();
        Delay::new(Duration::from_secs(3600)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(3600));
    }

    #[tokio::test(start_paused = true)]
    async fn reset_moves_the_deadline_from_now() {
        let start = Instant::now();
        let mut delay = Delay::new(Duration::from_secs(5));
        tokio::time::advance(Duration::from_secs(2)).await;
        delay.reset(Duration::from_secs(5));
        (&mut delay).await;
        assert_eq!(start.elapsed(), Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_is_fixed_at_creation_not_at_the_first_poll() {
        let start = Instant::now();
        let delay = Delay::new(Duration::from_secs(5));
        tokio::time::advance(Duration::from_secs(4)).await;
        delay.await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[test]
    fn outside_a_runtime_a_thread_waits_in_real_time() {
        let start = std::time::Instant::now();
        futures_executor_block_on(Delay::new(Duration::from_millis(20)));
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn a_huge_duration_does_not_overflow() {
        let delay = Delay::new(Duration::MAX);
        assert!(format!("{delay:?}").contains("remaining"));
    }

    /// A minimal executor without tokio: parks the thread until woken.
    fn futures_executor_block_on(future: impl Future<Output = ()>) {
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        while future.as_mut().poll(&mut cx).is_pending() {
            std::thread::park();
        }
    }
}
