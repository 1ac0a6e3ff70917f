//! Choosing and starting a process's transport: Tor (arti) or loopback TCP.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tormr_net::Transport;
use tormr_net::tcp::TcpTransport;
use tormr_net::transport::{Listener, ServiceSpec};
use tormr_onion::{OnionTransport, TorSettings};

/// Connects to the Tor network (the testnet's, if `tor_config` is its arti.toml).
pub async fn tor(tor_config: Option<&Path>, state: &Path) -> Result<OnionTransport> {
    if let Some(config) = tor_config
        && !config.is_file()
    {
        anyhow::bail!(
            "--tor-config {} does not exist; bring a testnet up with `tormr testnet up --dir DIR` and pass DIR/arti.toml",
            config.display()
        );
    }
    eprintln!(
        "connecting to the Tor network{}…",
        if tor_config.is_some() {
            " (private testnet)"
        } else {
            ""
        }
    );
    let settings = TorSettings {
        config_file: tor_config.map(Path::to_path_buf),
        state_dir: state.to_path_buf(),
    };
    let started = std::time::Instant::now();
    let transport = OnionTransport::bootstrap(&settings)
        .await
        .context("starting Tor")?;
    eprintln!(
        "connected to Tor in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(transport)
}

/// A service's transport and listener: an onion service, or loopback TCP on
/// `loopback_port` when given.
pub async fn listen(
    nickname: &str,
    state: &Path,
    tor_config: Option<&Path>,
    loopback_port: Option<u16>,
) -> Result<(Arc<dyn Transport>, Box<dyn Listener>)> {
    let spec = ServiceSpec::new(nickname);
    let transport: Arc<dyn Transport> = match loopback_port {
        Some(port) => {
            let t: Arc<dyn Transport> = Arc::new(TcpTransport::new());
            let listener = t.publish(&spec.clone().on_port(port)).await?;
            return Ok((t, listener));
        }
        None => Arc::new(tor(tor_config, state).await?),
    };
    eprintln!("publishing the {nickname} onion service…");
    let listener = transport.publish(&spec).await?;
    Ok((transport, listener))
}

/// Parses a comma-separated list of one board's replicas (NAME.onion or
/// HOST:PORT each).
pub fn bulletin_addresses(text: &str) -> Result<Vec<tormr_net::Address>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        out.push(tormr_net::Address::parse(part).map_err(|e| format!("{part:?}: {e}"))?);
    }
    if out.is_empty() {
        return Err("no bulletin board address given".into());
    }
    if out.iter().any(|a| a.is_onion()) && !out.iter().all(|a| a.is_onion()) {
        return Err("replicas of one board are all onion addresses or all HOST:PORT".into());
    }
    Ok(out)
}

/// Creates a state folder readable by its owner only.
pub fn state_dir(dir: &Path) -> Result<PathBuf> {
    tormr_onion::config::private_dir(dir)
        .with_context(|| format!("creating the state folder {}", dir.display()))?;
    std::fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
