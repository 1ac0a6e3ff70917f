//! Whole jobs over a private Tor network: a bulletin, three workers and the
//! owner as separate processes, every service an onion service, and every
//! process's sockets audited while the jobs run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../e2e/owner_run.rs"]
mod owner_run;
mod roles;
mod sockets;
#[path = "../e2e/util.rs"]
mod util;

use roles::*;
use std::time::Duration;
use util::*;

#[test]
fn wordcount_and_a_multi_step_mrjob_over_tor_match_local_mode() {
    let _serial = serial();
    let net = net();
    let dir = tempfile::tempdir().unwrap();
    let (bulletin, workers) = board_and_workers(dir.path(), 3, net);
    let auditor = Auditor::start(
        net,
        [bulletin.proc.pid()]
            .into_iter()
            .chain(workers.iter().map(Proc::pid))
            .collect(),
    );

    let text = corpus(4000, 700, 11);
    let input = write(dir.path(), "corpus.txt", &text);
    let ex = repo().join("examples/wordcount");
    let wordcount = |cluster: &[String], out: &std::path::Path| {
        let mut cmd = tormr();
        cmd.arg("submit")
            .args(cluster)
            .arg("-input")
            .arg(&input)
            .arg("-output")
            .arg(out);
        cmd.args([
            "-mapper",
            "python3 mapper.py",
            "-reducer",
            "python3 reducer.py",
            "-combiner",
            "python3 reducer.py",
        ])
        .args(["-numReduceTasks", "3", "-D", "tormr.bucket.bytes=64k"])
        .arg("-file")
        .arg(ex.join("mapper.py"))
        .arg("-file")
        .arg(ex.join("reducer.py"));
        cmd
    };
    let local = dir.path().join("local");
    run_ok(&mut wordcount(
        &["--cluster".into(), "local[2]".into()],
        &local,
    ));
    let over_tor = dir.path().join("tor");
    // Three workers are asked for; on a loaded machine one of them has been
    // seen to stay unreachable on the tiny testnet for ten minutes, so after
    // four minutes two will do (the job's result is what this test checks;
    // a failure prints every role's log).
    let mut tor_cluster = bulletin.tor_cluster(3, net);
    tor_cluster.extend([
        "--min-workers".into(),
        "2".into(),
        "--wait".into(),
        "4m".into(),
    ]);
    let owner = auditor.run_owner(&mut wordcount(&tor_cluster, &over_tor));
    assert_eq!(
        read_parts(&over_tor),
        read_parts(&local),
        "Tor-mode output must equal local-mode output byte for byte"
    );
    assert_eq!(sorted_output(&over_tor), direct_wordcount(&text));

    // A multi-step mrjob script with shipped files, on the same cluster.
    require_mrjob();
    let script = repo().join("examples/mrjob/mr_top_words.py");
    let mrjob = |cluster: &[String], out: &std::path::Path| {
        let mut cmd = tormr();
        cmd.arg("submit")
            .args(cluster)
            .arg("--mrjob")
            .arg(&script)
            .arg("-input")
            .arg(&input)
            .arg("-output")
            .arg(out);
        cmd.args(["-D", "tormr.bucket.bytes=64k", "--", "--top", "6"]);
        cmd
    };
    let local_top = dir.path().join("local-top");
    run_ok(&mut mrjob(
        &["--cluster".into(), "local[2]".into()],
        &local_top,
    ));
    let tor_top = dir.path().join("tor-top");
    // The same patience as the first job: a worker the first job's end did not
    // reach finds its way back through the bulletin, but may be late.
    let owner2 = auditor.run_owner(&mut mrjob(&tor_cluster, &tor_top));
    assert_eq!(read_parts(&tor_top), read_parts(&local_top));

    let report = auditor.finish();
    report.assert_clean();
    // Control traffic per task is a handful of requests on reused connections.
    let mut tasks_seen = 0;
    for (i, w) in workers.iter().enumerate() {
        for t in traffic(&w.log()) {
            tasks_seen += t.tasks;
            assert!(
                t.jm_connections <= 3,
                "worker{i} opened {} connections to the job master",
                t.jm_connections
            );
            assert!(
                t.jm_requests <= 3 * t.tasks + 8,
                "worker{i}: {} job-master requests for {} tasks",
                t.jm_requests,
                t.tasks
            );
            // Bulk lanes are reused: at most one connection per lane (8) and a retry or two.
            assert!(
                t.data_connections <= 10,
                "worker{i} opened {} data-layer connections",
                t.data_connections
            );
            assert!(
                t.data_requests <= 8 * t.tasks + 4,
                "worker{i}: {} data-layer requests for {} tasks",
                t.data_requests,
                t.tasks
            );
            eprintln!("worker{i}: {t:?}");
        }
    }
    assert!(tasks_seen > 0, "no traffic summary in the workers' logs");
    // Logs at their default level name no job's onion address, no payload.
    let logs: Vec<(String, String)> = [("bulletin".to_string(), bulletin.proc.log())]
        .into_iter()
        .chain(
            workers
                .iter()
                .enumerate()
                .map(|(i, w)| (format!("worker{i}"), w.log())),
        )
        .chain([
            ("owner".to_string(), owner),
            ("owner (mrjob)".to_string(), owner2),
        ])
        .collect();
    for (who, log) in &logs {
        for onion in onion_addresses(log) {
            assert_eq!(
                onion,
                bulletin.address.host(),
                "{who}'s log names an onion address other than the public bulletin's"
            );
        }
        let payload_word = text.split_whitespace().max_by_key(|w| w.len()).unwrap();
        assert!(!log.contains(payload_word), "{who}'s log contains job data");
    }
}

