//! Markup of the portal's CI pages: run lists and the run page.
//!
//! Job results (`JobRow::result`, the agent's `pave_pipeline::runner::JobReport`)
//! are read field by field from JSON, so a job without a report yet, or an
//! older or partial report, still renders.

use super::layout::page;
use super::runs::PAGE_LOG_LINES;
use crate::auth::Principal;
use crate::views::ref_name;
use chrono::{DateTime, Utc};
use maud::{Markup, PreEscaped, html};
use pave_store::{JobRow, LogLineRow, RunRow};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Styles of the CI pages (status colours, job graph, log).
const STYLE: &str = r#"
.st { display:inline-block; padding:0 .5rem; border-radius:999px; font-size:.8rem; border:1px solid; white-space:nowrap; }
.st-success { color:#116329; background:#dafbe1; border-color:#8fd19e; }
.st-failure, .st-timed_out { color:#a40e26; background:#ffebe9; border-color:#ff8182; }
.st-running { color:#0550ae; background:#ddf4ff; border-color:#80ccff; }
.st-cancelled { color:#7d4e00; background:#fff8c5; border-color:#d4a72c; }
.st-queued, .st-waiting, .st-skipped, .st-finished, .st-unknown { color:#57606a; background:#f6f8fa; border-color:#d0d7de; }
.graph { display:flex; gap:2.5rem; overflow-x:auto; padding:.5rem 0 1rem; align-items:flex-start; }
.graph .col { display:flex; flex-direction:column; gap:.8rem; min-width:12rem; }
.graph .col-title { color:var(--muted); font-size:.75rem; text-transform:uppercase; letter-spacing:.04em; }
.job { display:block; border:1px solid var(--line); border-left:5px solid #d0d7de; border-radius:6px; padding:.45rem .7rem; text-decoration:none; color:var(--fg); background:var(--bg); }
.job:hover { background:var(--soft); }
.job .name { font-weight:600; }
.job .meta { color:var(--muted); font-size:.8rem; }
.job.st-b-success { border-left-color:#2da44e; } .job.st-b-failure { border-left-color:#cf222e; }
.job.st-b-running { border-left-color:#0969da; } .job.st-b-cancelled { border-left-color:#bf8700; }
.jobsec { margin-top:1.4rem; }
.jobsec h3 { font-size:1rem; margin:0 0 .4rem; display:flex; gap:.6rem; align-items:center; }
.cache-hit { color:#116329; font-weight:600; }
.num { text-align:right; font-variant-numeric:tabular-nums; }
.mono, .log { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.log { background:#0d1117; color:#e6edf3; padding:.8rem 1rem; border-radius:6px; font-size:.8rem; line-height:1.45; overflow-x:auto; white-space:pre-wrap; word-break:break-all; max-height:40rem; overflow-y:auto; }
.log .line.stderr { color:#ffa198; } .log .line.system { color:#8b949e; font-style:italic; }
.log .prefix { color:#7d8590; user-select:none; }
.live-note { font-size:.85rem; }
"#;

/// Follows the log with `EventSource` while the run is live: appends each
/// line (as text, never HTML). At `end` it loads the page once more and
/// swaps in its `#run-state` (header and jobs with their final statuses),
/// keeping the log as it is; if that fails it reloads the whole page.
const LIVE_SCRIPT: &str = r#"
(function () {
  var log = document.getElementById('log');
  if (!log || !window.EventSource) { return; }
  var names = {};
  document.querySelectorAll('[data-job-id]').forEach(function (el) {
    names[el.getAttribute('data-job-id')] = el.getAttribute('data-job-key');
  });
  var empty = document.getElementById('log-empty');
  var es = new EventSource(log.getAttribute('data-stream'));
  es.onmessage = function (e) {
    var l;
    try { l = JSON.parse(e.data); } catch (err) { return; }
    if (empty) { empty.remove(); empty = null; }
    var stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    var row = document.createElement('div');
    row.className = 'line live ' + (l.stream || '');
    row.setAttribute('data-seq', l.seq);
    var prefix = document.createElement('span');
    prefix.className = 'prefix';
    prefix.textContent = '[' + (names[l.job_id] || '?') + ' \u203a ' + (l.step || '') + '] ';
    row.appendChild(prefix);
    row.appendChild(document.createTextNode(l.text));
    log.appendChild(row);
    if (stick) { log.scrollTop = log.scrollHeight; }
  };
  es.addEventListener('end', function () {
    es.close();
    var note = document.getElementById('live-note');
    if (note) { note.textContent = 'The run has finished.'; }
    fetch(window.location.href, { credentials: 'same-origin' })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, 'text/html').getElementById('run-state');
        var current = document.getElementById('run-state');
        if (!fresh || !current) { throw new Error('no run state'); }
        current.replaceWith(document.importNode(fresh, true));
      })
      .catch(function () { window.location.reload(); });
  });
})();
"#;

/// `success`, `failure` ... for finished runs and jobs, else their status.
fn state_word(status: &str, outcome: Option<&str>) -> String {
    match outcome {
        Some(o) if status == "finished" || status == "skipped" => o.to_string(),
        _ => status.to_string(),
    }
}

/// A CSS-class-safe form of a status word.
fn class_word(word: &str) -> &str {
    match word {
        "success" | "failure" | "timed_out" | "running" | "cancelled" | "queued" | "waiting"
        | "skipped" | "finished" => word,
        _ => "unknown",
    }
}

/// A coloured status pill.
fn status_pill(word: &str) -> Markup {
    html! { span class={ "st st-" (class_word(word)) } { (word.replace('_', " ")) } }
}

fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `2024-05-01 12:00:03 UTC` (or the text as stored when it does not parse).
fn time(t: Option<&str>) -> Markup {
    match t {
        None => html! { span.muted { "—" } },
        Some(raw) => match parse_time(raw) {
            Some(parsed) => {
                html! { time datetime=(raw) { (parsed.format("%Y-%m-%d %H:%M:%S UTC")) } }
            }
            None => html! { (raw) },
        },
    }
}

/// `850 ms`, `12.3 s`, `4m 05s`, `1h 02m`.
pub fn duration_text(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m {:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h {:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

/// From `start` to `end` (or to now, while it runs).
fn span_ms(start: Option<&str>, end: Option<&str>) -> Option<i64> {
    let start = parse_time(start?)?;
    let end = match end {
        Some(e) => parse_time(e)?,
        None => Utc::now(),
    };
    Some((end - start).num_milliseconds())
}

fn duration_cell(start: Option<&str>, end: Option<&str>) -> Markup {
    match span_ms(start, end) {
        Some(ms) => html! { (duration_text(ms)) @if end.is_none() { span.muted { " so far" } } },
        None => html! { span.muted { "—" } },
    }
}

/// `main` for `refs/heads/main`, `v1` for `refs/tags/v1`.
fn short_ref(git_ref: &str) -> &str {
    git_ref
        .strip_prefix("refs/heads/")
        .or_else(|| git_ref.strip_prefix("refs/tags/"))
        .unwrap_or(git_ref)
}

fn short_sha(sha: &str) -> String {
    sha.chars().take(12).collect()
}

fn bytes_text(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn styles() -> Markup {
    html! { style { (PreEscaped(STYLE)) } }
}

/// A table of runs, newest first; `None` when there are none.
pub fn runs_table(runs: &[RunRow]) -> Markup {
    html! {
        table {
            thead { tr { th { "Run" } th { "Status" } th { "Ref" } th { "Commit" } th { "Trigger" } th { "Created" } th { "Duration" } } }
            tbody {
                @for r in runs {
                    tr {
                        td { a href={ "/runs/" (r.id) } { "#" (r.number) } }
                        td { (status_pill(&state_word(&r.status, r.outcome.as_deref()))) }
                        td.mono { (short_ref(&r.git_ref)) }
                        td.mono title=(r.sha) { (short_sha(&r.sha)) }
                        td { (r.trigger) " · " span.muted { (r.actor) } }
                        td { (time(Some(&r.created_at))) }
                        td { (duration_cell(r.started_at.as_deref(), r.finished_at.as_deref())) }
                    }
                }
            }
        }
    }
}

/// The "Runs" section of a service page: the latest runs and a link to all.
pub fn service_runs_section(service: &str, runs: &[RunRow], shown: usize) -> Markup {
    html! {
        (styles())
        h2 { "Runs" }
        @if runs.is_empty() {
            p.muted { "No runs yet. Start one with " code { "pave trigger " (service) } "." }
        } @else {
            (runs_table(runs))
            @if runs.len() >= shown {
                p { a href={ "/services/" (service) "/runs" } { "All runs →" } }
            }
        }
    }
}

/// `/services/{name}/runs`.
pub fn service_runs(viewer: Option<&Principal>, service: &str, runs: &[RunRow]) -> Markup {
    page(
        &format!("Runs of {service}"),
        viewer,
        html! {
            (styles())
            p.muted { a href="/" { "Services" } " / " a href={ "/services/" (service) } { (service) } " / runs" }
            h1 { "Runs of " (service) }
            @if runs.is_empty() {
                p.muted { "No runs yet. Start one with " code { "pave trigger " (service) } "." }
            } @else {
                (runs_table(runs))
            }
        },
    )
}

/// Each job's column in the graph: 0 for jobs that need nothing, else one
/// more than the deepest job it needs (needs on unknown jobs, or cycles,
/// count as depth 0 so bad data still renders).
fn depths(jobs: &[JobRow]) -> Vec<usize> {
    let index: HashMap<&str, usize> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.key.as_str(), i))
        .collect();
    let mut memo: Vec<Option<usize>> = vec![None; jobs.len()];
    fn depth(
        i: usize,
        jobs: &[JobRow],
        index: &HashMap<&str, usize>,
        memo: &mut Vec<Option<usize>>,
        visiting: &mut Vec<bool>,
    ) -> usize {
        if let Some(d) = memo[i] {
            return d;
        }
        if visiting[i] {
            return 0;
        }
        visiting[i] = true;
        let d = jobs[i]
            .needs
            .iter()
            .filter_map(|n| index.get(n.as_str()).copied())
            .map(|n| depth(n, jobs, index, memo, visiting) + 1)
            .max()
            .unwrap_or(0);
        visiting[i] = false;
        memo[i] = Some(d);
        d
    }
    let mut visiting = vec![false; jobs.len()];
    (0..jobs.len())
        .map(|i| depth(i, jobs, &index, &mut memo, &mut visiting))
        .collect()
}

fn job_anchor(job: &JobRow) -> String {
    format!("job-{}", job.id)
}

fn job_graph(jobs: &[JobRow]) -> Markup {
    let depths = depths(jobs);
    let mut columns: BTreeMap<usize, Vec<&JobRow>> = BTreeMap::new();
    for (job, depth) in jobs.iter().zip(depths) {
        columns.entry(depth).or_default().push(job);
    }
    html! {
        div.graph {
            @for (depth, column) in &columns {
                div.col {
                    div.col-title { "Stage " (depth + 1) }
                    @for job in column {
                        @let word = state_word(&job.status, job.outcome.as_deref());
                        a class={ "job st-b-" (class_word(&word)) } href={ "#" (job_anchor(job)) } {
                            div.name { (job.key) }
                            div { (status_pill(&word)) " " span.meta { (duration_cell(job.started_at.as_deref(), job.finished_at.as_deref())) } }
                            @if !job.needs.is_empty() {
                                div.meta { "needs " (job.needs.join(", ")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn steps_table(steps: &[Value]) -> Markup {
    html! {
        table {
            thead { tr { th { "Step" } th { "Status" } th.num { "Duration" } th { "Cache" } } }
            tbody {
                @for step in steps {
                    @let label = str_of(step, "label").or_else(|| str_of(step, "name")).unwrap_or("?");
                    @let status = str_of(step, "status").or_else(|| str_of(step, "outcome")).unwrap_or("unknown");
                    tr {
                        td {
                            (label)
                            @if let Some(m) = str_of(step, "message") { div.muted { (m) } }
                        }
                        td {
                            (status_pill(status))
                            @if let Some(code) = step.get("exit_code").and_then(Value::as_i64) {
                                @if code != 0 { span.muted { " exit " (code) } }
                            }
                        }
                        td.num { @match step.get("duration_ms").and_then(Value::as_i64) { Some(ms) => (duration_text(ms)), None => span.muted { "—" } } }
                        td {
                            @match str_of(step, "cache") {
                                Some("hit") => span.cache-hit { "hit" },
                                Some("miss") => span { "miss" },
                                _ => span.muted { "—" },
                            }
                        }
                    }
                }
            }
        }
    }
}

fn artifacts_table(artifacts: &[Value]) -> Markup {
    html! {
        table {
            thead { tr { th { "Artifact" } th { "Digest" } th.num { "Size" } } }
            tbody {
                @for a in artifacts {
                    tr {
                        td { (str_of(a, "name").unwrap_or("?")) }
                        td.mono title=(str_of(a, "digest").unwrap_or("")) {
                            (str_of(a, "digest").map(|d| d.chars().take(19).collect::<String>() + "…").unwrap_or_default())
                        }
                        td.num { @if let Some(n) = a.get("size").and_then(Value::as_u64) { (bytes_text(n)) } }
                    }
                }
            }
        }
    }
}

/// `classname::name` (or `suite::name`), as the flaky-test tools name tests.
fn test_id(t: &Value) -> String {
    let name = str_of(t, "name").unwrap_or("?");
    let scope = str_of(t, "classname")
        .filter(|c| !c.is_empty())
        .or_else(|| str_of(t, "suite").filter(|s| !s.is_empty()));
    match scope {
        Some(scope) => format!("{scope}::{name}"),
        None => name.to_string(),
    }
}

fn tests_block(tests: &[Value]) -> Markup {
    let count = |status: &str| {
        tests
            .iter()
            .filter(|t| str_of(t, "status") == Some(status))
            .count()
    };
    let flaky = tests
        .iter()
        .filter(|t| t.get("flaky_reruns").and_then(Value::as_u64).unwrap_or(0) > 0)
        .count();
    let failed: Vec<&Value> = tests
        .iter()
        .filter(|t| matches!(str_of(t, "status"), Some("failed" | "error")))
        .collect();
    html! {
        p {
            strong { (tests.len()) " tests: " }
            span.st.st-success { (count("passed")) " passed" } " "
            @if count("failed") > 0 { span.st.st-failure { (count("failed")) " failed" } " " }
            @if count("error") > 0 { span.st.st-failure { (count("error")) " errors" } " " }
            @if count("skipped") > 0 { span.st.st-skipped { (count("skipped")) " skipped" } " " }
            @if flaky > 0 { span.st.st-cancelled { (flaky) " passed on retry" } }
        }
        @if !failed.is_empty() {
            table {
                thead { tr { th { "Failed test" } th { "Message" } } }
                tbody {
                    @for t in &failed {
                        tr {
                            td.mono { (test_id(t)) }
                            td { (str_of(t, "message").unwrap_or("")) }
                        }
                    }
                }
            }
        }
    }
}

fn job_section(job: &JobRow) -> Markup {
    let word = state_word(&job.status, job.outcome.as_deref());
    let list = |key: &str| -> Vec<Value> {
        job.result
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (steps, artifacts, tests) = (list("steps"), list("artifacts"), list("tests"));
    let message = str_of(&job.result, "message").map(str::to_string);
    html! {
        section.jobsec id=(job_anchor(job)) data-job-id=(job.id) data-job-key=(job.key) {
            h3 {
                (job.key) (status_pill(&word))
                span.muted { (duration_cell(job.started_at.as_deref(), job.finished_at.as_deref())) }
            }
            p.muted {
                @if !job.needs.is_empty() { "needs " (job.needs.join(", ")) " · " }
                "attempt " (job.attempt)
                @if let Some(agent) = &job.lease_owner { " · agent " (agent) }
            }
            @if let Some(reason) = &job.reason { p { (reason) } }
            @if let Some(m) = &message { @if job.reason.as_deref() != Some(m.as_str()) { p { (m) } } }
            @if steps.is_empty() {
                p.muted { @if job.is_terminal() { "No step results." } @else { "Steps appear here when the job has finished." } }
            } @else {
                (steps_table(&steps))
            }
            @if !artifacts.is_empty() {
                h4 { "Artifacts" }
                (artifacts_table(&artifacts))
            }
            @if !tests.is_empty() {
                h4 { "Tests" }
                (tests_block(&tests))
            }
        }
    }
}

fn log_block(run: &RunRow, jobs: &[JobRow], lines: &[LogLineRow]) -> Markup {
    let names: HashMap<&str, &str> = jobs
        .iter()
        .map(|j| (j.id.as_str(), j.key.as_str()))
        .collect();
    let live = run.status != "finished";
    let last_seq = lines.last().map_or(0, |l| l.seq);
    let stream = format!("/runs/{}/stream?after={last_seq}", run.id);
    html! {
        h2 { "Log" }
        @if live {
            p.muted.live-note id="live-note" {
                "The run is " (run.status) "; new lines appear as they are written."
                noscript { " (JavaScript is off: reload the page to see more.)" }
            }
        }
        @if lines.len() as i64 >= PAGE_LOG_LINES {
            p.muted { "The first " (PAGE_LOG_LINES) " lines are shown; read the whole log with " code { "pave logs " (run.id) } "." }
        }
        div.log id="log" data-stream=(stream) {
            @if lines.is_empty() {
                div.muted id="log-empty" { @if live { "No output yet." } @else { "No output." } }
            }
            @for l in lines {
                div class={ "line " (class_word_stream(&l.stream)) } data-seq=(l.seq) {
                    span.prefix { "[" (names.get(l.job_id.as_str()).copied().unwrap_or("?")) " › " (l.step) "] " }
                    (l.text)
                }
            }
        }
        @if live { script { (PreEscaped(LIVE_SCRIPT)) } }
    }
}

fn class_word_stream(stream: &str) -> &str {
    match stream {
        "stdout" | "stderr" | "system" => stream,
        _ => "other",
    }
}

/// `/runs/{id}`.
pub fn run(
    viewer: Option<&Principal>,
    run: &RunRow,
    jobs: &[JobRow],
    lines: &[LogLineRow],
) -> Markup {
    let service = ref_name(&run.service_key);
    let word = state_word(&run.status, run.outcome.as_deref());
    page(
        &format!("{service} #{}", run.number),
        viewer,
        html! {
            (styles())
            p.muted {
                a href="/" { "Services" } " / " a href={ "/services/" (service) } { (service) }
                " / " a href={ "/services/" (service) "/runs" } { "runs" } " / #" (run.number)
            }
            div id="run-state" {
                h1 { (service) " #" (run.number) " " (status_pill(&word)) }
                dl.facts {
                    dt { "Ref" } dd.mono { (run.git_ref) }
                    dt { "Commit" } dd.mono { (run.sha) }
                    dt { "Trigger" } dd { (run.trigger) " by " (run.actor) }
                    dt { "Created" } dd { (time(Some(&run.created_at))) }
                    dt { "Started" } dd { (time(run.started_at.as_deref())) }
                    dt { "Finished" } dd { (time(run.finished_at.as_deref())) }
                    dt { "Duration" } dd { (duration_cell(run.started_at.as_deref(), run.finished_at.as_deref())) }
                    @if run.cancel_requested && run.status != "finished" { dt { "Cancel" } dd { "requested" } }
                }
                h2 { "Jobs" }
                @if jobs.is_empty() {
                    p.muted { "This run has no jobs." }
                } @else {
                    (job_graph(jobs))
                    @for job in jobs { (job_section(job)) }
                }
            }
            (log_block(run, jobs, lines))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(key: &str, needs: &[&str]) -> JobRow {
        JobRow {
            id: format!("id-{key}"),
            run_id: "r".into(),
            position: 0,
            key: key.into(),
            job_id: key.into(),
            name: key.into(),
            needs: needs.iter().map(|s| s.to_string()).collect(),
            spec: Value::Null,
            status: "waiting".into(),
            outcome: None,
            reason: None,
            attempt: 0,
            cancel_requested: false,
            lease_owner: None,
            lease_expires_at: None,
            queued_at: None,
            started_at: None,
            finished_at: None,
            outputs: Value::Null,
            result: Value::Null,
        }
    }

    #[test]
    fn depths_follow_the_longest_chain_and_survive_bad_needs() {
        let jobs = [
            job("build", &[]),
            job("lint", &[]),
            job("test", &["build"]),
            job("deploy", &["test", "lint", "nope"]),
            job("a", &["b"]),
            job("b", &["a"]),
        ];
        let d = depths(&jobs);
        assert_eq!(&d[..4], &[0, 0, 1, 2]);
        assert!(d[4] <= 2 && d[5] <= 2);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration_text(850), "850 ms");
        assert_eq!(duration_text(12_340), "12.3 s");
        assert_eq!(duration_text(245_000), "4m 05s");
        assert_eq!(duration_text(3_720_000), "1h 02m");
        assert_eq!(bytes_text(512), "512 B");
        assert_eq!(bytes_text(2048), "2.0 KiB");
    }

    #[test]
    fn a_job_without_a_report_renders() {
        let mut j = job("build", &[]);
        j.result = serde_json::json!({ "steps": "not a list", "tests": [{ "name": 3 }] });
        let html = job_section(&j).into_string();
        assert!(html.contains("build"));
    }
}
