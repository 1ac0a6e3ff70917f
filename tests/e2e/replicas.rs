//! One bulletin board served by two bulletin processes sharing an etcd store:
//! kill one, and volunteers and the owner carry on through the other.

use crate::util::*;
use std::time::{Duration, Instant};
use tormr_etcd::testing::EtcdServer;

/// The volunteers a board replica reports, read over HTTP.
fn volunteers(address: &str) -> Option<u64> {
    http_get_json(address, "/v1/board")?["volunteers"].as_u64()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_completes_through_the_surviving_replica_of_a_board() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start(dir.path()).await.unwrap();
    let store = format!("etcd://{}/board", etcd.endpoint);
    let (a, a_addr) = bulletin(dir.path(), "bulletin-a", Some(&store));
    let (b, b_addr) = bulletin(dir.path(), "bulletin-b", Some(&store));
    let both = format!("{a_addr},{b_addr}");

    // Volunteers register through the first replica they are given (a).
    let workers: Vec<Spawned> = (0..3)
        .map(|i| worker(dir.path(), &format!("worker-{i}"), &both))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while volunteers(&b_addr) != Some(3) {
        assert!(
            Instant::now() < deadline,
            "replica b never saw the 3 volunteers registered through a\n{}\n{}",
            a.log_tail(),
            b.log_tail()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(volunteers(&a_addr), Some(3), "both replicas show one board");

    // Replica a dies; the owner names it first all the same.
    drop(a);
    let text = corpus(3000, 500, 31);
    let input = write(dir.path(), "corpus.txt", &text);
    let out = dir.path().join("out");
    let mut cmd = tormr();
    cmd.args(["submit", "--cluster", &format!("tcp://{both}")])
        .args(["--workers", "3", "--wait", "2m", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(&out);
    python_wordcount_flags(&mut cmd, 2, "16k");
    let run = cmd.output().unwrap();
    if !run.status.success() {
        let logs: Vec<String> = workers.iter().map(Spawned::log_tail).collect();
        panic!(
            "the job failed with replica a down:\n{}\n{}\n{}",
            stderr(&run),
            b.log_tail(),
            logs.join("\n")
        );
    }
    assert_eq!(sorted_output(&out), direct_wordcount(&text));
    drop(etcd);
}
