//! The owner's status page and metrics, rendered from a [`JobStatus`].

use http::{HeaderValue, Response, header};
use std::fmt::Write;
use tormr_core::ids::TaskKind;
use tormr_core::wire::job::{JobState, JobStatus};
use tormr_net::body::{self, Body};

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn state_text(state: &JobState) -> String {
    match state {
        JobState::Running => "running".into(),
        JobState::Succeeded => "succeeded".into(),
        JobState::Failed { task, reason, .. } => format!("failed: task {task}: {reason}"),
    }
}

/// A self-refreshing HTML page: phases, workers, counters.
pub fn html(status: &JobStatus) -> Response<Body> {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html><html><head><meta charset=utf-8><meta http-equiv=refresh content=2><title>tormr {job}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1.5em}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}th{{background:#eee}}td:first-child{{text-align:left}}</style>\
         </head><body><h1>Job {job}</h1><p>State: <b>{state}</b></p><h2>Phases</h2><table><tr><th>step</th><th>phase</th><th>done</th><th>running</th><th>total</th></tr>",
        job = escape(status.job.as_str()),
        state = escape(&state_text(&status.state)),
    );
    for p in &status.phases {
        let kind = match p.kind {
            Some(TaskKind::Map) => "map",
            Some(TaskKind::Reduce) => "reduce",
            None => "-",
        };
        let total = if p.open {
            format!("{}+", p.total)
        } else {
            p.total.to_string()
        };
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{kind}</td><td>{}</td><td>{}</td><td>{total}</td></tr>",
            p.step, p.done, p.running
        );
    }
    page.push_str("</table><h2>Workers</h2><table><tr><th>pseudonym</th><th>alive</th><th>running</th><th>done</th><th>failed</th><th>input buckets</th></tr>");
    for w in &status.workers {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&w.pseudonym),
            if w.alive { "yes" } else { "no" },
            w.running,
            w.done,
            w.failed,
            w.input_buckets
        );
    }
    page.push_str(
        "</table><h2>Counters</h2><table><tr><th>group</th><th>counter</th><th>value</th></tr>",
    );
    for (group, names) in &status.counters.0 {
        for (name, value) in names {
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{value}</td></tr>",
                escape(group),
                escape(name)
            );
        }
    }
    page.push_str("</table></body></html>");
    let mut resp = Response::new(body::full(page));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

fn metric_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Prometheus text exposition of the job's progress and counters.
pub fn metrics(status: &JobStatus) -> Response<Body> {
    let mut out = String::new();
    out.push_str("# TYPE tormr_job_tasks gauge\n");
    for p in &status.phases {
        let kind = if p.kind == Some(TaskKind::Reduce) {
            "reduce"
        } else {
            "map"
        };
        let _ = writeln!(
            out,
            "tormr_job_tasks{{step=\"{}\",phase=\"{kind}\",state=\"done\"}} {}",
            p.step, p.done
        );
        let _ = writeln!(
            out,
            "tormr_job_tasks{{step=\"{}\",phase=\"{kind}\",state=\"running\"}} {}",
            p.step, p.running
        );
        let _ = writeln!(
            out,
            "tormr_job_tasks{{step=\"{}\",phase=\"{kind}\",state=\"total\"}} {}",
            p.step, p.total
        );
    }
    let _ = writeln!(
        out,
        "# TYPE tormr_job_workers gauge\ntormr_job_workers {}",
        status.workers.iter().filter(|w| w.alive).count()
    );
    out.push_str("# TYPE tormr_job_counter gauge\n");
    for (group, names) in &status.counters.0 {
        for (name, value) in names {
            let _ = writeln!(
                out,
                "tormr_job_counter{{group=\"{}\",name=\"{}\"}} {value}",
                metric_name(group),
                metric_name(name)
            );
        }
    }
    let mut resp = Response::new(body::full(out));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}
