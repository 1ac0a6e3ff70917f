//! The Docker executor against the real engine: job code streams through a
//! container, and hostile job code is contained and reported as a failed run
//! while the executor keeps serving. Every test runs code through
//! `run_filter`, the same plumbing a task uses.
//!
//! Needs a running Docker engine and Debian's busybox-static (the test image
//! is built offline from it by `tests/images/busybox.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tormr_worker::executor::docker::{DockerExecutor, Limits, connect, connect_at};
use tormr_worker::executor::{ExecSpec, Exit};
use tormr_worker::run::{Ran, run_filter};

const MIB: u64 = 1 << 20;

fn image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/images/busybox.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "building the test image failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    })
}

fn limits() -> Limits {
    Limits {
        memory_bytes: 64 * MIB,
        nano_cpus: 1_000_000_000,
        pids: 32,
        tmp_bytes: 8 * MIB,
    }
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    executor: DockerExecutor,
    label: String,
    dir: tempfile::TempDir,
}

impl Fixture {
    /// An executor that keeps containers between runs, as workers use it.
    fn new(name: &str) -> Fixture {
        Self::build(name, true)
    }

    /// An executor that makes a fresh container for every run.
    fn fresh(name: &str) -> Fixture {
        Self::build(name, false)
    }

    fn build(name: &str, keep: bool) -> Fixture {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let docker = rt.block_on(connect()).expect("a running Docker engine");
        let label = format!("test-{name}-{}", std::process::id());
        let dir = tempfile::tempdir().unwrap();
        let mut executor = DockerExecutor::new(docker, image(), limits(), &label);
        if keep {
            executor = executor.keeping_containers(&dir.path().join("idle"));
            assert!(
                executor.keeps_containers(),
                "no idle program for this machine"
            );
        }
        std::fs::create_dir_all(dir.path().join("files")).unwrap();
        std::fs::write(dir.path().join("files/words.txt"), "shipped file\n").unwrap();
        Fixture {
            rt,
            executor,
            label,
            dir,
        }
    }

    fn spec(&self, command: &str, timeout: Duration) -> ExecSpec {
        let files: PathBuf = self.dir.path().join("files");
        ExecSpec {
            command: command.to_owned(),
            env: BTreeMap::from([("mapreduce_task_partition".into(), "3".into())]),
            workdir: files.clone(),
            files,
            tmpdir: self.dir.path().join("tmp"),
            timeout,
            argv: None,
            pfs: None,
        }
    }

    /// Runs `command` over `input`; returns the run and its whole stdout.
    fn run(&self, command: &str, input: &[u8], timeout: Duration) -> Ran<Vec<u8>> {
        let spec = self.spec(command, timeout);
        run_filter(
            self.rt.handle(),
            &self.executor,
            &spec,
            &CancellationToken::new(),
            |w| w.write_all(input),
            |r| {
                let mut out = Vec::new();
                r.read_to_end(&mut out)?;
                Ok(out)
            },
        )
        .expect("the container starts")
    }

