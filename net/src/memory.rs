//! In-process services: each connection is a tokio duplex pipe. The owner's
//! job master reaches the data layer running in its own process this way, at
//! memory speed and without touching any network (in Tor mode the same data
//! layer is also published as an onion service for the workers).

use crate::address::Address;
use crate::transport::{BoxStream, Listener, NetError, ServiceSpec, Transport};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::DuplexStream;
use tokio::sync::mpsc;

/// Bytes buffered in each direction of an in-process connection.
const PIPE: usize = 1 << 20;

#[derive(Clone, Default)]
pub struct MemoryTransport {
    services: Arc<Mutex<HashMap<String, mpsc::Sender<DuplexStream>>>>,
}

impl MemoryTransport {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    async fn connect(&self, address: &Address) -> Result<BoxStream, NetError> {
        let tx = self
            .services
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(address.host())
            .cloned()
            .ok_or_else(|| NetError::Connect {
                address: address.redacted(),
                why: "no such in-process service".into(),
            })?;
        let (ours, theirs) = tokio::io::duplex(PIPE);
        tx.send(theirs).await.map_err(|_| NetError::Connect {
            address: address.redacted(),
            why: "the in-process service stopped".into(),
        })?;
        Ok(Box::new(ours))
    }

    async fn publish(&self, spec: &ServiceSpec) -> Result<Box<dyn Listener>, NetError> {
        let host = format!("{}.mem", spec.nickname);
        let address = Address::parse(&format!("{host}:1")).map_err(|e| NetError::Publish {
            name: spec.nickname.clone(),
            why: e.to_string(),
        })?;
        let (tx, rx) = mpsc::channel(64);
        self.services
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(host, tx);
        Ok(Box::new(MemoryListener { address, rx }))
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

struct MemoryListener {
    address: Address,
    rx: mpsc::Receiver<DuplexStream>,
}

#[async_trait]
impl Listener for MemoryListener {
    fn address(&self) -> Address {
        self.address.clone()
    }

    async fn accept(&mut self) -> Result<BoxStream, NetError> {
        let stream = self
            .rx
            .recv()
            .await
            .ok_or_else(|| NetError::Accept("the transport was dropped".into()))?;
        Ok(Box::new(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn streams_reach_the_in_process_listener() {
        let t = MemoryTransport::new();
        let mut listener = t.publish(&ServiceSpec::new("d")).await.unwrap();
        let addr = listener.address();
        assert_eq!(addr.as_str(), "d.mem:1");
        let mut client = t.connect(&addr).await.unwrap();
        let mut server = listener.accept().await.unwrap();
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        assert!(
            t.connect(&Address::parse("nope.mem:1").unwrap())
                .await
                .is_err()
        );
    }
}
