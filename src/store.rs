//! A span store that tests can wait on honestly: writers notify, waiters re-check a
//! predicate on every change, and a timeout is an error that shows what did arrive.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

/// Why a wait ended without its condition holding.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The timeout passed first.
    #[error(
        "timed out after {waited:?} waiting for {expected}; {arrived} {unit} arrived:\n{rendered}"
    )]
    Timeout {
        /// What the wait was for.
        expected: String,
        /// How long it waited.
        waited: Duration,
        /// How many items were there when it gave up.
        arrived: usize,
        /// What the items are: "span(s)", "metric point(s)", "log record(s)",
        /// "node state(s)".
        unit: &'static str,
        /// What did arrive: spans rendered as trees, metric names, log bodies.
        rendered: String,
    },
}

// Test failures print `Debug`: make it the full, readable message.
impl std::fmt::Debug for WaitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Locks `mutex`, recovering from poisoning: every critical section in this crate
/// leaves its data whole (a push, a clear, an insert), so after a panic elsewhere the data
/// is still sound — keep serving it rather than failing every later test.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A change signal for waiters.
///
/// Writers only pay for the signal while somebody waits: `waiting` counts waiters, and a
/// writer that sees none skips the notification. That is race-free because a waiter
/// subscribes and counts itself *before* its first check, and a writer reads the count
/// *after* releasing its lock (both sequentially consistent): either the writer sees the
/// waiter and signals, or the waiter's check comes after the write and sees the item.
#[derive(Debug)]
pub(crate) struct Notifier {
    changed: watch::Sender<u64>,
    waiting: AtomicUsize,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier {
            changed: watch::Sender::new(0),
            waiting: AtomicUsize::new(0),
        }
    }
}

/// Counts a waiter for as long as it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Notifier {
    /// Wakes every waiter, if there is one. Call it after releasing the data's lock.
    pub(crate) fn notify(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.changed.send_modify(|generation| *generation += 1);
        }
    }

    /// Waits until `check` returns `Some`, re-checking after every notification; at the
    /// deadline, returns the error `timed_out` builds.
    ///
    /// Needs a tokio runtime with time enabled (as `#[tokio::test]` has).
    pub(crate) async fn wait_until<R>(
        &self,
        timeout: Duration,
        mut check: impl FnMut() -> Option<R>,
        timed_out: impl FnOnce() -> WaitError,
    ) -> Result<R, WaitError> {
        // Subscribe and count ourselves before the first check, so that a write between
        // check and wait is not missed.
        let mut changes = self.changed.subscribe();
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            changes.borrow_and_update();
            if let Some(result) = check() {
                return Ok(result);
            }
            // `changed()` only fails when the sender is gone; `self` owns it, but should it
            // ever fail, end the wait rather than spin.
            if !matches!(
                tokio::time::timeout_at(deadline, changes.changed()).await,
                Ok(Ok(()))
            ) {
                return Err(timed_out());
            }
        }
    }
}

/// Items (metric points, log records) in arrival order, with a change signal for waiters.
#[derive(Debug)]
pub(crate) struct Store<T> {
    items: Mutex<Vec<T>>,
    notifier: Notifier,
}

impl<T> Default for Store<T> {
    fn default() -> Self {
        Store {
            items: Mutex::new(Vec::new()),
            notifier: Notifier::default(),
        }
    }
}

impl<T> Store<T> {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Vec<T>> {
        lock(&self.items)
    }

    pub(crate) fn notify(&self) {
        self.notifier.notify();
    }

    /// Waits until `condition` returns `Some` over all stored items, re-checking on every
    /// change. On timeout, `describe` renders what did arrive into the error.
    ///
    /// Needs a tokio runtime with time enabled (as `#[tokio::test]` has).
    pub(crate) async fn wait_until<R>(
        &self,
        unit: &'static str,
        expected: &str,
        timeout: Duration,
        mut condition: impl FnMut(&[T]) -> Option<R>,
        describe: impl Fn(&[T]) -> String,
    ) -> Result<R, WaitError> {
        self.notifier
            .wait_until(
                timeout,
                || condition(&self.lock()),
                || {
                    let items = self.lock();
                    WaitError::Timeout {
                        expected: expected.to_owned(),
                        waited: timeout,
                        arrived: items.len(),
                        unit,
                        rendered: describe(&items),
                    }
                },
            )
            .await
    }
}
