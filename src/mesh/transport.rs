//! How a mesh node is put together: seeded identity, the memory transport — or TCP and
//! QUIC (feature `network`), for nodes that talk across processes — with noise (feature
//! `noise`) or plaintext and yamux, and an executor that keeps the node's tracing dispatch
//! on every task libp2p spawns.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, MemoryTransport};
use libp2p::core::upgrade::Version;
#[cfg(feature = "network")]
use libp2p::futures::future::Either;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{plaintext, yamux, Multiaddr, PeerId, Transport};
use tracing::instrument::WithSubscriber;
use tracing::Dispatch;

use super::MeshError;
use crate::splitmix::{SplitMix64, GAMMA};

/// The secure channel between mesh nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Security {
    /// Noise XX handshakes, as production nodes use: the default with the `noise`
    /// feature, which it needs (without it a mesh asked for noise fails to build its
    /// nodes with a [`MeshError::Identity`] that names the feature).
    Noise,
    /// Plaintext: no encryption, for speed in large meshes; the default without the
    /// `noise` feature.
    Plaintext,
}

impl Default for Security {
    fn default() -> Self {
        if cfg!(feature = "noise") {
            Security::Noise
        } else {
            Security::Plaintext
        }
    }
}

/// An ed25519 keypair derived from `(seed, index)`, so a mesh's peer ids are the same in
/// every run.
pub(crate) fn seeded_keypair(seed: u64, index: usize) -> Result<Keypair, MeshError> {
    let mut stream = SplitMix64::new(seed ^ (index as u64).wrapping_mul(GAMMA));
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&stream.next_u64().to_le_bytes());
    }
    Keypair::ed25519_from_bytes(bytes).map_err(|e| MeshError::Identity(super::cause(e)))
}

/// The transport for nodes listening on `listen`: the memory transport for `/memory/…`
/// addresses, else TCP (noise or plaintext, yamux) beside QUIC (its own TLS and streams).
pub(crate) fn transport(
    keypair: &Keypair,
    security: Security,
    listen: &[Multiaddr],
    link: Option<(Arc<super::link::Network>, usize)>,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, MeshError> {
    if listen.iter().all(is_memory) {
        return match link {
            Some((network, node)) => secured(
                MemoryTransport::default().map(move |channel, _| {
                    super::latency::Delayed::new(channel, Arc::clone(&network), node)
                }),
                keypair,
                security,
            ),
            None => secured(MemoryTransport::default(), keypair, security),
        };
    }
    network(keypair, security, listen)
}

/// TCP (noise or plaintext, yamux) beside QUIC (its own TLS and streams).
#[cfg(feature = "network")]
fn network(
    keypair: &Keypair,
    security: Security,
    _listen: &[Multiaddr],
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, MeshError> {
    let tcp = secured(
        libp2p::tcp::tokio::Transport::new(libp2p::tcp::Config::default().nodelay(true)),
        keypair,
        security,
    )?;
    let quic = libp2p::quic::tokio::Transport::new(libp2p::quic::Config::new(keypair));
    Ok(tcp
        .or_transport(quic)
        .map(|either, _| match either {
            Either::Left((peer, muxer)) => (peer, muxer),
            Either::Right((peer, muxer)) => (peer, StreamMuxerBox::new(muxer)),
        })
        .boxed())
}

/// Without the `network` feature only the memory transport is built in.
#[cfg(not(feature = "network"))]
fn network(
    _keypair: &Keypair,
    _security: Security,
    listen: &[Multiaddr],
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, MeshError> {
    Err(MeshError::Listen {
        index: 0,
        source: super::cause(format!(
            "listen addresses {listen:?}: TCP and QUIC need the kit's `network` feature \
             (p2p-otel-testkit = {{ features = [\"network\"] }}); without it only \
             `/memory/…` addresses work"
        )),
    })
}

/// Whether `addr` is a memory-transport address.
pub(crate) fn is_memory(addr: &Multiaddr) -> bool {
    matches!(addr.iter().next(), Some(Protocol::Memory(_)))
}

/// A stream transport (memory, TCP) with noise (or plaintext) and yamux on top.
fn secured<T>(
    base: T,
    keypair: &Keypair,
    security: Security,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, MeshError>
where
    T: Transport + Send + Unpin + 'static,
    T::Output: futures::AsyncRead + futures::AsyncWrite + Unpin + Send + 'static,
    T::Error: Send + Sync + 'static,
    T::Dial: Send + 'static,
    T::ListenerUpgrade: Send + 'static,
{
    let base = base.upgrade(Version::V1);
    Ok(match security {
        #[cfg(feature = "noise")]
        Security::Noise => base
            .authenticate(
                libp2p::noise::Config::new(keypair)
                    .map_err(|e| MeshError::Identity(super::cause(e)))?,
            )
            .multiplex(yamux::Config::default())
            .boxed(),
        #[cfg(not(feature = "noise"))]
        Security::Noise => {
            return Err(MeshError::Identity(super::cause(
                "Security::Noise needs the kit's `noise` feature \
                 (p2p-otel-testkit = { features = [\"noise\"] })",
            )))
        }
        Security::Plaintext => base
            .authenticate(plaintext::Config::new(keypair))
            .multiplex(yamux::Config::default())
            .boxed(),
    })
}

/// Spawns libp2p's connection tasks on tokio with the node's dispatch, so spans from
/// inside libp2p carry the node's identity too.
pub(crate) struct NodeExecutor {
    pub(crate) dispatch: Option<Dispatch>,
}

impl libp2p::swarm::Executor for NodeExecutor {
    fn exec(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        match &self.dispatch {
            Some(dispatch) => drop(tokio::spawn(future.with_subscriber(dispatch.clone()))),
            None => drop(tokio::spawn(future)),
        }
    }
}
