//! JUnit report parsing (fixtures in the shape each tool writes) and flaky detection.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use pave_pipeline::junit::{
    FlakyReason, JunitError, TestCaseResult, TestObservation, TestReport, TestStatus,
    collect_reports, detect_flaky, parse_junit, parse_junit_file,
};
use proptest::prelude::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/junit")
}

fn load(name: &str) -> TestReport {
    parse_junit_file(&fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn case<'a>(r: &'a TestReport, name: &str) -> &'a TestCaseResult {
    r.cases
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case {name}"))
}

#[test]
fn pytest_junitxml() {
    let r = load("pytest.xml");
    assert_eq!(r.cases.len(), 7);
    let t = r.totals();
    assert_eq!(
        (t.tests, t.passed, t.failures, t.errors, t.skipped),
        (7, 3, 1, 1, 2)
    );
    assert_eq!(r.suites.len(), 1);
    assert_eq!(r.suites[0].name, "pytest");
    assert_eq!(
        r.suites[0].timestamp.as_deref(),
        Some("2024-05-14T09:21:07.183614")
    );
    assert_eq!(r.suites[0].duration_ms, 412);

    let f = case(&r, "test_create_order");
    assert_eq!(f.status, TestStatus::Failed);
    assert_eq!(f.classname, "tests.test_api");
    assert_eq!(f.file.as_deref(), Some("tests/test_api.py"));
    assert_eq!(f.duration_ms, 15);
    assert_eq!(
        f.message.as_deref(),
        Some("AssertionError: assert 500 == 201\n +  where 500 = <Response [500]>.status_code")
    );
    let details = f.details.as_deref().unwrap();
    assert!(details.starts_with("client = <FlaskClient <Flask 'app'>>"));
    assert!(details.contains(">       assert resp.status_code == 201"));
    assert_eq!(f.test_id(), "tests.test_api::test_create_order");

    let e = case(&r, "test_migrate");
    assert_eq!(e.status, TestStatus::Error);
    assert!(
        e.message
            .as_deref()
            .unwrap()
            .contains("\"ConnectionRefusedError")
    );

    let s = case(&r, "test_delete[admin]");
    assert_eq!(s.status, TestStatus::Skipped);
    assert_eq!(s.message.as_deref(), Some("needs admin token"));
    assert_eq!(s.failure_type.as_deref(), Some("pytest.skip"));
    assert_eq!(case(&r, "test_xfail_known").status, TestStatus::Skipped);

    let out = case(&r, "test_slugify[Hello World-hello-world]");
    assert_eq!(out.status, TestStatus::Passed);
    assert!(
        out.system_out
            .as_deref()
            .unwrap()
            .contains("slugify('Hello World')")
    );
    assert_eq!(
        case(&r, "test_slugify[Ünïcödé-unicode]").status,
        TestStatus::Passed
    );
}

#[test]
fn nextest_with_retries() {
    let r = load("nextest.xml");
    assert_eq!(r.suites.len(), 2);
    assert_eq!(r.suites[0].name, "pave-store");
    assert_eq!(r.suites[0].flaky, 1);
    assert_eq!(r.suites[1].name, "pave-server::api");
    assert_eq!(r.suites[1].failures, 1);

    let flaky = case(&r, "db::tests::claim_is_atomic");
    assert_eq!(flaky.status, TestStatus::Passed);
    assert_eq!((flaky.flaky_reruns, flaky.failed_reruns), (1, 0));
    assert_eq!(
        flaky.system_out, None,
        "the retry's output is not the case's"
    );
    assert_eq!(flaky.test_id(), "pave-store::db::tests::claim_is_atomic");

    let failed = case(&r, "webhook_signature_rejects_replay");
    assert_eq!(failed.status, TestStatus::Failed);
    assert_eq!((failed.flaky_reruns, failed.failed_reruns), (0, 2));
    assert_eq!(failed.failure_type.as_deref(), Some("test failure"));
    assert_eq!(
        failed.message.as_deref(),
        Some(
            "thread 'webhook_signature_rejects_replay' panicked at crates/server/tests/api.rs:88:5:"
        )
    );
    assert!(failed.system_out.as_deref().unwrap().contains("FAILED"));
    assert!(
        failed
            .system_err
            .as_deref()
            .unwrap()
            .contains("expected 401")
    );
    assert_eq!(failed.duration_ms, 1002);
}

