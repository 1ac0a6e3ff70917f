//! The `tormr` command: parses arguments, sets up logging, and hands off to
//! the role crates. Errors end here as one clear message and an exit code:
//! 1 the job failed, 2 bad usage or input, 130 interrupted, 3 anything else.

mod cli;
mod image;
mod jobdef;
mod local;
mod network;
mod owner;
mod pachyderm;
mod progress;
mod resume;
mod serve;
mod submit;
mod testnet_cmd;
mod worker_cmd;

use clap::Parser;
use cli::{Cli, Command, normalize_args};
use tracing_subscriber::EnvFilter;

/// Temporary folders removed once the async runtime has stopped.
pub mod cleanup {
    use std::path::PathBuf;
    use std::sync::Mutex;

    static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

    pub fn later(dir: PathBuf) {
        DIRS.lock().unwrap_or_else(|p| p.into_inner()).push(dir);
    }

    pub fn take() -> Vec<PathBuf> {
        std::mem::take(&mut *DIRS.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Errors that are the user's to fix (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

/// The owner pressed Ctrl-C (exit 130, as shells expect).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Interrupted(String);

/// A job that ran and failed (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JobFailed(String);

fn init_tracing(verbose: u8, default: &str) {
    let level = match verbose {
        0 => default,
        1 => "info,tor_netdir=error,tor_circmgr=error",
        _ => "debug,hyper=info,tor_netdir=error,tor_circmgr=error",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

fn main() {
    let argv = normalize_args(std::env::args());
    let cli = match Cli::try_parse_from(argv.clone()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // A submitting owner watches progress bars; services log what they do.
    let default = match cli.command {
        Command::Submit(_) | Command::Job { .. } | Command::Testnet { .. } => "warn",
        // tormr never uses exits: arti's complaints about exit circuits on a
        // tiny network are noise, not news.
        _ => {
            "info,arti_client=warn,tor_=warn,tor_circmgr=error,tor_netdir=error,tor_guardmgr=error,tor_dirmgr=error,hyper=warn"
        }
    };
    init_tracing(cli.verbose, default);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            std::process::exit(3);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Submit(args) => submit::run(*args, argv).await,
            Command::Job {
                command: cli::JobCommand::Resume(args),
            } => resume::run(args).await,
            Command::Bulletin {
                command: cli::ServeCommand::Serve(args),
            } => serve::bulletin(args).await,
            Command::Datalayer {
                command: cli::ServeCommand::Serve(args),
            } => serve::datalayer(args).await,
            Command::Worker(args) => worker_cmd::run(args).await,
            Command::Testnet { command } => testnet_cmd::run(command).await,
        }
    });
    // Tor clients flush their state when the runtime drops them: only then
    // may temporary state folders go.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    for dir in cleanup::take() {
        let _ = std::fs::remove_dir_all(dir);
    }
    if let Err(e) = result {
        let code = if e.downcast_ref::<Interrupted>().is_some() {
            130
        } else if e.downcast_ref::<JobFailed>().is_some() {
            1
        } else if e.downcast_ref::<UsageError>().is_some() || is_input_error(&e) {
            2
        } else {
            3
        };
        eprintln!("error: {e:#}");
        std::process::exit(code);
    }
}

/// Bad job definitions and missing inputs are the user's to fix.
fn is_input_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<tormr_core::spec::SpecError>().is_some()
            || c.downcast_ref::<tormr_jobmaster::input::InputError>()
                .is_some_and(|i| matches!(i, tormr_jobmaster::input::InputError::Missing { .. }))
            || c.downcast_ref::<tormr_jobmaster::output::OutputError>()
                .is_some_and(|o| matches!(o, tormr_jobmaster::output::OutputError::Exists { .. }))
    })
}
