//! The data layer over loopback HTTP: tokens, ranged and resumable transfers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;
use tormr_core::encoding::Digest;
use tormr_core::ids::{BucketId, JobId};
use tormr_core::token::{Capability, TokenSecret, Verb};
use tormr_datalayer::client::no_progress;
use tormr_datalayer::{DataClient, DataLayer, DataLayerConfig, DirStore};
use tormr_net::body;
use tormr_net::tcp::TcpTransport;
use tormr_net::transport::ServiceSpec;
use tormr_net::{HttpClient, Server, ServerConfig, Transport};

struct Fixture {
    _dir: tempfile::TempDir,
    server: Server,
    secret: TokenSecret,
    job: JobId,
    transport: Arc<dyn Transport>,
    files: tempfile::TempDir,
}

async fn fixture(config: DataLayerConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let secret = TokenSecret::random();
    let store = Arc::new(DirStore::open(dir.path()).unwrap());
    let transport: Arc<dyn Transport> = Arc::new(TcpTransport::new());
    let listener = transport.publish(&ServiceSpec::new("d")).await.unwrap();
    let server = Server::spawn(
        listener,
        Arc::new(DataLayer::new(store, secret.clone(), config)),
        ServerConfig::default(),
    );
    Fixture {
        _dir: dir,
        server,
        secret,
        job: JobId::parse("job-t").unwrap(),
        transport,
        files: tempfile::tempdir().unwrap(),
    }
}

impl Fixture {
    fn client(&self, lanes: usize) -> DataClient {
        let http = HttpClient::new(self.transport.clone(), self.server.address().clone());
        DataClient::new((0..lanes).map(|_| http.clone()).collect(), self.job.clone())
            .with_range_bytes(64 * 1024)
    }

    fn token(&self, bucket: &str, verb: Verb) -> String {
        self.secret.mint(&Capability {
            job: self.job.clone(),
            bucket: Some(BucketId::parse(bucket).unwrap()),
            verb,
            expires: tormr_core::unix_now() + 600,
        })
    }

    fn file(&self, name: &str, data: &[u8]) -> std::path::PathBuf {
        let p = self.files.path().join(name);
        std::fs::write(&p, data).unwrap();
        p
    }
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[tokio::test]
async fn ranged_upload_and_download_over_several_lanes() {
    let f = fixture(DataLayerConfig::default()).await;
    let bucket = BucketId::parse("in-00001").unwrap();
    let payload = data(1_000_000);
    let src = f.file("src", &payload);
    let client = f.client(4);
    let meta = client
        .put_file(
            &bucket,
            &f.token("in-00001", Verb::Put),
            &src,
            no_progress(),
        )
        .await
        .unwrap();
    assert_eq!(meta.size, payload.len() as u64);
    assert_eq!(meta.sha256, Digest::of(&payload));
    let dst = f.files.path().join("dst");
    client
        .get_to_file(
            &bucket,
            &f.token("in-00001", Verb::Get),
            &dst,
            no_progress(),
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dst).unwrap(), payload);
    // And one lane, one stream.
    let dst1 = f.files.path().join("dst1");
    f.client(1)
        .get_to_file(
            &bucket,
            &f.token("in-00001", Verb::Get),
            &dst1,
            no_progress(),
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dst1).unwrap(), payload);
}

#[tokio::test]
async fn empty_buckets_work() {
    let f = fixture(DataLayerConfig::default()).await;
    let bucket = BucketId::parse("in-00002").unwrap();
    let src = f.file("empty", b"");
    let client = f.client(2);
    let meta = client
        .put_file(
            &bucket,
            &f.token("in-00002", Verb::Put),
            &src,
            no_progress(),
        )
        .await
        .unwrap();
    assert_eq!(meta.size, 0);
    let dst = f.files.path().join("empty.out");
    client
        .get_to_file(
            &bucket,
            &f.token("in-00002", Verb::Get),
            &dst,
            no_progress(),
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dst).unwrap(), b"");
}

