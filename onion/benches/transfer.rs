//! Bulk transfer over Tor: a bucket uploaded to and downloaded from a data
//! layer onion service, through tormr's parallel ranged transfer (8 lanes, each
//! its own circuit) and through one stream. Runs on the private testnet
//! (TORMR_TESTNET_DIR, or one brought up for the run). Prints JSON lines.
//!
//! `cargo bench -p tormr-onion --bench transfer` (TORMR_BENCH_MIB sets the size).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;
use tormr_core::ids::{BucketId, JobId};
use tormr_core::token::{Capability, TokenSecret, Verb};
use tormr_datalayer::client::no_progress;
use tormr_datalayer::{DataClient, DataLayer, DirStore};
use tormr_net::transport::ServiceSpec;
use tormr_net::{HttpClient, Server, ServerConfig, Transport};
use tormr_onion::testnet;
use tormr_onion::{OnionTransport, TorSettings};

fn main() {
    let mib: u64 = std::env::var("TORMR_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let net = testnet::for_tests().expect("a private Tor network");
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let settings = |name: &str| TorSettings { config_file: Some(testnet::arti_config_path(&net.dir)), state_dir: dir.path().join(name) };
        let server = OnionTransport::bootstrap(&settings("server")).await.unwrap();
        let client = OnionTransport::bootstrap(&settings("client")).await.unwrap();
        let secret = TokenSecret::random();
        let store = Arc::new(DirStore::open(&dir.path().join("d")).unwrap());
        let d = Server::spawn(
            server.publish(&ServiceSpec::new("datalayer")).await.unwrap(),
            Arc::new(DataLayer::new(store, secret.clone(), Default::default())),
            ServerConfig::default(),
        );
        // Ciphertext does not compress: random bytes stand in for a sealed bucket.
        let path = dir.path().join("bucket");
        let mut data = vec![0u8; (mib << 20) as usize];
        for chunk in data.chunks_mut(32) {
            chunk.copy_from_slice(&tormr_core::random::bytes::<32>()[..chunk.len()]);
        }
        std::fs::write(&path, &data).unwrap();
        let job = JobId::random();
        let token = |b: &BucketId, verb| secret.mint(&Capability { job: job.clone(), bucket: Some(b.clone()), verb, expires: u64::MAX });
        let rows = [
            ("one onion stream", 1usize),
            ("tormr parallel transfer, 4 circuits", 4),
            ("tormr parallel transfer, 8 circuits", 8),
        ];
        let only: Option<usize> = std::env::var("TORMR_BENCH_LANES").ok().and_then(|v| v.parse().ok());
        for (label, lanes) in rows.into_iter().filter(|(_, l)| only.is_none_or(|o| o == *l)) {
            let http: Vec<HttpClient> = (0..lanes)
                .map(|_| {
                    let lane: Arc<dyn Transport> = if lanes == 1 { Arc::new(client.clone()) } else { Arc::new(client.isolated()) };
                    HttpClient::new(lane, d.address().clone()).with_timeout(std::time::Duration::from_secs(600))
                })
                .collect();
            let dc = DataClient::new(http, job.clone());
            let bucket = BucketId::parse(&format!("bench-{lanes}")).unwrap();
            // Warm the descriptor and the circuits before timing.
            let warm = BucketId::parse(&format!("warm-{lanes}")).unwrap();
            let small = dir.path().join("small");
            std::fs::write(&small, vec![1u8; 64 << 10]).unwrap();
            tormr_net::client::with_retries(20, || async {
                dc.put_file(&warm, &token(&warm, Verb::Put), &small, no_progress()).await.map_err(|e| tormr_net::ClientError::Connect { address: "d".into(), why: e.to_string() })
            })
            .await
            .unwrap();
            let t = Instant::now();
            dc.put_file(&bucket, &token(&bucket, Verb::Put), &path, no_progress()).await.unwrap();
            let up = t.elapsed().as_secs_f64();
            let out = dir.path().join(format!("down-{lanes}"));
            let t = Instant::now();
            dc.get_to_file(&bucket, &token(&bucket, Verb::Get), &out, no_progress()).await.unwrap();
            let down = t.elapsed().as_secs_f64();
            assert_eq!(std::fs::metadata(&out).unwrap().len(), mib << 20);
            println!("{{\"label\": \"{label}\", \"mib\": {mib}, \"upload_s\": {up:.2}, \"download_s\": {down:.2}, \"upload_mib_s\": {:.2}, \"download_mib_s\": {:.2}}}", mib as f64 / up, mib as f64 / down);
        }
    });
}
