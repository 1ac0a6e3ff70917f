//! `tormr worker`: a volunteer daemon.

use crate::UsageError;
use crate::cli::WorkerArgs;
use crate::network::{shutdown_signal, state_dir, tor};
use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tormr_bulletin::BulletinClient;
use tormr_core::identity::{Identity, PublicKey};
use tormr_core::spec::streaming::parse_size;
use tormr_net::Transport;
use tormr_net::tcp::TcpTransport;
use tormr_worker::executor::Executor;
use tormr_worker::executor::docker::Limits;
use tormr_worker::executor::process::ProcessExecutor;
use tormr_worker::sandbox::Sandbox;
use tormr_worker::{Volunteer, WorkerConfig};

pub async fn run(args: WorkerArgs) -> Result<()> {
    let bulletins = crate::network::bulletin_addresses(&args.bulletin)
        .map_err(|e| UsageError(format!("--bulletin: {e}")))?;
    let memory = parse_size(&args.memory)
        .filter(|m| *m >= 64 << 20)
        .ok_or_else(|| {
            UsageError(format!(
                "--memory {:?}: expected a size of at least 64m, such as 4g",
                args.memory
            ))
        })?;
    if args.cores == 0 || args.cores > 256 {
        return Err(UsageError("--cores must be between 1 and 256".into()).into());
    }
    let size = |flag: &str, text: &str| {
        parse_size(text).ok_or_else(|| {
            UsageError(format!(
                "{flag} {text:?}: expected a size such as 512m or 10g"
            ))
        })
    };
    let image_cache = size("--image-cache", &args.image_cache)?;
    let trusted_by = match &args.trusted_by {
        Some(text) => Some(PublicKey::parse(text).map_err(|e| {
            UsageError(format!(
                "--trusted-by {text:?}: {e}; give the owner key `tormr submit --own-workers` prints"
            ))
        })?),
        None => None,
    };
    let task_memory = memory / u64::from(args.cores);
    let task_tmp = size("--task-tmp", &args.task_tmp)?;
    if task_tmp >= task_memory {
        return Err(UsageError(format!(
            "--task-tmp {} must be smaller than each task's share of --memory ({} MiB): /tmp \
             counts against a container's memory",
            args.task_tmp,
            task_memory >> 20
        ))
        .into());
    }
    let state = state_dir(&args.state)?;
    let identity = Arc::new(Identity::load_or_create(&state.join("identity.key"))?);
    let transport: Arc<dyn Transport> = if bulletins[0].is_onion() || args.tor_config.is_some() {
        Arc::new(tor(args.tor_config.as_deref(), &state).await?)
    } else {
        Arc::new(TcpTransport::new())
    };
    let mut config = WorkerConfig::new(state.clone());
    config.slots = args.cores;
    config.memory_mb = memory >> 20;
    // Half the memory for sort buffers, shared by the task slots.
    config.sort_buffer_cap = (memory / 2 / u64::from(args.cores)).clamp(16 << 20, 1 << 30);
    config.once = args.once;
    config.misbehaviour = args.fault;
    config.trusted_by = trusted_by;
    let limits = Limits {
        memory_bytes: task_memory,
        nano_cpus: 1_000_000_000,
        pids: 256,
        tmp_bytes: task_tmp,
    };
    let label = format!("worker-{}", identity.public().short());
    let sandbox = match Sandbox::connect(&state, limits, image_cache, &label).await {
        Ok(s) => Some(Arc::new(s)),
        Err(e) if args.allow_unsandboxed_jobs || trusted_by.is_some() => {
            eprintln!("{e}\nwithout it this worker takes only jobs that name no image");
            None
        }
        Err(e) => {
            return Err(UsageError(format!(
                "{e}\nA worker runs other people's code only in containers. Without Docker, \
                 --allow-unsandboxed-jobs takes jobs that name no image and runs them as plain \
                 processes: only for jobs you trust completely."
            ))
            .into());
        }
    };
    let unsandboxed: Option<Arc<dyn Executor>> = args
        .allow_unsandboxed_jobs
        .then(|| Arc::new(ProcessExecutor) as Arc<dyn Executor>);
    eprintln!("pseudonym {}", identity.public().to_text());
    eprintln!(
        "worker {} offering {} core(s) and {} MiB; job code runs {}",
        identity.public().short(),
        args.cores,
        config.memory_mb,
        match (&sandbox, &unsandboxed) {
            (Some(_), None) => "in containers",
            (Some(_), Some(_)) =>
                "in containers, or UNSANDBOXED for jobs that name no image (--allow-unsandboxed-jobs)",
            _ => "UNSANDBOXED, and only for jobs that name no image",
        }
    );
    if let Some(owner) = &trusted_by {
        eprintln!(
            "serving only the owner {} (--trusted-by); her jobs that name no image run unsandboxed",
            owner.short()
        );
    }
    let volunteer = Volunteer {
        config,
        identity,
        bulletin: BulletinClient::for_replicas(transport.clone(), &bulletins)
            .context("--bulletin names no board")?,
        transport,
        sandbox,
        unsandboxed,
    };
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    let signals = tokio::spawn(async move {
        shutdown_signal().await;
        eprintln!("stopping: abandoning running tasks");
        on_signal.cancel();
    });
    let result = volunteer.run(stop).await.context("the worker stopped");
    signals.abort();
    if let Some(sandbox) = &volunteer.sandbox {
        match tokio::time::timeout(Duration::from_secs(20), sandbox.sweep()).await {
            Ok(Err(e)) => tracing::warn!("could not remove this worker's containers: {e}"),
            Err(_) => tracing::warn!(
                "removing this worker's containers took over 20 s; the next start removes what is left"
            ),
            Ok(Ok(_)) => {}
        }
    }
    result
}
