//! Loopback TCP: local mode and fast tests. It refuses anything but loopback,
//! so a local cluster can never be reached from, or reach, another machine.

use crate::address::Address;
use crate::transport::{BoxStream, Listener, NetError, ServiceSpec, Transport};
use async_trait::async_trait;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use tokio::net::TcpListener;

#[derive(Debug, Default, Clone)]
pub struct TcpTransport;

impl TcpTransport {
    pub fn new() -> Self {
        TcpTransport
    }
}

fn loopback(address: &Address) -> Result<SocketAddr, NetError> {
    let unsupported = |why: &str| NetError::Unsupported {
        address: address.redacted(),
        transport: "tcp",
        why: why.to_owned(),
    };
    if address.is_onion() {
        return Err(unsupported(
            "onion addresses need the Tor transport (--tor-config, or a tor:// cluster)",
        ));
    }
    let host = if address.host() == "localhost" {
        "127.0.0.1"
    } else {
        address.host()
    };
    let ip: IpAddr = host
        .trim_matches(['[', ']'])
        .parse()
        .map_err(|_| unsupported("not an IP address"))?;
    if !ip.is_loopback() {
        return Err(unsupported(
            "the TCP transport only reaches loopback addresses",
        ));
    }
    Ok(SocketAddr::new(ip, address.port()))
}

#[async_trait]
impl Transport for TcpTransport {
    async fn connect(&self, address: &Address) -> Result<BoxStream, NetError> {
        let target = loopback(address)?;
        let stream =
            tokio::net::TcpStream::connect(target)
                .await
                .map_err(|e| NetError::Connect {
                    address: address.redacted(),
                    why: e.to_string(),
                })?;
        // Control messages are small; don't let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        Ok(Box::new(stream))
    }

    async fn publish(&self, spec: &ServiceSpec) -> Result<Box<dyn Listener>, NetError> {
        let bind = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), spec.port);
        let listener = TcpListener::bind(bind)
            .await
            .map_err(|e| NetError::Publish {
                name: spec.nickname.clone(),
                why: format!("binding {bind}: {e}"),
            })?;
        let local = listener.local_addr().map_err(|e| NetError::Publish {
            name: spec.nickname.clone(),
            why: e.to_string(),
        })?;
        let address = Address::parse(&local.to_string()).map_err(|e| NetError::Publish {
            name: spec.nickname.clone(),
            why: e.to_string(),
        })?;
        Ok(Box::new(TcpServiceListener { listener, address }))
    }

    fn kind(&self) -> &'static str {
        "tcp"
    }
}

struct TcpServiceListener {
    listener: TcpListener,
    address: Address,
}

#[async_trait]
impl Listener for TcpServiceListener {
    fn address(&self) -> Address {
        self.address.clone()
    }

    async fn accept(&mut self) -> Result<BoxStream, NetError> {
        let (stream, _) = self
            .listener
            .accept()
            .await
            .map_err(|e| NetError::Accept(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        Ok(Box::new(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_non_loopback_and_onion() {
        let t = TcpTransport::new();
        for a in ["10.0.0.1:80", "example.com:80", "abc.onion:80"] {
            assert!(t.connect(&Address::parse(a).unwrap()).await.is_err(), "{a}");
        }
    }
}
