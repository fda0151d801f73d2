//! The process runtime with real processes: start, health, restarts, stop,
//! logs.

mod runtime_common;

use std::time::Duration;

use pave_deploy::runtime::{InstanceEvent, ProcessRuntime, RuntimeError};
use runtime_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_instance_sees_its_port_and_env_and_becomes_healthy() {
    let root = scratch_dir("start");
    let workdir = app_dir(&root);
    let _cleanup = KillLeftovers(root.join("state"));
    let rt = ProcessRuntime::new(root.join("state"));
    let inst = rt
        .start(spec("hello", "v1", 0, &workdir, "exec python3 server.py"))
        .await
        .expect("start");
    assert_eq!(inst.id.as_str(), "hello.test.v1.0");
    assert_eq!(inst.addr.port(), inst.port);
    rt.wait_healthy(&inst.id, PATIENCE).await.expect("healthy");
    assert!(rt.is_healthy(&inst.id));

    let env: serde_json::Value =
        serde_json::from_str(&get(inst.addr, "/env").await).expect("env json");
    assert_eq!(env["PORT"], inst.port.to_string());
    assert_eq!(env["PAVE_SERVICE"], "hello");
    assert_eq!(env["PAVE_ENV"], "test");
    assert_eq!(env["PAVE_RELEASE"], "v1");
    assert_eq!(env["PAVE_INSTANCE"], "hello.test.v1.0");
    assert_eq!(env["GREETING"], "hello from the spec");
    let cwd = std::fs::canonicalize(&workdir).expect("canonical workdir");
    assert_eq!(env["cwd"], cwd.to_string_lossy().as_ref());
    if std::env::var_os("CARGO_MANIFEST_DIR").is_some() {
        // The server's own environment does not leak into instances.
        assert!(env["CARGO_MANIFEST_DIR"].is_null(), "{env}");
    }
    assert_eq!(rt.list(), vec![inst.clone()]);

    rt.stop(&inst.id, Duration::from_secs(10))
        .await
        .expect("stop");
    wait_for("the instance to exit", || !alive(inst.pid)).await;
    assert!(rt.list().is_empty());
    assert!(!rt.is_healthy(&inst.id));
    // Idempotent.
    rt.stop(&inst.id, Duration::from_secs(10))
        .await
        .expect("stop again");
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_never_becomes_healthy_fails_within_its_deadline() {
    let root = scratch_dir("unhealthy");
    let workdir = app_dir(&root);
    let _cleanup = KillLeftovers(root.join("state"));
    let rt = ProcessRuntime::new(root.join("state"));
    let sick = rt
        .start(spec(
            "sick",
            "v1",
            0,
            &workdir,
            "exec python3 server.py sick",
        ))
        .await
        .expect("start sick");
    let hang = rt
        .start(spec(
            "hang",
            "v1",
            0,
            &workdir,
            "exec python3 server.py hang",
        ))
        .await
        .expect("start hang");
    let gone = rt
        .start(spec(
            "gone",
            "v1",
            0,
            &workdir,
            "echo no such binary here >&2; exit 3",
        ))
        .await
        .expect("start gone");
    let deadline = Duration::from_secs(4);
    let (a, b, c) = tokio::join!(
        rt.wait_healthy(&sick.id, deadline),
        rt.wait_healthy(&hang.id, deadline),
        rt.wait_healthy(&gone.id, deadline),
    );
    let msg = |r: Result<(), RuntimeError>| match r {
        Err(e @ RuntimeError::NotHealthy { .. }) => e.to_string(),
        other => panic!("expected NotHealthy, got {other:?}"),
    };
    let (a, b, c) = (msg(a), msg(b), msg(c));
    assert!(a.contains("HTTP 503"), "{a}");
    assert!(b.contains("no answer within"), "{b}");
    assert!(c.contains("exited with code 3"), "{c}");
    assert!(c.contains("no such binary here"), "{c}");
    assert!(!rt.is_healthy(&sick.id) && !rt.is_healthy(&hang.id) && !rt.is_healthy(&gone.id));
    for inst in [&sick, &hang, &gone] {
        rt.stop(&inst.id, Duration::from_secs(5))
            .await
            .expect("stop");
    }
    assert!(rt.list().is_empty());
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_is_restarted_with_backoff_and_healthy_again() {
    let root = scratch_dir("restart");
    let workdir = app_dir(&root);
    let _cleanup = KillLeftovers(root.join("state"));
    let rt = ProcessRuntime::new(root.join("state"));
    let mut events = rt.events();
    let inst = rt
        .start(spec("crashy", "v1", 0, &workdir, "exec python3 server.py"))
        .await
        .expect("start");
    events_until(&mut events, &inst.id, |e| {
        matches!(e, InstanceEvent::Healthy { .. })
    })
    .await;

    kill(inst.pid, libc::SIGKILL);
    let seen = events_until(&mut events, &inst.id, |e| {
        matches!(e, InstanceEvent::Healthy { .. })
    })
    .await;
    let kinds: Vec<&str> = seen
        .iter()
        .map(|e| match e {
            InstanceEvent::Exited {
                signal: Some(9),
                pid,
                ..
            } if *pid == inst.pid => "exited(9)",
            InstanceEvent::Unhealthy { .. } => "unhealthy",
            InstanceEvent::Restarting {
                attempt: 1,
                backoff,
                ..
            } if *backoff == Duration::from_millis(500) => "restarting(1, 500ms)",
            InstanceEvent::Started { attempt: 1, .. } => "started(1)",
            InstanceEvent::AddrChanged { .. } => "addr-changed",
            InstanceEvent::Healthy { .. } => "healthy",
            _ => "other",
        })
        .collect();
    let expected = [
        "exited(9)",
        "unhealthy",
        "restarting(1, 500ms)",
        "started(1)",
        "healthy",
    ];
    let without_move: Vec<&str> = kinds
        .iter()
        .copied()
        .filter(|k| *k != "addr-changed")
        .collect();
    assert_eq!(without_move, expected, "{seen:#?}");

    let now = rt.get(&inst.id).expect("still supervised");
    assert_ne!(now.pid, inst.pid);
    assert!(alive(now.pid));
    assert!(rt.is_healthy(&inst.id));
    assert!(get(now.addr, "/env").await.contains("crashy"));
    rt.stop(&inst.id, Duration::from_secs(10))
        .await
        .expect("stop");
    wait_for("the restarted process to exit", || !alive(now.pid)).await;
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_backs_off_longer_each_time_and_stays_unhealthy() {
    let root = scratch_dir("crashloop");
    let workdir = app_dir(&root);
    let _cleanup = KillLeftovers(root.join("state"));
    let rt = ProcessRuntime::new(root.join("state"));
    let mut events = rt.events();
    let inst = rt
        .start(spec("loop", "v1", 0, &workdir, "echo boom; exit 1"))
        .await
        .expect("start");
    let seen = events_until(&mut events, &inst.id, |e| {
        matches!(e, InstanceEvent::Restarting { attempt: 3, .. })
    })
    .await;
    let backoffs: Vec<(u32, Duration)> = seen
        .iter()
        .filter_map(|e| match e {
            InstanceEvent::Restarting {
                attempt, backoff, ..
            } => Some((*attempt, *backoff)),
            _ => None,
        })
        .collect();
    assert_eq!(
        backoffs,
        vec![
            (1, Duration::from_millis(500)),
            (2, Duration::from_secs(1)),
            (3, Duration::from_secs(2)),
        ]
    );
    assert!(
        seen.iter()
            .any(|e| matches!(e, InstanceEvent::Exited { code: Some(1), .. }))
    );
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, InstanceEvent::Healthy { .. }))
    );
    assert!(!rt.is_healthy(&inst.id));

    // Stopping while it waits to restart ends the loop.
    rt.stop(&inst.id, Duration::from_secs(5))
        .await
        .expect("stop");
    events_until(&mut events, &inst.id, |e| {
        matches!(e, InstanceEvent::Stopped { .. })
    })
    .await;
    assert!(rt.list().is_empty());
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_whose_port_was_taken_moves_to_a_new_port_and_says_so() {
    let root = scratch_dir("moved");
    let workdir = app_dir(&root);
    let _cleanup = KillLeftovers(root.join("state"));
    let rt = ProcessRuntime::new(root.join("state"));
    let mut events = rt.events();
    // Exits without ever binding $PORT, so the test can take the port.
    let inst = rt
        .start(spec("mover", "v1", 0, &workdir, "sleep 1; exit 1"))
        .await
        .expect("start");
    let squatter = std::net::TcpListener::bind(inst.addr).expect("take the instance's port");
    let seen = events_until(&mut events, &inst.id, |e| {
        matches!(e, InstanceEvent::Started { attempt: 1, .. })
    })
    .await;
    let moved = seen.iter().find_map(|e| match e {
        InstanceEvent::AddrChanged { old, new, .. } => Some((*old, *new)),
        _ => None,
    });
    let (old, new) = moved.unwrap_or_else(|| panic!("no AddrChanged in {seen:#?}"));
    assert_eq!(old, inst.addr);
    assert_ne!(new, inst.addr);
    assert_eq!(rt.get(&inst.id).expect("supervised").addr, new);
    drop(squatter);
    rt.stop(&inst.id, Duration::from_secs(5))
        .await
        .expect("stop");
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_kills_a_process_group_that_ignores_sigterm_after_the_grace() {
    let root = scratch_dir("stubborn");
    let workdir = app_dir(&root);
    let _cleanup = KillLeftovers(root.join("state"));
    let rt = ProcessRuntime::new(root.join("state"));
    let mut events = rt.events();
    let inst = rt
        .start(spec(
            "stubborn",
            "v1",
            0,
            &workdir,
            "exec python3 server.py stubborn",
        ))
        .await
        .expect("start");
    rt.wait_healthy(&inst.id, PATIENCE).await.expect("healthy");
    let pid_file = workdir.join("grandchild.pid");
    wait_for("the grandchild pid", || pid_file.exists()).await;
    let grandchild: u32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(alive(grandchild));

    // It really ignores SIGTERM: the group survives one.
    // SAFETY: plain syscall.
    unsafe {
        libc::killpg(inst.pid as i32, libc::SIGTERM);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(alive(inst.pid) && alive(grandchild));

    rt.stop(&inst.id, Duration::from_secs(1))
        .await
        .expect("stop");
    wait_for("the leader to be gone", || !alive(inst.pid)).await;
    wait_for("the grandchild to be gone", || !alive(grandchild)).await;
    events_until(&mut events, &inst.id, |e| {
        matches!(e, InstanceEvent::Stopped { .. })
    })
    .await;
    let log = std::fs::read_to_string(rt.log_path(&inst.id)).expect("log");
    assert!(log.contains("[pave] stopped"), "{log}");
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_captured_and_tailed_per_service() {
    let root = scratch_dir("logs");
    let workdir = app_dir(&root);
    let _cleanup = KillLeftovers(root.join("state"));
    let rt = ProcessRuntime::new(root.join("state"));
    let cmd = "echo to-stdout; echo to-stderr >&2; exec python3 server.py";
    let a = rt
        .start(spec("logged", "v1", 0, &workdir, cmd))
        .await
        .expect("start a");
    let other = rt
        .start(spec(
            "other",
            "v1",
            0,
            &workdir,
            "echo not-mine; exec python3 server.py",
        ))
        .await
        .expect("start other");
    rt.wait_healthy(&a.id, PATIENCE).await.expect("healthy");
    rt.wait_healthy(&other.id, PATIENCE).await.expect("healthy");

    let tail = rt.tail_logs("logged", "test", 100).await;
    let lines: Vec<&str> = tail.iter().map(|l| l.line.as_str()).collect();
    assert!(lines.contains(&"to-stdout"), "{lines:?}");
    assert!(lines.contains(&"to-stderr"), "{lines:?}");
    assert!(
        lines.contains(&format!("listening on {}", a.port).as_str()),
        "{lines:?}"
    );
    assert!(!lines.contains(&"not-mine"), "{lines:?}");
    assert!(tail.iter().all(|l| l.instance == a.id));
    let last_two = rt.tail_logs("logged", "test", 2).await;
    assert_eq!(last_two.len(), 2);
    assert_eq!(last_two[..], tail[tail.len() - 2..]);
    assert!(rt.tail_logs("nobody", "test", 10).await.is_empty());

    // Logs stay readable after the instance is stopped.
    rt.stop(&a.id, Duration::from_secs(5)).await.expect("stop");
    rt.stop(&other.id, Duration::from_secs(5))
        .await
        .expect("stop");
    let after = rt.tail_logs("logged", "test", 100).await;
    assert!(after.iter().any(|l| l.line == "to-stdout"));
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_specs_are_refused_and_nothing_runs() {
    let root = scratch_dir("bad");
    let workdir = app_dir(&root);
    let _cleanup = KillLeftovers(root.join("state"));
    let rt = ProcessRuntime::new(root.join("state"));
    let mut bad_name = spec("a/b", "v1", 0, &workdir, "true");
    assert!(matches!(
        rt.start(bad_name.clone()).await,
        Err(RuntimeError::InvalidSpec { .. })
    ));
    bad_name.service = "ok".into();
    bad_name.release = "../x".into();
    assert!(matches!(
        rt.start(bad_name).await,
        Err(RuntimeError::InvalidSpec { .. })
    ));
    let missing = spec("nowhere", "v1", 0, &root.join("missing"), "true");
    assert!(matches!(
        rt.start(missing).await,
        Err(RuntimeError::Workdir { .. })
    ));
    assert!(rt.list().is_empty());

    let inst = rt
        .start(spec("twice", "v1", 0, &workdir, "exec python3 server.py"))
        .await
        .expect("start");
    let again = rt
        .start(spec("twice", "v1", 0, &workdir, "exec python3 server.py"))
        .await;
    assert!(
        matches!(again, Err(RuntimeError::AlreadyRunning(_))),
        "{again:?}"
    );
    assert_eq!(rt.list().len(), 1);
    rt.stop(&inst.id, Duration::from_secs(5))
        .await
        .expect("stop");
    let _ = std::fs::remove_dir_all(&root);
}
