//! Word count, the reference job: Python Streaming scripts and the native
//! Rust programs, against a direct count; and the same output whatever the
//! number of workers.

use crate::util::*;

fn python_wordcount(
    workers: u32,
    reduces: u32,
    input: &std::path::Path,
    output: &std::path::Path,
) -> std::process::Command {
    let ex = repo().join("examples/wordcount");
    let mut cmd = submit(workers, input, output);
    cmd.args([
        "-mapper",
        "python3 mapper.py",
        "-reducer",
        "python3 reducer.py",
        "-combiner",
        "python3 reducer.py",
    ])
    .args(["-numReduceTasks", &reduces.to_string()])
    .arg("-file")
    .arg(ex.join("mapper.py"))
    .arg("-file")
    .arg(ex.join("reducer.py"))
    .args(["-D", "tormr.bucket.bytes=64k"]);
    cmd
}

#[test]
fn python_streaming_wordcount_matches_a_direct_count() {
    let dir = tempfile::tempdir().unwrap();
    let text = corpus(6000, 800, 1);
    let input = write(dir.path(), "corpus.txt", &text);
    let out = dir.path().join("out");
    let run = run_ok(python_wordcount(2, 3, &input, &out).arg("--json"));
    assert_eq!(sorted_output(&out), direct_wordcount(&text));
    let parts = parts(&out);
    assert_eq!(parts.len(), 3, "one part file per reduce task");
    for p in &parts {
        let lines: Vec<String> = std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        let mut sorted = lines.clone();
        sorted.sort();
        assert_eq!(lines, sorted, "{} is not sorted by key", p.display());
    }
    let s = summary(&run);
    assert_eq!(s["state"], "succeeded");
    assert!(
        s["input_buckets"].as_u64().unwrap() > 2,
        "the input should span several buckets"
    );
    let framework = &s["counters"]["Map-Reduce Framework"];
    assert_eq!(framework["Map input records"], 6000);
    assert!(
        framework["Combine input records"].as_i64().unwrap()
            > framework["Combine output records"].as_i64().unwrap()
    );
    assert_eq!(
        framework["Reduce output records"].as_u64().unwrap() as usize,
        direct_wordcount(&text).len()
    );
}

#[test]
fn one_two_and_three_workers_give_byte_identical_output() {
    let dir = tempfile::tempdir().unwrap();
    let text = corpus(20_000, 3000, 2);
    let input = write(dir.path(), "corpus.txt", &text);
    let mut outputs = Vec::new();
    for workers in 1..=3 {
        let out = dir.path().join(format!("out{workers}"));
        run_ok(
            submit(workers, &input, &out)
                .args([
                    "-mapper",
                    "wc-map",
                    "-reducer",
                    "wc-reduce",
                    "-combiner",
                    "wc-reduce",
                    "-numReduceTasks",
                    "4",
                ])
                .arg("-file")
                .arg(example_bin("wc-map"))
                .arg("-file")
                .arg(example_bin("wc-reduce"))
                .args(["-D", "tormr.bucket.bytes=32k"]),
        );
        let bytes: Vec<Vec<u8>> = parts(&out)
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        outputs.push((workers, bytes));
        assert_eq!(
            sorted_output(&out),
            direct_wordcount(&text),
            "{workers} worker(s)"
        );
    }
    for (workers, bytes) in &outputs[1..] {
        assert_eq!(
            bytes, &outputs[0].1,
            "{workers} workers differ from 1 worker"
        );
    }
    // The Python version agrees byte for byte with the native one.
    let py = dir.path().join("py");
    run_ok(&mut python_wordcount(2, 4, &input, &py));
    let py_bytes: Vec<Vec<u8>> = parts(&py)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(py_bytes, outputs[0].1);
}

#[test]
fn map_only_jobs_write_one_part_per_map() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..3000)
        .map(|i| format!("{} line {i}\n", if i % 7 == 0 { "ERROR" } else { "info" }))
        .collect();
    let input = write(dir.path(), "log.txt", &text);
    let out = dir.path().join("out");
    run_ok(submit(2, &input, &out).args([
        "-mapper",
        "grep ERROR",
        "-reducer",
        "NONE",
        "-D",
        "tormr.bucket.bytes=16k",
    ]));
    let expected: Vec<String> = {
        let mut v: Vec<String> = text
            .lines()
            .filter(|l| l.contains("ERROR"))
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    assert_eq!(sorted_output(&out), expected);
    assert!(parts(&out).len() > 1);
}

#[test]
fn streaming_environment_reaches_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    write(&docs, "a.txt", "one\ntwo\n");
    write(&docs, "b.txt", "three\n");
    let out = dir.path().join("out");
    let mapper = "sh -c 'while read l; do printf \"%s\\t%s %s %s\\n\" \"$l\" \"$mapreduce_map_input_file\" \"$my_setting\" \"$GREETING\"; done'";
    run_ok(submit(2, &docs, &out).args([
        "-mapper",
        mapper,
        "-reducer",
        "NONE",
        "-D",
        "my.setting=42",
        "-cmdenv",
        "GREETING=hi",
    ]));
    assert_eq!(
        sorted_output(&out),
        [
            "one\tdocs/a.txt 42 hi",
            "three\tdocs/b.txt 42 hi",
            "two\tdocs/a.txt 42 hi"
        ]
    );
}