    /// Full ids of this fixture's containers still on the engine.
    fn container_ids(&self) -> Vec<String> {
        let out = std::process::Command::new("docker")
            .args(["ps", "-aq", "--no-trunc", "--filter"])
            .arg(format!("label=tormr.worker={}", self.label))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn leftovers(&self) -> usize {
        self.container_ids().len()
    }

    /// Waits (briefly) until every container of this fixture is gone, once
    /// the job is over (kept containers retired).
    fn assert_cleaned_up(&self) {
        self.rt.block_on(self.executor.retire());
        let start = Instant::now();
        while self.leftovers() > 0 && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(self.leftovers(), 0, "containers were left behind");
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // The job is over: no kept container outlives its test.
        self.rt.block_on(self.executor.retire());
    }
}

fn text(ran: &Ran<Vec<u8>>) -> String {
    String::from_utf8_lossy(ran.drained.as_ref().expect("stdout was read")).into_owned()
}

#[test]
fn streams_a_large_input_through_the_container_unchanged() {
    for f in [Fixture::new("stream"), Fixture::fresh("stream-fresh")] {
        streams_a_large_input(f);
    }
}

fn streams_a_large_input(f: Fixture) {
    // 48 MiB through a 64 MiB container: it can only pass if it streams.
    let mut input = Vec::with_capacity((48 * MIB) as usize);
    let mut x: u64 = 7;
    while input.len() < (48 * MIB) as usize {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        writeln!(input, "{x:x}\tline").unwrap();
    }
    let ran = f.run("cat", &input, Duration::from_secs(120));
    assert!(ran.exit.success(), "{:?}: {}", ran.exit, ran.stderr.tail);
    let out = ran.drained.as_ref().unwrap();
    assert_eq!(out.len(), input.len());
    assert_eq!(Sha256::digest(out), Sha256::digest(&input));
    f.assert_cleaned_up();
}

#[test]
fn sees_streaming_env_and_shipped_files_and_reports_stderr() {
    let f = Fixture::new("env");
    let ran = f.run(
        "sh -c 'echo part=$mapreduce_task_partition; cat words.txt; pwd; \
         echo reporter:counter:g,c,5 >&2; echo oops >&2; exit 3'",
        b"",
        Duration::from_secs(60),
    );
    assert_eq!(ran.exit, Exit::Code(3));
    assert_eq!(text(&ran), "part=3\nshipped file\n/job\n");
    assert!(ran.stderr.tail.contains("oops"), "{}", ran.stderr.tail);
    assert_eq!(ran.stderr.counters.get("g", "c"), 5);
    f.assert_cleaned_up();
}

#[test]
fn job_code_runs_as_nobody_without_capabilities_or_privilege_gain() {
    let f = Fixture::new("user");
    let ran = f.run(
        "sh -c 'id -u; grep -E \"^(CapEff|CapPrm|NoNewPrivs)\" /proc/self/status'",
        b"",
        Duration::from_secs(60),
    );
    assert!(ran.exit.success(), "{}", ran.stderr.tail);
    let out = text(&ran);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "65534", "{out}");
    assert!(out.contains("CapPrm:\t0000000000000000"), "{out}");
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
}

#[test]
fn job_code_cannot_write_outside_tmp() {
    let f = Fixture::new("write");
    let ran = f.run(
        "sh -c 'for p in /job/x /x /bin/x /dev/shm/x /dev/x /tmp/x; do \
         if echo hi > $p 2>/dev/null; then echo $p:written; else echo $p:refused; fi; done'",
        b"",
        Duration::from_secs(60),
    );
    assert!(ran.exit.success(), "{}", ran.stderr.tail);
    assert_eq!(
        text(&ran),
        "/job/x:refused\n/x:refused\n/bin/x:refused\n/dev/shm/x:refused\n/dev/x:refused\n/tmp/x:written\n"
    );
    assert!(!f.dir.path().join("files/x").exists());
    // /tmp is capped too: 8 MiB, and writing more fails.
    let ran = f.run(
        "sh -c 'head -c 16777216 /dev/zero > /tmp/big || echo full; ls -l /tmp/big'",
        b"",
        Duration::from_secs(60),
    );
    assert!(text(&ran).starts_with("full"), "{}", text(&ran));
}

#[test]
fn job_code_has_no_network() {
    let f = Fixture::new("net");
    // A server on every host address that greets whoever connects.
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let visits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = visits.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = conn.write_all(b"hello\n");
        }
    });
    let gateway = bridge_gateway();
    let probe = format!("timeout 5 nc {gateway} {port} </dev/null || echo unreachable");
    // Control: an ordinary container does reach it, so the check below can fail.
    let control = std::process::Command::new("docker")
        .args(["run", "--rm", image(), "sh", "-c", &probe])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&control.stdout), "hello\n");
    assert_eq!(visits.load(std::sync::atomic::Ordering::SeqCst), 1);

    let ran = f.run(
        &format!("sh -c 'ls /sys/class/net; {probe}'"),
        b"",
        Duration::from_secs(60),
    );
    assert!(ran.exit.success(), "{}", ran.stderr.tail);
    assert_eq!(text(&ran), "lo\nunreachable\n");
    assert_eq!(
        visits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "job code reached the host"
    );
}

