//! Runs Pave's edge proxy standalone with static routes (used by bench/proxy.py).
//!
//! ```text
//! edge_proxy [--listen 127.0.0.1:7412] --route HOST=ADDR[,ADDR...]
//!            --route HOST=RELEASE:WEIGHT@ADDR[,ADDR...][+RELEASE:WEIGHT@ADDR...]
//! ```
//! On SIGINT/SIGTERM it shuts down gracefully and prints each release's totals.

use std::net::SocketAddr;
use std::process::ExitCode;

use pave_deploy::proxy::{Backend, DEFAULT_ADDR, EdgeProxy, Route};

// The allocator of the `pave` binary, so the bench measures what ships.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: edge_proxy [--listen ADDR] --route HOST=ADDR[,ADDR...] | --route HOST=RELEASE:WEIGHT@ADDR[,ADDR...][+RELEASE:WEIGHT@ADDR...]";

/// One `--route` argument: `api.prod.localhost=stable:80@127.0.0.1:9000+canary:20@127.0.0.1:9001`.
fn parse_route(arg: &str) -> Result<(String, Route), String> {
    let (host, spec) = arg
        .split_once('=')
        .ok_or_else(|| format!("--route {arg}: expected HOST=..."))?;
    let mut labels = host.split('.');
    let service = labels.next().unwrap_or("service").to_string();
    let env = labels.next().unwrap_or("env").to_string();
    let mut backends = Vec::new();
    for part in spec.split('+') {
        let (release, weight, addrs) = match part.split_once('@') {
            Some((head, addrs)) => {
                let (release, weight) = head
                    .split_once(':')
                    .ok_or_else(|| format!("{part}: expected RELEASE:WEIGHT@ADDR"))?;
                let weight = weight
                    .parse::<u32>()
                    .map_err(|e| format!("{part}: weight: {e}"))?;
                (release.to_string(), weight, addrs)
            }
            None => ("stable".to_string(), 100, part),
        };
        let instances = addrs
            .split(',')
            .map(|a| a.parse::<SocketAddr>().map_err(|e| format!("{a}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        backends.push(Backend {
            service: service.clone(),
            env: env.clone(),
            release,
            weight,
            instances,
        });
    }
    let route = Route { backends };
    route
        .validate()
        .map_err(|e| format!("--route {arg}: {e}"))?;
    Ok((host.to_string(), route))
}

fn parse_args() -> Result<(SocketAddr, Vec<(String, Route)>), String> {
    let mut listen = DEFAULT_ADDR;
    let mut routes = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--listen" => {
                listen = value
                    .parse()
                    .map_err(|e| format!("--listen {value}: {e}"))?
            }
            "--route" => routes.push(parse_route(&value)?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok((listen, routes))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (listen, routes) = match parse_args() {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // EDGE_PROXY_THREADS overrides the worker count (one per core by default).
    let threads = std::env::var("EDGE_PROXY_THREADS")
        .ok()
        .and_then(|t| t.parse::<usize>().ok());
    let proxy = match EdgeProxy::bind(listen).await {
        Ok(proxy) => match threads {
            Some(threads) => proxy.with_threads(threads),
            None => proxy,
        },
        Err(error) => {
            eprintln!("cannot listen on {listen}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let releases: Vec<String> = routes
        .iter()
        .flat_map(|(_, r)| r.backends.iter().map(|b| b.release.clone()))
        .collect();
    for (host, route) in routes {
        proxy.routes().set(&host, route);
    }
    let metrics = proxy.metrics();
    let started = now_s();
    println!("edge proxy listening on {}", proxy.local_addr());
    proxy.serve(shutdown_signal()).await;
    for release in releases {
        let s = metrics.summary(&release, started, now_s() + 1);
        let ms = |d: Option<std::time::Duration>| {
            d.map_or("-".into(), |d| format!("{:.3}", d.as_secs_f64() * 1000.0))
        };
        println!(
            "release {release}: requests={} 5xx={} connect_failures={} p50_ms={} p99_ms={}",
            s.requests,
            s.errors_5xx,
            s.connect_failures,
            ms(s.p50),
            ms(s.p99)
        );
    }
    ExitCode::SUCCESS
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
