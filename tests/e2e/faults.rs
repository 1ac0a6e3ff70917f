//! Fault injection with real processes over loopback TCP: a bulletin, volunteer
//! processes and the owner's `tormr submit --cluster tcp://…`. Workers are
//! killed (SIGKILL) or stalled (SIGSTOP) while they hold a task, or cut off
//! from the data layer mid-transfer; every
//! scenario checks the output against a direct count and prints how much
//! work was redone. (Killing the owner is `resume.rs`, killing a bulletin
//! replica `replicas.rs`, cheaters `verification.rs`.)

use crate::owner_run::{Progress, owner, slow_wordcount, status_address, watch_until};
use crate::util::*;
use serde_json::Value;
use std::path::Path;

/// A board and `n` volunteer processes.
struct Volunteers {
    board: Spawned,
    address: String,
    workers: Vec<Spawned>,
}

fn volunteers(dir: &Path, n: usize) -> Volunteers {
    let (board, address) = bulletin(dir, "bulletin", None);
    let workers = (0..n)
        .map(|i| worker(dir, &format!("worker-{i}"), &address))
        .collect();
    Volunteers {
        board,
        address,
        workers,
    }
}

impl Volunteers {
    /// The process of a worker the owner's status shows running a task.
    fn busy_worker(&self, owner: &Spawned) -> usize {
        let address = status_address(owner);
        for _ in 0..200 {
            let status = http_get_json(&address, "/v1/status").unwrap_or_default();
            for w in status["workers"].as_array().into_iter().flatten() {
                let pseudonym = w["pseudonym"].as_str().unwrap_or("-");
                if w["running"].as_u64().unwrap_or(0) == 0 || w["alive"] == false {
                    continue;
                }
                let announced = format!("volunteer {pseudonym} starting");
                if let Some(i) = self.workers.iter().position(|p| {
                    std::fs::read_to_string(&p.log).is_ok_and(|t| t.contains(&announced))
                }) {
                    return i;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("no worker was running a task\n{}", owner.log_tail());
    }

    fn logs(&self) -> String {
        let tails: Vec<String> = self.workers.iter().map(Spawned::log_tail).collect();
        tails.join("\n")
    }
}

/// Starts a word count over the volunteers; returns the owner and its
/// summary file, the input text and the output folder.
fn start_job(
    dir: &Path,
    v: &Volunteers,
    workers: usize,
    seed: u64,
) -> (Spawned, std::path::PathBuf, String, std::path::PathBuf) {
    let text = corpus(2500, 400, seed);
    let input = write(dir, "corpus.txt", &text);
    let output = dir.join("out");
    let state = dir.join("state");
    let cluster = format!("tcp://{}", v.address);
    let mut argv = slow_wordcount(dir, &cluster, &input, &output, &state);
    argv.extend(["--workers".into(), workers.to_string()]);
    argv.extend(["--wait".into(), "2m".into()]);
    let (p, json) = owner(dir, "submit", &argv);
    (p, json, text, output)
}

/// Waits for the owner to end, checks the output, and reports the work redone.
fn finish(
    scenario: &str,
    mut p: Spawned,
    json: &Path,
    text: &str,
    output: &Path,
    v: &Volunteers,
) -> Value {
    let status = p.child.wait().unwrap();
    assert!(
        status.success(),
        "{scenario}: the job failed\n{}\n{}",
        p.log_tail(),
        v.logs()
    );
    assert_eq!(sorted_output(output), direct_wordcount(text), "{scenario}");
    let summary: Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    let a = &summary["attempts"];
    let tasks: u64 = summary["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["tasks"].as_u64().unwrap())
        .sum();
    let launched = a["launched"].as_u64().unwrap();
    eprintln!(
        "faults: {scenario}: {tasks} tasks, {launched} attempts launched ({} beyond one per task), {} lost, {} speculative, {} failed, {} verification copies",
        launched - tasks,
        a["lost"],
        a["speculative"],
        a["failed"],
        a["verification_copies"]
    );
    summary
}

fn redone(summary: &Value) -> u64 {
    let a = &summary["attempts"];
    a["lost"].as_u64().unwrap() + a["speculative"].as_u64().unwrap()
}

fn mid_map(map: (u64, u64), _reduce: (u64, u64)) -> bool {
    map.1 > 4 && map.0 >= 2 && map.0 + 3 < map.1
}

fn mid_reduce(map: (u64, u64), reduce: (u64, u64)) -> bool {
    map.1 > 0 && map.0 == map.1 && reduce.1 > 0 && reduce.0 + 1 < reduce.1
}

#[test]
fn workers_killed_while_holding_tasks_are_replaced_and_the_output_is_right() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = volunteers(dir.path(), 4);
    let (mut p, json, text, output) = start_job(dir.path(), &v, 4, 91);

    let _: Progress = watch_until(&mut p, mid_map);
    let first = v.busy_worker(&p);
    v.workers[first].child.kill().unwrap();
    let _ = watch_until(&mut p, mid_reduce);
    let second = v.busy_worker(&p);
    v.workers[second].child.kill().unwrap();

    let summary = finish(
        "two workers killed (mid-map, mid-reduce)",
        p,
        &json,
        &text,
        &output,
        &v,
    );
    assert!(
        redone(&summary) >= 2,
        "the killed workers' tasks were neither backed up nor re-queued: {summary:#}"
    );
}

#[test]
fn a_stalled_worker_is_backed_up_and_the_output_is_right() {
    let dir = tempfile::tempdir().unwrap();
    let v = volunteers(dir.path(), 3);
    let (mut p, json, text, output) = start_job(dir.path(), &v, 3, 92);

    let _ = watch_until(&mut p, mid_map);
    let stalled = v.workers[v.busy_worker(&p)].child.id().to_string();
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &stalled])
        .status()
        .unwrap();
    assert!(stop.success());
    let summary = finish("a worker stalled mid-map", p, &json, &text, &output, &v);
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &stalled])
        .status();
    assert!(
        redone(&summary) >= 1,
        "the stalled worker's task was neither backed up nor re-queued: {summary:#}"
    );
}

