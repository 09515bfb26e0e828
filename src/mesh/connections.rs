//! Connecting nodes: edges, topologies, the peer lists that hold a node to its edges,
//! and blocks.

use std::time::Duration;

use futures::StreamExt;

use libp2p::{PeerId, Swarm};

use super::event_loop::{Control, PeerList};
use super::{Discovery, Mesh, MeshBehaviour, MeshError, Node, Topology};

/// How many dials `connect_topology` has in flight at once.
const CONCURRENT_DIALS: usize = 64;

impl<N: Node> Mesh<N>
where
    Swarm<MeshBehaviour<N::Behaviour>>: Send,
{
    /// Connects node `a` to node `b` (a dials b) and remembers the edge.
    pub async fn connect(&mut self, a: usize, b: usize) -> Result<(), MeshError> {
        self.update_peer_lists(PeerList::Neighbours, &[(a, b)], true)
            .await?;
        self.dial(a, b, self.config.timeout).await?;
        self.edges.insert((a.min(b), a.max(b)));
        Ok(())
    }

    /// `a` dials `b`; answered once connected or failed, within `wait`.
    pub(super) async fn dial(&self, a: usize, b: usize, wait: Duration) -> Result<(), MeshError> {
        let peer = self.peer_id(b)?;
        let addr = self.addr(b)?;
        self.control_within(a, |reply| Control::Dial { peer, addr, reply }, wait)
            .await?
    }

    /// Dials `b` from `a` again after a failed attempt, a few times while the deadline
    /// allows: right after a restart, a dial can meet a connection the other side is
    /// still tearing down (seen on a loaded machine). Each retry follows the previous
    /// attempt's outcome event, so nothing here sleeps.
    pub(super) async fn connect_retrying(
        &mut self,
        a: usize,
        b: usize,
        deadline: tokio::time::Instant,
    ) -> Result<(), MeshError> {
        const ATTEMPTS: usize = 3;
        let mut attempt = 1;
        loop {
            match self.connect(a, b).await {
                Err(MeshError::Dial { .. })
                    if attempt < ATTEMPTS && tokio::time::Instant::now() < deadline =>
                {
                    attempt += 1;
                }
                done => return done,
            }
        }
    }

    /// Connects every edge of `topology` and waits until both ends of each see the
    /// connection.
    pub async fn connect_topology(
        &mut self,
        topology: Topology,
        timeout: Duration,
    ) -> Result<(), MeshError> {
        let edges = topology.edges(self.len());
        let peers = self.peer_ids();
        self.update_peer_lists(PeerList::Neighbours, &edges, true)
            .await?;
        // Dials go out together (a bounded number at a time): one after the other, a
        // 1,024-node mesh would spend seconds on round trips to its node tasks. Each
        // waits for its answer until the call's deadline, not the mesh's per-dial timeout:
        // it shares the machine with the other dials in flight.
        let this = &*self;
        let deadline = tokio::time::Instant::now() + timeout;
        let dial = |(a, b): (usize, usize)| async move {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            this.dial(a, b, left.max(this.config.timeout)).await
        };
        futures::stream::iter(edges.iter().copied().map(dial))
            .buffer_unordered(CONCURRENT_DIALS)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<()>, MeshError>>()?;
        self.edges.extend(edges.iter().copied());
        self.wait_until(
            &format!("the {topology:?} edges to be connected"),
            timeout,
            |states| {
                edges.iter().all(|&(a, b)| {
                    states[a].connected.contains(&peers[b])
                        && states[b].connected.contains(&peers[a])
                })
            },
        )
        .await
        .map(drop)
    }

    /// Closes the connections between `a` and `b` and forgets the edge (with discovery
    /// off, neither may connect to the other again until connected by the test).
    pub async fn disconnect(&mut self, a: usize, b: usize) -> Result<(), MeshError> {
        let peer = self.peer_id(b)?;
        self.update_peer_lists(PeerList::Neighbours, &[(a, b)], false)
            .await?;
        self.control(a, |reply| Control::Disconnect { peer, reply })
            .await?;
        self.edges.remove(&(a.min(b), a.max(b)));
        Ok(())
    }

    /// Adds (or removes) each end of every pair to the other's `list`: one message per
    /// live node, however many pairs it is in (half of a 1,024-node mesh against the
    /// other is 262,144 pairs). Edges are kept only while discovery is off.
    pub(super) async fn update_peer_lists(
        &self,
        list: PeerList,
        pairs: &[(usize, usize)],
        add: bool,
    ) -> Result<(), MeshError> {
        if list == PeerList::Neighbours && self.config.discovery == Discovery::Open {
            return Ok(());
        }
        let peers = self.peer_ids();
        let mut lists: Vec<Vec<PeerId>> = vec![Vec::new(); self.len()];
        for &(a, b) in pairs {
            self.slot(a.max(b))?;
            lists[a].push(peers[b]);
            lists[b].push(peers[a]);
        }
        for (index, peers) in lists.into_iter().enumerate() {
            if peers.is_empty() || !self.is_alive(index) {
                continue;
            }
            self.control(index, |reply| Control::PeerList {
                list,
                peers,
                add,
                reply,
            })
            .await?;
        }
        Ok(())
    }

    /// Blocks (or unblocks) `peers` on node `index` — any peers, in this mesh or outside
    /// it (nodes in other processes): libp2p's block list closes their connections and
    /// refuses new ones until they are unblocked.
    pub async fn block_peers(
        &self,
        index: usize,
        peers: Vec<PeerId>,
        blocked: bool,
    ) -> Result<(), MeshError> {
        self.control(index, |reply| Control::PeerList {
            list: PeerList::Blocked,
            peers,
            add: blocked,
            reply,
        })
        .await
    }
}
