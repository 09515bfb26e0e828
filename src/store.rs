//! A span store that tests can wait on honestly: writers notify, waiters re-check a
//! predicate on every change, and a timeout is an error that shows what did arrive.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use crate::model::SpanRecord;
use crate::tree::TraceSet;

/// Why a wait ended without its condition holding.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// The timeout passed first.
    #[error(
        "timed out after {waited:?} waiting for {expected}; {arrived} span(s) arrived:\n{rendered}"
    )]
    Timeout {
        /// What the wait was for.
        expected: String,
        /// How long it waited.
        waited: Duration,
        /// How many spans were there when it gave up.
        arrived: usize,
        /// The spans that did arrive, rendered as trees.
        rendered: String,
    },
}

// Test failures print `Debug`: make it the full, readable message.
impl std::fmt::Debug for WaitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Spans in arrival order, with a change signal for waiters.
#[derive(Debug)]
pub(crate) struct SpanStore {
    spans: Mutex<Vec<SpanRecord>>,
    changed: watch::Sender<u64>,
}

impl Default for SpanStore {
    fn default() -> Self {
        SpanStore {
            spans: Mutex::new(Vec::new()),
            changed: watch::Sender::new(0),
        }
    }
}

impl SpanStore {
    fn lock(&self) -> MutexGuard<'_, Vec<SpanRecord>> {
        // A panic while holding the lock cannot leave a half-pushed Vec, so the data is
        // still sound: keep serving it rather than poisoning every later test.
        self.spans
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn push(&self, span: SpanRecord) {
        self.lock().push(span);
        self.changed.send_modify(|generation| *generation += 1);
    }

    pub(crate) fn snapshot(&self) -> Vec<SpanRecord> {
        self.lock().clone()
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
        self.changed.send_modify(|generation| *generation += 1);
    }

    /// Waits until `condition` holds over all stored spans, re-checking on every change.
    ///
    /// Needs a tokio runtime with time enabled (as `#[tokio::test]` has).
    pub(crate) async fn wait_until(
        &self,
        expected: &str,
        timeout: Duration,
        mut condition: impl FnMut(&[SpanRecord]) -> bool,
    ) -> Result<Vec<SpanRecord>, WaitError> {
        // Subscribe before the first check so a push between check and wait is not missed.
        let mut changes = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            changes.borrow_and_update();
            {
                let spans = self.lock();
                if condition(&spans) {
                    return Ok(spans.clone());
                }
            }
            // `changed()` only fails when the sender is gone; `self` owns it, but should it
            // ever fail, end the wait rather than spin.
            if !matches!(
                tokio::time::timeout_at(deadline, changes.changed()).await,
                Ok(Ok(()))
            ) {
                let spans = self.snapshot();
                return Err(WaitError::Timeout {
                    expected: expected.to_owned(),
                    waited: timeout,
                    arrived: spans.len(),
                    rendered: TraceSet::new(spans).render(),
                });
            }
        }
    }
}
