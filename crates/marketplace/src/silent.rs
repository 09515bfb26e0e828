//! A peer that accepts a protocol's streams and never answers — the unreachable or
//! wedged peer of timeout scenarios, without waiting out production timeouts.
//!
//! On the registry protocol it makes remote searches time out; on the Kademlia protocol
//! ([`KAD_PROTOCOL`](crate::KAD_PROTOCOL)) it makes every DHT query that reaches it hang.

use std::time::Duration;

use libp2p::request_response::{self, ProtocolSupport, ResponseChannel};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol};

use super::{RegistryCodec, RegistryResponse, Wire};
use p2p_otel_testkit::mesh::{
    self, Mesh, MeshBehaviourEvent, MeshError, Node, NodeEvent, NodeSwarm, Security,
};

/// The silent peer's logic: it keeps every response channel and never answers. Its
/// command dials a peer at an address.
#[derive(Debug, Default)]
pub struct SilentPeer(Vec<ResponseChannel<Wire<RegistryResponse>>>);

impl Node for SilentPeer {
    type Behaviour = request_response::Behaviour<RegistryCodec>;
    type Command = (PeerId, Multiaddr);
    type Observations = ();

    fn on_swarm_event(
        &mut self,
        _: &mut NodeSwarm<Self::Behaviour>,
        event: NodeEvent<Self::Behaviour>,
    ) {
        if let SwarmEvent::Behaviour(MeshBehaviourEvent::App(request_response::Event::Message {
            message: request_response::Message::Request { channel, .. },
            ..
        })) = event
        {
            self.0.push(channel);
        }
    }

    fn on_command(
        &mut self,
        swarm: &mut NodeSwarm<Self::Behaviour>,
        (peer, addr): (PeerId, Multiaddr),
    ) {
        let _ = swarm.dial(DialOpts::peer_id(peer).addresses(vec![addr]).build());
    }
}

/// Starts a one-node mesh whose node is silent on `protocol` (`seed` picks its peer id;
/// `security` must match the mesh it will talk to).
pub async fn silent_peer(
    protocol: &'static str,
    seed: u64,
    security: Security,
) -> Result<Mesh<SilentPeer>, MeshError> {
    silent_on(
        protocol,
        mesh::Builder::new(1).seed(seed).security(security),
    )
    .await
}

/// The same peer on real transports: listening on `listen` (TCP and QUIC multiaddrs such
/// as `/ip4/127.0.0.1/tcp/0`), for nodes that run as their own processes.
pub async fn silent_peer_listening(
    protocol: &'static str,
    seed: u64,
    listen: Vec<Multiaddr>,
) -> Result<Mesh<SilentPeer>, MeshError> {
    silent_on(protocol, mesh::Builder::new(1).seed(seed).listen_on(listen)).await
}

pub(crate) async fn silent_on(
    protocol: &'static str,
    builder: mesh::Builder,
) -> Result<Mesh<SilentPeer>, MeshError> {
    // Dialed by nodes of another mesh: it must accept peers it was not connected to.
    builder
        .discovery(mesh::Discovery::Open)
        .start(move |_| {
            Ok((
                request_response::Behaviour::with_codec(
                    RegistryCodec,
                    [(StreamProtocol::new(protocol), ProtocolSupport::Full)],
                    // Its own side never gives up first.
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(3600)),
                ),
                SilentPeer::default(),
            ))
        })
        .await
}
