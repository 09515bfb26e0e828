//! A delay line under a memory connection ([`Builder::link`](super::Builder::link)): every
//! write reaches the other end when the link model ([`Schedule`]) says — its latency,
//! jitter, bandwidth and losses — on tokio's clock (virtual time in a paused runtime), in
//! order. Reads are untouched: each end delays what it writes, so both directions carry
//! the link.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::link::{Network, Schedule};

/// What the delay line carries: bytes due at an instant, or the end of the stream.
enum Due {
    Bytes(Instant, Vec<u8>),
    Close(Instant),
}

/// A connection whose writes arrive when its link's schedule says.
pub(crate) struct Delayed<S> {
    read: ReadHalf<S>,
    line: mpsc::UnboundedSender<Due>,
    schedule: Schedule,
    network: Arc<Network>,
    closed: bool,
}

impl<S> Delayed<S>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    /// Wraps node `node`'s end of `stream`; the line's task runs on the current tokio
    /// runtime.
    pub(crate) fn new(stream: S, network: Arc<Network>, node: usize) -> Self {
        let (read, write) = stream.split();
        let (line, due) = mpsc::unbounded_channel();
        drop(tokio::spawn(deliver(write, due)));
        Delayed {
            read,
            line,
            schedule: network.end(node),
            network,
            closed: false,
        }
    }
}

/// Writes each chunk once it is due; stops at the end of the stream or when the other end
/// is gone. Dropping the connection drains what is already on the line first.
async fn deliver<S: AsyncWrite + Unpin>(
    mut write: WriteHalf<S>,
    mut due: mpsc::UnboundedReceiver<Due>,
) {
    while let Some(next) = due.recv().await {
        match next {
            Due::Bytes(at, bytes) => {
                tokio::time::sleep_until(at).await;
                if write.write_all(&bytes).await.is_err() || write.flush().await.is_err() {
                    return;
                }
            }
            Due::Close(at) => {
                tokio::time::sleep_until(at).await;
                let _ = write.close().await;
                return;
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Delayed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Delayed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let segment = self.schedule.segment(Instant::now(), buf.len());
        self.network.count(&segment);
        match self.line.send(Due::Bytes(segment.due, buf.to_vec())) {
            Ok(()) => Poll::Ready(Ok(buf.len())),
            Err(_) => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    /// Bytes on the line are as good as sent: the line delivers them in order.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.closed {
            self.closed = true;
            // The end of the stream follows the last write, after the latency.
            let at = self.schedule.close_due(Instant::now());
            let _ = self.line.send(Due::Close(at));
        }
        Poll::Ready(Ok(()))
    }
}
