//! JUnit XML test reports (pytest, cargo-nextest, Maven Surefire, jest-junit,
//! go-junit-report) parsed with a streaming reader, and flaky-test detection
//! across runs.
//!
//! Shapes handled: a `<testsuites>` or bare `<testsuite>` root, nested
//! `<testsuite>`s (cases belong to the innermost one), `<testcase>` with
//! `<failure>`/`<error>`/`<skipped>`, `<system-out>`/`<system-err>`, and the
//! Surefire/nextest retry elements: `<flakyFailure>`/`<flakyError>` (the test
//! passed after that many failed attempts) and `<rerunFailure>`/`<rerunError>`
//! (it kept failing on reruns). An XML declaration and a UTF-8 BOM are fine.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use quick_xml::events::{BytesStart, Event};
use serde::{Deserialize, Serialize};

/// The final status of one test case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TestStatus {
    /// Passed (possibly after retries; see `flaky_reruns`).
    Passed,
    /// An assertion failed (`<failure>`).
    Failed,
    /// An unexpected error (`<error>`).
    Error,
    /// Skipped or disabled (`<skipped>`).
    Skipped,
}

impl TestStatus {
    /// Failed or Error.
    pub fn is_failure(self) -> bool {
        matches!(self, TestStatus::Failed | TestStatus::Error)
    }
}

/// One test case from a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestCaseResult {
    /// Name of the innermost enclosing `<testsuite>` ("" if none).
    pub suite: String,
    /// The `classname` attribute ("" if absent).
    pub classname: String,
    /// The `name` attribute.
    pub name: String,
    /// The `file` attribute, when the tool writes one.
    pub file: Option<String>,
    /// Final status.
    pub status: TestStatus,
    /// The `time` attribute in milliseconds (0 when absent or invalid).
    pub duration_ms: u64,
    /// The failure/error/skip `message`, or else the first line of its text.
    pub message: Option<String>,
    /// The failure/error `type` attribute.
    pub failure_type: Option<String>,
    /// The failure/error/skip text (usually a stack trace).
    pub details: Option<String>,
    /// The case's `<system-out>`.
    pub system_out: Option<String>,
    /// The case's `<system-err>`.
    pub system_err: Option<String>,
    /// Failed attempts before a final pass (`flakyFailure`/`flakyError`).
    pub flaky_reruns: u32,
    /// Failed reruns after a failure (`rerunFailure`/`rerunError`).
    pub failed_reruns: u32,
}

impl TestCaseResult {
    /// A stable identifier: `classname::name`, or `suite::name` without a classname.
    pub fn test_id(&self) -> String {
        let scope = if self.classname.is_empty() {
            &self.suite
        } else {
            &self.classname
        };
        if scope.is_empty() {
            self.name.clone()
        } else {
            format!("{scope}::{}", self.name)
        }
    }
}

/// Totals of one `<testsuite>`, counted from the cases it directly contains.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuiteSummary {
    /// The suite's `name`.
    pub name: String,
    /// The suite's `timestamp`, as written.
    pub timestamp: Option<String>,
    /// The suite's `time` in ms, or the sum of its cases' times.
    pub duration_ms: u64,
    /// Number of cases.
    pub tests: u32,
    /// Passed cases (flaky ones included).
    pub passed: u32,
    /// Failed cases.
    pub failures: u32,
    /// Errored cases.
    pub errors: u32,
    /// Skipped cases.
    pub skipped: u32,
    /// Passed cases that needed retries.
    pub flaky: u32,
}

/// A parsed report: its suites and all its cases in document order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestReport {
    /// Suites with cases (or empty leaf suites), in document order of their end.
    pub suites: Vec<SuiteSummary>,
    /// Every test case.
    pub cases: Vec<TestCaseResult>,
}

impl TestReport {
    /// Totals over all suites.
    pub fn totals(&self) -> SuiteSummary {
        let mut t = SuiteSummary {
            name: "total".into(),
            ..Default::default()
        };
        for s in &self.suites {
            t.duration_ms += s.duration_ms;
            t.tests += s.tests;
            t.passed += s.passed;
            t.failures += s.failures;
            t.errors += s.errors;
            t.skipped += s.skipped;
            t.flaky += s.flaky;
        }
        t
    }
}