/// A word count over a tcp:// board with the owner's state in `state`.
fn run_wordcount(
    dir: &Path,
    board: &str,
    state: &Path,
    name: &str,
    flags: &[&str],
    text: &str,
) -> Value {
    let input = write(dir, &format!("{name}.txt"), text);
    let output = dir.join(format!("{name}-out"));
    let mut cmd = tormr();
    cmd.args(["submit", "--cluster", &format!("tcp://{board}")])
        .args(flags)
        .arg("--json")
        .arg("--state")
        .arg(state)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output);
    python_wordcount_flags(&mut cmd, 2, "8k");
    let run = run_ok(&mut cmd);
    assert_eq!(sorted_output(&output), direct_wordcount(text), "{name}");
    summary(&run)
}

#[test]
fn a_liar_banned_in_one_job_is_not_matched_to_the_owners_next_job() {
    let dir = tempfile::tempdir().unwrap();
    let (board, address) = bulletin(dir.path(), "bulletin", None);
    let honest: Vec<Spawned> = (0..3)
        .map(|i| worker_with(dir.path(), &format!("worker-{i}"), &address, &[]))
        .collect();
    let liar = worker_with(dir.path(), "liar", &address, &["--fault", "cheat:1"]);
    let state = dir.path().join("owner");

    let first = run_wordcount(
        dir.path(),
        &address,
        &state,
        "first",
        &["--workers", "4", "--wait", "2m"],
        &corpus(3000, 400, 93),
    );
    assert_eq!(first["attempts"]["banned"], 1, "{first:#}");
    let log = |p: &Spawned| std::fs::read_to_string(&p.log).unwrap_or_default();
    assert!(
        log(&board).contains("banned worker"),
        "the bulletin never heard of the ban\n{}",
        board.log_tail()
    );

    // All four are back on the board. The owner's next request asks for four
    // and settles for three after 5 s: only a ban keeps the liar out.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while http_get_json(&address, "/v1/board").and_then(|b| b["volunteers"].as_u64()) != Some(4) {
        assert!(
            std::time::Instant::now() < deadline,
            "the volunteers did not return to the board"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let second = run_wordcount(
        dir.path(),
        &address,
        &state,
        "second",
        &["--workers", "4", "--min-workers", "3", "--wait", "5s"],
        &corpus(2000, 300, 94),
    );
    assert_eq!(second["attempts"]["banned"], 0, "{second:#}");
    assert_eq!(second["workers"], 3, "{second:#}");
    let liar_log = log(&liar);
    assert_eq!(
        liar_log.matches("joined job").count(),
        1,
        "the liar was matched again\n{}",
        liar.log_tail()
    );
    assert!(!liar_log.contains("could not join"), "{}", liar.log_tail());
    drop(honest);
}

/// The owner's own worker (`--trusted-by` her key) on the board at
/// `address`: the process, its pseudonym and the owner's key file.
struct OwnArbiter {
    process: Spawned,
    pseudonym: String,
    key_file: String,
}

fn own_arbiter(dir: &Path, address: &str) -> OwnArbiter {
    let key_file = dir.join("owner.key");
    let owner = tormr_core::identity::Identity::load_or_create(&key_file).unwrap();
    let key = owner.public().to_text();
    let process = worker_with(dir, "arbiter", address, &["--once", "--trusted-by", &key]);
    // Generous: under a loaded test run the worker's start (its Docker check
    // first) has taken over 30 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let pseudonym = loop {
        let log = std::fs::read_to_string(&process.log).unwrap_or_default();
        if let Some(p) = log.lines().find_map(|l| l.strip_prefix("pseudonym ")) {
            break p.trim().to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            process.log_tail()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    OwnArbiter {
        process,
        pseudonym,
        key_file: key_file.display().to_string(),
    }
}

#[test]
fn disputes_over_tcp_are_settled_by_the_owners_named_arbiter() {
    let dir = tempfile::tempdir().unwrap();
    let (_board, address) = bulletin(dir.path(), "bulletin", None);
    let volunteers: Vec<Spawned> = (0..2)
        .map(|i| worker(dir.path(), &format!("worker-{i}"), &address))
        .collect();
    let liar = worker_with(
        dir.path(),
        "liar",
        &address,
        &["--once", "--fault", "cheat:1"],
    );
    let arbiter = own_arbiter(dir.path(), &address);
    let state = dir.path().join("state");
    let summary = run_wordcount(
        dir.path(),
        &address,
        &state,
        "disputed",
        &[
            "--workers",
            "3",
            "--wait",
            "2m",
            "--owner-key",
            &arbiter.key_file,
            "--arbiter",
            &arbiter.pseudonym,
            // Disputes wait for the owner's own worker, never a majority.
            "-D",
            "tormr.verify.arbitration=trusted",
        ],
        &corpus(3000, 400, 95),
    );
    let a = &summary["attempts"];
    assert_eq!(a["banned"], 1, "{summary:#}");
    assert!(a["disputes"].as_u64().unwrap() >= 1, "{summary:#}");
    assert_eq!(summary["workers"], 4, "{summary:#}");
    let arbiter_log = std::fs::read_to_string(&arbiter.process.log).unwrap_or_default();
    assert!(
        arbiter_log.contains("joined job"),
        "{}",
        arbiter.process.log_tail()
    );
    drop((volunteers, liar));
}

#[test]
fn over_tcp_the_owners_named_worker_answers_ringers_and_a_liar_fails_one() {
    let dir = tempfile::tempdir().unwrap();
    let (_board, address) = bulletin(dir.path(), "bulletin", None);
    let honest = worker(dir.path(), "worker-0", &address);
    let liar = worker_with(
        dir.path(),
        "liar",
        &address,
        &["--once", "--fault", "cheat:1"],
    );
    let own = own_arbiter(dir.path(), &address);
    let state = dir.path().join("state");
    // Nothing is replicated: only the ringers test the two volunteers.
    let summary = run_wordcount(
        dir.path(),
        &address,
        &state,
        "ringers",
        &[
            "--workers",
            "2",
            "--wait",
            "2m",
            "--owner-key",
            &own.key_file,
            "--arbiter",
            &own.pseudonym,
            "-D",
            "tormr.verify=off",
            "-D",
            "tormr.verify.ringers=2",
        ],
        &corpus(3000, 400, 96),
    );
    let a = &summary["attempts"];
    assert_eq!(a["ringers_failed"], 1, "{summary:#}");
    assert_eq!(a["banned"], 1, "{summary:#}");
    assert_eq!(summary["workers"], 3, "{summary:#}");
    eprintln!("ringers over tcp: {a}");
    drop((honest, liar));
}

/// The request a bulletin's log says was posted last.
fn last_posted_request(board: &Spawned) -> String {
    let log = std::fs::read_to_string(&board.log).unwrap_or_default();
    log.lines()
        .rev()
        .filter_map(|l| l.split("cluster request ").nth(1))
        .find_map(|rest| rest.strip_suffix(" posted"))
        .unwrap_or_else(|| panic!("the bulletin logged no request\n{}", board.log_tail()))
        .to_owned()
}

/// Withdraws a job's request as its owner would, with the job's key from the
/// owner's state folder.
fn withdraw_as_owner(board: &str, state: &Path, request: &str) {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(state.join("job.json")).unwrap()).unwrap();
    let job = manifest["job"].as_str().unwrap();
    let key = tormr_core::identity::Identity::load_or_create(
        &state.join("owner").join(format!("{job}.key")),
    )
    .unwrap();
    let request: tormr_core::ids::RequestId = request.parse().unwrap();
    let http = tormr_net::HttpClient::new(
        std::sync::Arc::new(tormr_net::tcp::TcpTransport::new()),
        tormr_net::Address::parse(board).unwrap(),
    );
    let client = tormr_bulletin::BulletinClient::new(http);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(client.withdraw(&key, &request))
        .unwrap();
}

#[test]
fn a_worker_whose_job_master_vanished_returns_to_the_board_once_the_job_is_withdrawn() {
    let dir = tempfile::tempdir().unwrap();
    let (board, address) = bulletin(dir.path(), "bulletin", None);
    // Not `--once`: the worker is to come back for more work.
    let volunteer = worker_with(dir.path(), "worker-0", &address, &[]);
    let v = Volunteers {
        board,
        address,
        workers: vec![volunteer],
    };
    let (mut p, _json, _text, _output) = start_job(dir.path(), &v, 1, 95);
    let _ = watch_until(&mut p, mid_map);
    // The owner's machine dies without a word to the worker; she gives the
    // job up and withdraws its request.
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    withdraw_as_owner(
        &v.address,
        &dir.path().join("state"),
        &last_posted_request(&v.board),
    );
    let withdrawn = std::time::Instant::now();
    // Without asking the bulletin the worker would retry the vanished job
    // master for five minutes before coming back.
    while http_get_json(&v.address, "/v1/board").and_then(|b| b["volunteers"].as_u64()) != Some(1) {
        assert!(
            withdrawn.elapsed() < std::time::Duration::from_secs(150),
            "the worker did not return to the board\n{}",
            v.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let log = std::fs::read_to_string(&v.workers[0].log).unwrap_or_default();
    assert!(log.contains("the job is over"), "{}", v.logs());
    eprintln!(
        "faults: vanished job master: the worker was back on the board {:.1} s after the withdrawal",
        withdrawn.elapsed().as_secs_f64()
    );
}

/// A loopback relay in front of a service that cuts every other connection
/// once `cut_after` bytes have crossed it (either way), up to `max_cuts`
/// connections in all: transfers broken off mid-way.
struct CuttingRelay {
    address: String,
    cuts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

fn cutting_relay(upstream: String, cut_after: u64, max_cuts: usize) -> CuttingRelay {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let cuts = Arc::new(AtomicUsize::new(0));
    let counted = cuts.clone();
    std::thread::spawn(move || {
        for (i, client) in listener.incoming().enumerate() {
            let (Ok(client), Ok(server)) = (client, std::net::TcpStream::connect(&upstream)) else {
                continue;
            };
            let doomed = i % 2 == 1;
            let moved = Arc::new(AtomicU64::new(0));
            let cut = Arc::new(AtomicBool::new(false));
            let ends = [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ];
            for (mut from, mut to) in ends {
                let (moved, cut, counted) = (moved.clone(), cut.clone(), counted.clone());
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let total = moved.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
                        if doomed
                            && total > cut_after
                            && counted.load(Ordering::Relaxed) < max_cuts
                            && !cut.swap(true, Ordering::Relaxed)
                        {
                            counted.fetch_add(1, Ordering::Relaxed);
                        }
                        if cut.load(Ordering::Relaxed) {
                            break;
                        }
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = from.shutdown(std::net::Shutdown::Both);
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    CuttingRelay { address, cuts }
}

#[test]
fn transfers_cut_off_mid_way_are_retried_and_the_output_is_right() {
    let dir = tempfile::tempdir().unwrap();
    let v = volunteers(dir.path(), 3);
    // A standing data layer, reached by the owner and the workers only
    // through a relay that breaks connections off mid-transfer.
    let (_dl, dl_address) = service(dir.path(), "datalayer", &["datalayer", "serve"]);
    let dl_state = dir.path().join("datalayer");
    let relay = cutting_relay(dl_address, 24 * 1024, 12);

    let text = corpus(2500, 400, 96);
    let input = write(dir.path(), "corpus.txt", &text);
    let output = dir.path().join("out");
    let cluster = format!("tcp://{}", v.address);
    let mut argv = slow_wordcount(
        dir.path(),
        &cluster,
        &input,
        &output,
        &dir.path().join("state"),
    );
    argv.extend(["--workers".into(), "3".into(), "--wait".into(), "2m".into()]);
    argv.extend(["--datalayer".into(), relay.address.clone()]);
    argv.extend([
        "--datalayer-secret".into(),
        dl_state.join("datalayer.secret").display().to_string(),
    ]);
    let (p, json) = owner(dir.path(), "submit", &argv);
    finish("transfers cut off mid-way", p, &json, &text, &output, &v);
    let cuts = relay.cuts.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("faults: transfers cut off mid-way: {cuts} connection(s) cut");
    assert!(
        cuts >= 3,
        "the relay cut only {cuts} connection(s): the scenario did not happen"
    );
}
