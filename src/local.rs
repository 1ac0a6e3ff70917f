//! `local[N]`: a bulletin, a data layer and N workers in this process, over
//! loopback TCP, speaking the same protocol with the same encryption as a
//! cluster over Tor.

use crate::UsageError;
use crate::owner::Cluster;
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tormr_bulletin::{BoardConfig, Bulletin, BulletinClient};
use tormr_core::identity::Identity;
use tormr_core::store::memory::MemoryStore;
use tormr_core::token::TokenSecret;
use tormr_datalayer::{DataLayer, DataLayerConfig, DirStore};
use tormr_net::tcp::TcpTransport;
use tormr_net::transport::ServiceSpec;
use tormr_net::{HttpClient, Server, ServerConfig, Transport};
use tormr_worker::executor::Executor;
use tormr_worker::executor::docker::Limits;
use tormr_worker::executor::process::ProcessExecutor;
use tormr_worker::faults::Misbehaviour;
use tormr_worker::sandbox::Sandbox;
use tormr_worker::{Volunteer, WorkerConfig};

/// Parses `local[N]` (and `local` for one worker).
pub fn parse_local(cluster: &str) -> Option<Result<u32>> {
    let rest = cluster.strip_prefix("local")?;
    if rest.is_empty() {
        return Some(Ok(1));
    }
    let n = rest.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
    Some(match n.map(str::parse::<u32>) {
        Some(Ok(n)) if (1..=64).contains(&n) => Ok(n),
        _ => Err(anyhow::anyhow!(
            "--cluster {cluster:?}: expected local[N] with N from 1 to 64"
        )),
    })
}

pub struct LocalCluster {
    pub cluster: Cluster,
    servers: Vec<Server>,
    stop: CancellationToken,
    workers: tokio::task::JoinSet<()>,
    sandbox: Option<Arc<Sandbox>>,
}

impl LocalCluster {
    /// Starts the cluster. Its workers run the owner's code as plain
    /// processes, or, with `containers`, in containers of the job's image
    /// (which the local engine, shared with the owner, already has).
    ///
    /// Each of `faults` adds one more worker that misbehaves so (fault
    /// injection); it counts as a volunteer, so its answers are verified, and
    /// the N honest workers, the owner's own, arbitrate.
    pub async fn start(
        workers: u32,
        faults: &[Misbehaviour],
        dir: &Path,
        containers: bool,
    ) -> Result<Self> {
        if workers == 0 {
            bail!("a local cluster needs at least one worker");
        }
        let sandbox = if containers {
            Some(local_sandbox(dir).await?)
        } else {
            None
        };
        let unsandboxed: Arc<dyn Executor> = Arc::new(ProcessExecutor);
        let transport: Arc<dyn Transport> = Arc::new(TcpTransport::new());
        let stop = CancellationToken::new();
        let publish = |name: &str| ServiceSpec::new(name);

        let board = Bulletin::open(
            Arc::new(MemoryStore::new()),
            Identity::generate(),
            BoardConfig::default(),
        )
        .await?;
        board.spawn_ticker(stop.clone());
        let bulletin = Server::spawn(
            transport.publish(&publish("bulletin")).await?,
            board,
            ServerConfig::default(),
        );

        let secret = TokenSecret::random();
        let store = Arc::new(
            DirStore::open(&dir.join("datalayer")).context("creating the local data layer")?,
        );
        let datalayer = Server::spawn(
            transport.publish(&publish("datalayer")).await?,
            Arc::new(DataLayer::new(
                store,
                secret.clone(),
                DataLayerConfig::default(),
            )),
            ServerConfig::default(),
        );

        let bulletin_client = BulletinClient::new(HttpClient::new(
            transport.clone(),
            bulletin.address().clone(),
        ));
        let mut running = tokio::task::JoinSet::new();
        let mut trusted_workers = std::collections::BTreeSet::new();
        let honest = (0..workers).map(|_| None);
        let faulty = faults.iter().map(|f| Some(*f));
        for (i, misbehaviour) in honest.chain(faulty).enumerate() {
            let mut config = WorkerConfig::new(dir.join("workers").join(i.to_string()));
            config.once = true;
            config.poll_wait = Duration::from_secs(5);
            config.misbehaviour = misbehaviour;
            let identity = Arc::new(Identity::generate());
            if misbehaviour.is_none() {
                trusted_workers.insert(identity.public());
            }
            let volunteer = Volunteer {
                config,
                identity,
                transport: transport.clone(),
                bulletin: bulletin_client.clone(),
                sandbox: sandbox.clone(),
                unsandboxed: Some(unsandboxed.clone()),
            };
            let stop = stop.clone();
            running.spawn(async move {
                if let Err(e) = volunteer.run(stop).await {
                    tracing::error!("local worker {i} stopped: {e}");
                }
            });
        }
        let cluster = Cluster {
            data_transport: transport.clone(),
            transport,
            bulletins: vec![bulletin.address().clone()],
            datalayer: datalayer.address().clone(),
            datalayer_for_workers: datalayer.address().clone(),
            secret,
            workers: workers + faults.len() as u32,
            min_workers: workers + faults.len() as u32,
            wait: Duration::from_secs(60),
            lanes: 1,
            owner: None,
            trusted_workers,
            owner_key: None,
            arbiters: Vec::new(),
        };
        Ok(LocalCluster {
            cluster,
            servers: vec![bulletin, datalayer],
            stop,
            workers: running,
            sandbox,
        })
    }

    /// Stops the workers and services.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while self.workers.join_next().await.is_some() {}
        })
        .await;
        for s in self.servers.drain(..) {
            s.shutdown(Duration::from_secs(2)).await;
        }
        // Containers of runs cut short are removed in the background, which
        // this process, on its way out, would not wait for.
        if let Some(sandbox) = &self.sandbox
            && let Err(e) = sandbox.sweep().await
        {
            tracing::warn!("could not remove the local workers' containers: {e}");
        }
    }
}

/// The container side of local workers: the owner's own engine.
async fn local_sandbox(dir: &Path) -> Result<Arc<Sandbox>> {
    let label = format!("local-{}", std::process::id());
    let sandbox = Sandbox::connect(dir, Limits::default(), 10 << 30, &label)
        .await
        .map_err(|e| UsageError(format!("--image: {e}")))?;
    Ok(Arc::new(sandbox))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_cluster_specs() {
        assert_eq!(parse_local("local[3]").unwrap().unwrap(), 3);
        assert_eq!(parse_local("local").unwrap().unwrap(), 1);
        assert!(parse_local("local[0]").unwrap().is_err());
        assert!(parse_local("local[x]").unwrap().is_err());
        assert!(parse_local("tor://abc.onion").is_none());
    }
}