/// Why a report could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JunitError {
    /// Malformed XML, with a 1-based line and column.
    #[error("{}{line}:{column}: {message}", path_prefix(.path))]
    Xml {
        /// The file, when known.
        path: Option<PathBuf>,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// Well-formed XML that is not a JUnit report.
    #[error("{}not a JUnit report: root element is <{root}>, expected <testsuites> or <testsuite>", path_prefix(.path))]
    NotJunit {
        /// The file, when known.
        path: Option<PathBuf>,
        /// The root element found.
        root: String,
    },
    /// The report glob is invalid or escapes the workspace.
    #[error("invalid report glob {pattern:?}: {reason}")]
    Pattern {
        /// The glob.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

fn path_prefix(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!("{}:", p.display()))
        .unwrap_or_default()
}

impl JunitError {
    fn with_path(mut self, p: &Path) -> Self {
        match &mut self {
            JunitError::Xml { path, .. } | JunitError::NotJunit { path, .. } => {
                *path = Some(p.to_path_buf())
            }
            _ => {}
        }
        self
    }
}

/// 1-based line and column (in characters) of byte offset `pos` in `bytes`.
pub fn line_col(bytes: &[u8], pos: usize) -> (usize, usize) {
    let pos = pos.min(bytes.len());
    let before = &bytes[..pos];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map(|p| p + 1)
        .unwrap_or(0);
    let column = before[start..]
        .iter()
        .filter(|b| (**b & 0xC0) != 0x80)
        .count()
        + 1;
    (line, column)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Capture {
    Problem,
    Out,
    Err,
}

struct CaseBuilder {
    case: TestCaseResult,
    depth: usize,
    /// The element whose text is being collected and its depth.
    capture: Option<(Capture, usize, String)>,
    /// Depth of an ignored subtree (flaky/rerun elements, properties).
    skip_depth: Option<usize>,
}

struct SuiteBuilder {
    summary: SuiteSummary,
    declared_time: Option<u64>,
    has_child_suites: bool,
    depth: usize,
}

fn attr_map(e: &BytesStart<'_>) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for attr in e.attributes() {
        let attr = attr.map_err(|err| err.to_string())?;
        let key = String::from_utf8_lossy(attr.key.local_name().as_ref()).into_owned();
        let value = match attr.unescape_value() {
            Ok(v) => v.into_owned(),
            Err(_) => String::from_utf8_lossy(&attr.value).into_owned(),
        };
        map.insert(key, value);
    }
    Ok(map)
}

fn parse_ms(s: Option<&String>) -> Option<u64> {
    let s = s?.trim().replace(',', "");
    let secs: f64 = s.parse().ok()?;
    if secs.is_finite() && secs >= 0.0 {
        Some((secs * 1000.0).round().min(u64::MAX as f64) as u64)
    } else {
        None
    }
}

fn resolve_entity(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = if let Some(hex) = num.strip_prefix('x').or_else(|| num.strip_prefix('X')) {
            u32::from_str_radix(hex, 16).ok()?
        } else {
            num.parse().ok()?
        };
        return char::from_u32(code).filter(|c| *c != '\0');
    }
    match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => None,
    }
}

fn status_rank(s: TestStatus) -> u8 {
    match s {
        TestStatus::Passed => 0,
        TestStatus::Skipped => 1,
        TestStatus::Failed => 2,
        TestStatus::Error => 3,
    }
}

