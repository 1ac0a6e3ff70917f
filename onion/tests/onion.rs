//! Onion services through arti on a private Tor network (brought up for the
//! test run unless TORMR_TESTNET_DIR names one).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tormr_net::transport::ServiceSpec;
use tormr_net::{Address, Transport};
use tormr_onion::testnet::{self, Testnet};
use tormr_onion::{OnionTransport, TorSettings};

fn net() -> &'static Testnet {
    testnet::for_tests().unwrap_or_else(|e| panic!("these tests need a private Tor network: {e}"))
}

async fn transport(state: &std::path::Path) -> OnionTransport {
    let settings = TorSettings {
        config_file: Some(testnet::arti_config_path(&net().dir)),
        state_dir: state.to_path_buf(),
    };
    OnionTransport::bootstrap(&settings)
        .await
        .expect("bootstrapping arti on the testnet")
}

/// Serves one echo connection at a time until the task is dropped.
fn echo(mut listener: Box<dyn tormr_net::Listener>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok(mut stream) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0
                        || stream.write_all(&buf[..n]).await.is_err()
                        || stream.flush().await.is_err()
                    {
                        break;
                    }
                }
            });
        }
    })
}

/// Connects and round-trips a message, retrying while the service's
/// descriptor is not yet published; gives up after `patience`.
async fn round_trip(
    client: &OnionTransport,
    address: &Address,
    patience: Duration,
) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let attempt = async {
            let mut s = client.connect(address).await.map_err(|e| e.to_string())?;
            s.write_all(b"hello onion")
                .await
                .map_err(|e| e.to_string())?;
            s.flush().await.map_err(|e| e.to_string())?;
            let mut buf = [0u8; 11];
            s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            if &buf == b"hello onion" {
                Ok(())
            } else {
                Err("echo mismatch".to_string())
            }
        };
        match tokio::time::timeout(Duration::from_secs(30), attempt).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) if start.elapsed() < patience => {
                eprintln!("retrying ({} s): {e}", start.elapsed().as_secs());
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Ok(Err(e)) => return Err(e),
            Err(_) if start.elapsed() < patience => {}
            Err(_) => return Err("timed out".into()),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_onion_service_answers_and_keeps_its_address_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let address = {
        let server = transport(&dir.path().join("server")).await;
        let listener = server.publish(&ServiceSpec::new("echo")).await.unwrap();
        let address = listener.address();
        assert!(address.is_onion(), "{address}");
        let serving = echo(listener);
        let client = transport(&dir.path().join("client")).await;
        round_trip(&client, &address, Duration::from_secs(120))
            .await
            .expect("reaching the onion service");
        serving.abort();
        address
    };
    // A new process on the same state folder publishes the same address.
    let server = transport(&dir.path().join("server")).await;
    let listener = server.publish(&ServiceSpec::new("echo")).await.unwrap();
    assert_eq!(listener.address(), address, "the identity key must persist");
    let serving = echo(listener);
    let client = transport(&dir.path().join("client2")).await;
    round_trip(&client, &address, Duration::from_secs(120))
        .await
        .expect("reaching the restarted service");
    serving.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn restricted_discovery_lets_in_only_listed_clients() {
    let dir = tempfile::tempdir().unwrap();
    let server = transport(&dir.path().join("server")).await;
    let allowed = transport(&dir.path().join("allowed")).await;
    let stranger = transport(&dir.path().join("stranger")).await;
    // The address is fixed before the service runs, as a job master's is.
    let spec = ServiceSpec::new("job-test");
    let reserved = server
        .reserve(&spec)
        .await
        .unwrap()
        .expect("onion addresses can be reserved");
    let listener = server
        .publish(&spec.restricted_to(vec![allowed.discovery_key_text()]))
        .await
        .unwrap();
    assert_eq!(listener.address(), reserved);
    let serving = echo(listener);
    round_trip(&allowed, &reserved, Duration::from_secs(120))
        .await
        .expect("the listed client gets in");
    // The stranger cannot even fetch the descriptor, however long it tries.
    let refused = round_trip(&stranger, &reserved, Duration::from_secs(20)).await;
    assert!(
        refused.is_err(),
        "an unlisted client reached a restricted service"
    );
    serving.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn clearnet_addresses_are_refused_in_tor_mode() {
    let dir = tempfile::tempdir().unwrap();
    let t = transport(dir.path()).await;
    let err = t
        .connect(&Address::parse("127.0.0.1:80").unwrap())
        .await
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("only .onion"), "{err}");
}
