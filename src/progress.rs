//! What the owner sees while a job runs: progress bars on a terminal, plain
//! lines otherwise (logs, CI), nothing on stdout when a JSON summary is asked.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use tormr_core::ids::TaskKind;
use tormr_core::wire::job::PhaseStatus;

pub struct Ui {
    multi: Option<MultiProgress>,
    bars: Mutex<BTreeMap<(u32, u8), ProgressBar>>,
    reported: Mutex<BTreeMap<(u32, u8), u32>>,
}

fn bytes_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:>10} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

fn tasks_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} tasks {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn phase_name(p: &PhaseStatus) -> String {
    let kind = if p.kind == Some(TaskKind::Reduce) {
        "reduce"
    } else {
        "map"
    };
    format!("s{} {kind}", p.step)
}

impl Ui {
    pub fn new() -> Self {
        let multi = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Ui {
            multi,
            bars: Mutex::new(BTreeMap::new()),
            reported: Mutex::new(BTreeMap::new()),
        }
    }

    /// A line of narration ("posting the cluster request…").
    pub fn say(&self, line: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    /// A byte-count bar (upload, download); a no-op handle when not on a terminal.
    pub fn bytes_bar(&self, name: &str, total: u64) -> ProgressBar {
        match &self.multi {
            Some(m) => {
                let bar = m.add(
                    ProgressBar::new(total)
                        .with_style(bytes_style())
                        .with_prefix(name.to_owned()),
                );
                bar.tick();
                bar
            }
            None => ProgressBar::hidden(),
        }
    }

    /// Shows the phases' progress.
    pub fn phases(&self, phases: &[PhaseStatus]) {
        for p in phases {
            if p.total == 0 && !p.open && p.done == 0 {
                continue;
            }
            let key = (
                p.step,
                if p.kind == Some(TaskKind::Reduce) {
                    1
                } else {
                    0
                },
            );
            match &self.multi {
                Some(m) => {
                    let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
                    let bar = bars.entry(key).or_insert_with(|| {
                        m.add(
                            ProgressBar::new(0)
                                .with_style(tasks_style())
                                .with_prefix(phase_name(p)),
                        )
                    });
                    bar.set_length(p.total.into());
                    bar.set_position(p.done.into());
                    bar.set_message(if p.open {
                        "(input still arriving)".to_string()
                    } else {
                        format!("{} running", p.running)
                    });
                    if p.done == p.total && !p.open && p.total > 0 {
                        bar.finish_with_message("done");
                    }
                }
                None => {
                    // Plain output: one line each time a phase passes a quarter.
                    if p.open || p.total == 0 {
                        continue;
                    }
                    let quarter = p.done * 4 / p.total.max(1);
                    let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
                    let last = reported.entry(key).or_insert(u32::MAX);
                    if *last != quarter {
                        *last = quarter;
                        eprintln!("{}: {}/{} tasks done", phase_name(p), p.done, p.total);
                    }
                }
            }
        }
    }

    pub fn clear(&self) {
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }
}
