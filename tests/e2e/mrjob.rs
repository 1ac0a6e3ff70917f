//! mrjob scripts run by tormr give what mrjob's own local runner gives.

use crate::util::*;
use std::path::Path;
use std::process::Command;

fn mrjob_examples() -> std::path::PathBuf {
    require_mrjob();
    let out = Command::new("python3")
        .args([
            "-c",
            "import mrjob.examples, os; print(os.path.dirname(mrjob.examples.__file__))",
        ])
        .output()
        .unwrap();
    std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// mrjob's local runner on the same script and input, lines sorted.
fn mrjob_local(script: &Path, input: &Path, args: &[&str]) -> Vec<String> {
    let out = Command::new("python3")
        .arg(script)
        .args(["-r", "local", "--no-conf"])
        .args(args)
        .arg(input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mrjob's local runner failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

fn tormr_mrjob(
    workers: u32,
    script: &Path,
    input: &Path,
    out: &Path,
    args: &[&str],
) -> Vec<String> {
    let mut cmd = submit(workers, input, out);
    cmd.arg("--mrjob")
        .arg(script)
        .args(["-D", "tormr.bucket.bytes=32k"]);
    if !args.is_empty() {
        cmd.arg("--").args(args);
    }
    run_ok(&mut cmd);
    sorted_output(out)
}

#[test]
fn mrjobs_word_freq_count_matches_mrjobs_local_runner() {
    let ex = mrjob_examples();
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "corpus.txt", &corpus(3000, 500, 3));
    let script = ex.join("mr_word_freq_count.py");
    assert_eq!(
        tormr_mrjob(2, &script, &input, &dir.path().join("out"), &[]),
        mrjob_local(&script, &input, &[])
    );
}

#[test]
fn a_multi_step_mrjob_with_shipped_files_matches_mrjobs_local_runner() {
    let ex = mrjob_examples();
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "corpus.txt", &corpus(3000, 500, 4));
    // Two steps, a combiner, and FILES = ['stop_words.txt'].
    let script = ex.join("mr_most_used_word.py");
    let ours = tormr_mrjob(3, &script, &input, &dir.path().join("out"), &[]);
    assert_eq!(ours, mrjob_local(&script, &input, &[]));
    assert_eq!(ours.len(), 1);
}

#[test]
fn our_own_multi_step_example_matches_mrjobs_local_runner() {
    require_mrjob();
    let script = repo().join("examples/mrjob/mr_top_words.py");
    assert!(script.exists(), "examples/mrjob/mr_top_words.py is missing");
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "corpus.txt", &corpus(4000, 600, 5));
    let ours = tormr_mrjob(2, &script, &input, &dir.path().join("out"), &["--top", "7"]);
    assert_eq!(ours, mrjob_local(&script, &input, &["--top", "7"]));
    assert_eq!(ours.len(), 7);
}

#[test]
fn a_broken_mrjob_script_is_refused_clearly() {
    require_mrjob();
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", "a\n");
    let script = write(dir.path(), "broken.py", "import nonexistent_module_xyz\n");
    let out = submit(1, &input, &dir.path().join("out"))
        .arg("--mrjob")
        .arg(&script)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nonexistent_module_xyz"),
        "{}",
        stderr(&out)
    );
    let script = write(dir.path(), "nojob.py", "x = 1\n");
    let out = submit(1, &input, &dir.path().join("out"))
        .arg("--mrjob")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("exactly one MRJob class"),
        "{}",
        stderr(&out)
    );
}
