//! The transport seam: publish a service, connect to one.

use crate::address::Address;
use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

/// A bidirectional byte stream from any transport.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

pub type BoxStream = Box<dyn Stream>;

/// Why a transport operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    #[error("could not connect to {address}: {why}")]
    Connect { address: String, why: String },
    #[error("could not publish service {name}: {why}")]
    Publish { name: String, why: String },
    #[error("accepting a connection failed: {0}")]
    Accept(String),
    #[error("{address} is not reachable by the {transport} transport: {why}")]
    Unsupported {
        address: String,
        transport: &'static str,
        why: String,
    },
}

/// What to publish.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// A stable name for the service (an onion service's nickname; its key is
    /// kept under it so the address survives restarts).
    pub nickname: String,
    /// TCP port to bind on loopback (0: any free port). Onion services ignore it.
    pub port: u16,
    /// Only these clients may discover the service (onion restricted
    /// discovery keys, `descriptor:x25519:…`); `None` lets anyone connect.
    pub allowed_clients: Option<Vec<String>>,
}

impl ServiceSpec {
    /// A public service on any free port.
    pub fn new(nickname: impl Into<String>) -> Self {
        ServiceSpec {
            nickname: nickname.into(),
            port: 0,
            allowed_clients: None,
        }
    }

    pub fn on_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    pub fn restricted_to(mut self, clients: Vec<String>) -> Self {
        self.allowed_clients = Some(clients);
        self
    }
}

#[async_trait]
pub trait Transport: Send + Sync + 'static {
    async fn connect(&self, address: &Address) -> Result<BoxStream, NetError>;
    async fn publish(&self, spec: &ServiceSpec) -> Result<Box<dyn Listener>, NetError>;
    /// Fixes a service's address before it is published, if the transport can
    /// (an onion service's address is its key; a TCP port exists only once bound).
    async fn reserve(&self, _spec: &ServiceSpec) -> Result<Option<Address>, NetError> {
        Ok(None)
    }
    /// The key a restricted service must list to let this client in, if the
    /// transport has such keys.
    fn discovery_key(&self) -> Option<String> {
        None
    }
    /// A transport whose connections never share a path with this one's (an
    /// onion transport's own circuits): one lane of a parallel transfer.
    /// `None` where lanes would gain nothing (loopback).
    fn isolated(&self) -> Option<std::sync::Arc<dyn Transport>> {
        None
    }
    /// "tcp" or "onion", for logs and errors.
    fn kind(&self) -> &'static str;
}

#[async_trait]
pub trait Listener: Send + 'static {
    fn address(&self) -> Address;
    async fn accept(&mut self) -> Result<BoxStream, NetError>;
}
