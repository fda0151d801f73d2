//! `pave demo`: the whole paved road in a few minutes on one machine.
//!
//! It starts `pave up` (a child process of this binary, in `./pave-demo/`),
//! creates a service from the built-in `python-http` golden path, runs its
//! pipeline, ships it dev (rolling) → staging (blue-green) → prod (canary)
//! while a built-in load generator sends traffic, then ships a release that
//! fails 20% of its requests and lets the canary analysis roll it back. The
//! portal keeps running afterwards with all of it visible. Each stage is a
//! real `pave` command, printed before it runs, so the narration doubles as
//! a tutorial.

use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Options of `pave demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Address for the API and portal.
    #[arg(long, default_value = "127.0.0.1:7411")]
    pub listen: SocketAddr,
    /// Address of the edge proxy that serves the demo service.
    #[arg(long, default_value = "127.0.0.1:7412")]
    pub edge_listen: SocketAddr,
    /// Where the demo keeps its data and the service repository (recreated).
    #[arg(long, default_value = "pave-demo")]
    pub dir: PathBuf,
    /// Stop after the rollback instead of leaving the portal running.
    #[arg(long)]
    pub exit: bool,
}

const TEAM: &str = "apiVersion: backstage.io/v1alpha1
kind: Group
metadata: { name: platform, title: Platform team }
spec: { type: team, children: [] }
";

/// Runs the demo.
pub async fn run(args: DemoArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let dir = fresh_dir(&args.dir)?;
    let exe = std::env::current_exe().context("finding the pave binary")?;
    step("Starting Pave", "pave up");
    let mut server = tokio::process::Command::new(&exe)
        .current_dir(&dir)
        .args([
            "up",
            "--listen",
            &args.listen.to_string(),
            "--edge-listen",
            &args.edge_listen.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("pave-up.log"))?)
        .kill_on_drop(true)
        .spawn()
        .context("starting pave up")?;
    let url = format!("http://{}", args.listen);
    wait_ready(&url, &mut server).await?;
    println!("   portal {url}/   edge http://{}/", args.edge_listen);

    let pave = Pave {
        exe: exe.clone(),
        dir: dir.clone(),
    };
    step("Registering the owning team", "pave apply -f team.yaml");
    std::fs::write(dir.join("team.yaml"), TEAM)?;
    pave.run(&["apply", "-f", "team.yaml"]).await?;

    let load = Load::start(args.edge_listen);
    step(
        "Creating a service from the python-http golden path; with a server, `pave new` also runs its first pipeline (tests, JUnit, package) and deploys it to dev (rolling)",
        "pave new python-http hello --owner platform",
    );
    pave.run(&[
        "new",
        "python-http",
        "hello",
        "--owner",
        "platform",
        "--dir",
        "hello",
    ])
    .await?;
    step(
        "Promoting the same artifact to staging (blue-green)",
        "pave promote hello --to staging --wait",
    );
    pave.run(&["promote", "hello", "--to", "staging", "--wait"])
        .await?;
    step("Promoting to prod", "pave promote hello --to prod --wait");
    pave.run(&["promote", "hello", "--to", "prod", "--wait"])
        .await?;

    step(
        "A second, healthy release through prod's canary (traffic is flowing)",
        "pave trigger hello --wait && pave deploy/promote ...",
    );
    commit(&dir.join("hello"), "release 2", |app| {
        app.replace(
            "\"message\": \"hello from \"",
            "\"message\": \"hello again from \"",
        )
    })
    .await?;
    pave.run(&["trigger", "hello", "--wait"]).await?;
    pave.run(&["deploy", "hello", "--env", "dev", "--wait"])
        .await?;
    pave.run(&["promote", "hello", "--to", "staging", "--wait"])
        .await?;
    pave.run(&["promote", "hello", "--to", "prod", "--wait"])
        .await?;

    step(
        "Shipping a bad release: 20% of its requests fail once deployed",
        "pave promote hello --to prod --wait",
    );
    commit(&dir.join("hello"), "a bad release", inject_errors).await?;
    pave.run(&["trigger", "hello", "--wait"]).await?;
    pave.run(&["deploy", "hello", "--env", "dev", "--wait"])
        .await?;
    pave.run(&["promote", "hello", "--to", "staging", "--wait"])
        .await?;
    let rolled_back = !pave
        .status(&["promote", "hello", "--to", "prod", "--wait"])
        .await?;
    let (ok, failed) = load.stop();
    if !rolled_back {
        bail!("the bad release was not rolled back; see `pave deployments --service hello`");
    }
    println!();
    println!(
        "The canary analysis rolled the bad release back on its own; prod serves the previous release."
    );
    println!(
        "Load generator: {ok} answered, {failed} failed or 5xx (the canary's share before the rollback). Demo took {:.0} s.",
        started.elapsed().as_secs_f64()
    );
    println!();
    println!("Look around:");
    println!("   portal        {url}/services/hello   and   {url}/deployments");
    println!(
        "   the service   curl -H 'Host: hello.prod.localhost' http://{}/",
        args.edge_listen
    );
    println!(
        "   CLI           cd {} && pave deployments --service hello",
        dir.display()
    );
    if args.exit {
        stop_instances(&dir.join(".pave/runtime/instances"));
        return Ok(ExitCode::SUCCESS);
    }
    println!("Pave keeps running; Ctrl-C stops it.");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = server.wait() => {}
    }
    // The service instances outlive the server by design; the demo cleans them up.
    stop_instances(&dir.join(".pave/runtime/instances"));
    Ok(ExitCode::SUCCESS)
}

fn step(what: &str, command: &str) {
    println!("\n==> {what}\n    $ {command}");
}

/// Recreates the demo directory (only one that looks like an earlier demo).
fn fresh_dir(dir: &Path) -> Result<PathBuf> {
    if dir.exists() {
        if !dir.join(".pave").join("server-id").exists() && !dir.join("pave-up.log").exists() {
            bail!(
                "{} exists and is not an earlier demo; pick another --dir",
                dir.display()
            );
        }
        stop_instances(&dir.join(".pave/runtime/instances"));
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(std::fs::canonicalize(dir)?)
}

/// Kills the process groups of the recorded service instances.
fn stop_instances(records: &Path) {
    let Ok(entries) = std::fs::read_dir(records) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if let Some(pid) = v["pid"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p > 1)
        {
            // SAFETY: plain syscall; the group is an instance this demo's server started.
            unsafe {
                libc::killpg(pid, libc::SIGTERM);
            }
        }
    }
}

async fn wait_ready(url: &str, server: &mut tokio::process::Child) -> Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = server.try_wait() {
            bail!(
                "pave up exited ({status}); see pave-demo/pave-up.log (is port 7411 or 7412 in use? use --listen / --edge-listen)"
            );
        }
        if client
            .get(format!("{url}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("pave up did not become ready in 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `pave` commands in the demo directory (they find `.pave/` there).
struct Pave {
    exe: PathBuf,
    dir: PathBuf,
}

impl Pave {
    /// Runs a command, its output shown indented; an error if it fails.
    async fn run(&self, args: &[&str]) -> Result<()> {
        if !self.status(args).await? {
            bail!("`pave {}` failed", args.join(" "));
        }
        Ok(())
    }

    /// Runs a command; true when it exited 0.
    async fn status(&self, args: &[&str]) -> Result<bool> {
        let status = tokio::process::Command::new(&self.exe)
            .current_dir(&self.dir)
            .args(args)
            .status()
            .await
            .with_context(|| format!("running pave {}", args.join(" ")))?;
        Ok(status.success())
    }
}

/// Edits `app.py` in the service repository and commits it.
async fn commit(repo: &Path, message: &str, edit: impl Fn(&str) -> String) -> Result<()> {
    let path = repo.join("app.py");
    let app = std::fs::read_to_string(&path).context("reading app.py")?;
    let changed = edit(&app);
    if changed == app {
        bail!("could not change app.py for `{message}` (the template changed?)");
    }
    std::fs::write(&path, changed)?;
    let status = tokio::process::Command::new("git")
        .current_dir(repo)
        .args([
            "-c",
            "user.name=Pave demo",
            "-c",
            "user.email=demo@pave.invalid",
            "commit",
            "-q",
            "-am",
            message,
        ])
        .status()
        .await?;
    if !status.success() {
        bail!("git commit failed in {}", repo.display());
    }
    Ok(())
}

/// Makes the deployed service (PAVE_RELEASE is set) fail one request in five;
/// its unit tests (no PAVE_RELEASE) still pass, so the pipeline is green.
fn inject_errors(app: &str) -> String {
    app.replacen(
        "    if path == \"/\":\n",
        "    if path == \"/\" and os.environ.get(\"PAVE_RELEASE\") and random.random() < 0.2:\n        return 500, \"text/plain\", b\"bad release\\n\"\n    if path == \"/\":\n",
        1,
    )
    .replacen("import os\n", "import os\nimport random\n", 1)
}

/// ~40 req/s to every environment through the edge proxy.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl Load {
    fn start(edge: SocketAddr) -> Load {
        let load = Load {
            stop: Arc::new(AtomicBool::new(false)),
            ok: Arc::new(AtomicU64::new(0)),
            failed: Arc::new(AtomicU64::new(0)),
        };
        let client = reqwest::Client::new();
        for env in ["dev", "staging", "prod"] {
            let (stop, ok, failed, client) = (
                load.stop.clone(),
                load.ok.clone(),
                load.failed.clone(),
                client.clone(),
            );
            let rate = if env == "prod" { 40 } else { 5 };
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(1000 / rate));
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let sent = client
                        .get(format!("http://{edge}/"))
                        .header("Host", format!("hello.{env}.localhost"))
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => ok.fetch_add(1, Ordering::Relaxed),
                        // 404 before the first deployment reaches this environment.
                        Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => 0,
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            });
        }
        load
    }

    /// Stops the load; (answered, failed).
    fn stop(&self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}