/// The host's address as an ordinary container sees it (its default route).
fn bridge_gateway() -> String {
    let out = std::process::Command::new("docker")
        .args([
            "run",
            "--rm",
            image(),
            "sh",
            "-c",
            "ip route | awk '/^default/ {print $3}'",
        ])
        .output()
        .unwrap();
    let gateway = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        !gateway.is_empty(),
        "no default route: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    gateway
}

#[test]
fn a_fork_bomb_stops_at_the_pids_limit() {
    let f = Fixture::new("pids");
    let started = Instant::now();
    let (ran, pids) = std::thread::scope(|scope| {
        let bomb = scope.spawn(|| {
            f.run(
                "sh -c 'b() { b | b & }; b; sleep 1000'",
                b"",
                Duration::from_secs(8),
            )
        });
        // While it runs, read the container's process cgroup from the host.
        std::thread::sleep(Duration::from_secs(4));
        let pids = f.container_ids().first().map(|id| pids_cgroup(id));
        (bomb.join().unwrap(), pids)
    });
    // It ends as a failure (its time limit, or its shell giving up when it
    // cannot fork), in seconds, and the host is fine.
    assert!(!ran.exit.success(), "{:?}", ran.exit);
    assert!(started.elapsed() < Duration::from_secs(60));
    let (max, current, refused) = pids.expect("the bomb's container was running");
    assert_eq!(max, limits().pids.to_string());
    assert!(current <= limits().pids, "{current} processes");
    assert!(refused > 0, "the limit never refused a fork");
    // And the executor still serves.
    let ran = f.run("cat", b"still here\n", Duration::from_secs(30));
    assert_eq!(text(&ran), "still here\n");
    f.assert_cleaned_up();
}

