//! `tormr submit`: check the job, get a cluster, run the job, report.

use crate::cli::SubmitArgs;
use crate::local::{LocalCluster, parse_local};
use crate::network;
use crate::owner::{Cluster, failure_message, human_bytes, run_job};
use crate::progress::Ui;
use crate::resume::JobStart;
use crate::{Interrupted, JobFailed, UsageError, image, jobdef};
use anyhow::{Context, Result};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tormr_core::identity::{Identity, PublicKey};
use tormr_core::token::TokenSecret;
use tormr_core::wire::bulletin::Requirements;
use tormr_datalayer::{DataLayer, DataLayerConfig, DirStore};
use tormr_net::memory::MemoryTransport;
use tormr_net::tcp::TcpTransport;
use tormr_net::transport::ServiceSpec;
use tormr_net::{Address, Server, ServerConfig, Transport};
use tormr_worker::config::DATA_LANES;

pub async fn run(args: SubmitArgs, argv: Vec<String>) -> Result<()> {
    run_start(args, argv, None).await
}

/// Runs a submission: a new job, or (with `start`) one being resumed.
pub async fn run_start(args: SubmitArgs, argv: Vec<String>, start: Option<JobStart>) -> Result<()> {
    let json = args.json;
    let result = submit(args, argv, start).await;
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
    /// A bulletin board (one or more replicas) and volunteers, over Tor or,
    /// for tests and single-machine setups, over loopback TCP.
    Remote {
        bulletins: Vec<Address>,
        workers: u32,
        tor: bool,
    },
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
        if !args.arbiters.is_empty() {
            return Err(UsageError(format!(
                "--arbiter names a volunteer on a bulletin; local[{n}] workers are yours already and settle disputes themselves: drop --arbiter"
            )));
        }
        return Ok(Target::Local(n));
    }
    let (rest, tor) = match (
        args.cluster.strip_prefix("tor://"),
        args.cluster.strip_prefix("tcp://"),
    ) {
        (Some(rest), _) => (rest, true),
        (None, Some(rest)) => (rest, false),
        (None, None) => {
            return Err(UsageError(format!(
                "--cluster {:?}: expected local[N], tor://BULLETIN.onion[,REPLICA.onion…] or tcp://HOST:PORT[,HOST:PORT…]",
                args.cluster
            )));
        }
    };
    let bulletins =
        network::bulletin_addresses(rest).map_err(|e| UsageError(format!("--cluster: {e}")))?;
    if let Some(wrong) = bulletins.iter().find(|b| b.is_onion() != tor) {
        return Err(UsageError(format!(
            "--cluster {}: {wrong} is {} address",
            args.cluster,
            if tor {
                "not an onion"
            } else {
                "an onion address, not a TCP"
            }
        )));
    }
    // A pipeline's parallelism_spec stands in for --workers.
    let parallelism = match &args.pachyderm {
        Some(spec) => {
            crate::pachyderm::read_spec(spec)
                .map_err(|e| UsageError(format!("--pachyderm: {e:#}")))?
                .parallelism
        }
        None => None,
    };
    let workers = args
        .workers
        .or(parallelism)
        .ok_or_else(|| UsageError("a tor:// or tcp:// cluster needs --workers N".into()))?;
    if workers == 0 || workers > 10_000 {
        return Err(UsageError("--workers must be between 1 and 10000".into()));
    }
    Ok(Target::Remote {
        bulletins,
        workers,
        tor,
    })
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

