//! `tormr submit`: check the job, get a cluster, run the job, report.

use crate::cli::SubmitArgs;
use crate::local::{LocalCluster, parse_local};
use crate::network;
use crate::owner::{Cluster, failure_message, human_bytes, run_job};
use crate::progress::Ui;
use crate::{Interrupted, JobFailed, UsageError, jobdef};
use anyhow::{Context, Result};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tormr_core::token::TokenSecret;
use tormr_datalayer::{DataLayer, DataLayerConfig, DirStore};
use tormr_net::memory::MemoryTransport;
use tormr_net::transport::ServiceSpec;
use tormr_net::{Address, Server, ServerConfig, Transport};
use tormr_worker::config::DATA_LANES;

pub async fn run(args: SubmitArgs) -> Result<()> {
    let json = args.json;
    let result = submit(args).await;
    if let Err(e) = &result
        && json
        && e.downcast_ref::<JobFailed>().is_none()
        && e.downcast_ref::<Interrupted>().is_none()
    {
        // Scripts reading --json get an answer even when the job never ran.
        let out =
            serde_json::json!({ "state": "invalid", "error": { "reason": format!("{e:#}") } });
        println!("{out}");
    }
    result
}

/// Where the job runs.
enum Target {
    Local(u32),
    Tor { bulletin: Address, workers: u32 },
}

fn target(args: &SubmitArgs) -> Result<Target, UsageError> {
    if let Some(n) = parse_local(&args.cluster) {
        let n = n.map_err(|e| UsageError(e.to_string()))?;
        if args.workers.is_some_and(|w| w != n) {
            return Err(UsageError(format!(
                "--workers {} contradicts --cluster local[{n}]",
                args.workers.unwrap_or(0)
            )));
        }
        return Ok(Target::Local(n));
    }
    if let Some(rest) = args.cluster.strip_prefix("tor://") {
        let bulletin = Address::parse(rest).map_err(|e| UsageError(format!("--cluster: {e}")))?;
        if !bulletin.is_onion() {
            return Err(UsageError(format!(
                "--cluster tor://…: {rest:?} is not an onion address"
            )));
        }
        let workers = args
            .workers
            .ok_or_else(|| UsageError("a tor:// cluster needs --workers N".into()))?;
        if workers == 0 || workers > 10_000 {
            return Err(UsageError("--workers must be between 1 and 10000".into()));
        }
        if args.image.is_some() {
            return Err(UsageError(
                "--image works in local mode only for now: images cannot yet be sent to \
                 workers over Tor; drop --image, or run with --cluster 'local[N]'"
                    .into(),
            ));
        }
        return Ok(Target::Tor { bulletin, workers });
    }
    Err(UsageError(format!(
        "--cluster {:?}: expected local[N] or tor://BULLETIN.onion",
        args.cluster
    )))
}

