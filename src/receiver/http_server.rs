//! Serves the OTLP/HTTP router over HTTP/1 connections with a deadline on request
//! headers: a client that trickles its headers (a byte now and then, which the idle
//! timeout counts as progress) loses its connection once the header-read timeout passes.
//! On the stop signal it accepts no more connections, lets each finish the request it
//! is serving, and returns when every connection has ended (the closing wrapper bounds
//! that by the shutdown grace).

use std::io;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt as _;

use super::closing::{Closing, Listener};
use super::shutdown::signal;

/// Serves `router` on `listener` until `stopped` turns true, then drains.
pub(crate) async fn serve(
    mut listener: Listener,
    router: Router,
    stopped: watch::Receiver<bool>,
    header_read_timeout: Option<Duration>,
) -> io::Result<()> {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = signal(stopped.clone()) => break,
            (socket, _) = axum::serve::Listener::accept(&mut listener) => {
                connections.spawn(connection(
                    socket,
                    router.clone(),
                    stopped.clone(),
                    header_read_timeout,
                ));
            }
            // Reap finished connections as they go, so the set stays small.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// One connection: served until it ends, or — once stopped — until the request in
/// progress is answered.
async fn connection(
    socket: Closing<tokio::net::TcpStream>,
    router: Router,
    stopped: watch::Receiver<bool>,
    header_read_timeout: Option<Duration>,
) {
    let service = TowerToHyperService::new(
        router.map_request(|request: hyper::Request<Incoming>| request.map(Body::new)),
    );
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(socket), service);
    tokio::pin!(connection);
    tokio::select! {
        // A connection's own error (a reset, a header timeout, a close at the deadline)
        // ends that connection only.
        _ = connection.as_mut() => {}
        _ = signal(stopped) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