/// A container's pids cgroup: (pids.max, pids.current, forks refused).
fn pids_cgroup(id: &str) -> (String, u64, u64) {
    let dirs = [
        format!("/sys/fs/cgroup/pids/docker/{id}"),
        format!("/sys/fs/cgroup/system.slice/docker-{id}.scope"),
        format!("/sys/fs/cgroup/docker/{id}"),
    ];
    let dir = dirs
        .iter()
        .find(|d| Path::new(d).join("pids.max").exists())
        .unwrap_or_else(|| panic!("no pids cgroup for {id} in {dirs:?}"));
    let read = |name: &str| std::fs::read_to_string(Path::new(dir).join(name)).unwrap();
    let refused = read("pids.events")
        .lines()
        .find_map(|l| l.strip_prefix("max "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    (
        read("pids.max").trim().to_owned(),
        read("pids.current").trim().parse().unwrap(),
        refused,
    )
}

#[test]
fn a_memory_hog_is_killed_at_the_memory_limit() {
    let f = Fixture::new("mem");
    // busybox tail keeps the last ten lines: with no newline, all of it.
    let ran = f.run(
        "sh -c 'head -c 512m /dev/zero | tail'",
        b"",
        Duration::from_secs(60),
    );
    assert_eq!(
        ran.exit,
        Exit::OutOfMemory(64 * MIB),
        "stderr: {}\n/proc/swaps: {}\nengine limits swap: {}",
        ran.stderr.tail,
        std::fs::read_to_string("/proc/swaps").unwrap_or_default(),
        std::process::Command::new("docker")
            .args([
                "info",
                "--format",
                "{{.SwapLimit}} cgroup v{{.CgroupVersion}}"
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    );
    assert!(
        ran.exit.describe().contains("64 MiB"),
        "{}",
        ran.exit.describe()
    );
    f.assert_cleaned_up();
}

#[test]
fn a_task_that_never_ends_is_killed_at_its_time_limit_and_removed() {
    for f in [Fixture::new("time"), Fixture::fresh("time-fresh")] {
        killed_at_time_limit(f);
    }
}

fn killed_at_time_limit(f: Fixture) {
    let started = Instant::now();
    let ran = f.run("sleep 1000", b"", Duration::from_secs(2));
    assert_eq!(ran.exit, Exit::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(30));
    f.assert_cleaned_up();
}

#[test]
fn a_cancelled_task_is_killed_and_removed() {
    let f = Fixture::new("cancel");
    let cancel = CancellationToken::new();
    let spec = f.spec("sleep 1000", Duration::from_secs(600));
    let stopper = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        stopper.cancel();
    });
    let ran = run_filter(
        f.rt.handle(),
        &f.executor,
        &spec,
        &cancel,
        |_| Ok(()),
        |r| io::copy(r, &mut io::sink()),
    )
    .unwrap();
    assert_eq!(ran.exit, Exit::Cancelled);
    f.assert_cleaned_up();
}

#[test]
fn sweep_removes_containers_a_dead_worker_left() {
    let f = Fixture::new("sweep");
    // What a worker killed with SIGKILL leaves: a container with its label.
    let status = std::process::Command::new("docker")
        .args(["create", "--label"])
        .arg(format!("tormr.worker={}", f.label))
        .args([image(), "sleep", "1"])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(f.leftovers(), 1);
    assert_eq!(f.rt.block_on(f.executor.sweep()).unwrap(), 1);
    assert_eq!(f.leftovers(), 0);
}

#[test]
fn a_missing_engine_gets_a_clear_error() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(connect_at("/nonexistent/docker.sock"))
        .expect_err("no engine there");
    let msg = err.to_string();
    assert!(
        msg.contains("no Docker engine answers at /nonexistent/docker.sock"),
        "{msg}"
    );
    assert!(msg.contains("start it"), "{msg}");
}

#[test]
fn an_unknown_image_is_a_start_error_not_a_hang() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let docker = rt.block_on(connect()).unwrap();
    let executor = DockerExecutor::new(docker, "tormr-no-such-image:0", limits(), "test-noimg");
    let dir = tempfile::tempdir().unwrap();
    let spec = ExecSpec {
        command: "cat".into(),
        env: BTreeMap::new(),
        workdir: dir.path().to_owned(),
        files: dir.path().to_owned(),
        tmpdir: dir.path().to_owned(),
        timeout: Duration::from_secs(10),
        argv: None,
        pfs: None,
    };
    let err = run_filter(
        rt.handle(),
        &executor,
        &spec,
        &CancellationToken::new(),
        |_| Ok(()),
        |_| Ok(()),
    )
    .err()
    .expect("no such image");
    assert!(err.to_string().contains("tormr-no-such-image"), "{err}");
}

#[test]
fn kept_containers_serve_many_runs_but_never_show_one_runs_leftovers() {
    let f = Fixture::new("kept");
    let host = |cmd: &str| {
        let ran = f.run(cmd, b"", Duration::from_secs(30));
        assert_eq!(ran.exit, Exit::Code(0), "{cmd}: {:?}", ran.stderr);
        text(&ran)
    };
    // A container's hostname is its id: consecutive clean runs share one.
    let first = host("hostname");
    assert_eq!(
        host("hostname"),
        first,
        "a clean run's container was not kept"
    );
    // A run that leaves a file in /tmp spoils its container for the next.
    let writer = host("sh -c 'echo secret > /tmp/left; hostname'");
    assert_eq!(writer, first);
    let after = host("sh -c 'ls -A /tmp; hostname'");
    assert_ne!(
        after, writer,
        "the next run got the container with a file in /tmp"
    );
    assert!(!after.contains("left"), "{after}");
    // So does one that leaves a process running.
    let spawner = host("sh -c 'sleep 1000 >/dev/null 2>&1 & hostname'");
    assert_ne!(
        host("hostname"),
        spawner,
        "the next run shared a lingering process"
    );
    // A failing run is fine to reuse after; a killed one is not.
    let code = f.run("sh -c 'exit 3'", b"", Duration::from_secs(30));
    assert_eq!(code.exit, Exit::Code(3));
    let timed_out = f.run("sleep 1000", b"", Duration::from_secs(1));
    assert_eq!(timed_out.exit, Exit::TimedOut);
    assert!(f.leftovers() <= 1, "spoiled containers were not removed");
    f.assert_cleaned_up();
}
