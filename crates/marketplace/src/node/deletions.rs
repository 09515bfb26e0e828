//! Which of a publish and a delete of the same package wins, whatever order their
//! announcements arrive in: the later one, by the time it was issued (last writer wins).
//!
//! Times come from a hybrid clock: microseconds since the Unix epoch, but never behind a
//! time this node issued or received, so an operation issued here is always later than
//! anything this node has seen (a delete a node received is never undone by its own
//! older publish, and its own publish is never hidden by a skewed peer's delete).

use std::collections::HashMap;

use super::PackageId;
use crate::WallClock;

/// Tombstones and publish times, by package.
#[derive(Debug, Default)]
pub(super) struct Deletions {
    deleted_at: HashMap<PackageId, u64>,
    published_at: HashMap<PackageId, u64>,
    clock: u64,
}

impl Deletions {
    /// A time for an operation issued now: after everything issued or received here.
    pub(super) fn now(&mut self, clock: WallClock) -> u64 {
        self.clock = clock.unix_micros().max(self.clock.saturating_add(1));
        self.clock
    }

    /// Whether `id` is deleted (and not published again since).
    pub(super) fn is_deleted(&self, id: &PackageId) -> bool {
        self.deleted_at.contains_key(id)
    }

    /// When `id` was last published, as far as this node knows.
    pub(super) fn published_at(&self, id: &PackageId) -> Option<u64> {
        self.published_at.get(id).copied()
    }

    /// When `id` was deleted, if it is.
    pub(super) fn deleted_at(&self, id: &PackageId) -> Option<u64> {
        self.deleted_at.get(id).copied()
    }

    /// Every deleted package (not published again since) and when it was deleted.
    pub(super) fn tombstones(&self) -> impl Iterator<Item = (&PackageId, u64)> {
        self.deleted_at.iter().map(|(id, &at)| (id, at))
    }

    /// Records a publish issued at `at`. False when a delete issued at the same time or
    /// later is known: the publish is stale and must not be indexed.
    pub(super) fn publish(&mut self, id: &PackageId, at: u64) -> bool {
        self.clock = self.clock.max(at);
        if self
            .deleted_at
            .get(id)
            .is_some_and(|&deleted| deleted >= at)
        {
            return false;
        }
        self.deleted_at.remove(id);
        let latest = self.published_at.entry(id.clone()).or_default();
        *latest = (*latest).max(at);
        true
    }

    /// Records a delete issued at `at`. False when a later publish is known: the delete
    /// is stale and must not remove it.
    pub(super) fn delete(&mut self, id: &PackageId, at: u64) -> bool {
        self.clock = self.clock.max(at);
        if self
            .published_at
            .get(id)
            .is_some_and(|&published| published > at)
        {
            return false;
        }
        let latest = self.deleted_at.entry(id.clone()).or_default();
        *latest = (*latest).max(at);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> PackageId {
        "acme/tool".parse().unwrap()
    }

    #[test]
    fn a_delete_that_arrives_after_a_later_publish_does_not_remove_it() {
        let mut deletions = Deletions::default();
        assert!(deletions.publish(&id(), 20));
        assert!(!deletions.delete(&id(), 10));
        assert!(!deletions.is_deleted(&id()));
    }

    #[test]
    fn a_publish_that_arrives_after_a_later_delete_is_stale() {
        let mut deletions = Deletions::default();
        assert!(deletions.delete(&id(), 20));
        assert!(!deletions.publish(&id(), 10));
        assert!(deletions.is_deleted(&id()));
        assert!(deletions.publish(&id(), 30));
        assert!(!deletions.is_deleted(&id()));
    }

    #[test]
    fn local_times_follow_what_was_received_even_from_a_clock_ahead() {
        let mut deletions = Deletions::default();
        let ahead = WallClock::System.unix_micros() + 3_600_000_000;
        assert!(deletions.delete(&id(), ahead));
        let local = deletions.now(WallClock::System);
        assert!(local > ahead);
        assert!(deletions.publish(&id(), local));
    }
}
