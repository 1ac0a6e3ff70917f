//! HTTP/1.1 service over any transport's listener.
//!
//! Bounds what a peer can drive: a semaphore caps open connections, headers
//! must arrive within a timeout and fit a size cap, and every request has a
//! deadline. Handlers bound bodies themselves ([`crate::body`]), because only
//! they know whether a request carries a small JSON document or a bucket.

use crate::address::Address;
use crate::body::Body;
use crate::error::ApiError;
use crate::transport::Listener;
use async_trait::async_trait;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Limits of one HTTP service.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Open connections at most; further peers wait to be accepted.
    pub max_connections: usize,
    /// Time a peer has to send a request's headers.
    pub header_timeout: Duration,
    /// Longest a request may take in all (bulk transfers included).
    pub request_deadline: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 512,
            header_timeout: Duration::from_secs(30),
            request_deadline: Duration::from_secs(3600),
        }
    }
}

/// A service's request handler.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, request: Request<Incoming>) -> Result<Response<Body>, ApiError>;
}

/// A running service. Dropping it stops accepting; [`Server::shutdown`] also
/// drains open connections.
#[must_use = "dropping the Server stops the service"]
pub struct Server {
    address: Address,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Server {
    /// Starts serving `handler` on `listener`.
    pub fn spawn(
        listener: Box<dyn Listener>,
        handler: Arc<dyn Handler>,
        config: ServerConfig,
    ) -> Server {
        let address = listener.address();
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(accept_loop(
            listener,
            handler,
            config,
            cancel.clone(),
            tracker.clone(),
        ));
        Server {
            address,
            cancel,
            tracker,
        }
    }

    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Stops accepting, lets requests in flight finish for up to `grace`, then
    /// drops what is left.
    pub async fn shutdown(self, grace: Duration) {
        self.cancel.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(grace, self.tracker.wait()).await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn accept_loop(
    mut listener: Box<dyn Listener>,
    handler: Arc<dyn Handler>,
    config: ServerConfig,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    loop {
        let permit = tokio::select! {
            _ = cancel.cancelled() => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            s = listener.accept() => s,
        };
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("accept failed: {e}");
                // Don't spin if the listener is broken.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let handler = handler.clone();
        let config = config.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            serve_connection(stream, handler, config, cancel).await;
            drop(permit);
        });
    }
}

async fn serve_connection(
    stream: crate::transport::BoxStream,
    handler: Arc<dyn Handler>,
    config: ServerConfig,
    cancel: CancellationToken,
) {
    let deadline = config.request_deadline;
    let service = service_fn(move |request: Request<Incoming>| {
        let handler = handler.clone();
        async move {
            let response = match tokio::time::timeout(deadline, handler.handle(request)).await {
                Ok(Ok(response)) => response,
                Ok(Err(error)) => error.into_response(),
                Err(_) => ApiError::timeout("the request took longer than the service allows")
                    .into_response(),
            };
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .keep_alive(true)
        .max_buf_size(64 * 1024);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!("connection ended: {e}");
            }
        }
        _ = cancel.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
