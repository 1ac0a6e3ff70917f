//! Job code in containers (`--image`): the same job gives the same bytes in a
//! Docker container as in a plain process, and nothing is left behind.
//! Needs a running Docker engine; the example image is built offline by
//! `examples/images/native-wordcount.sh`.

use crate::util::*;
use std::process::Command;

fn containers_of(image: &str) -> usize {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("ancestor={image}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

fn wordcount(cmd: &mut Command) -> &mut Command {
    cmd.args([
        "-mapper",
        "wc-map",
        "-reducer",
        "wc-reduce",
        "-combiner",
        "wc-reduce",
        "-numReduceTasks",
        "3",
        "-D",
        "tormr.bucket.bytes=64k",
    ])
}

#[test]
fn native_wordcount_in_containers_matches_the_process_executor() {
    let image = example_image("native-wordcount.sh");
    let dir = tempfile::tempdir().unwrap();
    let text = corpus(30_000, 4000, 11);
    let input = write(dir.path(), "corpus.txt", &text);

    let in_containers = dir.path().join("docker");
    let out = run_ok(
        wordcount(&mut submit(2, &input, &in_containers)).args(["--image", &image, "--json"]),
    );
    let tasks = summary(&out)["tasks"].clone();
    assert_eq!(
        sorted_output(&in_containers),
        direct_wordcount(&text),
        "{tasks}"
    );

    let as_processes = dir.path().join("process");
    run_ok(
        wordcount(&mut submit(2, &input, &as_processes))
            .arg("-file")
            .arg(example_bin("wc-map"))
            .arg("-file")
            .arg(example_bin("wc-reduce")),
    );
    let bytes = |d: &std::path::Path| -> Vec<Vec<u8>> {
        parts(d).iter().map(|p| std::fs::read(p).unwrap()).collect()
    };
    assert_eq!(bytes(&in_containers), bytes(&as_processes));
    assert_eq!(containers_of(&image), 0, "containers were left behind");
}

#[test]
fn a_missing_image_is_refused_clearly_in_local_and_tor_mode() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.txt", "a b\n");
    let out = wordcount(&mut submit(1, &input, &dir.path().join("out")))
        .args(["--image", "tormr-no-such-image:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("no image \"tormr-no-such-image:0\""), "{err}");
    assert!(err.contains("build or load it first"), "{err}");
    assert!(!dir.path().join("out").exists());

    // Over Tor too, before any Tor connection is made.
    let out = tormr()
        .args([
            "submit",
            "--cluster",
            &format!("tor://{}.onion", "a".repeat(56)),
        ])
        .args([
            "--workers",
            "2",
            "--image",
            "tormr-no-such-image:0",
            "-input",
        ])
        .arg(&input)
        .arg("-output")
        .arg(dir.path().join("out2"))
        .args(["-mapper", "cat"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no image"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("bootstrap"), "{}", stderr(&out));
}

#[test]
fn python_streaming_and_mrjob_in_containers_match_the_process_executor() {
    require_mrjob();
    let image = example_image("python.sh");
    let dir = tempfile::tempdir().unwrap();
    let text = corpus(6000, 800, 13);
    let input = write(dir.path(), "corpus.txt", &text);
    let bytes = |d: &std::path::Path| -> Vec<Vec<u8>> {
        parts(d).iter().map(|p| std::fs::read(p).unwrap()).collect()
    };

    // Python Streaming word count.
    let streaming = |out: &std::path::Path| {
        let mut cmd = submit(2, &input, out);
        python_wordcount_flags(&mut cmd, 2, "32k");
        cmd
    };
    let docker_out = dir.path().join("py-docker");
    run_ok(streaming(&docker_out).args(["--image", &image]));
    let process_out = dir.path().join("py-process");
    run_ok(&mut streaming(&process_out));
    assert_eq!(sorted_output(&docker_out), direct_wordcount(&text));
    assert_eq!(bytes(&docker_out), bytes(&process_out));

    // The multi-step mrjob example (mrjob comes from the image, not the host).
    let script = repo().join("examples/mrjob/mr_top_words.py");
    let mrjob = |out: &std::path::Path| {
        let mut cmd = submit(2, &input, out);
        cmd.arg("--mrjob")
            .arg(&script)
            .args(["-D", "tormr.bucket.bytes=32k"]);
        cmd
    };
    let docker_out = dir.path().join("mr-docker");
    run_ok(mrjob(&docker_out).args(["--image", &image, "--", "--top", "9"]));
    let process_out = dir.path().join("mr-process");
    run_ok(mrjob(&process_out).args(["--", "--top", "9"]));
    assert_eq!(sorted_output(&docker_out).len(), 9);
    assert_eq!(bytes(&docker_out), bytes(&process_out));
    assert_eq!(containers_of(&image), 0, "containers were left behind");
}
