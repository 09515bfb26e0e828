//! Peer ids as text, encoded once per peer.
//!
//! A `PeerId` prints as base58, an encoding quadratic in its length (a few µs for an
//! Ed25519 id), and a `%peer` span field is printed again by every layer of the node's
//! dispatch, on every span. Spans and metrics naming remote peers take the text from
//! here instead, so each peer is encoded once while it stays connected (with telemetry
//! off too: one encoding per peer, where the spans it feeds would print none).

use std::collections::HashMap;
use std::sync::Arc;

use libp2p::PeerId;

/// The base58 text of the peers a node has named in its telemetry.
#[derive(Debug, Default)]
pub(super) struct PeerLabels {
    labels: HashMap<PeerId, Arc<str>>,
}

impl PeerLabels {
    /// `peer` as text, exactly as its `Display` prints it.
    pub(super) fn get(&mut self, peer: &PeerId) -> Arc<str> {
        Arc::clone(
            self.labels
                .entry(*peer)
                .or_insert_with(|| peer.to_base58().into()),
        )
    }

    /// Drops a peer's text (its last connection closed), so the table holds the peers
    /// connected, plus any named after its last connection closed until it next leaves.
    pub(super) fn forget(&mut self, peer: &PeerId) {
        self.labels.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_is_the_peer_ids_display_text_and_is_encoded_once() {
        let peer = PeerId::random();
        let mut labels = PeerLabels::default();
        let first = labels.get(&peer);
        assert_eq!(&*first, peer.to_string());
        assert!(Arc::ptr_eq(&first, &labels.get(&peer)), "encoded again");
        labels.forget(&peer);
        assert!(labels.labels.is_empty());
        assert_eq!(&*labels.get(&peer), peer.to_string());
    }
}
