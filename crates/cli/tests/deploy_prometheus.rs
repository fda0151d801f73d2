//! The Prometheus analysis source against a real Prometheus server that
//! scrapes Pave's own `/metrics`: a canary judged by a PromQL query over the
//! edge proxy's counters is promoted when healthy and rolled back when its
//! 5xx show up in Prometheus.
//!
//! Needs the `prometheus` binary (Debian package); without it the test
//! prints a loud skip unless `PAVE_REQUIRE_PROMETHEUS=1` (set by `.ci/run`).

mod common;
mod deploy_support;

use common::{Pave, scratch_dir, stderr};
use deploy_support::*;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn prometheus_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_prometheus_check_over_paves_own_metrics_judges_the_canary() {
    let Some(binary) = prometheus_binary() else {
        assert!(
            std::env::var("PAVE_REQUIRE_PROMETHEUS").as_deref() != Ok("1"),
            "PAVE_REQUIRE_PROMETHEUS=1 but no prometheus binary on PATH"
        );
        eprintln!("\n*** SKIPPED: no `prometheus` on PATH (apt-get install prometheus) ***\n");
        return;
    };
    let dir = scratch_dir("deploy-prom");
    let _instances = Instances(dir.clone());
    let api_port = free_port();
    let listen = format!("127.0.0.1:{api_port}");

    // Prometheus scrapes the Pave server's /metrics every second.
    let prom_port = free_port();
    let prom_dir = dir.join("prometheus");
    std::fs::create_dir_all(prom_dir.join("data")).unwrap();
    std::fs::write(
        prom_dir.join("prometheus.yml"),
        format!(
            "global: {{ scrape_interval: 1s, scrape_timeout: 900ms }}\nscrape_configs:\n  - job_name: pave\n    static_configs: [ {{ targets: ['{listen}'] }} ]\n"
        ),
    )
    .unwrap();
    let _prometheus = Prometheus(
        Command::new(binary)
            .arg(format!(
                "--config.file={}",
                prom_dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom_dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );

    let deploy = format!(
        "deploy:
  run: python3 app.py
  health: {{ path: /healthz, interval: 200ms }}
  environments:
    prod:
      strategy:
        canary:
          steps:
            - weight: 50
            - analysis: {{ duration: 12s }}
            - weight: 100
          analysis:
            checks:
              - prometheus:
                  address: http://127.0.0.1:{prom_port}
                  query: 'sum(pave_edge_requests_total{{service=\"hello\",env=\"prod\",code=~\"5..\"}}) or vector(0)'
                  success: '< 1'
"
    );
    let repo = service_repo(&dir, &deploy);
    let pave = Pave::start_with(&dir, &["--listen", &listen]);
    let applied = pave.cli(&["apply", "-f", &repo.join("pave.yaml").display().to_string()]);
    assert!(applied.status.success(), "{}", stderr(&applied));
    let minute = Duration::from_secs(90);

    let v1 = build(&pave);
    let d = deploy_support::deploy(&pave, "prod", &v1);
    assert_eq!(
        wait_done(&pave, &d, minute)["deployment"]["status"],
        "succeeded"
    );

    // Prometheus has scraped Pave's edge metrics once traffic flowed.
    let load = Load::start(
        &edge(&pave),
        "hello.prod.localhost",
        2,
        Duration::from_millis(10),
    );
    let deadline = Instant::now() + minute;
    loop {
        let url = format!("127.0.0.1:{prom_port}");
        let q = "/api/v1/query?query=pave_edge_requests_total";
        let got = request(&url, "GET", &url, q, None, None);
        if got.is_some_and(|(s, b)| s == 200 && b.contains("\"service\":\"hello\"")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped pave_edge_requests_total"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // A healthy canary passes the PromQL check.
    let v2 = release(&pave, &repo, r#"{"version": "v2", "delay_ms": 5}"#);
    let d = deploy_support::deploy(&pave, "prod", &v2);
    let done = wait_done(&pave, &d, minute);
    assert_eq!(done["deployment"]["status"], "succeeded", "{done:#}");

    // One whose 5xx reach Prometheus is rolled back, and the decision quotes the query.
    let v3 = release(
        &pave,
        &repo,
        r#"{"version": "v3", "delay_ms": 5, "errors_percent": 10}"#,
    );
    let d = deploy_support::deploy(&pave, "prod", &v3);
    let done = wait_done(&pave, &d, minute);
    let _ = load.finish();
    assert_eq!(done["deployment"]["status"], "rolled_back", "{done:#}");
    let reason = done["deployment"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("prometheus"), "{reason}");
    assert!(answer(&pave, "prod").expect("prod").1.starts_with("v2"));
}
