//! `tormr worker`: a volunteer daemon.

use crate::UsageError;
use crate::cli::WorkerArgs;
use crate::network::{shutdown_signal, state_dir, tor};
use anyhow::{Context, Result};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tormr_bulletin::BulletinClient;
use tormr_core::identity::Identity;
use tormr_core::spec::streaming::parse_size;
use tormr_net::tcp::TcpTransport;
use tormr_net::{Address, HttpClient, Transport};
use tormr_worker::executor::process::ProcessExecutor;
use tormr_worker::{Volunteer, WorkerConfig};

pub async fn run(args: WorkerArgs) -> Result<()> {
    let bulletin =
        Address::parse(&args.bulletin).map_err(|e| UsageError(format!("--bulletin: {e}")))?;
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
    if !args.allow_unsandboxed_jobs {
        return Err(UsageError(
            "this worker has no sandbox yet: pass --allow-unsandboxed-jobs to run job code as plain processes, \
             and do so only for jobs you trust completely (their code can read your files and use your network)"
                .into(),
        )
        .into());
    }
    let state = state_dir(&args.state)?;
    let identity = Arc::new(Identity::load_or_create(&state.join("identity.key"))?);
    let transport: Arc<dyn Transport> = if bulletin.is_onion() || args.tor_config.is_some() {
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
    eprintln!(
        "worker {} offering {} core(s) and {} MiB; job code runs UNSANDBOXED (--allow-unsandboxed-jobs)",
        identity.public().short(),
        args.cores,
        config.memory_mb
    );
    let volunteer = Volunteer {
        config,
        identity,
        bulletin: BulletinClient::new(HttpClient::new(transport.clone(), bulletin)),
        transport,
        executor: Arc::new(ProcessExecutor),
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
    result
}