#[test]
fn a_job_in_containers_over_tor_matches_the_process_executor() {
    let _serial = serial();
    let net = net();
    let image = example_image("native-wordcount.sh");
    let dir = tempfile::tempdir().unwrap();
    let bulletin = Service::start("bulletin", &dir.path().join("bulletin"), net);
    // Workers without --allow-unsandboxed-jobs: containers or nothing.
    let workers: Vec<Proc> = (0..2)
        .map(|i| {
            Proc::sandboxed_worker(
                &bulletin.address,
                &dir.path().join(format!("worker{i}")),
                net,
            )
        })
        .collect();
    // And the owner's own worker, which serves only her.
    let owner_key = dir.path().join("owner.key");
    let owner_id = tormr_core::identity::Identity::load_or_create(&owner_key).unwrap();
    let own = Proc::own_worker(
        &bulletin.address,
        &dir.path().join("own"),
        net,
        &owner_id.public().to_text(),
    );
    let auditor = Auditor::start(
        net,
        [bulletin.proc.pid(), own.pid()]
            .into_iter()
            .chain(workers.iter().map(Proc::pid))
            .collect(),
    );
    let text = corpus(4000, 700, 17);
    let input = write(dir.path(), "corpus.txt", &text);
    let wordcount = |cluster: &[String], out: &std::path::Path| {
        let mut cmd = tormr();
        cmd.arg("submit")
            .args(cluster)
            .arg("-input")
            .arg(&input)
            .arg("-output")
            .arg(out)
            .args(["-mapper", "wc-map", "-reducer", "wc-reduce"])
            .args(["-numReduceTasks", "2", "-D", "tormr.bucket.bytes=64k"]);
        cmd
    };
    let over_tor = dir.path().join("tor");
    let owner = auditor
        .run_owner(wordcount(&bulletin.tor_cluster(2, net), &over_tor).args(["--image", &image]));
    assert!(
        owner.contains("served to workers by the job master"),
        "{owner}"
    );

    // A job that names no image finds no taker among these workers.
    let refused = dir.path().join("refused");
    let out = wordcount(&bulletin.tor_cluster(2, net), &refused)
        .args(["--wait", "15s"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("expired with 0 of the 2 worker(s)"),
        "{}",
        stderr(&out)
    );
    // The owner's own worker runs her image-less job, unsandboxed.
    let own_out = dir.path().join("own-out");
    let mut cmd = wordcount(&bulletin.tor_cluster(1, net), &own_out);
    cmd.arg("--own-workers")
        .arg(&owner_key)
        .arg("-file")
        .arg(example_bin("wc-map"))
        .arg("-file")
        .arg(example_bin("wc-reduce"));
    let owner_log = auditor.run_owner(&mut cmd);
    assert!(
        owner_log.contains(&format!("--trusted-by {}", owner_id.public().to_text())),
        "{owner_log}"
    );
    assert_eq!(sorted_output(&own_out), direct_wordcount(&text));
    assert!(own.log().contains("joined job"), "{}", own.log());
    for (i, w) in workers.iter().enumerate() {
        assert_eq!(
            w.log().matches("joined job").count(),
            1,
            "worker{i} should have joined the image job only: {}",
            w.log()
        );
    }
    let report = auditor.finish();
    report.assert_clean();

    let local = dir.path().join("local");
    run_ok(
        wordcount(&["--cluster".into(), "local[2]".into()], &local)
            .arg("-file")
            .arg(example_bin("wc-map"))
            .arg("-file")
            .arg(example_bin("wc-reduce")),
    );
    assert_eq!(
        read_parts(&over_tor),
        read_parts(&local),
        "containers over Tor must give the process executor's bytes"
    );
    assert_eq!(sorted_output(&over_tor), direct_wordcount(&text));
    for (i, w) in workers.iter().enumerate() {
        let log = w.log();
        assert!(
            log.contains("job code runs in containers"),
            "worker{i}: {log}"
        );
    }
    let fetched = workers
        .iter()
        .filter(|w| w.log().contains("fetching the job's image"))
        .count();
    assert!(
        fetched >= 1,
        "no worker fetched the image through the job master"
    );
}

#[test]
fn an_owner_killed_over_tor_resumes_at_the_same_onion_address_and_its_workers_carry_on() {
    use owner_run::*;
    let _serial = serial();
    let net = net();
    let dir = tempfile::tempdir().unwrap();
    let (bulletin, workers) = board_and_workers(dir.path(), 2, net);
    let text = corpus(2500, 400, 81);
    let input = write(dir.path(), "corpus.txt", &text);
    let output = dir.path().join("out");
    let state = dir.path().join("state");
    let cluster = format!("tor://{}", bulletin.address);
    let mut argv = slow_wordcount(dir.path(), &cluster, &input, &output, &state);
    // Two workers are asked for; one will do after four minutes (a worker
    // has been seen to stay unreachable for minutes on the tiny testnet).
    argv.extend(
        [
            "--workers",
            "2",
            "--min-workers",
            "1",
            "--wait",
            "4m",
            "--tor-config",
        ]
        .map(String::from),
    );
    argv.push(arti_toml(net).display().to_string());

    let (first, _) = owner(dir.path(), "submit", &argv);
    let (map, _) = kill_when(first, |(done, total), _| {
        total > 4 && done >= 2 && done + 2 < total
    });
    let summary = finish(dir.path(), &state, &output, &text, map.0);
    let kept = summary["resumed"]["sessions_kept"].as_u64().unwrap();
    assert!(kept >= 1, "no worker carried on: {summary:#}");
    let logs: Vec<String> = workers.iter().map(Proc::log).collect();
    // Joins until each worker heard the job was over (one told "done" may
    // meet the request again before the owner has withdrawn it).
    let rejoined: usize = logs
        .iter()
        .map(|l| {
            l.split("job finished")
                .next()
                .unwrap_or_default()
                .matches("joined job")
                .count()
        })
        .sum();
    // They knew the job master only by its onion address: carrying on
    // without a new match means it came back at the same one.
    assert!(
        rejoined <= 2,
        "a worker had to be matched anew after the restart:\n{}",
        logs.join("\n")
    );
    eprintln!(
        "resume over Tor: killed at {}/{} maps; sessions kept {kept}",
        map.0, map.1
    );
}

#[test]
fn a_restarted_bulletin_keeps_its_address_and_its_volunteers() {
    let _serial = serial();
    let net = net();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("bulletin");
    let first = Service::start("bulletin", &state, net);
    let address = first.address.clone();
    let worker = Proc::worker(&address, &dir.path().join("worker"), net);
    wait_for(Duration::from_secs(120), "the worker to register", || {
        board_volunteers(&address, dir.path(), net) == Some(1)
    });
    drop(worker);
    drop(first);
    let second = Service::start("bulletin", &state, net);
    assert_eq!(
        second.address, address,
        "the board's onion address must survive a restart"
    );
    assert_eq!(
        board_volunteers(&address, dir.path(), net),
        Some(1),
        "the board's state must survive a restart"
    );
}

#[test]
fn forged_and_replayed_tickets_are_refused_over_tor() {
    let _serial = serial();
    tickets_over_tor(net());
}

#[test]
fn the_socket_audit_catches_a_process_that_is_not_using_tor() {
    let _serial = serial();
    let net = net();
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", &corpus(2000, 300, 3));
    let auditor = Auditor::start(net, vec![]);
    // local[1] runs over loopback TCP: it listens and connects outside Tor.
    let mut cmd = submit(1, &input, &dir.path().join("out"));
    cmd.args(["-mapper", "sleep 2; cat", "-reducer", "cat"]);
    auditor.run_owner(&mut cmd);
    let report = auditor.finish();
    assert!(
        report.has_violations(),
        "the audit must flag plain TCP sockets"
    );
}
