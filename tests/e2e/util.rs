//! Helpers shared by the end-to-end tests.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub fn tormr() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tormr"))
}

/// A native example program built alongside the tests (`cargo test` builds examples).
pub fn example_bin(name: &str) -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_tormr"));
    let path = exe
        .parent()
        .expect("target dir")
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test` so examples are built",
        path.display()
    );
    path
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Deterministic Zipf-ish text: `lines` lines of 3–12 words from a vocabulary.
pub fn corpus(lines: usize, vocab: usize, seed: u64) -> String {
    let words: Vec<String> = (0..vocab)
        .map(|i| {
            format!(
                "w{:x}{}",
                i * 2654435761 % 9973,
                "abcdefgh".chars().nth(i % 8).unwrap_or('a')
            )
        })
        .collect();
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = String::new();
    for _ in 0..lines {
        let n = 3 + (next() % 10) as usize;
        let line: Vec<&str> = (0..n)
            .map(|_| {
                // Squaring a uniform value skews picks towards the first words.
                let u = (next() % 10_000) as f64 / 10_000.0;
                words[((u * u) * vocab as f64) as usize % vocab].as_str()
            })
            .collect();
        out.push_str(&line.join(" "));
        out.push('\n');
    }
    out
}

/// Word counts computed directly, as `word\tcount` lines sorted.
pub fn direct_wordcount(text: &str) -> Vec<String> {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for w in text.split_whitespace() {
        *counts.entry(w).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(w, n)| format!("{w}\t{n}"))
        .collect()
}

/// The part files of an output folder, in order.
pub fn parts(dir: &Path) -> Vec<PathBuf> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("part-"))
        })
        .collect();
    parts.sort();
    parts
}

/// Every output line of a job, sorted (what to compare with a reference).
pub fn sorted_output(dir: &Path) -> Vec<String> {
    assert!(
        dir.join("_SUCCESS").exists(),
        "no _SUCCESS in {}",
        dir.display()
    );
    let mut lines: Vec<String> = parts(dir)
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    lines
}

/// Runs a command and insists it succeeded.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("running tormr");
    assert!(
        out.status.success(),
        "command failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `--json` summary printed on stdout.
pub fn summary(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON summary ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A job command with the usual local-mode and input/output flags.
pub fn submit(workers: u32, input: &Path, output: &Path) -> Command {
    let mut cmd = tormr();
    cmd.arg("submit")
        .arg("--cluster")
        .arg(format!("local[{workers}]"))
        .arg("-input")
        .arg(input)
        .arg("-output")
        .arg(output);
    cmd
}

/// Adds the example Python Streaming word count (mapper, reducer, their
/// files) with `reduces` reduce tasks and input buckets of `bucket` bytes.
pub fn python_wordcount_flags<'a>(
    cmd: &'a mut Command,
    reduces: u32,
    bucket: &str,
) -> &'a mut Command {
    let ex = repo().join("examples/wordcount");
    cmd.args([
        "-mapper",
        "python3 mapper.py",
        "-reducer",
        "python3 reducer.py",
    ])
    .args(["-numReduceTasks", &reduces.to_string()])
    .args(["-D", &format!("tormr.bucket.bytes={bucket}")])
    .arg("-file")
    .arg(ex.join("mapper.py"))
    .arg("-file")
    .arg(ex.join("reducer.py"))
}

/// Python with mrjob, which the mrjob tests need (CI installs it).
pub fn require_mrjob() {
    let ok = Command::new("python3")
        .args(["-c", "import mrjob"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "these tests need mrjob for python3: python3 -m pip install mrjob"
    );
}

/// Builds (or finds cached) an example image with its script; its name.
pub fn example_image(script: &str) -> String {
    let out = Command::new("bash")
        .arg(repo().join("examples/images").join(script))
        .output()
        .unwrap_or_else(|e| panic!("running examples/images/{script}: {e}"));
    assert!(
        out.status.success(),
        "building the example image with {script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A `tormr` process killed when dropped, its stderr in a log file.
pub struct Spawned {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl Spawned {
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- {} ---\n{}",
            self.name,
            lines[lines.len().saturating_sub(25)..].join("\n")
        )
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tormr bulletin serve` (on an etcd board if `store` names one) and
/// returns it with its address.
pub fn bulletin(dir: &Path, name: &str, store: Option<&str>) -> (Spawned, String) {
    let mut args = vec!["bulletin", "serve"];
    if let Some(store) = store {
        args.extend(["--store", store]);
    }
    service(dir, name, &args)
}

/// Starts `tormr KIND serve` (with `args`) on a free loopback port, its
/// state in `dir/name`; returns it and the address it printed.
pub fn service(dir: &Path, name: &str, args: &[&str]) -> (Spawned, String) {
    let log = dir.join(format!("{name}.log"));
    let port = tormr_etcd::testing::free_port().unwrap().to_string();
    let mut child = tormr()
        .args(args)
        .arg("--state")
        .arg(dir.join(name))
        .args(["--loopback-port", &port])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let proc = Spawned {
        child,
        name: name.into(),
        log,
    };
    assert!(
        !first.trim().is_empty(),
        "{name} printed no address\n{}",
        proc.log_tail()
    );
    (proc, first.trim().to_owned())
}

/// Starts a volunteer (`tormr worker --once`) on the given board replicas.
pub fn worker(dir: &Path, name: &str, bulletins: &str) -> Spawned {
    worker_with(dir, name, bulletins, &["--once"])
}

/// Starts a volunteer with more flags (e.g. `--fault cheat:1`).
pub fn worker_with(dir: &Path, name: &str, bulletins: &str, flags: &[&str]) -> Spawned {
    let log = dir.join(format!("{name}.log"));
    let child = tormr()
        .args(["worker", "--bulletin", bulletins, "--state"])
        .arg(dir.join(name))
        .arg("--allow-unsandboxed-jobs")
        .args(flags)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Spawned {
        child,
        name: name.into(),
        log,
    }
}

/// GETs `path` from a loopback HTTP service and parses the JSON body.
pub fn http_get_json(address: &str, path: &str) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(address).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: tormr\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let body = text.split("\r\n\r\n").nth(1)?;
    serde_json::from_str(body).ok()
}