#[test]
fn surefire_flaky_and_rerun_failures() {
    let r = load("TEST-com.example.orders.OrderServiceTest.xml");
    assert_eq!(r.cases.len(), 5);
    assert_eq!(r.suites.len(), 1);
    let s = &r.suites[0];
    assert_eq!(s.name, "com.example.orders.OrderServiceTest");
    assert_eq!(s.duration_ms, 1_284_500, "Surefire's thousands separator");
    assert_eq!(
        (s.tests, s.passed, s.failures, s.skipped, s.flaky),
        (5, 3, 1, 1, 2)
    );
    let c = case(&r, "retriesPaymentGateway");
    assert_eq!((c.status, c.flaky_reruns), (TestStatus::Passed, 1));
    assert_eq!(c.system_out, None);
    let c = case(&r, "reservesStock");
    assert_eq!((c.status, c.flaky_reruns), (TestStatus::Passed, 2));
    let c = case(&r, "cancelsShippedOrder");
    assert_eq!((c.status, c.failed_reruns), (TestStatus::Failed, 2));
    assert_eq!(
        c.failure_type.as_deref(),
        Some("org.opentest4j.AssertionFailedError")
    );
    assert!(
        c.details
            .as_deref()
            .unwrap()
            .contains("OrderServiceTest.java:91")
    );
    assert!(
        c.system_out
            .as_deref()
            .unwrap()
            .contains("cancel order 1842")
    );
    let c = case(&r, "refundsPartially");
    assert_eq!(c.status, TestStatus::Skipped);
    assert_eq!(
        c.message.as_deref(),
        Some("Refunds are disabled in this profile")
    );
}

#[test]
fn jest_junit() {
    let r = load("jest-junit.xml");
    assert_eq!(r.cases.len(), 5);
    let t = r.totals();
    assert_eq!((t.passed, t.failures, t.skipped), (3, 1, 1));
    let c = case(&r, "cart reducer removes the last item");
    assert_eq!(c.status, TestStatus::Failed);
    assert_eq!(c.suite, "cart reducer");
    // jest-junit writes no message attribute: the first line of the text stands in.
    assert_eq!(
        c.message.as_deref(),
        Some("Error: expect(received).toEqual(expected) // deep equality")
    );
    assert!(
        c.details
            .as_deref()
            .unwrap()
            .contains("\"items\": Array []")
    );
    assert_eq!(
        case(&r, "cart reducer applies coupons").status,
        TestStatus::Skipped
    );
    assert_eq!(case(&r, "api client retries on 503").duration_ms, 1011);
}

#[test]
fn go_junit_report() {
    let r = load("go-junit-report.xml");
    assert_eq!(r.cases.len(), 5);
    assert_eq!(r.suites.len(), 2);
    let c = case(&r, "TestTotal");
    assert_eq!(c.status, TestStatus::Failed);
    assert_eq!(c.message.as_deref(), Some("Failed"));
    assert_eq!(
        c.details.as_deref(),
        Some("    cart_test.go:42: Total() = 1999, want 2099")
    );
    assert_eq!(case(&r, "TestAdd/empty_cart").status, TestStatus::Passed);
    let c = case(&r, "TestRefund");
    assert_eq!(c.status, TestStatus::Skipped);
    assert_eq!(c.suite, "github.com/acme/checkout/internal/pay");
}

#[test]
fn nested_suites_bom_and_declaration() {
    let r = load("nested-bom.xml");
    assert_eq!(r.cases.len(), 3);
    let c = case(&r, "price > formatting > uses € for EUR");
    assert_eq!(c.suite, "formatting", "innermost suite");
    assert_eq!(case(&r, "top-level test").suite, "src/price.test.ts");
    // Leaf suite and the outer suite with a direct case; "price" is a pure container.
    let names: Vec<&str> = r.suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["formatting", "src/price.test.ts"]);
    assert_eq!(r.totals().tests, 3);
}

