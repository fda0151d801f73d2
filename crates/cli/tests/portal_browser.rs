//! The run page in a real browser: headless Chromium opens `/runs/{id}` of
//! a `pave up` run while its step still prints; the page's `EventSource`
//! appends the new lines (as text, not markup), and at `end` the page shows
//! the final statuses.
//!
//! Needs `/usr/bin/chromium` (or `PAVE_CHROMIUM`). Without it the test is
//! skipped with a loud message, unless `PAVE_REQUIRE_BROWSER=1` (CI sets it
//! when it could install Chromium), which makes a missing browser a failure.

mod common;

use common::{Pave, http_get_auth, scratch_dir, stderr, stdout, write};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The step: ticks over ~3 s, a pause, then a marker; all printed after
/// the page has loaded are appended by the page's script.
const PIPELINE: &str = "  jobs:
    build:
      steps:
        - name: count
          run: |
            for i in 1 2 3 4 5 6; do echo \"tick-$i <b>bold</b>\"; sleep 0.5; done
            sleep 1.5
            echo finished-marker
    test:
      needs: build
      steps:
        - run: echo tests-ok
";

/// The browser, or `None` (after saying so loudly) when it is missing and not required.
fn chromium() -> Option<PathBuf> {
    let path = PathBuf::from(
        std::env::var("PAVE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
    );
    if path.exists() {
        return Some(path);
    }
    if std::env::var("PAVE_REQUIRE_BROWSER").as_deref() == Ok("1") {
        panic!(
            "PAVE_REQUIRE_BROWSER=1 but there is no browser at {}",
            path.display()
        );
    }
    eprintln!(
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! SKIPPED portal browser test: no Chromium at {} !!!\n\
         !!! (install chromium, or set PAVE_REQUIRE_BROWSER=1 to fail instead)\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n",
        path.display()
    );
    None
}

fn git(repo: &Path, args: &[&str]) {
    let status = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("git");
    assert!(status.success(), "git {args:?}");
}

/// Headless Chromium's DOM of `url` once the page has settled (virtual
/// time waits for the open event stream, so this returns after `end`).
fn dump_dom(browser: &Path, profile: &Path, url: &str) -> String {
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--virtual-time-budget=5000", "--dump-dom", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let mut out = child.stdout.take().expect("chromium stdout");
    let reader = std::thread::spawn(move || {
        let mut dom = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut dom);
        dom
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match child.try_wait().expect("wait for chromium") {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish within 90 s");
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    reader.join().expect("chromium output")
}

/// The texts of the log lines the page's script appended.
fn live_lines(dom: &str) -> Vec<String> {
    dom.split("<div class=\"line live ")
        .skip(1)
        .filter_map(|rest| {
            let text = rest.split_once("</span>")?.1;
            Some(text.split_once("</div>")?.0.to_string())
        })
        .collect()
}

#[test]
fn the_run_page_follows_the_log_live_in_a_browser() {
    let Some(browser) = chromium() else { return };
    let dir = scratch_dir("browser");
    let repo = dir.join("ticker");
    write(
        &repo.join("pave.yaml"),
        &format!("service:\n  name: ticker\n  owner: platform\npipeline:\n{PIPELINE}"),
    );
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "first"]);

    let pave = Pave::start(&dir, &[]);
    let applied = pave.cli(&["apply", "-f", &repo.join("pave.yaml").display().to_string()]);
    assert!(applied.status.success(), "{}", stderr(&applied));
    let triggered = pave.cli(&["trigger", "ticker"]);
    assert!(triggered.status.success(), "{}", stderr(&triggered));
    let id = stdout(&triggered).trim().to_string();
    assert!(!id.is_empty(), "no run id: {}", stderr(&triggered));

    // Open the page once the step has started printing.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = http_get_auth(
            &pave.url,
            &format!("/api/v1/runs/{id}/logs"),
            Some(&pave.token),
        )
        .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok());
        if page.is_some_and(|p| p["lines"].as_array().is_some_and(|l| !l.is_empty())) {
            break;
        }
        assert!(Instant::now() < deadline, "the run printed nothing");
        std::thread::sleep(Duration::from_millis(50));
    }
    let dom = dump_dom(
        &browser,
        &dir.join("chromium-profile"),
        &format!("{}/runs/{id}", pave.url),
    );

    let live = live_lines(&dom);
    assert!(
        live.iter().any(|l| l == "finished-marker"),
        "the marker printed after page load was not appended live: {live:?}\n{dom}"
    );
    // Every line is there once, and markup in a line stays text.
    for i in 1..=6 {
        let line = format!("tick-{i} &lt;b&gt;bold&lt;/b&gt;");
        assert_eq!(dom.matches(&line).count(), 1, "{line} in {dom}");
    }
    assert!(!dom.contains("<b>bold</b>"), "{dom}");
    assert!(dom.contains("tests-ok"), "{dom}");
    // At `end` the statuses turned final.
    assert!(dom.contains("The run has finished."), "{dom}");
    assert!(!dom.contains("st st-running"), "{dom}");
    assert!(
        dom.contains("ticker #1 <span class=\"st st-success\">success</span>"),
        "{dom}"
    );
}
