//! `tormr bulletin serve` and `tormr datalayer serve`: the long-running services.

use crate::UsageError;
use crate::cli::ServeArgs;
use crate::network::{listen, shutdown_signal, state_dir};
use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tormr_bulletin::service::shared_identity;
use tormr_bulletin::{BoardConfig, Bulletin};
use tormr_core::identity::Identity;
use tormr_core::store::Store;
use tormr_core::store::redb::RedbStore;
use tormr_core::token::TokenSecret;
use tormr_datalayer::{DataLayer, DataLayerConfig, DirStore};
use tormr_etcd::{EtcdAddress, EtcdStore};
use tormr_net::Server;

/// Announces a service's address: on stdout for scripts, in STATE/address for later.
fn announce(what: &str, server: &Server, state: &std::path::Path) -> Result<()> {
    let address = server.address().to_string();
    std::fs::write(state.join("address"), format!("{address}\n"))
        .context("writing STATE/address")?;
    println!("{address}");
    eprintln!(
        "{what} serving at {address} (also in {}); Ctrl-C to stop",
        state.join("address").display()
    );
    Ok(())
}

pub async fn bulletin(args: ServeArgs) -> Result<()> {
    let state = state_dir(&args.state)?;
    let identity = Identity::load_or_create(&state.join("board.key"))?;
    let (store, identity): (Arc<dyn Store>, Identity) = match &args.store {
        None => (
            Arc::new(RedbStore::open(&state.join("board.redb"))?),
            identity,
        ),
        Some(url) => {
            let address =
                EtcdAddress::parse(url).map_err(|e| UsageError(format!("--store: {e}")))?;
            eprintln!("connecting to {address}…");
            let store: Arc<dyn Store> = Arc::new(EtcdStore::connect(address).await?);
            let identity = shared_identity(store.as_ref(), identity)
                .await
                .context("reading the board key replicas share")?;
            (store, identity)
        }
    };
    let board = Bulletin::open(store, identity, BoardConfig::default()).await?;
    eprintln!(
        "board key {}{}",
        board.key().short(),
        if args.store.is_some() {
            " (shared by every bulletin on this store)"
        } else {
            ""
        }
    );
    let cancel = CancellationToken::new();
    let ticker = board.spawn_ticker(cancel.clone());
    let (_transport, listener) = listen(
        "bulletin",
        &state,
        args.tor_config.as_deref(),
        args.loopback_port,
    )
    .await?;
    // Every waiting volunteer holds a long-poll open.
    let server = Server::spawn(listener, board, crate::owner::worker_facing());
    announce("bulletin board", &server, &state)?;
    shutdown_signal().await;
    eprintln!("stopping");
    cancel.cancel();
    let _ = ticker.await;
    server.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

pub async fn datalayer(args: ServeArgs) -> Result<()> {
    if args.store.is_some() {
        return Err(UsageError(
            "--store is for bulletin boards; a data layer keeps buckets in STATE/buckets".into(),
        )
        .into());
    }
    let state = state_dir(&args.state)?;
    let secret_path = state.join("datalayer.secret");
    let secret = TokenSecret::load_or_create(&secret_path)
        .with_context(|| format!("reading {}", secret_path.display()))?;
    let store = Arc::new(DirStore::open(&state.join("buckets"))?);
    let service = Arc::new(DataLayer::new(store, secret, DataLayerConfig::default()));
    let (_transport, listener) = listen(
        "datalayer",
        &state,
        args.tor_config.as_deref(),
        args.loopback_port,
    )
    .await?;
    let server = Server::spawn(listener, service, crate::owner::worker_facing());
    announce("data layer", &server, &state)?;
    eprintln!(
        "job owners need its secret: --datalayer-secret {}",
        secret_path.display()
    );
    shutdown_signal().await;
    eprintln!("stopping");
    server.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