/// Parses one JUnit XML document.
pub fn parse_junit(bytes: &[u8]) -> Result<TestReport, JunitError> {
    const BOM: &[u8] = b"\xEF\xBB\xBF";
    let offset = if bytes.starts_with(BOM) { BOM.len() } else { 0 };
    let body = &bytes[offset..];
    let xml_err = |pos: u64, message: String| {
        let (line, column) = line_col(bytes, offset + pos as usize);
        JunitError::Xml {
            path: None,
            line,
            column,
            message,
        }
    };

    let mut reader = quick_xml::Reader::from_reader(body);
    reader.config_mut().check_end_names = true;
    let mut report = TestReport::default();
    // Open elements: (name, start offset).
    let mut stack: Vec<(String, u64)> = Vec::new();
    let mut suites: Vec<SuiteBuilder> = Vec::new();
    let mut case: Option<CaseBuilder> = None;
    let mut seen_root = false;

    loop {
        let pos = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| xml_err(reader.error_position(), e.to_string()))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_empty = matches!(event, Event::Empty(_));
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if !seen_root {
                    seen_root = true;
                    if name != "testsuites" && name != "testsuite" {
                        return Err(JunitError::NotJunit {
                            path: None,
                            root: name,
                        });
                    }
                }
                let attrs = attr_map(e).map_err(|m| xml_err(pos, m))?;
                let depth = stack.len() + 1;
                if !is_empty {
                    stack.push((name.clone(), pos));
                }
                if let Some(cb) = case.as_mut() {
                    if cb.skip_depth.is_some() || cb.capture.is_some() {
                        // Inside an ignored subtree or captured text: nested markup is ignored.
                    } else if depth == cb.depth + 1 {
                        match name.as_str() {
                            "failure" | "error" | "skipped" => {
                                let status = match name.as_str() {
                                    "failure" => TestStatus::Failed,
                                    "error" => TestStatus::Error,
                                    _ => TestStatus::Skipped,
                                };
                                if status_rank(status) > status_rank(cb.case.status) {
                                    cb.case.status = status;
                                    if let Some(m) = attrs.get("message").filter(|m| !m.is_empty())
                                    {
                                        cb.case.message = Some(m.clone());
                                    }
                                    if let Some(t) = attrs.get("type").filter(|t| !t.is_empty()) {
                                        cb.case.failure_type = Some(t.clone());
                                    }
                                }
                                if !is_empty {
                                    cb.capture = Some((Capture::Problem, depth, String::new()));
                                }
                            }
                            "flakyFailure" | "flakyError" => {
                                cb.case.flaky_reruns += 1;
                                if !is_empty {
                                    cb.skip_depth = Some(depth);
                                }
                            }
                            "rerunFailure" | "rerunError" => {
                                cb.case.failed_reruns += 1;
                                if !is_empty {
                                    cb.skip_depth = Some(depth);
                                }
                            }
                            "system-out" | "system-err" if !is_empty => {
                                let kind = if name == "system-out" {
                                    Capture::Out
                                } else {
                                    Capture::Err
                                };
                                cb.capture = Some((kind, depth, String::new()));
                            }
                            _ => {
                                if !is_empty {
                                    cb.skip_depth = Some(depth);
                                }
                            }
                        }
                    }
                    continue;
                }
                match name.as_str() {
                    "testsuite" => {
                        if let Some(parent) = suites.last_mut() {
                            parent.has_child_suites = true;
                        }
                        let sb = SuiteBuilder {
                            summary: SuiteSummary {
                                name: attrs.get("name").cloned().unwrap_or_default(),
                                timestamp: attrs.get("timestamp").cloned(),
                                ..Default::default()
                            },
                            declared_time: parse_ms(attrs.get("time")),
                            has_child_suites: false,
                            depth,
                        };
                        if is_empty {
                            finish_suite(sb, &mut report);
                        } else {
                            suites.push(sb);
                        }
                    }
                    "testcase" => {
                        let get = |k: &str| attrs.get(k).cloned();
                        let tc = TestCaseResult {
                            suite: suites
                                .last()
                                .map(|s| s.summary.name.clone())
                                .unwrap_or_default(),
                            classname: get("classname").unwrap_or_default(),
                            name: get("name").unwrap_or_default(),
                            file: get("file"),
                            status: TestStatus::Passed,
                            duration_ms: parse_ms(attrs.get("time")).unwrap_or(0),
                            message: None,
                            failure_type: None,
                            details: None,
                            system_out: None,
                            system_err: None,
                            flaky_reruns: 0,
                            failed_reruns: 0,
                        };
                        let cb = CaseBuilder {
                            case: tc,
                            depth,
                            capture: None,
                            skip_depth: None,
                        };
                        if is_empty {
                            finish_case(cb, &mut suites, &mut report);
                        } else {
                            case = Some(cb);
                        }
                    }
                    _ => {}
                }
            }
            Event::End(_) => {
                let depth = stack.len();
                stack.pop();
                if let Some(cb) = case.as_mut() {
                    if cb.skip_depth == Some(depth) {
                        cb.skip_depth = None;
                    } else if cb.capture.as_ref().is_some_and(|c| c.1 == depth) {
                        if let Some((kind, _, text)) = cb.capture.take() {
                            let text = text.trim_matches(['\n', '\r']).to_string();
                            let slot = match kind {
                                Capture::Problem => &mut cb.case.details,
                                Capture::Out => &mut cb.case.system_out,
                                Capture::Err => &mut cb.case.system_err,
                            };
                            if slot.is_none() && !text.trim().is_empty() {
                                *slot = Some(text);
                            }
                        }
                    } else if cb.depth == depth
                        && let Some(cb) = case.take()
                    {
                        finish_case(cb, &mut suites, &mut report);
                    }
                    continue;
                }
                if suites.last().is_some_and(|s| s.depth == depth)
                    && let Some(sb) = suites.pop()
                {
                    finish_suite(sb, &mut report);
                }
            }
            Event::Text(t) => {
                if let Some((_, _, buf)) = capturing(&mut case, stack.len()) {
                    match t.xml10_content() {
                        Ok(s) => buf.push_str(&s),
                        Err(_) => buf.push_str(&String::from_utf8_lossy(&t)),
                    }
                }
            }
            Event::CData(t) => {
                if let Some((_, _, buf)) = capturing(&mut case, stack.len()) {
                    buf.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::GeneralRef(r) => {
                if let Some((_, _, buf)) = capturing(&mut case, stack.len()) {
                    let name: Cow<'_, str> = String::from_utf8_lossy(&r);
                    match resolve_entity(&name) {
                        Some(c) => buf.push(c),
                        None => {
                            buf.push('&');
                            buf.push_str(&name);
                            buf.push(';');
                        }
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if let Some((name, pos)) = stack.last() {
        return Err(xml_err(
            *pos,
            format!("unexpected end of file: <{name}> is never closed"),
        ));
    }
    if !seen_root {
        return Err(xml_err(body.len() as u64, "no root element".into()));
    }
    Ok(report)
}

fn capturing(
    case: &mut Option<CaseBuilder>,
    depth: usize,
) -> Option<&mut (Capture, usize, String)> {
    let cb = case.as_mut()?;
    if cb.skip_depth.is_some() {
        return None;
    }
    cb.capture.as_mut().filter(|c| c.1 == depth)
}

fn finish_case(cb: CaseBuilder, suites: &mut [SuiteBuilder], report: &mut TestReport) {
    let mut tc = cb.case;
    if tc.message.is_none() && tc.status != TestStatus::Passed {
        tc.message = tc
            .details
            .as_deref()
            .and_then(|d| d.lines().map(str::trim).find(|l| !l.is_empty()))
            .map(str::to_string);
    }
    if let Some(s) = suites.last_mut() {
        let sum = &mut s.summary;
        sum.tests += 1;
        sum.duration_ms += tc.duration_ms;
        match tc.status {
            TestStatus::Passed => {
                sum.passed += 1;
                if tc.flaky_reruns > 0 {
                    sum.flaky += 1;
                }
            }
            TestStatus::Failed => sum.failures += 1,
            TestStatus::Error => sum.errors += 1,
            TestStatus::Skipped => sum.skipped += 1,
        }
    }
    report.cases.push(tc);
}

fn finish_suite(sb: SuiteBuilder, report: &mut TestReport) {
    if sb.has_child_suites && sb.summary.tests == 0 {
        return; // a pure container: its children are reported
    }
    let mut summary = sb.summary;
    if let Some(t) = sb.declared_time {
        summary.duration_ms = t;
    }
    report.suites.push(summary);
}

/// Reads and parses a report file; errors name the file.
pub fn parse_junit_file(path: &Path) -> Result<TestReport, JunitError> {
    let bytes = std::fs::read(path).map_err(|source| JunitError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_junit(&bytes).map_err(|e| e.with_path(path))
}

/// One report file found by [`collect_reports`]: its path relative to the
/// workspace and its parse result.
pub type CollectedReport = (PathBuf, Result<TestReport, JunitError>);

/// Finds the reports matching `pattern` (relative to `workspace`, sorted) and
/// parses each; a broken file yields its own error, not the others'.
pub fn collect_reports(
    workspace: &Path,
    pattern: &str,
) -> Result<Vec<CollectedReport>, JunitError> {
    let bad = |reason: &str| JunitError::Pattern {
        pattern: pattern.to_string(),
        reason: reason.to_string(),
    };
    if Path::new(pattern).is_absolute() || pattern.split('/').any(|c| c == "..") {
        return Err(bad("must be relative to the workspace and stay inside it"));
    }
    let ws = workspace
        .to_str()
        .ok_or_else(|| bad("workspace path is not UTF-8"))?;
    let full = format!("{}/{}", glob::Pattern::escape(ws), pattern);
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let paths = glob::glob_with(&full, options).map_err(|e| bad(e.msg))?;
    let mut out = Vec::new();
    for entry in paths {
        let path = match entry {
            Ok(p) => p,
            Err(e) => {
                let p = e.path().to_path_buf();
                let rel = p.strip_prefix(workspace).unwrap_or(&p).to_path_buf();
                out.push((
                    rel,
                    Err(JunitError::Io {
                        path: p,
                        source: e.into(),
                    }),
                ));
                continue;
            }
        };
        if !path.is_file() {
            continue;
        }
        let rel = path.strip_prefix(workspace).unwrap_or(&path).to_path_buf();
        let parsed = parse_junit_file(&path).map_err(|e| e.with_path(&rel));
        out.push((rel, parsed));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// One test's result in one run, as kept by the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestObservation {
    /// Stable test identifier (e.g. [`TestCaseResult::test_id`]).
    pub test_id: String,
    /// The commit (or tree) that was tested.
    pub commit: String,
    /// The pipeline run.
    pub run_id: String,
    /// Final status in that run.
    pub status: TestStatus,
    /// Failed attempts before a pass in that run.
    pub flaky_reruns: u32,
    /// When it ran (unix ms); orders observations.
    pub at_ms: i64,
}

/// Why a test is considered flaky.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FlakyReason {
    /// It passed after failing within one run.
    PassedOnRetry,
    /// It both passed and failed on this commit.
    MixedOnCommit {
        /// The commit.
        commit: String,
    },
}

/// A flaky test with its evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlakyTest {
    /// The test.
    pub test_id: String,
    /// `flaky_runs / runs` over the window.
    pub flake_rate: f64,
    /// Runs in the window where the test had at least one failed attempt
    /// (a final failure or a pass after retries).
    pub flaky_runs: u32,
    /// Runs in the window where the test ran (skips excluded).
    pub runs: u32,
    /// Time of the most recent evidence (unix ms).
    pub last_seen_ms: i64,
    /// The runs that show the flakiness, oldest first.
    pub evidence_run_ids: Vec<String>,
    /// Every reason found.
    pub reasons: Vec<FlakyReason>,
}

/// Finds flaky tests: a test is flaky when on one commit it both passed and
/// failed, or when it passed on retry. Only each test's latest `window`
/// non-skipped observations count (0 = all). Sorted by flake rate, then id.
pub fn detect_flaky(observations: &[TestObservation], window: usize) -> Vec<FlakyTest> {
    let mut by_test: BTreeMap<&str, Vec<&TestObservation>> = BTreeMap::new();
    for o in observations {
        if o.status != TestStatus::Skipped {
            by_test.entry(o.test_id.as_str()).or_default().push(o);
        }
    }
    let mut out = Vec::new();
    for (test_id, mut obs) in by_test {
        obs.sort_by(|a, b| (a.at_ms, &a.run_id).cmp(&(b.at_ms, &b.run_id)));
        if window > 0 && obs.len() > window {
            obs.drain(..obs.len() - window);
        }
        let mut reasons = BTreeSet::new();
        let mut evidence: Vec<&TestObservation> = Vec::new();
        for o in &obs {
            if o.status == TestStatus::Passed && o.flaky_reruns > 0 {
                reasons.insert(FlakyReason::PassedOnRetry);
                evidence.push(o);
            }
        }
        let mut by_commit: BTreeMap<&str, Vec<&TestObservation>> = BTreeMap::new();
        for o in &obs {
            by_commit.entry(o.commit.as_str()).or_default().push(o);
        }
        for (commit, runs) in by_commit {
            let passed = runs.iter().any(|o| o.status == TestStatus::Passed);
            let failed = runs.iter().any(|o| o.status.is_failure());
            if passed && failed {
                reasons.insert(FlakyReason::MixedOnCommit {
                    commit: commit.to_string(),
                });
                evidence.extend(runs);
            }
        }
        if reasons.is_empty() {
            continue;
        }
        evidence.sort_by(|a, b| (a.at_ms, &a.run_id).cmp(&(b.at_ms, &b.run_id)));
        let mut evidence_run_ids: Vec<String> = Vec::new();
        for o in &evidence {
            if !evidence_run_ids.contains(&o.run_id) {
                evidence_run_ids.push(o.run_id.clone());
            }
        }
        let flaky_runs = obs
            .iter()
            .filter(|o| o.status.is_failure() || o.flaky_reruns > 0)
            .count() as u32;
        let runs = obs.len() as u32;
        out.push(FlakyTest {
            test_id: test_id.to_string(),
            flake_rate: f64::from(flaky_runs) / f64::from(runs.max(1)),
            flaky_runs,
            runs,
            last_seen_ms: evidence.iter().map(|o| o.at_ms).max().unwrap_or(0),
            evidence_run_ids,
            reasons: reasons.into_iter().collect(),
        });
    }
    out.sort_by(|a, b| {
        b.flake_rate
            .total_cmp(&a.flake_rate)
            .then_with(|| a.test_id.cmp(&b.test_id))
    });
    out
}
