//! Pachyderm pipelines (`--pachyderm`): the example word-count pair (a map
//! pipeline in JSON, a reduce pipeline in camelCase YAML) runs in containers
//! of the Python example image and matches a direct count; two datums writing
//! one path fail the job; a spec with a field outside the subset is refused
//! by name. Needs a running Docker engine (the image is built offline).

use crate::util::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The example specs name `tormr-example/python:latest`.
fn python_latest() -> String {
    let image = example_image("python.sh");
    let status = Command::new("docker")
        .args(["tag", &image, "tormr-example/python:latest"])
        .status()
        .unwrap();
    assert!(status.success());
    image
}

fn spec(name: &str) -> PathBuf {
    repo().join("examples/pachyderm").join(name)
}

fn pipeline(spec: &Path, input: &Path, output: &Path) -> Command {
    let mut cmd = submit(2, input, output);
    cmd.arg("--pachyderm").arg(spec);
    cmd
}

/// Every line of every file under `dir`, sorted.
fn all_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        lines.extend(text.lines().map(str::to_owned));
    }
    lines.sort();
    lines
}

#[test]
fn the_pachyderm_wordcount_pair_matches_a_direct_count() {
    let image = python_latest();
    let dir = tempfile::tempdir().unwrap();
    let texts = dir.path().join("texts");
    std::fs::create_dir_all(&texts).unwrap();
    let mut all = String::new();
    for (i, seed) in [3u64, 5, 7].iter().enumerate() {
        let text = corpus(400, 30, *seed);
        write(&texts, &format!("part{i}.txt"), &text);
        all.push_str(&text);
    }
    let counts = dir.path().join("counts");
    run_ok(&mut pipeline(&spec("wordcount-map.json"), &texts, &counts));
    // The map pipeline's layout: one folder per word, one file per datum
    // holding the word's count in that file.
    let part0 = std::fs::read_to_string(texts.join("part0.txt")).unwrap();
    let word = part0.split_whitespace().next().unwrap();
    let in_part0 = part0.split_whitespace().filter(|w| *w == word).count();
    let written = std::fs::read_to_string(counts.join(word).join("part0.txt")).unwrap();
    assert_eq!(written.trim(), in_part0.to_string());
    assert!(!counts.join("_SUCCESS").exists());

    let totals = dir.path().join("totals");
    run_ok(&mut pipeline(
        &spec("wordcount-reduce.yaml"),
        &counts,
        &totals,
    ));
    assert_eq!(all_lines(&totals), direct_wordcount(&all));
    let left = Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("ancestor={image}"))
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "containers were left behind");
}

#[test]
fn two_datums_writing_one_path_fail_and_unknown_fields_are_refused() {
    python_latest();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    write(&input, "a.txt", "a\n");
    write(&input, "b.txt", "b\n");
    let clash = write(
        dir.path(),
        "clash.json",
        r#"{"pipeline": {"name": "clash"},
            "transform": {"image": "tormr-example/python:latest",
                          "cmd": ["python3", "-c", "open('/pfs/out/same', 'w').write('x')"]},
            "input": {"pfs": {"repo": "in", "glob": "/*"}}}"#,
    );
    let out = dir.path().join("out");
    let ran = pipeline(&clash, &input, &out).output().unwrap();
    assert!(!ran.status.success());
    assert!(
        stderr(&ran).contains("two datums wrote /pfs/out/same"),
        "{}",
        stderr(&ran)
    );
    assert!(!out.exists(), "a clashing pipeline must leave no output");

    let extra = write(
        dir.path(),
        "extra.yaml",
        "pipeline: {name: x}\ntransform: {image: i, cmd: [true]}\n\
         input: {pfs: {repo: in, glob: /}}\negress: {URL: 's3://bucket'}\n",
    );
    let ran = pipeline(&extra, &input, &dir.path().join("out2"))
        .output()
        .unwrap();
    assert_eq!(ran.status.code(), Some(2), "{}", stderr(&ran));
    assert!(stderr(&ran).contains("egress"), "{}", stderr(&ran));
}
