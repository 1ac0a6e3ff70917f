//! Bad input gets a clear one-line error, the right exit code, and no panic.

use crate::util::*;

fn no_panic(out: &std::process::Output) {
    let err = stderr(out);
    assert!(!err.contains("panicked"), "tormr panicked:\n{err}");
}

#[test]
fn missing_input_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = submit(1, &dir.path().join("nope.txt"), &dir.path().join("out"))
        .args(["-mapper", "cat"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    no_panic(&out);
}

#[test]
fn malformed_flags_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", "a\n");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["-mapper", "cat", "-numReduceTasks", "many"],
            "invalid value",
        ),
        (vec!["-mapper", "cat", "-D", "novalue"], "KEY=VALUE"),
        (
            vec![
                "-mapper",
                "cat",
                "-D",
                "mapreduce.partition.keycomparator.options=-k2nr",
            ],
            "keycomparator",
        ),
        (
            vec!["-mapper", "cat", "-D", "mapreduce.map.maxattempts=0"],
            "maxattempts",
        ),
        (
            vec!["-mapper", "cat", "-partitioner", "com.example.Mine"],
            "partitioner",
        ),
        (vec!["-reducer", "cat"], "-mapper"),
        (
            vec!["-mapper", "cat", "--bogus-flag"],
            "unexpected argument",
        ),
        (
            vec![
                "-mapper",
                "cat",
                "--arbiter",
                "euNCFcI8gjfOFxlOLAw96tLM4RFTQMw5oLFhzxMArbg",
            ],
            "drop --arbiter",
        ),
    ];
    for (args, expect) in cases {
        let out = submit(1, &input, &dir.path().join("out"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expect),
            "{args:?}: expected {expect:?} in:\n{}",
            stderr(&out)
        );
        no_panic(&out);
    }
    let out = tormr()
        .args(["submit", "--cluster", "local[0]", "-input"])
        .arg(&input)
        .args(["-output", "x", "-mapper", "cat"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn an_existing_output_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", "a\n");
    let existing = dir.path().join("out");
    std::fs::create_dir(&existing).unwrap();
    write(&existing, "keep.txt", "precious");
    let out = submit(1, &input, &existing)
        .args(["-mapper", "cat"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(existing.join("keep.txt")).unwrap(),
        "precious",
        "nothing may be lost"
    );
}

#[test]
fn a_failing_mapper_is_retried_then_fails_the_job_with_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", "a\nb\n");
    let out = submit(2, &input, &dir.path().join("out"))
        .args([
            "-mapper",
            "sh -c 'echo Traceback: boom in the mapper >&2; exit 3'",
            "-D",
            "mapreduce.map.maxattempts=3",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("boom in the mapper"),
        "the mapper's stderr must be shown:\n{err}"
    );
    assert!(err.contains("exited with status 3"), "{err}");
    let s = summary(&out);
    assert_eq!(s["state"], "failed");
    assert_eq!(
        s["attempts"]["failed"], 3,
        "retried up to the attempt limit"
    );
    assert!(
        !dir.path().join("out").exists(),
        "no output folder for a failed job"
    );
    no_panic(&out);
}

#[test]
fn a_failing_reducer_fails_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", "a\tb\n");
    let out = submit(1, &input, &dir.path().join("out"))
        .args([
            "-mapper",
            "cat",
            "-reducer",
            "sh -c 'cat >/dev/null; echo reducer broke >&2; exit 1'",
            "-D",
            "mapreduce.reduce.maxattempts=2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("reducer broke"), "{}", stderr(&out));
}

#[test]
fn a_mapper_that_never_ends_is_killed_at_its_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", "a\n");
    let started = std::time::Instant::now();
    let out = submit(1, &input, &dir.path().join("out"))
        .args([
            "-mapper",
            "sleep 600",
            "-D",
            "mapreduce.task.timeout=1500",
            "-D",
            "mapreduce.map.maxattempts=1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("time limit"), "{}", stderr(&out));
    assert!(started.elapsed().as_secs() < 60);
}

#[test]
fn mappers_writing_no_tab_or_binary_junk_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", "x\ny\n");
    let out_dir = dir.path().join("out");
    // No tab at all: the whole line is the key.
    run_ok(submit(2, &input, &out_dir).args(["-mapper", "cat", "-reducer", "cat"]));
    assert_eq!(sorted_output(&out_dir), ["x", "y"]);
    // Binary junk, including bytes that are not UTF-8 and carriage returns.
    let junk = dir.path().join("junk");
    run_ok(submit(2, &input, &junk).args([
        "-mapper",
        "printf '\\377\\001\\tA\\r\\n\\000z\\n'",
        "-reducer",
        "cat",
    ]));
    let bytes: Vec<u8> = parts(&junk)
        .iter()
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(bytes.windows(3).any(|w| w == b"\xff\x01\t"), "{bytes:?}");
    assert!(bytes.windows(2).any(|w| w == b"\0z"), "{bytes:?}");
}

#[test]
fn empty_input_gives_empty_parts() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "empty.txt", "");
    let out = dir.path().join("out");
    run_ok(submit(2, &input, &out).args([
        "-mapper",
        "cat",
        "-reducer",
        "cat",
        "-numReduceTasks",
        "2",
    ]));
    assert_eq!(parts(&out).len(), 2);
    assert!(sorted_output(&out).is_empty());
    let empty_dir = dir.path().join("emptydir");
    std::fs::create_dir(&empty_dir).unwrap();
    let out2 = dir.path().join("out2");
    run_ok(submit(1, &empty_dir, &out2).args(["-mapper", "cat"]));
    assert!(sorted_output(&out2).is_empty());
}
