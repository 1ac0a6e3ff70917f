//! HTTP/1.1 client over any transport, with kept-alive pooled connections.
//!
//! Over Tor a new connection costs a stream (and maybe a circuit), so the
//! client pools connections per address and counts how many requests and
//! connections it made; the job's round trips are measured with these counts.

use crate::address::Address;
use crate::body::{self, Body, BodyError, collect_limited};
use crate::error::ClientError;
use crate::transport::{BoxStream, NetError, Transport};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri, header};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tormr_core::wire::{Call, ErrorBody, Method};

/// Largest JSON answer a client accepts.
pub const MAX_JSON_RESPONSE: u64 = 64 << 20;

/// Requests and connections made, for counting round trips.
#[derive(Debug, Default)]
pub struct ClientStats {
    pub requests: AtomicU64,
    pub connections: AtomicU64,
}

impl ClientStats {
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

/// A connection as hyper's pool sees it.
struct Conn(BoxStream);

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Opens connections through a [`Transport`] for hyper's pool.
#[derive(Clone)]
struct Connector {
    transport: Arc<dyn Transport>,
    stats: Arc<ClientStats>,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Conn>;
    type Error = NetError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, NetError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), NetError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let transport = self.transport.clone();
        let stats = self.stats.clone();
        Box::pin(async move {
            let authority = uri
                .authority()
                .map(|a| a.as_str().to_owned())
                .unwrap_or_default();
            let address = Address::parse(&authority).map_err(|e| NetError::Connect {
                address: authority.clone(),
                why: e.to_string(),
            })?;
            let stream = transport.connect(&address).await?;
            // Counted once open: a failed try is not a connection kept or reused.
            stats.connections.fetch_add(1, Ordering::Relaxed);
            Ok(TokioIo::new(Conn(stream)))
        })
    }
}

/// A client of one service.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<Connector, Body>,
    address: Address,
    bearer: Option<Arc<str>>,
    timeout: Duration,
    stats: Arc<ClientStats>,
}

impl HttpClient {
    pub fn new(transport: Arc<dyn Transport>, address: Address) -> Self {
        let stats = Arc::new(ClientStats::default());
        let connector = Connector {
            transport,
            stats: stats.clone(),
        };
        let inner = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(16)
            .build(connector);
        HttpClient {
            inner,
            address,
            bearer: None,
            timeout: Duration::from_secs(60),
            stats,
        }
    }

    /// The same client (and connection pool) sending `Authorization: Bearer TOKEN`.
    pub fn with_bearer(&self, token: &str) -> Self {
        HttpClient {
            bearer: Some(Arc::from(token)),
            ..self.clone()
        }
    }

    /// The same client with another per-call timeout (long-poll holds come on top).
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        HttpClient {
            timeout,
            ..self.clone()
        }
    }

    pub fn address(&self) -> &Address {
        &self.address
    }

    pub fn stats(&self) -> Arc<ClientStats> {
        self.stats.clone()
    }

    /// A request builder for `method` on `path`, with authorization set.
    pub fn request(&self, method: http::Method, path: &str) -> http::request::Builder {
        let mut builder =
            Request::builder()
                .method(method)
                .uri(format!("{}{}", self.address.base_url(), path));
        if let Some(token) = &self.bearer {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        builder
    }

    /// Sends a request and waits for the response headers. Error statuses are
    /// turned into [`ClientError::Api`]; the body of a success is left to the caller.
    pub async fn send(
        &self,
        request: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, ClientError> {
        let what = format!("{} {}", request.method(), request.uri().path());
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let response = match tokio::time::timeout(timeout, self.inner.request(request)).await {
            Err(_) => {
                return Err(ClientError::Timeout {
                    what,
                    secs: timeout.as_secs(),
                });
            }
            Ok(Err(e)) => return Err(self.connect_error(e)),
            Ok(Ok(response)) => response,
        };
        if response.status().is_success() {
            return Ok(response);
        }
        Err(error_from_response(response, &what).await)
    }

    fn connect_error(&self, e: hyper_util::client::legacy::Error) -> ClientError {
        use std::error::Error as _;
        let mut why = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            why = format!("{why}: {s}");
            source = s.source();
        }
        ClientError::Connect {
            address: self.address.redacted(),
            why,
        }
    }

    /// Makes a typed call and decodes its answer.
    pub async fn call<C: Call>(&self, call: &C) -> Result<C::Response, ClientError> {
        let path = call.path();
        let timeout = self.timeout + Duration::from_secs(call.hold_secs());
        let request = match C::METHOD {
            Method::Get => self.request(http::Method::GET, &path).body(body::empty()),
            Method::Post => {
                let json = serde_json::to_vec(call).map_err(|e| ClientError::Protocol {
                    what: path.clone(),
                    why: e.to_string(),
                })?;
                self.request(http::Method::POST, &path)
                    .header(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )
                    .body(body::full(json))
            }
        }
        .map_err(|e| ClientError::Protocol {
            what: path.clone(),
            why: e.to_string(),
        })?;
        let what = format!("{:?} {}", C::METHOD, path.split('?').next().unwrap_or(""));
        let work = async {
            let response = self.send(request, timeout).await?;
            let bytes = collect_limited(response.into_body(), MAX_JSON_RESPONSE, timeout)
                .await
                .map_err(|e| match e {
                    BodyError::Read(_) | BodyError::Stalled { .. } => ClientError::CutOff {
                        what: what.clone(),
                        why: e.to_string(),
                    },
                    _ => ClientError::Protocol {
                        what: what.clone(),
                        why: e.to_string(),
                    },
                })?;
            serde_json::from_slice::<C::Response>(&bytes).map_err(|e| ClientError::Protocol {
                what: what.clone(),
                why: e.to_string(),
            })
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout {
                what,
                secs: timeout.as_secs(),
            }),
        }
    }
}

/// Reads an error response's JSON body into a [`ClientError::Api`].
async fn error_from_response(response: Response<Incoming>, what: &str) -> ClientError {
    let status = response.status();
    let bytes = collect_limited(response.into_body(), 64 * 1024, Duration::from_secs(30))
        .await
        .unwrap_or_else(|_| Bytes::new());
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => ClientError::Api {
            status: status.as_u16(),
            code: body.error.code,
            message: body.error.message,
        },
        Err(_) => ClientError::Api {
            status: status.as_u16(),
            code: "http".into(),
            message: format!("{what} answered HTTP {status} without an error body"),
        },
    }
}

/// Retries `op` while it fails with a retryable error, up to `attempts` times,
/// with exponential backoff from 200 ms to 5 s.
pub async fn with_retries<T, F, Fut>(attempts: u32, mut op: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut delay = Duration::from_millis(200);
    let mut tried = 0;
    loop {
        tried += 1;
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && tried < attempts => {
                tracing::debug!("retrying after: {e}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}