#[test]
fn bare_testsuite_root_with_empty_cases() {
    let r = parse_junit(br#"<testsuite name="s"><testcase name="a"/><testcase name="b" time="nope"></testcase></testsuite>"#).unwrap();
    assert_eq!(r.cases.len(), 2);
    assert_eq!(r.cases[1].duration_ms, 0);
    assert_eq!(r.cases[0].test_id(), "s::a");
}

fn xml_error(bytes: &[u8]) -> (usize, usize, String) {
    match parse_junit(bytes) {
        Err(JunitError::Xml {
            line,
            column,
            message,
            ..
        }) => (line, column, message),
        other => panic!("expected an XML error, got {other:?}"),
    }
}

#[test]
fn malformed_xml_reports_line_and_column() {
    // Mismatched end tag on line 3.
    let (line, col, msg) = xml_error(
        b"<testsuites>\n  <testsuite name=\"x\">\n    <testcase name=\"a\"></testsuite>\n</testsuites>",
    );
    assert_eq!(line, 3, "{msg}");
    assert!(col > 1, "{col}");
    // Truncated file: the unclosed element is named, with its position.
    let (line, col, msg) =
        xml_error(b"<?xml version=\"1.0\"?>\n<testsuites>\n  <testsuite name=\"x\">\n");
    assert_eq!((line, col), (3, 3), "{msg}");
    assert!(msg.contains("<testsuite> is never closed"), "{msg}");
    // Broken attribute, with a BOM in front (columns do not count it).
    let (line, _, _) = xml_error(b"\xEF\xBB\xBF<testsuite>\n<testcase name=\"a></testsuite>");
    assert!(line >= 2);
    // Errors name the file.
    let dir = std::env::temp_dir().join(format!("pave-junit-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.xml");
    std::fs::write(&f, "<testsuite>\n<testcase>").unwrap();
    let err = parse_junit_file(&f).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{}:2:1:", f.display())), "{err}");
    let _ = std::fs::remove_dir_all(&dir);

    assert!(matches!(
        parse_junit(b"<html><body/></html>"),
        Err(JunitError::NotJunit { .. })
    ));
    assert!(parse_junit(b"").is_err());
    assert!(parse_junit(b"   ").is_err());
}

#[test]
fn collect_reports_by_glob() {
    static N: AtomicU64 = AtomicU64::new(0);
    let ws = std::env::temp_dir().join(format!(
        "pave-junit-collect-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(ws.join("reports/unit")).unwrap();
    std::fs::copy(
        fixtures().join("pytest.xml"),
        ws.join("reports/unit/py.xml"),
    )
    .unwrap();
    std::fs::copy(fixtures().join("jest-junit.xml"), ws.join("reports/js.xml")).unwrap();
    std::fs::write(ws.join("reports/broken.xml"), "<testsuite>").unwrap();
    std::fs::write(ws.join("reports/notes.txt"), "x").unwrap();
    let found = collect_reports(&ws, "reports/**/*.xml").unwrap();
    let paths: Vec<String> = found.iter().map(|(p, _)| p.display().to_string()).collect();
    assert_eq!(
        paths,
        vec![
            "reports/broken.xml",
            "reports/js.xml",
            "reports/unit/py.xml"
        ]
    );
    assert!(
        found[0]
            .1
            .as_ref()
            .unwrap_err()
            .to_string()
            .starts_with("reports/broken.xml:1:1:")
    );
    assert_eq!(found[1].1.as_ref().unwrap().cases.len(), 5);
    assert_eq!(found[2].1.as_ref().unwrap().cases.len(), 7);
    assert!(collect_reports(&ws, "nothing/*.xml").unwrap().is_empty());
    assert!(matches!(
        collect_reports(&ws, "../*.xml"),
        Err(JunitError::Pattern { .. })
    ));
    let _ = std::fs::remove_dir_all(&ws);
}

fn all_fixture_bytes() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(fixtures())
        .unwrap()
        .flatten()
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_junit(&bytes);
    }

    #[test]
    fn mutated_reports_never_panic(
        which in 0usize..6,
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
    ) {
        let all = all_fixture_bytes();
        let mut bytes = all[which % all.len()].clone();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        let cut = cut.index(bytes.len() + 1);
        let _ = parse_junit(&bytes[..cut]);
        let _ = parse_junit(&bytes);
    }
}

fn obs(
    test: &str,
    commit: &str,
    run: &str,
    status: TestStatus,
    retries: u32,
    at: i64,
) -> TestObservation {
    TestObservation {
        test_id: test.into(),
        commit: commit.into(),
        run_id: run.into(),
        status,
        flaky_reruns: retries,
        at_ms: at,
    }
}

#[test]
fn flaky_detection_table() {
    use TestStatus::*;
    struct Case {
        name: &'static str,
        obs: Vec<TestObservation>,
        window: usize,
        want: Vec<(&'static str, f64, Vec<&'static str>, i64)>,
    }
    let cases = vec![
        Case {
            name: "always passing is not flaky",
            obs: vec![
                obs("t", "c1", "r1", Passed, 0, 1),
                obs("t", "c2", "r2", Passed, 0, 2),
            ],
            window: 0,
            want: vec![],
        },
        Case {
            name: "fail then fixed on a new commit is not flaky",
            obs: vec![
                obs("t", "c1", "r1", Failed, 0, 1),
                obs("t", "c2", "r2", Passed, 0, 2),
            ],
            window: 0,
            want: vec![],
        },
        Case {
            name: "consistently failing is not flaky",
            obs: vec![
                obs("t", "c1", "r1", Failed, 0, 1),
                obs("t", "c1", "r2", Error, 0, 2),
            ],
            window: 0,
            want: vec![],
        },
        Case {
            name: "pass and fail on the same commit",
            obs: vec![
                obs("t", "c1", "r1", Passed, 0, 10),
                obs("t", "c1", "r2", Failed, 0, 20),
                obs("t", "c2", "r3", Passed, 0, 30),
                obs("t", "c2", "r4", Passed, 0, 40),
            ],
            window: 0,
            want: vec![("t", 0.25, vec!["r1", "r2"], 20)],
        },
        Case {
            name: "error counts as failure",
            obs: vec![
                obs("t", "c1", "r1", Error, 0, 1),
                obs("t", "c1", "r2", Passed, 0, 2),
            ],
            window: 0,
            want: vec![("t", 0.5, vec!["r1", "r2"], 2)],
        },
        Case {
            name: "passed on retry in a single run",
            obs: vec![
                obs("t", "c1", "r1", Passed, 2, 5),
                obs("t", "c2", "r2", Passed, 0, 6),
            ],
            window: 0,
            want: vec![("t", 0.5, vec!["r1"], 5)],
        },
        Case {
            name: "skips are ignored",
            obs: vec![
                obs("t", "c1", "r1", Skipped, 0, 1),
                obs("t", "c1", "r2", Passed, 0, 2),
            ],
            window: 0,
            want: vec![],
        },
        Case {
            name: "window keeps only the latest runs",
            obs: vec![
                obs("t", "c1", "r1", Failed, 0, 1),
                obs("t", "c1", "r2", Passed, 0, 2),
                obs("t", "c2", "r3", Passed, 0, 3),
                obs("t", "c2", "r4", Passed, 0, 4),
            ],
            window: 2,
            want: vec![],
        },
        Case {
            name: "several tests, sorted by flake rate",
            obs: vec![
                obs("a", "c1", "r1", Passed, 1, 1),
                obs("a", "c1", "r2", Passed, 0, 2),
                obs("a", "c1", "r3", Passed, 0, 3),
                obs("b", "c1", "r1", Failed, 0, 1),
                obs("b", "c1", "r2", Passed, 0, 2),
                obs("c", "c1", "r1", Passed, 0, 1),
            ],
            window: 0,
            want: vec![
                ("b", 0.5, vec!["r1", "r2"], 2),
                ("a", 1.0 / 3.0, vec!["r1"], 1),
            ],
        },
    ];
    for c in cases {
        let got = detect_flaky(&c.obs, c.window);
        let got: Vec<(String, f64, Vec<String>, i64)> = got
            .into_iter()
            .map(|f| (f.test_id, f.flake_rate, f.evidence_run_ids, f.last_seen_ms))
            .collect();
        let want: Vec<(String, f64, Vec<String>, i64)> = c
            .want
            .into_iter()
            .map(|(t, r, e, l)| {
                (
                    t.to_string(),
                    r,
                    e.into_iter().map(String::from).collect(),
                    l,
                )
            })
            .collect();
        assert_eq!(got.len(), want.len(), "{}: {got:?}", c.name);
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.0, w.0, "{}", c.name);
            assert!(
                (g.1 - w.1).abs() < 1e-9,
                "{}: rate {} vs {}",
                c.name,
                g.1,
                w.1
            );
            assert_eq!(g.2, w.2, "{}", c.name);
            assert_eq!(g.3, w.3, "{}", c.name);
        }
    }
}

#[test]
fn flaky_reasons_are_reported() {
    use TestStatus::*;
    let got = detect_flaky(
        &[
            obs("t", "c1", "r1", Passed, 1, 1),
            obs("t", "c1", "r2", Failed, 0, 2),
        ],
        0,
    );
    assert_eq!(
        got[0].reasons,
        vec![
            FlakyReason::PassedOnRetry,
            FlakyReason::MixedOnCommit {
                commit: "c1".into()
            }
        ]
    );
    assert_eq!((got[0].flaky_runs, got[0].runs), (2, 2));
}

#[test]
fn flaky_from_parsed_reports() {
    // End to end: the nextest report's retried test is flaky on its own.
    let r = load("nextest.xml");
    let observations: Vec<TestObservation> = r
        .cases
        .iter()
        .map(|c| obs(&c.test_id(), "abc123", "run-1", c.status, c.flaky_reruns, 1))
        .collect();
    let flaky = detect_flaky(&observations, 0);
    assert_eq!(flaky.len(), 1);
    assert_eq!(flaky[0].test_id, "pave-store::db::tests::claim_is_atomic");
    assert_eq!(flaky[0].evidence_run_ids, vec!["run-1"]);
}
