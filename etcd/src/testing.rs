//! A real etcd server for tests: started on free loopback ports in a
//! temporary folder, stopped when dropped. Needs Debian's `etcd-server`.

use crate::{EtcdAddress, EtcdStore};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct EtcdServer {
    child: Child,
    /// Client and peer port.
    pub ports: (u16, u16),
    pub endpoint: String,
    pub log: PathBuf,
}

/// A loopback TCP port nothing listens on at the moment of asking.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl EtcdServer {
    /// Starts etcd with its data in `dir` and waits until it answers.
    pub async fn start(dir: &Path) -> Result<Self, String> {
        let client_port = free_port().map_err(|e| e.to_string())?;
        let peer_port = free_port().map_err(|e| e.to_string())?;
        Self::start_on(dir, client_port, peer_port).await
    }

    /// Starts etcd on the given ports (a restart must reuse its ports: the
    /// member's peer address is in its data).
    pub async fn start_on(dir: &Path, client_port: u16, peer_port: u16) -> Result<Self, String> {
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = dir.join("etcd.log");
        let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let err_file = log_file.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new("etcd")
            .args(["--name", "tormr-test", "--data-dir"])
            .arg(dir.join("etcd-data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("tormr-test={peer}")])
            // tormr's batches can name thousands of keys (a large match).
            .args(["--max-txn-ops", "10000", "--max-request-bytes", "16777216"])
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err_file)
            .spawn()
            .map_err(|e| {
                format!("cannot start etcd ({e}); install it with `apt-get install etcd-server`")
            })?;
        let mut server = EtcdServer {
            child,
            ports: (client_port, peer_port),
            endpoint: format!("127.0.0.1:{client_port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "etcd exited with {status} at start; its log:\n{}",
                    server.log_tail()
                ));
            }
            if EtcdStore::connect(server.address("probe")).await.is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "etcd did not answer within 30 s; its log:\n{}",
                    server.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// An address in this server under `namespace`.
    pub fn address(&self, namespace: &str) -> EtcdAddress {
        EtcdAddress {
            endpoints: vec![self.endpoint.clone()],
            namespace: format!("{}/", namespace.trim_matches('/')),
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
