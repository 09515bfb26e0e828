//! What can go wrong starting or running the receiver.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors starting or running the receiver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiverError {
    /// A listening socket could not be bound (port busy, address not local…).
    #[error("could not bind the {what} listener on {addr}: {source}")]
    Bind {
        /// "OTLP/gRPC" or "OTLP/HTTP".
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An OTLP-JSON export file or its folder could not be created.
    #[error("could not open the OTLP-JSON export file {path}: {source}")]
    ExportFile {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A server task failed while serving.
    #[error("the {what} server failed")]
    Serve {
        /// Which server.
        what: &'static str,
        /// What it reported.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
