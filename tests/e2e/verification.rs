//! Verification end to end: a local cluster with injected volunteers that
//! lie. The owner's own (local) workers arbitrate; the output must still equal
//! a direct count, and a liar must end banned.

use crate::util::*;

fn wordcount_with_liars(
    honest: u32,
    faults: &[&str],
    conf: &[&str],
    input: &std::path::Path,
    output: &std::path::Path,
) -> std::process::Command {
    let mut cmd = submit(honest, input, output);
    for f in faults {
        cmd.args(["--local-fault", f]);
    }
    python_wordcount_flags(&mut cmd, 3, "16k").arg("--json");
    for c in conf {
        cmd.args(["-D", c]);
    }
    cmd
}

#[test]
fn a_worker_that_always_lies_is_banned_and_the_output_is_still_right() {
    let dir = tempfile::tempdir().unwrap();
    let text = corpus(4000, 600, 21);
    let input = write(dir.path(), "corpus.txt", &text);
    let out = dir.path().join("out");
    let run = run_ok(&mut wordcount_with_liars(
        1,
        &["cheat:1.0"],
        &[],
        &input,
        &out,
    ));
    assert_eq!(sorted_output(&out), direct_wordcount(&text));
    let s = summary(&run);
    let attempts = &s["attempts"];
    assert_eq!(attempts["banned"], 1, "the liar was banned: {attempts}");
    assert!(
        attempts["verification_copies"].as_u64().unwrap() >= 1,
        "its answer was recomputed: {attempts}"
    );
    assert!(
        !std::fs::read_to_string(out.join("part-00000"))
            .unwrap()
            .contains("tormr-forged-line"),
        "no forged line reached the output"
    );
    eprintln!("always-lying volunteer: {attempts}");
}

#[test]
fn occasional_liars_among_volunteers_do_not_change_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let text = corpus(4000, 600, 22);
    let input = write(dir.path(), "corpus.txt", &text);
    let out = dir.path().join("out");
    // Every untrusted answer is checked, so no lie can slip through.
    let run = run_ok(&mut wordcount_with_liars(
        1,
        &["cheat:0.3", "cheat:0.0"],
        &["tormr.verify.p_min=1"],
        &input,
        &out,
    ));
    assert_eq!(sorted_output(&out), direct_wordcount(&text));
    let attempts = &summary(&run)["attempts"];
    assert!(attempts["verification_copies"].as_u64().unwrap() >= 1);
    assert!(
        attempts["banned"].as_u64().unwrap() <= 1,
        "only the liar can be banned, never the honest volunteer: {attempts}"
    );
    eprintln!("occasional liar: {attempts}");
}

#[test]
fn with_replication_off_ringers_alone_catch_a_lying_volunteer() {
    let dir = tempfile::tempdir().unwrap();
    let text = corpus(4000, 600, 23);
    let input = write(dir.path(), "corpus.txt", &text);
    let out = dir.path().join("out");
    // No answer is recomputed; only the owner's ringers test the volunteers.
    let run = run_ok(&mut wordcount_with_liars(
        1,
        &["cheat:1.0", "cheat:0.0"],
        &["tormr.verify=off", "tormr.verify.ringers=2"],
        &input,
        &out,
    ));
    assert_eq!(sorted_output(&out), direct_wordcount(&text));
    let s = summary(&run);
    let attempts = &s["attempts"];
    assert_eq!(attempts["ringers_failed"], 1, "{attempts}");
    assert_eq!(attempts["banned"], 1, "only the liar: {attempts}");
    assert!(attempts["ringer_probes"].as_u64().unwrap() >= 1);
    assert_eq!(
        s["counters"]["tormr"]["ringers failed"], 1,
        "the counter agrees: {s:#}"
    );
    eprintln!("ringers, replication off: {attempts}");
}

#[test]
fn ringers_on_a_bulletin_need_a_worker_of_the_owners() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", "a b\n");
    let out = dir.path().join("out");
    let (_board, board) = bulletin(dir.path(), "bulletin", None);
    let mut cmd = tormr();
    cmd.args([
        "submit",
        "--cluster",
        &format!("tcp://{board}"),
        "--workers",
        "1",
    ])
    .args(["--state", &dir.path().join("state").display().to_string()])
    .args(["-D", "tormr.verify.ringers=1"]);
    let run = python_wordcount_flags(&mut cmd, 1, "16k")
        .args(["-input", &input.display().to_string()])
        .args(["-output", &out.display().to_string()])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(stderr(&run).contains("--arbiter"), "{}", stderr(&run));
    assert!(!out.exists());
}

#[test]
fn a_volunteer_cheating_on_one_task_in_ten_ends_banned_and_the_output_is_right() {
    let dir = tempfile::tempdir().unwrap();
    let text = corpus(16000, 600, 24);
    let input = write(dir.path(), "corpus.txt", &text);
    let out = dir.path().join("out");
    // Every answer is checked; the cheater forges its 10th, 20th, … answer,
    // so it lies once it has run ten tasks (copies included).
    let run = run_ok(&mut wordcount_with_liars(
        1,
        &["cheat:0.1", "cheat:0.0"],
        &["tormr.verify.p_min=1"],
        &input,
        &out,
    ));
    assert_eq!(sorted_output(&out), direct_wordcount(&text));
    let s = summary(&run);
    let attempts = &s["attempts"];
    let tasks: u64 = s["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["tasks"].as_u64().unwrap())
        .sum();
    assert!(
        tasks >= 30,
        "too small a job to catch a 10% cheater: {tasks} tasks"
    );
    assert_eq!(attempts["banned"], 1, "the cheater was caught: {attempts}");
    eprintln!("a 10% cheater: {tasks} tasks, {attempts}");
}
