//! Helpers shared by the end-to-end tests.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
