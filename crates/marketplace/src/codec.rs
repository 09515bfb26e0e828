//! The request-response codec: CBOR, like libp2p's own `cbor` codec, but a message that
//! does not decode becomes [`Wire::Malformed`] instead of an I/O error — libp2p drops
//! inbound read failures without telling the behaviour, and this crate exists to count
//! and report exactly such things. A stream that ends inside a message is still an I/O
//! error: it was cut short (a timeout, a closing connection), not malformed.

use std::io;

use cbor4ii::serde::DecodeError;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::protocol::{RegistryRequest, RegistryResponse};

/// The largest request read, in bytes (1 MiB).
const MAX_REQUEST: u64 = 1 << 20;
/// The largest response read, in bytes (16 MiB).
const MAX_RESPONSE: u64 = 16 << 20;

/// A message as read from a peer: decoded, or the reason it could not be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wire<T> {
    /// A well-formed message.
    Valid(T),
    /// Bytes that did not decode; the reason.
    Malformed(String),
}

/// CBOR codec for [`RegistryRequest`] / [`RegistryResponse`] that never fails on bad data.
#[derive(Clone, Debug, Default)]
pub struct RegistryCodec;

async fn read<T: DeserializeOwned, R: AsyncRead + Unpin + Send>(
    io: &mut R,
    limit: u64,
) -> io::Result<Wire<T>> {
    let mut bytes = Vec::new();
    io.take(limit + 1).read_to_end(&mut bytes).await?;
    if bytes.len() as u64 > limit {
        return Ok(Wire::Malformed(format!("message over {limit} bytes")));
    }
    match cbor4ii::serde::from_slice(&bytes) {
        Ok(message) => Ok(Wire::Valid(message)),
        // The stream closed before a whole message (nothing at all, or a prefix): a stream
        // cut short — a request given up by a timeout, a connection closing — not a
        // message that did not decode. An I/O failure, as libp2p's own codecs report it.
        Err(DecodeError::Core(cbor4ii::core::error::DecodeError::Eof { .. })) => {
            Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the stream ended inside a message, after {} bytes",
                    bytes.len()
                ),
            ))
        }
        Err(error) => Ok(Wire::Malformed(error.to_string())),
    }
}

async fn write<T: Serialize, W: AsyncWrite + Unpin + Send>(
    io: &mut W,
    message: Wire<T>,
) -> io::Result<()> {
    let Wire::Valid(message) = message else {
        // Nothing to send for a message that never decoded; closing the stream says so.
        return Ok(());
    };
    let bytes = cbor4ii::serde::to_vec(Vec::new(), &message).map_err(io::Error::other)?;
    io.write_all(&bytes).await
}

impl libp2p::request_response::Codec for RegistryCodec {
    type Protocol = StreamProtocol;
    type Request = Wire<RegistryRequest>;
    type Response = Wire<RegistryResponse>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Self::Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        read(io, MAX_REQUEST).await
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Self::Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        read(io, MAX_RESPONSE).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Self::Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write(io, request).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Self::Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write(io, response).await
    }
}

#[cfg(test)]
mod tests {
    use futures::io::Cursor;

    use super::*;
    use crate::Query;

    fn search() -> RegistryRequest {
        RegistryRequest::Search {
            query: Query::text("serde"),
            trace: Default::default(),
        }
    }

    async fn read_request(bytes: Vec<u8>) -> io::Result<Wire<RegistryRequest>> {
        read(&mut Cursor::new(bytes), MAX_REQUEST).await
    }

    #[tokio::test]
    async fn a_whole_message_is_read_and_bad_bytes_are_malformed() {
        let bytes = cbor4ii::serde::to_vec(Vec::new(), &search()).unwrap();
        assert_eq!(read_request(bytes).await.unwrap(), Wire::Valid(search()));
        let garbage = cbor4ii::serde::to_vec(Vec::new(), &"not a request").unwrap();
        assert!(matches!(
            read_request(garbage).await.unwrap(),
            Wire::Malformed(_)
        ));
        let oversized = vec![0u8; MAX_REQUEST as usize + 1];
        assert!(matches!(
            read_request(oversized).await.unwrap(),
            Wire::Malformed(reason) if reason.contains("over")
        ));
    }

    #[tokio::test]
    async fn a_stream_cut_inside_a_message_is_an_io_error_not_a_malformed_message() {
        let bytes = cbor4ii::serde::to_vec(Vec::new(), &search()).unwrap();
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            let error = read_request(bytes[..cut].to_vec()).await.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}");
        }
    }
}
