//! An OTLP/HTTP client that works from the SDK's own export threads.
//!
//! opentelemetry_sdk's batch processors export from a dedicated thread with no tokio
//! runtime, while an async HTTP client needs one. This client remembers the runtime it
//! was built in and runs every request there, so export works on multi-thread and
//! current-thread runtimes alike, and no blocking client is needed.

use bytes::Bytes;
use http::{Request, Response};
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{HttpClient, HttpError};
use tokio::runtime::Handle;

/// Sends requests with hyper on the runtime captured at construction.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeBoundClient {
    runtime: Handle,
    inner: std::sync::Arc<HyperClient>,
}

impl RuntimeBoundClient {
    pub(crate) fn new(runtime: Handle, timeout: std::time::Duration) -> Self {
        RuntimeBoundClient {
            runtime,
            inner: std::sync::Arc::new(HyperClient::with_default_connector(timeout, None)),
        }
    }
}

#[tonic::async_trait]
impl HttpClient for RuntimeBoundClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let inner = std::sync::Arc::clone(&self.inner);
        self.runtime
            .spawn(async move { inner.send_bytes(request).await })
            .await
            .map_err(|join| -> HttpError { Box::new(join) })?
    }
}
