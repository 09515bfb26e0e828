//! Stopping the receiver: the stop signal, the shutdown grace period, then closing every
//! connection still open, whether the receiver is stopped explicitly or dropped.

use std::time::Duration;

use tokio::sync::watch;

use super::{OtlpReceiver, ReceiverError, ServeError, ServerTask};

impl OtlpReceiver {
    /// Stops both servers: requests in flight get the grace period
    /// ([`Config::with_shutdown_grace`]), then the servers and their connections are
    /// dropped, whatever clients do. Returns once the ports are released.
    ///
    /// [`Config::with_shutdown_grace`]: super::Config::with_shutdown_grace
    pub async fn shutdown(mut self) -> Result<(), ReceiverError> {
        self.stop().await
    }

    /// Stops both servers as [`OtlpReceiver::shutdown`] does, but keeps what was received
    /// readable: everything acknowledged before the servers stopped is there, and nothing
    /// arrives after. Stopping again does nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use p2p_otel_testkit::receiver::{Config, OtlpReceiver};
    ///
    /// let mut receiver = OtlpReceiver::start(Config::default()).await?;
    /// receiver.stop().await?;
    /// assert_eq!(receiver.span_count(), 0); // the final count: no request can add to it
    /// assert!(std::net::TcpStream::connect(receiver.grpc_addr()).is_err());
    /// # Ok(()) }
    /// ```
    pub async fn stop(&mut self) -> Result<(), ReceiverError> {
        let _ = self.stop.send(true);
        let grace = self.shared.config.shutdown_grace;
        let tasks = std::mem::take(&mut self.tasks);
        let ended = stop_within(tasks, grace, self.close.clone()).await;
        // A connection the servers no longer own may still deliver a request: from here
        // on it is refused, so what is stored and written is what was acknowledged.
        self.shared.stop_storing();
        for (what, finished) in ended {
            match finished {
                Ok(Ok(())) => {}
                Ok(Err(source)) => return Err(ReceiverError::Serve { what, source }),
                Err(join) => {
                    return Err(ReceiverError::Serve {
                        what,
                        source: Box::new(join),
                    })
                }
            }
        }
        Ok(())
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        // Not shut down explicitly: still bound the servers' lives by the grace period.
        let grace = self.shared.config.shutdown_grace;
        let tasks = std::mem::take(&mut self.tasks);
        if tasks.is_empty() {
            return;
        }
        let close = self.close.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(stop_within(tasks, grace, close));
        }
    }
}

/// How a server's task ended.
type Ended = Result<Result<(), ServeError>, tokio::task::JoinError>;

/// Waits for the servers' graceful shutdown until `grace` has passed; then fails every
/// connection still open, so that it ends, and drops a server that still does not.
async fn stop_within(
    tasks: Vec<ServerTask>,
    grace: Duration,
    close: watch::Sender<bool>,
) -> Vec<(&'static str, Ended)> {
    let deadline = tokio::time::Instant::now() + grace;
    let mut ended = Vec::new();
    for (what, mut task) in tasks {
        let finished = match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(finished) => finished,
            Err(_) => {
                let _ = close.send(true);
                match tokio::time::timeout(CLOSE_WAIT, &mut task).await {
                    Ok(finished) => finished,
                    Err(_) => {
                        task.abort();
                        match task.await {
                            Err(join) if join.is_cancelled() => Ok(Ok(())),
                            other => other,
                        }
                    }
                }
            }
        };
        ended.push((what, finished));
    }
    ended
}

/// How long a server may take to notice its connections failed before it is dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Ends once the stop signal is given: what every server and connection waits on.
pub(super) async fn signal(mut stopped: watch::Receiver<bool>) {
    // Ends on `true`, or when the receiver (the sender) is gone.
    let _ = stopped.wait_for(|stop| *stop).await;
}
