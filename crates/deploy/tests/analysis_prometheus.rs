//! The Prometheus source against a real Prometheus server scraping a tiny
//! exporter this test serves on loopback, plus the ways a query can go wrong
//! (unreachable, hanging, not Prometheus) against real loopback servers.
//!
//! Without a `prometheus` binary on PATH (or in `PAVE_PROMETHEUS`) the
//! server test prints a loud skip, unless `PAVE_REQUIRE_PROMETHEUS=1`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pave_deploy::analysis::prometheus::{PrometheusError, query};
use pave_deploy::analysis::{AnalysisConfig, Check, Observation, Outcome, Verdict, evaluate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A Prometheus child process, killed (and its data removed) on drop.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    address: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn prometheus_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PAVE_PROMETHEUS") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

fn start_prometheus(binary: &Path, target_port: u16) -> Prometheus {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir =
        std::env::temp_dir().join(format!("pave-analysis-prom-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(dir.join("data")).expect("create the Prometheus directory");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: pave-test\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).expect("write the Prometheus config");
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("create the log file");
    let port = free_port();
    let child = Command::new(binary)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    Prometheus {
        child,
        dir,
        address: format!("http://127.0.0.1:{port}"),
    }
}

/// Serves `body` as Prometheus text exposition to every request.
async fn serve_metrics(body: Arc<Mutex<String>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the exporter");
    let port = listener.local_addr().expect("exporter address").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let body = body.lock().map(|b| b.clone()).unwrap_or_default();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16_384 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

fn exposition(canary_ratio: f64) -> String {
    format!(
        "# TYPE pave_test_error_ratio gauge\n\
         pave_test_error_ratio{{release=\"canary\"}} {canary_ratio}\n\
         pave_test_error_ratio{{release=\"stable\"}} 0.002\n\
         # TYPE pave_test_requests_total counter\n\
         pave_test_requests_total 42\n"
    )
}

/// Waits until Prometheus answers `promql` with a value for which `ready` holds.
async fn wait_for(prom: &mut Prometheus, promql: &str, ready: impl Fn(&[f64]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(Some(status)) = prom.child.try_wait() {
            let log = std::fs::read_to_string(prom.dir.join("prometheus.log")).unwrap_or_default();
            panic!("prometheus exited ({status}):\n{log}");
        }
        if let Ok(series) = query(&prom.address, promql, Duration::from_secs(2)).await {
            let values: Vec<f64> = series.iter().map(|s| s.value).collect();
            if ready(&values) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never answered `{promql}` as expected"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn judge(address: &str, promql: &str, success: &str, complete: bool) -> Verdict {
    let config = AnalysisConfig {
        checks: vec![Check::Prometheus {
            address: address.to_string(),
            query: promql.to_string(),
            success: success.parse().expect("a valid condition"),
        }],
        min_requests: 20,
        interval: Duration::from_secs(1),
    };
    let obs = Observation {
        canary: &[],
        baseline: &[],
        window_complete: complete,
    };
    evaluate(&config, &obs).await
}

#[tokio::test]
async fn prometheus_checks_against_a_real_server() {
    let Some(binary) = prometheus_binary() else {
        assert!(
            std::env::var("PAVE_REQUIRE_PROMETHEUS").as_deref() != Ok("1"),
            "PAVE_REQUIRE_PROMETHEUS=1 but no prometheus binary is on PATH"
        );
        eprintln!(
            "\n*** SKIPPED prometheus_checks_against_a_real_server: no `prometheus` on PATH (apt-get install prometheus) ***\n"
        );
        return;
    };
    let body = Arc::new(Mutex::new(exposition(0.01)));
    let exporter = serve_metrics(body.clone()).await;
    let mut prom = start_prometheus(&binary, exporter);
    wait_for(&mut prom, "pave_test_error_ratio", |v| v.len() == 2).await;
    let address = prom.address.clone();

    // One series satisfying the condition: Running mid-window, Pass at the end.
    let canary = r#"pave_test_error_ratio{release="canary"}"#;
    assert_eq!(
        judge(&address, canary, "< 0.05", false).await.outcome,
        Outcome::Running
    );
    let pass = judge(&address, canary, "< 0.05", true).await;
    assert_eq!(pass.outcome, Outcome::Pass, "{}", pass.reason());
    assert_eq!(pass.checks[0].value, Some(0.01));
    assert_eq!(pass.checks[0].threshold, Some(0.05));

    // Several series: each must satisfy; the failure names the series.
    let fail = judge(&address, "pave_test_error_ratio", "<= 0.005", false).await;
    assert_eq!(fail.outcome, Outcome::Fail, "{}", fail.reason());
    assert_eq!(fail.checks[0].value, Some(0.01));
    assert!(
        fail.checks[0].detail.contains(r#"release="canary""#),
        "{}",
        fail.checks[0].detail
    );
    assert!(
        fail.checks[0].detail.contains("1 of 2 series fail"),
        "{}",
        fail.checks[0].detail
    );
    let all = judge(&address, "pave_test_error_ratio", "< 0.05", true).await;
    assert_eq!(all.outcome, Outcome::Pass, "{}", all.reason());

    // A scalar result.
    let scalar = judge(
        &address,
        "scalar(sum(pave_test_requests_total))",
        "> 0",
        true,
    )
    .await;
    assert_eq!(scalar.outcome, Outcome::Pass, "{}", scalar.reason());
    assert_eq!(scalar.checks[0].value, Some(42.0));

    // No data, NaN, bad PromQL and a range vector are not verdicts on the release.
    let cases = [
        ("pave_test_metric_that_does_not_exist", "no series"),
        ("pave_test_requests_total * 0 / 0", "NaN"),
        ("sum(", "rejected the query (bad_data)"),
        ("pave_test_requests_total[1m]", "matrix"),
    ];
    for (promql, why) in cases {
        assert_eq!(
            judge(&address, promql, "< 1", false).await.outcome,
            Outcome::Running,
            "{promql}"
        );
        let end = judge(&address, promql, "< 1", true).await;
        assert_eq!(end.outcome, Outcome::Inconclusive, "{promql}");
        assert!(
            end.checks[0].detail.contains(why),
            "{promql}: {}",
            end.checks[0].detail
        );
    }

    // The canary turns bad: once Prometheus has scraped it, the check fails.
    if let Ok(mut b) = body.lock() {
        *b = exposition(0.2);
    }
    wait_for(&mut prom, canary, |v| v == [0.2]).await;
    let fail = judge(&address, canary, "< 0.05", false).await;
    assert_eq!(fail.outcome, Outcome::Fail, "{}", fail.reason());
    assert_eq!(fail.checks[0].value, Some(0.2));
    assert!(
        fail.reason().contains("which is not < 0.05"),
        "{}",
        fail.reason()
    );
}

#[tokio::test]
async fn unreachable_prometheus_is_inconclusive() {
    let address = format!("http://127.0.0.1:{}", free_port());
    assert_eq!(
        judge(&address, "up", "> 0", false).await.outcome,
        Outcome::Running
    );
    let end = judge(&address, "up", "> 0", true).await;
    assert_eq!(end.outcome, Outcome::Inconclusive);
    assert!(
        end.checks[0].detail.contains("could not query Prometheus"),
        "{}",
        end.checks[0].detail
    );
}

#[tokio::test]
async fn a_hanging_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    // Accept connections and hold them open without ever answering.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let result = query(
        &format!("http://127.0.0.1:{port}"),
        "up",
        Duration::from_millis(300),
    )
    .await;
    assert!(
        matches!(result, Err(PrometheusError::Timeout { .. })),
        "{result:?}"
    );
    holder.abort();
}

#[tokio::test]
async fn a_server_that_is_not_prometheus_is_inconclusive() {
    let body = Arc::new(Mutex::new("hello, not json".to_string()));
    let port = serve_metrics(body).await;
    let end = judge(&format!("http://127.0.0.1:{port}"), "up", "> 0", true).await;
    assert_eq!(end.outcome, Outcome::Inconclusive);
    assert!(
        end.checks[0]
            .detail
            .contains("unexpected answer from Prometheus (HTTP 200)"),
        "{}",
        end.checks[0].detail
    );
    let bad = query("not a url", "up", Duration::from_secs(1)).await;
    assert!(
        matches!(bad, Err(PrometheusError::Address { .. })),
        "{bad:?}"
    );
}
