//! Catch-up (anti-entropy). Gossip delivers an announcement over the topic's mesh, and
//! repairs a miss only while the message is in gossip's short history window; a node that
//! misses both would never learn the package (seen: 1 node of a 128-node mesh on a busy
//! machine). So every `sync_interval` a node sends the digest of its index to one peer
//! subscribed to the packages topic, each in turn; a peer whose own digest differs answers
//! with its whole index, which the asker merges under the same last-writer-wins rules as
//! announcements. Equal indexes cost one small request and an `InSync` answer.

use libp2p::PeerId;
use tokio::time::Instant;

use super::{Behaviour, RegistryNode};
use crate::codec::Wire;
use crate::protocol::{index_digest, RegistryRequest, RegistryResponse};
use crate::registry::encoded_size;
use crate::Package;
use p2p_otel_testkit::mesh::NodeSwarm;

/// The most package bytes (as JSON) an `Index` answer carries: half the codec's 16 MiB
/// response limit, CBOR being no larger than JSON for packages.
const INDEX_ANSWER_BUDGET: usize = 8 << 20;

impl RegistryNode {
    /// When the next catch-up is due, if catch-up is on.
    pub(super) fn next_sync(&self) -> Option<Instant> {
        (!self.config.sync_interval.is_zero()).then_some(self.sync_due)
    }

    /// Asks the next subscribed peer, in turn, whether its index differs from this one's.
    /// One request at a time: a slow peer delays catch-up, never piles requests up.
    pub(super) fn sync(&mut self, swarm: &mut NodeSwarm<Behaviour>) {
        self.sync_due = Instant::now() + self.config.sync_interval;
        if !self.syncs.is_empty() {
            return;
        }
        let mut peers: Vec<PeerId> = self.topic_peers(swarm).copied().collect();
        if peers.is_empty() {
            return;
        }
        peers.sort_unstable();
        let peer = peers[self.sync_turn % peers.len()];
        self.sync_turn = self.sync_turn.wrapping_add(1);
        let digest = self.digest();
        let request = swarm
            .behaviour_mut()
            .app
            .rr
            .send_request(&peer, Wire::Valid(RegistryRequest::Sync { digest }));
        self.syncs.insert(request);
    }

    fn digest(&self) -> u64 {
        index_digest(
            self.index.all().map(|p| (&p.id, &p.version)),
            self.deletions.tombstones(),
        )
    }

    /// Answers a peer's digest: `InSync`, or this node's index, newest packages first.
    pub(super) fn on_sync_request(&self, digest: u64) -> RegistryResponse {
        if digest == self.digest() {
            return RegistryResponse::InSync;
        }
        let mut packages: Vec<(Package, u64)> = self
            .index
            .all()
            .map(|p| (p.clone(), self.deletions.published_at(&p.id).unwrap_or(0)))
            .collect();
        packages.sort_by_key(|(_, published_at)| std::cmp::Reverse(*published_at));
        // Sized until the budget is reached, not beyond.
        let mut bytes = 0usize;
        let fits = packages
            .iter()
            .take_while(|(package, _)| {
                bytes = bytes.saturating_add(encoded_size(package).unwrap_or(usize::MAX));
                bytes <= INDEX_ANSWER_BUDGET
            })
            .count();
        let complete = fits == packages.len();
        packages.truncate(fits);
        RegistryResponse::Index {
            complete,
            packages,
            tombstones: self
                .deletions
                .tombstones()
                .map(|(id, at)| (id.clone(), at))
                .collect(),
        }
    }

    /// Whether `request` is a catch-up request of this node's (its answer goes to
    /// [`on_sync_answer`](Self::on_sync_answer), its failure nowhere: the next turn asks
    /// another peer).
    pub(super) fn is_sync(
        &mut self,
        request: &libp2p::request_response::OutboundRequestId,
    ) -> bool {
        self.syncs.remove(request)
    }