/// Parses `30s`, `10m`, `2h` or plain seconds.
fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// A cluster over Tor: the owner's own Tor client, and a data layer, either
/// the one named by --datalayer or one in this process (published as an onion
/// service for the workers, reached in memory by the owner).
async fn tor_cluster(
    args: &SubmitArgs,
    bulletin: Address,
    workers: u32,
    state: &Path,
) -> Result<(Cluster, Vec<Server>)> {
    let wait = parse_duration(&args.wait).ok_or_else(|| {
        UsageError(format!(
            "--wait {:?}: expected a duration such as 90s or 10m",
            args.wait
        ))
    })?;
    let min_workers = args.min_workers.unwrap_or(workers);
    if min_workers == 0 || min_workers > workers {
        return Err(UsageError("--min-workers must be between 1 and --workers".into()).into());
    }
    let tor: Arc<dyn Transport> = Arc::new(network::tor(args.tor_config.as_deref(), state).await?);
    let mut servers = Vec::new();
    let (datalayer, datalayer_for_workers, data_transport, secret) =
        match (&args.datalayer, &args.datalayer_secret) {
            (Some(addr), Some(secret_file)) => {
                let address =
                    Address::parse(addr).map_err(|e| UsageError(format!("--datalayer: {e}")))?;
                let secret = TokenSecret::load(secret_file).with_context(|| {
                    format!("reading --datalayer-secret {}", secret_file.display())
                })?;
                (address.clone(), address, tor.clone(), secret)
            }
            _ => {
                let secret = TokenSecret::random();
                let store = Arc::new(DirStore::open(&state.join("datalayer"))?);
                let service = Arc::new(DataLayer::new(
                    store,
                    secret.clone(),
                    DataLayerConfig::default(),
                ));
                eprintln!("publishing this job's data layer as an onion service…");
                let onion = Server::spawn(
                    tor.publish(&ServiceSpec::new("datalayer")).await?,
                    service.clone(),
                    ServerConfig::default(),
                );
                let memory: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
                let local = Server::spawn(
                    memory.publish(&ServiceSpec::new("datalayer")).await?,
                    service,
                    ServerConfig::default(),
                );
                let addresses = (local.address().clone(), onion.address().clone());
                servers.push(onion);
                servers.push(local);
                (addresses.0, addresses.1, memory, secret)
            }
        };
    let cluster = Cluster {
        transport: tor,
        bulletin,
        datalayer,
        datalayer_for_workers,
        secret,
        workers,
        min_workers,
        wait,
        lanes: DATA_LANES,
        data_transport,
    };
    Ok((cluster, servers))
}

async fn submit(args: SubmitArgs) -> Result<()> {
    let target = target(&args)?;
    tormr_jobmaster::output::check_output_free(&args.output)?;
    for input in &args.inputs {
        if !input.exists() {
            return Err(UsageError(format!(
                "input {} does not exist; check the -input path",
                input.display()
            ))
            .into());
        }
    }
    let state = match &args.state {
        Some(s) => network::state_dir(s)?,
        None => {
            let temp = tempfile::Builder::new()
                .prefix("tormr-")
                .tempdir()
                .context("creating a temporary state folder")?
                .keep();
            crate::cleanup::later(temp.clone());
            temp
        }
    };
    // Everything wrong with a job definition is the owner's to fix.
    let def =
        jobdef::build(&args, &state.join("unpacked")).map_err(|e| UsageError(format!("{e:#}")))?;
    let ui = Ui::new();
    let (cluster, local, servers) = match target {
        Target::Local(n) => {
            let local =
                LocalCluster::start(n, &state.join("cluster"), args.image.as_deref()).await?;
            (None, Some(local), Vec::new())
        }
        Target::Tor { bulletin, workers } => {
            let (cluster, servers) = tor_cluster(&args, bulletin, workers, &state).await?;
            (Some(cluster), None, servers)
        }
    };
    let cluster_ref = match (&cluster, &local) {
        (Some(c), _) => c,
        (None, Some(l)) => &l.cluster,
        (None, None) => unreachable!("a target always yields a cluster"),
    };
    let interrupt = CancellationToken::new();
    let on_signal = interrupt.clone();
    let signals = tokio::spawn(async move {
        network::shutdown_signal().await;
        on_signal.cancel();
    });
    let result = run_job(
        cluster_ref,
        def,
        &args.inputs,
        &args.output,
        &state.join("owner"),
        &ui,
        interrupt.clone(),
    )
    .await;
    signals.abort();
    if let Some(local) = local {
        local.shutdown().await;
    }
    for s in servers {
        s.shutdown(Duration::from_secs(2)).await;
    }
    let summary = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    if interrupt.is_cancelled() {
        return Err(Interrupted(format!(
            "job {} interrupted; its data was removed from the data layer and no output was written",
            summary.job
        ))
        .into());
    }
    if summary.error.is_some() {
        return Err(JobFailed(failure_message(&summary).to_string()).into());
    }
    if !args.json {
        eprintln!(
            "job {} succeeded in {:.1} s: {} read, {} part file(s) in {}",
            summary.job,
            summary.timings.total_s,
            human_bytes(summary.input_bytes),
            summary.parts,
            args.output.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration("5d"), None);
    }
}
