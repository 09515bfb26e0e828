//! Connections the receiver can close whatever the client does: each accepted socket is
//! wrapped so that, once the close signal is given, its next read or write — or the wait
//! for one, since the signal wakes it — fails, and the server drops the connection. A
//! silent client, half a request or a peer that stops reading cannot outlive shutdown.
//!
//! The same wrapper closes a connection on which nothing moved, either way, for the idle
//! timeout: a client that connects and never sends its headers, or stops reading the
//! answer, does not hold a connection for ever even while the receiver runs.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

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
    idle: Option<Idle>,
}

/// The idle timer: armed lazily, only while an operation waits. Progress just records the
/// time; when the timer fires early (there was progress since it was set) it re-arms.
struct Idle {
    timeout: Duration,
    last_progress: Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Idle {
    fn new(timeout: Duration) -> Self {
        Idle {
            timeout,
            last_progress: Instant::now(),
            timer: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// Whether the connection has been idle for the whole timeout; otherwise the timer is
    /// (re-)armed to wake this task when it could be.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let idle_until = self.last_progress + self.timeout;
            if Instant::now() >= idle_until {
                return true;
            }
            self.timer
                .as_mut()
                .reset(tokio::time::Instant::from_std(idle_until));
        }
    }
}

fn idle(timeout: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("nothing sent or read for {timeout:?}: connection closed as idle"),
    )
}

fn aborted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the receiver is shutting down",
    )
}

impl<S> Closing<S> {
    fn new(inner: S, close: watch::Receiver<bool>, idle_timeout: Option<Duration>) -> Self {
        let mut waiter = close.clone();
        Closing {
            inner,
            close,
            closed: Box::pin(async move {
                // Ends on `true`, or when the receiver that signals is gone.
                let _ = waiter.wait_for(|close| *close).await;
            }),
            idle: idle_timeout.map(Idle::new),
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

    /// `poll` of the inner socket, which, while it waits, also waits for the signal and
    /// the idle timeout. `moved` says whether a ready result moved bytes: only that is
    /// progress (a flush with nothing to flush is not, or a busy server that keeps
    /// flushing would keep a stalled peer's connection alive).
    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
        moved: impl FnOnce(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        match poll {
            Poll::Pending => {
                if self.closed.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(aborted()));
                }
                if let Some(idle) = &mut self.idle {
                    if idle.expired(cx) {
                        return Poll::Ready(Err(self::idle(idle.timeout)));
                    }
                }
                Poll::Pending
            }
            Poll::Ready(Ok(value)) => {
                if let Some(idle) = self.idle.as_mut().filter(|_| moved(&value)) {
                    idle.last_progress = Instant::now();
                }
                Poll::Ready(Ok(value))
            }
            failed => failed,
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
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        // A read of nothing is the end of the stream: that ends the connection anyway.
        let read = buf.filled().len() - before;
        self.guard(cx, poll, |()| read > 0)
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
        self.guard(cx, poll, |written| *written > 0)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.guard(cx, poll, |()| false)
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
    idle_timeout: Option<Duration>,
) -> impl Stream<Item = io::Result<Closing<TcpStream>>> + Send + 'static {
    incoming.map(move |accepted| {
        accepted.map(|socket| Closing::new(socket, close.clone(), idle_timeout))
    })
}

/// The HTTP server's listener, its connections closable and without Nagle's delay.
pub(crate) struct Listener {
    inner: TcpListener,
    close: watch::Receiver<bool>,
    idle_timeout: Option<Duration>,
}

impl Listener {
    pub(crate) fn new(
        inner: TcpListener,
        close: watch::Receiver<bool>,
        idle_timeout: Option<Duration>,
    ) -> Self {
        Listener {
            inner,
            close,
            idle_timeout,
        }
    }
}

impl axum::serve::Listener for Listener {
    type Io = Closing<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (socket, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let _ = socket.set_nodelay(true);
        (
            Closing::new(socket, self.close.clone(), self.idle_timeout),
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