    /// Merges a peer's index: what this node missed is indexed, what it holds stays unless
    /// a later delete removes it — as if the announcements had arrived.
    pub(super) fn on_sync_answer(&mut self, answer: RegistryResponse) {
        let RegistryResponse::Index {
            packages,
            tombstones,
            ..
        } = answer
        else {
            return;
        };
        for (id, deleted_at) in tombstones {
            if self.deletions.deleted_at(&id) < Some(deleted_at) {
                self.apply_deleted(&id, deleted_at);
            }
        }
        for (package, published_at) in packages {
            if self.index.get(&package.id, &package.version).is_none()
                && self.apply_published(package, published_at)
            {
                self.caught_up += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::build;
    use super::*;
    use crate::{Config, PackageId};
    use p2p_otel_testkit::mesh::NodeContext;

    fn node(index: usize) -> RegistryNode {
        let keypair = libp2p::identity::Keypair::generate_ed25519();
        let context = NodeContext {
            index,
            peer_id: keypair.public().to_peer_id(),
            keypair,
        };
        build(&context, Config::for_tests()).unwrap().1
    }

    fn package(name: &str, version: &str) -> Package {
        Package::new(name.parse().unwrap(), version.parse().unwrap(), "a tool")
    }

    fn id(name: &str) -> PackageId {
        name.parse().unwrap()
    }

    /// `asker` asks `peer`, as a catch-up turn does.
    fn catch_up(asker: &mut RegistryNode, peer: &RegistryNode) -> RegistryResponse {
        let answer = peer.on_sync_request(asker.digest());
        asker.on_sync_answer(answer.clone());
        answer
    }

    #[test]
    fn equal_indexes_learned_in_any_order_answer_in_sync() {
        let (mut a, mut b) = (node(0), node(1));
        a.apply_published(package("acme/one", "1.0.0"), 10);
        a.apply_published(package("acme/two", "1.0.0"), 20);
        a.apply_deleted(&id("acme/gone"), 30);
        b.apply_deleted(&id("acme/gone"), 30);
        b.apply_published(package("acme/two", "1.0.0"), 20);
        b.apply_published(package("acme/one", "1.0.0"), 10);
        assert_eq!(catch_up(&mut a, &b), RegistryResponse::InSync);
        assert_eq!(a.caught_up, 0);
    }

    #[test]
    fn a_node_that_missed_announcements_learns_them_from_a_peer() {
        let (mut late, mut peer) = (node(0), node(1));
        peer.apply_published(package("acme/one", "1.0.0"), 10);
        peer.apply_published(package("acme/one", "1.1.0"), 15);
        peer.apply_published(package("acme/two", "2.0.0"), 20);
        late.apply_published(package("acme/two", "2.0.0"), 20);
        let RegistryResponse::Index { complete, .. } = catch_up(&mut late, &peer) else {
            panic!("different indexes must answer with the index");
        };
        assert!(complete);
        assert_eq!(late.caught_up, 2, "acme/one 1.0.0 and 1.1.0");
        assert_eq!(late.index.versions(&id("acme/one")).len(), 2);
        assert_eq!(late.digest(), peer.digest());
        assert_eq!(catch_up(&mut late, &peer), RegistryResponse::InSync);
    }

    #[test]
    fn catch_up_keeps_last_writer_wins_both_ways() {
        let (mut a, mut b) = (node(0), node(1));
        // a missed a delete issued after the publish it holds …
        a.apply_published(package("acme/old", "1.0.0"), 10);
        b.apply_published(package("acme/old", "1.0.0"), 10);
        b.apply_deleted(&id("acme/old"), 20);
        // … and b missed a publish issued after the delete it holds.
        a.apply_deleted(&id("acme/new"), 30);
        b.apply_deleted(&id("acme/new"), 30);
        a.apply_published(package("acme/new", "2.0.0"), 40);

        catch_up(&mut a, &b);
        assert!(!a.index.contains(&id("acme/old")), "the later delete wins");
        assert!(
            a.index.contains(&id("acme/new")),
            "a stale tombstone is ignored"
        );
        catch_up(&mut b, &a);
        assert!(b.index.contains(&id("acme/new")));
        assert!(!b.index.contains(&id("acme/old")));
        assert_eq!(a.digest(), b.digest());
    }
}
