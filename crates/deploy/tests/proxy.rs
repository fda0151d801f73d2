//! The edge proxy over real HTTP on loopback, with real backend servers.

mod proxy_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Either};
use hyper::Request;
use hyper::body::Incoming;
use proxy_support::*;
use tokio::sync::{mpsc, oneshot};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_ignoring_case_and_port_and_names_unknown_hosts() {
    let proxy = start_proxy().await;
    let (a, b) = (named_backend("a").await, named_backend("b").await);
    proxy.routes.set(
        "api.prod.localhost",
        route(vec![backend("r1", 100, vec![a])]),
    );
    proxy.routes.set(
        "api.prod.preview.localhost",
        route(vec![backend("r2", 100, vec![b])]),
    );
    let client = client();

    let stable = get(&client, proxy.addr, "API.Prod.LocalHost:7412", "/x?y=1").await;
    assert_eq!(
        (stable.status, stable.release.as_str(), stable.body.as_str()),
        (200, "r1", "a /x")
    );
    let preview = get(&client, proxy.addr, "api.prod.preview.localhost", "/p").await;
    assert_eq!(
        (
            preview.status,
            preview.release.as_str(),
            preview.body.as_str()
        ),
        (200, "r2", "b /p")
    );

    let unknown = get(&client, proxy.addr, "nope.dev.localhost:7412", "/").await;
    assert_eq!(unknown.status, 404);
    assert!(
        unknown.body.contains("'nope.dev.localhost:7412'"),
        "{}",
        unknown.body
    );
    assert!(
        unknown.body.contains("<service>.<env>.localhost"),
        "{}",
        unknown.body
    );
    assert_eq!(proxy.metrics.unrouted_requests(), 1);

    proxy.routes.remove("API.prod.localhost");
    assert_eq!(
        get(&client, proxy.addr, "api.prod.localhost", "/")
            .await
            .status,
        404
    );
    assert!(proxy.routes.get("api.prod.localhost").is_none());
    assert_eq!(
        proxy
            .routes
            .get("api.prod.preview.localhost")
            .map(|r| r.backends[0].release.clone()),
        Some("r2".into())
    );
}

