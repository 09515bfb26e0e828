//! Connections the receiver can close whatever the client does: each accepted socket is
//! wrapped so that, once the close signal is given, its next read or write — or the wait
//! for one, since the signal wakes it — fails, and the server drops the connection. A
//! silent client, half a request or a peer that stops reading cannot outlive shutdown.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

type Closed = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A socket that fails every operation once the close signal is given.
///
/// The hot path stays cheap: an operation that completes only reads the signal's current
/// value; the wake-up on the signal is registered only while an operation waits.
pub(crate) struct Closing<S> {
    inner: S,
    close: watch::Receiver<bool>,
    closed: Closed,
}

fn aborted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the receiver is shutting down",
    )
}

impl<S> Closing<S> {
    fn new(inner: S, close: watch::Receiver<bool>) -> Self {
        let mut waiter = close.clone();
        Closing {
            inner,
            close,
            closed: Box::pin(async move {
                // Ends on `true`, or when the receiver that signals is gone.
                let _ = waiter.wait_for(|close| *close).await;
            }),
        }
    }

    /// Fails once the signal is given.
    fn check(&self) -> io::Result<()> {
        if *self.close.borrow() {
            Err(aborted())
        } else {
            Ok(())
        }
    }

    /// `poll` of the inner socket, which, while it waits, also waits for the signal.
    fn guard<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Pending => match self.closed.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(aborted())),
                Poll::Pending => Poll::Pending,
            },
            ready => ready,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Closing<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check()?;
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.guard(cx, poll)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Closing<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.guard(cx, poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.guard(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Closing<TcpStream> {
    type ConnectInfo = <TcpStream as tonic::transport::server::Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// The gRPC server's incoming connections, closable.
pub(crate) fn incoming(
    incoming: impl Stream<Item = io::Result<TcpStream>> + Send + 'static,
    close: watch::Receiver<bool>,
) -> impl Stream<Item = io::Result<Closing<TcpStream>>> + Send + 'static {
    incoming.map(move |accepted| accepted.map(|socket| Closing::new(socket, close.clone())))
}

/// The HTTP server's listener, its connections closable and without Nagle's delay.
pub(crate) struct Listener {
    inner: TcpListener,
    close: watch::Receiver<bool>,
}

impl Listener {
    pub(crate) fn new(inner: TcpListener, close: watch::Receiver<bool>) -> Self {
        Listener { inner, close }
    }
}

impl axum::serve::Listener for Listener {
    type Io = Closing<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (socket, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let _ = socket.set_nodelay(true);
        (Closing::new(socket, self.close.clone()), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
