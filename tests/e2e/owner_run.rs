//! Driving the owner's `tormr submit` as a process: a slow word count whose
//! phases a test can interrupt, its status page watched, the owner killed
//! at a chosen moment and resumed. Shared by the local (`e2e`) and the Tor
//! (`tor`) tests.

#![allow(dead_code)]

use crate::util::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A word count whose mapper and reducer take their time, so that a kill
/// lands inside a phase.
pub fn slow_wordcount(
    dir: &Path,
    cluster: &str,
    input: &Path,
    output: &Path,
    state: &Path,
) -> Vec<String> {
    let ex = repo().join("examples/wordcount");
    let slow_map = write(dir, "slow_map.sh", "sleep 0.4; exec python3 mapper.py\n");
    let slow_reduce = write(
        dir,
        "slow_reduce.sh",
        "sleep 1.5; exec python3 reducer.py\n",
    );
    let mut argv: Vec<String> = vec!["submit".into(), "--cluster".into(), cluster.into()];
    for (flag, value) in [
        ("-input", input.to_path_buf()),
        ("-output", output.to_path_buf()),
        ("--state", state.to_path_buf()),
        ("-file", ex.join("mapper.py")),
        ("-file", ex.join("reducer.py")),
        ("-file", slow_map),
        ("-file", slow_reduce),
    ] {
        argv.push(flag.into());
        argv.push(value.display().to_string());
    }
    for arg in [
        "-mapper",
        "sh slow_map.sh",
        "-reducer",
        "sh slow_reduce.sh",
        "-numReduceTasks",
        "4",
        "-D",
        "tormr.bucket.bytes=8k",
        "--json",
    ] {
        argv.push(arg.into());
    }
    argv
}

/// A `tormr` owner process with stdout and stderr in files.
pub fn owner(dir: &Path, name: &str, argv: &[String]) -> (Spawned, PathBuf) {
    let log = dir.join(format!("{name}.log"));
    let out = dir.join(format!("{name}.json"));
    let child = tormr()
        .args(argv)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    (
        Spawned {
            child,
            name: name.into(),
            log,
        },
        out,
    )
}

/// The owner's status page address, from its log.
pub fn status_address(p: &Spawned) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(&p.log).unwrap_or_default();
        if let Some(rest) = text.split("status page at http://").nth(1) {
            return rest.split('/').next().unwrap_or_default().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no status page announced\n{}",
            p.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Tasks done and in all, of the map and the reduce phase.
pub fn progress(status: &Value) -> ((u64, u64), (u64, u64)) {
    let mut map = (0, 0);
    let mut reduce = (0, 0);
    for phase in status["phases"].as_array().into_iter().flatten() {
        let counts = (
            phase["done"].as_u64().unwrap_or(0),
            phase["total"].as_u64().unwrap_or(0),
        );
        if phase["kind"] == "reduce" {
            reduce = counts;
        } else if phase["open"] == false {
            map = counts;
        }
    }
    (map, reduce)
}

/// Task counts (done, total) of the map and the reduce phase.
pub type Progress = ((u64, u64), (u64, u64));

/// Watches the owner's status page until `when` holds of its progress;
/// returns that progress.
pub fn watch_until(p: &mut Spawned, when: impl Fn((u64, u64), (u64, u64)) -> bool) -> Progress {
    let address = status_address(p);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(status) = http_get_json(&address, "/v1/status") {
            let (map, reduce) = progress(&status);
            if when(map, reduce) {
                return (map, reduce);
            }
        }
        assert!(
            p.child.try_wait().unwrap().is_none(),
            "the owner ended before the moment came\n{}",
            p.log_tail()
        );
        assert!(
            Instant::now() < deadline,
            "the moment never came\n{}",
            p.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the owner (SIGKILL: no clean-up runs) once `when` holds of its
/// progress; returns the progress it was killed at.
pub fn kill_when(mut p: Spawned, when: impl Fn((u64, u64), (u64, u64)) -> bool) -> Progress {
    let at = watch_until(&mut p, when);
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    at
}

/// The number of finished tasks a resumed run said it found.
pub fn tasks_found_done(log: &Path) -> u64 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.split_once(" task(s) were done")
        .and_then(|(before, _)| before.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the resumed run did not say what it found:\n{text}"))
}

pub fn resume_argv(state: &Path) -> Vec<String> {
    vec![
        "job".into(),
        "resume".into(),
        "--state".into(),
        state.display().to_string(),
    ]
}

/// Runs the last resume to its end and checks its output and summary.
pub fn finish(dir: &Path, state: &Path, output: &Path, text: &str, found_before: u64) -> Value {
    let (mut last, json) = owner(dir, "resume-last", &resume_argv(state));
    let status = last.child.wait().unwrap();
    assert!(
        status.success(),
        "the last resume failed\n{}",
        last.log_tail()
    );
    assert_eq!(sorted_output(output), direct_wordcount(text));
    let summary: Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    let total: u64 = summary["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["tasks"].as_u64().unwrap())
        .sum();
    let done = summary["resumed"]["tasks_done"].as_u64().unwrap();
    let launched = summary["attempts"]["launched"].as_u64().unwrap();
    let speculative = summary["attempts"]["speculative"].as_u64().unwrap();
    let copies = summary["attempts"]["verification_copies"].as_u64().unwrap();
    assert!(done >= found_before, "{summary:#}");
    // Backups and verification copies aside, one attempt per unfinished task.
    assert!(
        launched - speculative - copies <= total - done,
        "finished tasks ran again: {launched} attempts for {} unfinished task(s)\n{summary:#}",
        total - done
    );
    eprintln!(
        "resume: {done} of {total} task(s) kept; after the last restart {launched} attempt(s) launched ({speculative} speculative, {copies} verification copies)"
    );
    // A job that ended cannot be resumed again.
    let again = tormr().args(resume_argv(state)).output().unwrap();
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("has not ended"),
        "{}",
        stderr(&again)
    );
    summary
}