/// A cluster over Tor (or loopback TCP): the owner's own Tor client, and a
/// data layer, either the one named by --datalayer or one in this process
/// (published as an onion service for the workers, reached in memory by the
/// owner).
async fn remote_cluster(
    args: &SubmitArgs,
    bulletins: Vec<Address>,
    workers: u32,
    tor: bool,
    state: &Path,
    start: &mut JobStart,
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
    let transport: Arc<dyn Transport> = if tor {
        Arc::new(network::tor(args.tor_config.as_deref(), state).await?)
    } else {
        Arc::new(TcpTransport::new())
    };
    let mut servers = Vec::new();
    let (datalayer, datalayer_for_workers, data_transport, secret) =
        match (&args.datalayer, &args.datalayer_secret) {
            (Some(addr), Some(secret_file)) => {
                let address =
                    Address::parse(addr).map_err(|e| UsageError(format!("--datalayer: {e}")))?;
                let secret = TokenSecret::load(secret_file).with_context(|| {
                    format!("reading --datalayer-secret {}", secret_file.display())
                })?;
                (address.clone(), address, transport.clone(), secret)
            }
            _ => {
                // Kept in the state folder: workers of a resumed job still
                // hold tokens it signed.
                let secret_path = state.join("datalayer.secret");
                let secret = TokenSecret::load_or_create(&secret_path).with_context(|| {
                    format!("the data layer's secret {}", secret_path.display())
                })?;
                let store = Arc::new(DirStore::open(&state.join("datalayer"))?);
                let service = Arc::new(DataLayer::new(
                    store,
                    secret.clone(),
                    DataLayerConfig::default(),
                ));
                if tor {
                    eprintln!("publishing this job's data layer as an onion service…");
                }
                let spec = ServiceSpec {
                    port: start.port("datalayer"),
                    ..ServiceSpec::new("datalayer")
                };
                let listener = transport.publish(&spec).await.with_context(|| {
                    format!(
                        "publishing the job's data layer (port {} before)",
                        spec.port
                    )
                })?;
                let public =
                    Server::spawn(listener, service.clone(), crate::owner::worker_facing());
                if !tor {
                    start
                        .manifest
                        .ports
                        .insert("datalayer".into(), public.address().port());
                }
                let memory: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
                let local = Server::spawn(
                    memory.publish(&ServiceSpec::new("datalayer")).await?,
                    service,
                    ServerConfig::default(),
                );
                let addresses = (local.address().clone(), public.address().clone());
                servers.push(public);
                servers.push(local);
                (addresses.0, addresses.1, memory, secret)
            }
        };
    let owner = match &args.own_workers {
        Some(path) => {
            let key = Identity::load_or_create(path)
                .with_context(|| format!("--own-workers: the owner key {}", path.display()))?;
            eprintln!(
                "running on your own workers only: those started with --trusted-by {}",
                key.public().to_text()
            );
            Some(Arc::new(key))
        }
        None => None,
    };
    let owner_key = match &args.owner_key {
        Some(path) => Some(Arc::new(Identity::load_or_create(path).with_context(
            || format!("--owner-key: the owner key {}", path.display()),
        )?)),
        None => None,
    };
    let arbiters = args
        .arbiters
        .iter()
        .map(|text| {
            PublicKey::parse(text).map_err(|e| {
                UsageError(format!(
                    "--arbiter {text:?}: {e}; give the pseudonym `tormr worker` printed"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if arbiters.len() > Requirements::MAX_ARBITERS {
        return Err(UsageError(format!(
            "at most {} --arbiter workers",
            Requirements::MAX_ARBITERS
        ))
        .into());
    }
    if !arbiters.is_empty() {
        let key = owner.as_ref().or(owner_key.as_ref()).map(|k| k.public());
        eprintln!(
            "{} arbiter(s) of yours settle disputes; they must run with --trusted-by {}",
            arbiters.len(),
            key.map_or_else(
                || format!("the key in {}", state.join("owner/owner.key").display()),
                |k| k.to_text()
            )
        );
    }
    let cluster = Cluster {
        owner,
        transport,
        bulletins,
        datalayer,
        datalayer_for_workers,
        secret,
        workers,
        min_workers,
        wait,
        lanes: DATA_LANES,
        data_transport,
        trusted_workers: arbiters.iter().copied().collect(),
        owner_key,
        arbiters,
    };
    Ok((cluster, servers))
}

async fn submit(args: SubmitArgs, argv: Vec<String>, start: Option<JobStart>) -> Result<()> {
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
    let mut start = match start {
        Some(start) => start,
        None => JobStart::new(&state, argv)?,
    };
    if start.resuming {
        eprintln!(
            "resuming job {} from {}",
            start.manifest.job,
            state.display()
        );
    } else {
        eprintln!(
            "job {}: state in {} (if this process dies, `tormr job resume --state {}` continues the job)",
            start.manifest.job,
            state.display(),
            state.display()
        );
    }
    start.save()?;
    // Everything wrong with a job definition is the owner's to fix.
    let mut def =
        jobdef::build(&args, &state.join("unpacked")).map_err(|e| UsageError(format!("{e:#}")))?;
    let ui = Ui::new();
    let image_name = args
        .image
        .clone()
        .or_else(|| def.pipeline.as_ref().map(|p| p.image.clone()));
    if let Some(name) = &image_name {
        // Local workers share the owner's engine; workers over Tor get a copy.
        let ship = matches!(target, Target::Remote { .. });
        let (image, archive) = image::prepare(name, ship, &state.join("image"), &ui).await?;
        def.spec.image = Some(image);
        def.image = archive;
    }
    let (cluster, local, servers) = match target {
        Target::Local(n) => {
            let local = LocalCluster::start(
                n,
                &args.local_faults,
                &state.join("cluster"),
                image_name.is_some(),
            )
            .await?;
            (None, Some(local), Vec::new())
        }
        Target::Remote {
            bulletins,
            workers,
            tor,
        } => {
            let (cluster, servers) =
                remote_cluster(&args, bulletins, workers, tor, &state, &mut start).await?;
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
    let pipeline = def.pipeline.clone();
    let inputs = def.inputs.clone().unwrap_or_else(|| args.inputs.clone());
    // A pipeline's outputs are tars of each datum's /pfs/out, merged below.
    let job_output = match &pipeline {
        Some(_) => state.join("pfs-parts"),
        None => args.output.clone(),
    };
    let timed_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let job_timer = pipeline.as_ref().and_then(|p| p.job_timeout).map(|limit| {
        let (interrupt, timed_out) = (interrupt.clone(), timed_out.clone());
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            timed_out.store(true, std::sync::atomic::Ordering::Relaxed);
            interrupt.cancel();
        })
    });
    let result = run_job(
        cluster_ref,
        def,
        &inputs,
        &job_output,
        &ui,
        interrupt.clone(),
        &mut start,
    )
    .await;
    signals.abort();
    if let Some(timer) = job_timer {
        timer.abort();
    }
    if let Some(local) = local {
        local.shutdown().await;
    }
    for s in servers {
        s.shutdown(Duration::from_secs(2)).await;
    }
    let summary = result?;
    // The job ended (done, failed or interrupted): nothing is left to resume.
    start.finish();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    if timed_out.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(JobFailed(format!(
            "job {} reached the pipeline's job_timeout and was stopped; no output was written",
            summary.job
        ))
        .into());
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
    if pipeline.is_some() {
        let merged = crate::pachyderm::merge_outputs(&job_output, &args.output);
        let _ = std::fs::remove_dir_all(&job_output);
        match merged {
            Ok(n) => ui.say(&format!("{n} file(s) from the datums' /pfs/out")),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&args.output);
                return Err(JobFailed(format!("job {}: {e:#}", summary.job)).into());
            }
        }
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
