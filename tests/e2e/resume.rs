//! The owner's `tormr submit` killed (SIGKILL) mid-map and mid-reduce and
//! continued with `tormr job resume`: the output is still right, and
//! finished tasks are not run again.

use crate::owner_run::*;
use crate::util::*;

#[test]
fn a_job_master_killed_mid_map_and_mid_reduce_resumes_without_redoing_finished_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let text = corpus(2500, 400, 77);
    let input = write(dir.path(), "corpus.txt", &text);
    let output = dir.path().join("out");
    let state = dir.path().join("state");
    let argv = slow_wordcount(dir.path(), "local[2]", &input, &output, &state);

    let (first, _) = owner(dir.path(), "submit", &argv);
    let (map, _) = kill_when(first, |(done, total), _| {
        total > 4 && done >= 3 && done < total
    });
    assert!(!output.exists(), "a killed owner wrote output");

    let (second, _) = owner(dir.path(), "resume-1", &resume_argv(&state));
    let (map2, reduce) = kill_when(second, |(done, total), (rdone, rtotal)| {
        done == total && total > 0 && rdone >= 1 && rdone < rtotal
    });
    let found = tasks_found_done(&dir.path().join("resume-1.log"));
    assert!(
        found >= map.0,
        "the first resume found {found} finished task(s), {} were done at the kill",
        map.0
    );
    assert!(map2.0 == map2.1 && reduce.0 >= 1);

    let summary = finish(dir.path(), &state, &output, &text, map2.1 + reduce.0);
    assert_eq!(summary["resumed"]["resumes"], 2, "{summary:#}");
}

#[test]
fn workers_of_a_crashed_job_master_reconnect_to_the_resumed_one() {
    let dir = tempfile::tempdir().unwrap();
    let (_board, board) = bulletin(dir.path(), "bulletin", None);
    let workers: Vec<Spawned> = (0..2)
        .map(|i| worker(dir.path(), &format!("worker-{i}"), &board))
        .collect();
    let text = corpus(2500, 400, 78);
    let input = write(dir.path(), "corpus.txt", &text);
    let output = dir.path().join("out");
    let state = dir.path().join("state");
    let mut argv = slow_wordcount(
        dir.path(),
        &format!("tcp://{board}"),
        &input,
        &output,
        &state,
    );
    argv.extend(["--workers".into(), "2".into(), "--wait".into(), "2m".into()]);

    let (first, _) = owner(dir.path(), "submit", &argv);
    let (map, _) = kill_when(first, |(done, total), _| {
        total > 4 && done >= 3 && done < total
    });

    let summary = finish(dir.path(), &state, &output, &text, map.0);
    let kept = summary["resumed"]["sessions_kept"].as_u64().unwrap();
    assert_eq!(kept, 2, "{summary:#}");
    // The workers carried on in the same job: nobody had to be matched anew.
    let back: usize = workers
        .iter()
        .map(|w| {
            std::fs::read_to_string(&w.log)
                .unwrap_or_default()
                .matches("joined job")
                .count()
        })
        .sum();
    assert_eq!(
        back,
        2,
        "each worker joined once and carried on after the restart\n{}",
        workers
            .iter()
            .map(Spawned::log_tail)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