/// Sends `n` GETs over `concurrency` tasks; returns responses per release.
async fn tally(
    proxy: std::net::SocketAddr,
    host: &'static str,
    n: usize,
    concurrency: usize,
) -> HashMap<String, u64> {
    let counts: Tally = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let counts = counts.clone();
        tasks.push(tokio::spawn(async move {
            let client = client();
            for _ in 0..n / concurrency {
                let answer = get(&client, proxy, host, "/").await;
                assert_eq!(answer.status, 200);
                *counts.lock().unwrap().entry(answer.release).or_default() += 1;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    Arc::try_unwrap(counts).unwrap().into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splits_traffic_by_weight() {
    let proxy = start_proxy().await;
    let (a, b) = (named_backend("a").await, named_backend("b").await);

    proxy.routes.set(
        "api.prod.localhost",
        route(vec![
            backend("stable", 0, vec![a]),
            backend("canary", 100, vec![b]),
        ]),
    );
    let all_canary = tally(proxy.addr, "api.prod.localhost", 200, 4).await;
    assert_eq!(all_canary, HashMap::from([("canary".to_string(), 200)]));

    // The split is a fixed smooth-WRR schedule of period 100 indexed by an
    // atomic counter, so 2000 requests (20 periods) split exactly, whatever
    // the concurrency: an exact assertion that cannot flake.
    proxy.routes.set(
        "api.prod.localhost",
        route(vec![
            backend("stable", 80, vec![a]),
            backend("canary", 20, vec![b]),
        ]),
    );
    let split = tally(proxy.addr, "api.prod.localhost", 2000, 8).await;
    assert_eq!(
        split,
        HashMap::from([("stable".to_string(), 1600), ("canary".to_string(), 400)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_routes_under_load_loses_no_request() {
    let proxy = start_proxy().await;
    let (a, b) = (named_backend("a").await, named_backend("b").await);
    let host = "web.prod.localhost";
    proxy
        .routes
        .set(host, route(vec![backend("blue", 100, vec![a])]));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..6 {
        let stop = stop.clone();
        let addr = proxy.addr;
        load.push(tokio::spawn(async move {
            let client = client();
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let answer = get(&client, addr, host, "/").await;
                assert_eq!(answer.status, 200, "{}", answer.body);
                // The release header and the instance that answered always agree.
                let expected = if answer.release == "blue" {
                    "a /"
                } else {
                    "b /"
                };
                assert_eq!(answer.body, expected);
                sent += 1;
            }
            sent
        }));
    }
    for flip in 0..100 {
        let next = if flip % 2 == 0 {
            route(vec![
                backend("blue", 0, vec![a]),
                backend("green", 100, vec![b]),
            ])
        } else {
            route(vec![
                backend("blue", 100, vec![a]),
                backend("green", 0, vec![b]),
            ])
        };
        proxy.routes.set(host, next);
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0;
    for task in load {
        sent += task.await.unwrap();
    }
    let now = now_s();
    let served: u64 = ["blue", "green"]
        .iter()
        .map(|r| proxy.metrics.summary(r, now - 120, now + 1).requests)
        .sum();
    assert!(sent > 0);
    assert_eq!(
        served, sent,
        "every request the clients sent was answered and counted once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_instance_is_skipped_with_the_request_body_intact() {
    let proxy = start_proxy().await;
    let (alive, dead) = (named_backend("alive").await, dead_addr().await);
    proxy.routes.set(
        "api.prod.localhost",
        route(vec![backend("r1", 100, vec![dead, alive])]),
    );
    let client = client();
    for i in 0..10 {
        let payload = format!("payload {i}");
        let answer = send(
            &client,
            request(
                proxy.addr,
                "api.prod.localhost",
                "POST",
                "/echo",
                full(&payload),
            ),
        )
        .await;
        assert_eq!(
            (answer.status, answer.body.as_str(), answer.release.as_str()),
            (200, payload.as_str(), "r1")
        );
        let answer = get(&client, proxy.addr, "api.prod.localhost", "/").await;
        assert_eq!((answer.status, answer.body.as_str()), (200, "alive /"));
    }
    let now = now_s();
    let summary = proxy.metrics.summary("r1", now - 120, now + 1);
    assert_eq!(summary.requests, 20);
    assert_eq!(summary.errors_5xx, 0);
    // Round robin starts every other request on the dead instance.
    assert_eq!(summary.connect_failures, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_with_no_live_instance_falls_back_then_fails_as_502() {
    let proxy = start_proxy().await;
    let (alive, dead) = (named_backend("stable").await, dead_addr().await);
    proxy.routes.set(
        "api.prod.localhost",
        route(vec![
            backend("canary", 50, vec![dead]),
            backend("stable", 50, vec![alive]),
        ]),
    );
    let client = client();
    for _ in 0..10 {
        let answer = get(&client, proxy.addr, "api.prod.localhost", "/").await;
        assert_eq!((answer.status, answer.release.as_str()), (200, "stable"));
    }

    proxy.routes.set(
        "down.prod.localhost",
        route(vec![backend("down", 100, vec![dead, dead_addr().await])]),
    );
    let answer = get(&client, proxy.addr, "down.prod.localhost", "/").await;
    assert_eq!((answer.status, answer.release.as_str()), (502, "down"));
    assert!(answer.body.contains("release 'down'"), "{}", answer.body);
    let now = now_s();
    let down = proxy.metrics.summary("down", now - 120, now + 1);
    assert_eq!(
        (down.requests, down.errors_5xx, down.error_rate),
        (1, 1, 1.0)
    );
    let canary = proxy.metrics.summary("canary", now - 120, now + 1);
    assert_eq!((canary.requests, canary.connect_failures), (0, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_set_and_hop_by_hop_headers_dropped() {
    let proxy = start_proxy().await;
    let a = named_backend("a").await;
    proxy.routes.set(
        "api.prod.localhost",
        route(vec![backend("r1", 100, vec![a])]),
    );
    let mut req = request(proxy.addr, "api.prod.localhost:7412", "GET", "/", empty());
    req.headers_mut()
        .insert("x-forwarded-for", "10.1.2.3".parse().unwrap());
    req.headers_mut().insert("x-hop", "secret".parse().unwrap());
    req.headers_mut()
        .insert("connection", "x-hop".parse().unwrap());
    req.headers_mut()
        .insert("keep-alive", "timeout=5".parse().unwrap());
    let answer = send(&client(), req).await;
    let h = |name: &str| {
        answer
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert_eq!(h("x-saw-xff"), "10.1.2.3, 127.0.0.1");
    assert_eq!(h("x-saw-xfh"), "api.prod.localhost:7412");
    assert_eq!(h("x-saw-xfp"), "http");
    assert_eq!(h("x-saw-host"), "api.prod.localhost:7412");
    assert_eq!(h("x-saw-hop"), "");
    assert_eq!(h("x-saw-keep-alive"), "");
    assert!(
        answer.headers.get("x-hop-reply").is_none(),
        "response hop-by-hop header dropped"
    );
    assert_eq!(h("x-pave-release"), "r1");
}

/// Awaits `f`, failing the test instead of hanging if it never completes.
async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(std::time::Duration::from_secs(30), f)
        .await
        .expect("stalled: the proxy held a chunk back")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways_without_buffering() {
    let proxy = start_proxy().await;
    // The backend reads the request's first chunk and reports it, answers
    // with a first chunk, and sends the rest only when the test says so.
    let (got_first, mut first_seen) = mpsc::channel::<Bytes>(1);
    let (release_rest, rest_released) = oneshot::channel::<()>();
    let rest_released = Arc::new(Mutex::new(Some(rest_released)));
    let backend_addr = start_backend(Arc::new(move |req: Request<Incoming>| {
        let got_first = got_first.clone();
        let rest_released = rest_released.lock().unwrap().take();
        Box::pin(async move {
            let mut body = req.into_body();
            let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
            got_first.send(first).await.unwrap();
            let (tx, rx) = mpsc::channel::<Bytes>(1);
            tokio::spawn(async move {
                tx.send(Bytes::from_static(b"first;")).await.unwrap();
                rest_released.unwrap().await.unwrap();
                let rest = body.collect().await.unwrap().to_bytes();
                let mut tail = b"rest:".to_vec();
                tail.extend_from_slice(&rest);
                tx.send(Bytes::from(tail)).await.unwrap();
            });
            hyper::Response::new(Either::Right(ChannelBody(rx)))
        })
    }))
    .await;
    proxy.routes.set(
        "stream.prod.localhost",
        route(vec![backend("r1", 100, vec![backend_addr])]),
    );

    let (upload, upload_rx) = mpsc::channel::<Bytes>(1);
    let req = request(
        proxy.addr,
        "stream.prod.localhost",
        "POST",
        "/",
        Either::Right(ChannelBody(upload_rx)),
    );
    let client = client();
    let response = tokio::spawn(async move { client.request(req).await.unwrap() });
    upload.send(Bytes::from_static(b"up-1")).await.unwrap();
    // The backend sees the first request chunk while the client still holds
    // the second. A buffering proxy would deadlock here: the bound turns that into a failure.
    let first = within(first_seen.recv()).await.unwrap();
    assert_eq!(first, Bytes::from_static(b"up-1"));
    let response = within(response).await.unwrap();
    assert_eq!(response.headers()["x-pave-release"], "r1");
    let mut body = response.into_body();
    // The client reads the first response chunk before the backend sends the second.
    let first = within(body.frame())
        .await
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(first, Bytes::from_static(b"first;"));
    upload.send(Bytes::from_static(b"up-2")).await.unwrap();
    drop(upload);
    release_rest.send(()).unwrap();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, Bytes::from_static(b"rest:up-2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_and_stops_accepting() {
    let mut proxy = start_proxy().await;
    let (entered, mut entered_rx) = mpsc::channel::<()>(1);
    let (finish, finish_rx) = oneshot::channel::<()>();
    let finish_rx = Arc::new(Mutex::new(Some(finish_rx)));
    let slow = start_backend(Arc::new(move |_req| {
        let entered = entered.clone();
        let finish_rx = finish_rx.lock().unwrap().take();
        Box::pin(async move {
            entered.send(()).await.unwrap();
            finish_rx.unwrap().await.unwrap();
            text(200, "done".into())
        })
    }))
    .await;
    proxy.routes.set(
        "slow.prod.localhost",
        route(vec![backend("r1", 100, vec![slow])]),
    );
    let addr = proxy.addr;
    let in_flight =
        tokio::spawn(async move { get(&client(), addr, "slow.prod.localhost", "/").await });
    entered_rx.recv().await.unwrap();
    proxy.shutdown.take().unwrap().send(()).unwrap();
    // Once the listener is closed, new connections are refused.
    let mut refused = false;
    for _ in 0..1000 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(refused, "listener closed after shutdown");
    assert!(
        !proxy.served.is_finished(),
        "serve waits for the in-flight request"
    );
    finish.send(()).unwrap();
    let answer = in_flight.await.unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "done"));
    proxy.served.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_clients_does_not_hurt_the_proxy() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let proxy = start_proxy().await;
    let a = named_backend("a").await;
    proxy.routes.set(
        "api.prod.localhost",
        route(vec![backend("r1", 100, vec![a])]),
    );
    for garbage in [
        &b"\x00\xff\xfe garbage\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET http://api.prod.localhost/abs HTTP/1.1\r\nHost:\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: api.prod.localhost\r\nContent-Length: 99999\r\n\r\nshort",
    ] {
        let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        stream.write_all(garbage).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply).await;
        let reply = String::from_utf8_lossy(&reply);
        assert!(
            reply.is_empty() || reply.starts_with("HTTP/1.1 "),
            "{reply}"
        );
    }
    let answer = get(&client(), proxy.addr, "api.prod.localhost", "/").await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "a /"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_on_the_callers_runtime_without_worker_threads() {
    let mut proxy = start_proxy_with(Some(0)).await;
    let a = named_backend("a").await;
    proxy.routes.set(
        "api.prod.localhost",
        route(vec![backend("r1", 100, vec![a])]),
    );
    let answer = get(&client(), proxy.addr, "api.prod.localhost", "/inline").await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "a /inline"));
    proxy.shutdown.take().unwrap().send(()).unwrap();
    proxy.served.await.unwrap();
}