#[tokio::test]
async fn tokens_are_checked_for_bucket_verb_and_origin() {
    let f = fixture(DataLayerConfig::default()).await;
    let src = f.file("src", b"sealed bytes");
    let client = f.client(1);
    let bucket = BucketId::parse("in-00001").unwrap();
    // A GET token cannot write.
    let err = client
        .put_file(
            &bucket,
            &f.token("in-00001", Verb::Get),
            &src,
            no_progress(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not grant"), "{err}");
    // A token for another bucket cannot write this one.
    assert!(
        client
            .put_file(
                &bucket,
                &f.token("in-00009", Verb::Put),
                &src,
                no_progress()
            )
            .await
            .is_err()
    );
    // A token from another secret (forged) is refused.
    let forged = TokenSecret::random().mint(&Capability {
        job: f.job.clone(),
        bucket: Some(bucket.clone()),
        verb: Verb::Put,
        expires: u64::MAX,
    });
    let err = client
        .put_file(&bucket, &forged, &src, no_progress())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not minted"), "{err}");
    // Expired.
    let expired = f.secret.mint(&Capability {
        job: f.job.clone(),
        bucket: Some(bucket.clone()),
        verb: Verb::Put,
        expires: 1,
    });
    assert!(
        client
            .put_file(&bucket, &expired, &src, no_progress())
            .await
            .is_err()
    );
    // No token at all.
    let http = HttpClient::new(f.transport.clone(), f.server.address().clone());
    let req = http
        .request(http::Method::GET, "/v1/buckets/job-t/in-00001")
        .body(body::empty())
        .unwrap();
    let err = http.send(req, Duration::from_secs(5)).await.unwrap_err();
    assert_eq!(err.code(), Some("unauthorized"));
    // A path that tries to escape is refused before any token check.
    let req = http
        .request(http::Method::GET, "/v1/buckets/job-t/..%2f..%2fetc")
        .body(body::empty())
        .unwrap();
    assert_eq!(
        http.send(req, Duration::from_secs(5))
            .await
            .unwrap_err()
            .code(),
        Some("bad_request")
    );
    // Nothing was stored by the refused attempts.
    let err = client
        .head(&bucket, &f.token("in-00001", Verb::Get))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
}

#[tokio::test]
async fn oversized_bucket_is_refused() {
    let f = fixture(DataLayerConfig {
        max_bucket_bytes: 1000,
        ..DataLayerConfig::default()
    })
    .await;
    let src = f.file("big", &data(5000));
    let err = f
        .client(1)
        .put_file(
            &BucketId::parse("in-00001").unwrap(),
            &f.token("in-00001", Verb::Put),
            &src,
            no_progress(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("too_large"), "{err}");
}

#[tokio::test]
async fn a_range_with_a_wrong_digest_is_not_kept_and_buckets_are_immutable() {
    let f = fixture(DataLayerConfig::default()).await;
    let http = HttpClient::new(f.transport.clone(), f.server.address().clone())
        .with_bearer(&f.token("in-00001", Verb::Put));
    let put = |range: &str, body: &'static [u8], sha: Option<String>| {
        let mut req = http
            .request(http::Method::PUT, "/v1/buckets/job-t/in-00001")
            .header("content-range", range)
            .header("content-length", body.len());
        if let Some(s) = sha {
            req = req.header("x-tormr-sha256", s);
        }
        req.body(body::full(body)).unwrap()
    };
    // Second half first, with a bad digest: refused.
    let err = http
        .send(
            put(
                "bytes 5-9/10",
                b"world",
                Some(Digest::of(b"xxxxx").to_hex()),
            ),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("bad_request"));
    // Now both halves properly, out of order.
    http.send(
        put(
            "bytes 5-9/10",
            b"world",
            Some(Digest::of(b"world").to_hex()),
        ),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let resp = http
        .send(put("bytes 0-4/10", b"hello", None), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    // Read a range back.
    let getter = http.with_bearer(&f.token("in-00001", Verb::Get));
    let req = getter
        .request(http::Method::GET, "/v1/buckets/job-t/in-00001")
        .header("range", "bytes=3-6")
        .body(body::empty())
        .unwrap();
    let resp = getter.send(req, Duration::from_secs(5)).await.unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(
        resp.headers()["x-tormr-sha256"].to_str().unwrap(),
        Digest::of(b"lowo").to_hex()
    );
    // Writing again is a conflict.
    let err = http
        .send(put("bytes 0-4/10", b"HELLO", None), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("conflict"));
    // A range beyond the end is refused.
    let req = getter
        .request(http::Method::GET, "/v1/buckets/job-t/in-00001")
        .header("range", "bytes=50-60")
        .body(body::empty())
        .unwrap();
    assert_eq!(
        getter
            .send(req, Duration::from_secs(5))
            .await
            .unwrap_err()
            .code(),
        Some("range_not_satisfiable")
    );
}

#[tokio::test]
async fn job_delete_needs_a_delete_token() {
    let f = fixture(DataLayerConfig::default()).await;
    let src = f.file("src", b"abc");
    let client = f.client(1);
    client
        .put_file(
            &BucketId::parse("in-00001").unwrap(),
            &f.token("in-00001", Verb::Put),
            &src,
            no_progress(),
        )
        .await
        .unwrap();
    assert!(
        client
            .delete_job(&f.token("in-00001", Verb::Put))
            .await
            .is_err()
    );
    let delete = f.secret.mint(&Capability {
        job: f.job.clone(),
        bucket: None,
        verb: Verb::Delete,
        expires: u64::MAX,
    });
    assert_eq!(client.delete_job(&delete).await.unwrap(), 1);
}

/// A proxy that cuts its first connection after `cut` bytes from the server,
/// then forwards faithfully: a dead peer mid-transfer.
async fn flaky_proxy(target: std::net::SocketAddr, cut: usize) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let limit = if first { Some(cut) } else { None };
            first = false;
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let (mut cr, mut cw) = client.split();
                let (mut sr, mut sw) = server.split();
                let up = async {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                };
                let down = async {
                    let mut sent = 0usize;
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let n = match limit {
                            Some(l) if sent + n > l => l - sent,
                            _ => n,
                        };
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        sent += n;
                        if limit.is_some_and(|l| sent >= l) {
                            break;
                        }
                    }
                };
                tokio::select! { _ = up => {}, _ = down => {} }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_download_cut_off_midway_resumes_and_verifies() {
    let f = fixture(DataLayerConfig::default()).await;
    let bucket = BucketId::parse("in-00003").unwrap();
    let payload = data(3_000_000);
    let src = f.file("src", &payload);
    f.client(1)
        .put_file(
            &bucket,
            &f.token("in-00003", Verb::Put),
            &src,
            no_progress(),
        )
        .await
        .unwrap();
    let target: std::net::SocketAddr = f.server.address().to_string().parse().unwrap();
    // HEAD goes first on the first connection; cut well inside the body.
    let proxy = flaky_proxy(target, 1_200_000).await;
    let http = HttpClient::new(
        f.transport.clone(),
        tormr_net::Address::parse(&proxy.to_string()).unwrap(),
    );
    let client = DataClient::new(vec![http.clone()], f.job.clone());
    let dst = f.files.path().join("resumed");
    let moved = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let m = moved.clone();
    client
        .get_to_file(
            &bucket,
            &f.token("in-00003", Verb::Get),
            &dst,
            Arc::new(move |n| {
                m.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }),
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dst).unwrap(), payload);
    // Resumed, not restarted: the bytes moved are about the bucket once.
    let moved = moved.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        moved < payload.len() as u64 + 200_000,
        "moved {moved} bytes for a {} byte bucket",
        payload.len()
    );
    assert!(
        http.stats().connections() >= 2,
        "the cut connection should have been replaced"
    );
}

#[tokio::test]
async fn a_complete_bucket_comes_with_a_receipt_even_when_the_put_answer_was_lost() {
    let f = fixture(DataLayerConfig::default()).await;
    let src = f.file("src", b"sealed bytes");
    let bucket = BucketId::parse("out-00001").unwrap();
    let put = f.token("out-00001", Verb::Put);
    let stored = f
        .client(1)
        .put_file(&bucket, &put, &src, no_progress())
        .await
        .unwrap();
    let receipt = stored.receipt.expect("a receipt with the PUT answer");
    assert!(f.secret.check_receipt(&receipt, &f.job, &bucket, 12));
    // The same upload again, as after an answer lost on the way: the PUT
    // is a conflict, the client HEADs with its PUT token, and still gets
    // the bucket's receipt.
    let again = f
        .client(1)
        .put_file(&bucket, &put, &src, no_progress())
        .await
        .unwrap();
    assert_eq!(again.receipt.as_deref(), Some(receipt.as_str()));
    // Over several lanes the range that completes the bucket carries it.
    let big = f.file("big", &data(200 * 1024));
    let ranged = BucketId::parse("out-00002").unwrap();
    let stored = f
        .client(3)
        .put_file(
            &ranged,
            &f.token("out-00002", Verb::Put),
            &big,
            no_progress(),
        )
        .await
        .unwrap();
    let receipt = stored.receipt.expect("a receipt with the last range");
    assert!(
        f.secret
            .check_receipt(&receipt, &f.job, &ranged, 200 * 1024)
    );
    // A PUT token reads nothing but the bucket's head.
    let http = HttpClient::new(f.transport.clone(), f.server.address().clone()).with_bearer(&put);
    let req = http
        .request(http::Method::GET, "/v1/buckets/job-t/out-00001")
        .body(body::empty())
        .unwrap();
    let err = http.send(req, Duration::from_secs(5)).await.unwrap_err();
    assert!(err.to_string().contains("does not grant"), "{err}");
}

#[tokio::test]
async fn whole_buckets_small_and_large_store_the_same_bytes() {
    // Below the small-bucket size a PUT is stored in one step; above it, it
    // streams to disk. Both must keep exactly the bytes sent.
    let f = fixture(DataLayerConfig {
        small_bucket_bytes: 64 * 1024,
        ..DataLayerConfig::default()
    })
    .await;
    for (name, len) in [("out-00001", 1000), ("out-00002", 300_000)] {
        let bucket = BucketId::parse(name).unwrap();
        let payload = data(len);
        let src = f.file(name, &payload);
        let meta = f
            .client(1)
            .put_file(&bucket, &f.token(name, Verb::Put), &src, no_progress())
            .await
            .unwrap();
        assert_eq!(meta.sha256, Digest::of(&payload), "{name}");
        let dst = f.files.path().join(format!("{name}.back"));
        f.client(1)
            .get_to_file(&bucket, &f.token(name, Verb::Get), &dst, no_progress())
            .await
            .unwrap();
        assert_eq!(std::fs::read(&dst).unwrap(), payload, "{name}");
    }
}
