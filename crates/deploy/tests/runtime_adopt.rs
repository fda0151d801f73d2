//! A server crash, simulated by dropping the runtime: instances keep
//! running, and a new runtime on the same state dir adopts exactly them.

mod runtime_common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use pave_deploy::runtime::{InstanceEvent, InstanceId, ProcessRuntime, RuntimeError};
use runtime_common::*;

fn record_files(state: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(state.join("instances"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_runtime_adopts_running_instances_instead_of_duplicating_them() {
    let root = scratch_dir("adopt");
    let workdir = app_dir(&root);
    let state = root.join("state");
    let _cleanup = KillLeftovers(state.clone());
    let rt1 = ProcessRuntime::new(state.clone());
    let a = rt1
        .start(spec("adoptee", "v1", 0, &workdir, "exec python3 server.py"))
        .await
        .expect("start a");
    let b = rt1
        .start(spec("adoptee", "v1", 1, &workdir, "exec python3 server.py"))
        .await
        .expect("start b");
    rt1.wait_healthy(&a.id, PATIENCE).await.expect("a healthy");
    rt1.wait_healthy(&b.id, PATIENCE).await.expect("b healthy");

    drop(rt1);
    // Give the aborted supervisors a moment: they must not take anything down.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        alive(a.pid) && alive(b.pid),
        "instances must outlive the runtime"
    );

    let rt2 = ProcessRuntime::new(state.clone());
    let mut events = rt2.events();
    let mut adopted = rt2.adopt();
    adopted.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(adopted, vec![a.clone(), b.clone()]);
    assert!(rt2.adopt().is_empty(), "adopting twice takes nothing new");
    assert_eq!(rt2.list(), vec![a.clone(), b.clone()]);
    let dup = rt2
        .start(spec("adoptee", "v1", 0, &workdir, "exec python3 server.py"))
        .await;
    assert!(
        matches!(dup, Err(RuntimeError::AlreadyRunning(_))),
        "{dup:?}"
    );

    // A runtime that did not adopt still refuses to start a duplicate.
    let rt3 = ProcessRuntime::new(state.clone());
    let dup = rt3
        .start(spec("adoptee", "v1", 1, &workdir, "exec python3 server.py"))
        .await;
    assert!(
        matches!(dup, Err(RuntimeError::AlreadyRunning(_))),
        "{dup:?}"
    );
    drop(rt3);

    rt2.wait_healthy(&a.id, PATIENCE)
        .await
        .expect("adopted a healthy");
    wait_for("background checks to see b healthy", || {
        rt2.is_healthy(&b.id)
    })
    .await;
    assert!(get(a.addr, "/env").await.contains("adoptee.test.v1.0"));

    // Adopted processes are supervised: a crash is noticed and restarted.
    kill(b.pid, libc::SIGKILL);
    let seen = events_until(&mut events, &b.id, |e| {
        matches!(e, InstanceEvent::Started { attempt: 1, .. })
    })
    .await;
    assert!(
        seen.iter()
            .any(|e| matches!(e, InstanceEvent::Exited { pid, .. } if *pid == b.pid)),
        "{seen:#?}"
    );
    events_until(&mut events, &b.id, |e| {
        matches!(e, InstanceEvent::Healthy { .. })
    })
    .await;
    let b_now = rt2.get(&b.id).expect("b supervised");
    assert_ne!(b_now.pid, b.pid);

    rt2.stop(&a.id, Duration::from_secs(10))
        .await
        .expect("stop a");
    rt2.stop(&b.id, Duration::from_secs(10))
        .await
        .expect("stop b");
    wait_for("adopted a to exit", || !alive(a.pid)).await;
    wait_for("restarted b to exit", || !alive(b_now.pid)).await;
    assert!(rt2.list().is_empty());
    assert!(
        record_files(&state).is_empty(),
        "{:?}",
        record_files(&state)
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_records_are_dropped_and_nothing_is_killed() {
    let root = scratch_dir("stale");
    let workdir = app_dir(&root);
    let state = root.join("state");
    let _cleanup = KillLeftovers(state.clone());
    let rt1 = ProcessRuntime::new(state.clone());
    let dead = rt1
        .start(spec("stale", "v1", 0, &workdir, "exec python3 server.py"))
        .await
        .expect("start");
    let reused = rt1
        .start(spec("stale", "v1", 1, &workdir, "exec python3 server.py"))
        .await
        .expect("start");
    rt1.wait_healthy(&dead.id, PATIENCE).await.expect("healthy");
    drop(rt1);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // One instance died while no server watched.
    kill(dead.pid, libc::SIGKILL);
    wait_for("the instance to die", || !alive(dead.pid)).await;

    // The other record now names a pid that belongs to someone else (a
    // process leading its own group, like an instance would).
    let mut stranger = std::process::Command::new("sleep")
        .arg("1000")
        .process_group(0)
        .spawn()
        .expect("spawn stranger");
    let record = state.join("instances").join(format!("{}.json", reused.id));
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).expect("record")).expect("record json");
    json["pid"] = serde_json::json!(stranger.id());
    std::fs::write(&record, serde_json::to_vec(&json).expect("json")).expect("rewrite record");

    let rt2 = ProcessRuntime::new(state.clone());
    assert!(rt2.adopt().is_empty());
    assert!(rt2.list().is_empty());
    assert!(
        record_files(&state).is_empty(),
        "{:?}",
        record_files(&state)
    );
    assert!(
        alive(stranger.id()),
        "a stranger with a recycled pid was killed"
    );
    // Stopping by id has no record left to act on: still nothing killed.
    rt2.stop(&reused.id, Duration::from_secs(1))
        .await
        .expect("stop");
    assert!(alive(stranger.id()));

    let _ = stranger.kill();
    let _ = stranger.wait();
    // The real process of the tampered record is ours to clean up.
    kill(reused.pid, libc::SIGKILL);
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_without_adopting_stops_an_earlier_servers_instance() {
    let root = scratch_dir("stoprecord");
    let workdir = app_dir(&root);
    let state = root.join("state");
    let _cleanup = KillLeftovers(state.clone());
    let rt1 = ProcessRuntime::new(state.clone());
    let inst = rt1
        .start(spec("orphan", "v1", 0, &workdir, "exec python3 server.py"))
        .await
        .expect("start");
    drop(rt1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(alive(inst.pid));

    let rt2 = ProcessRuntime::new(state.clone());
    let id = InstanceId::new("orphan", "test", "v1", 0);
    rt2.stop(&id, Duration::from_secs(10)).await.expect("stop");
    wait_for("the instance to exit", || !alive(inst.pid)).await;
    assert!(record_files(&state).is_empty());
    assert!(rt2.adopt().is_empty());
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_whose_record_was_never_written_is_not_left_running() {
    let root = scratch_dir("unrecorded");
    let workdir = app_dir(&root);
    let state = root.join("state");
    let _cleanup = KillLeftovers(state.clone());
    let rt1 = ProcessRuntime::new(state.clone());
    let lost = rt1
        .start(spec("lost", "v1", 0, &workdir, "exec python3 server.py"))
        .await
        .expect("start lost");
    let kept = rt1
        .start(spec("kept", "v1", 0, &workdir, "exec python3 server.py"))
        .await
        .expect("start kept");
    drop(rt1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // As if the server died between spawning `lost` and writing its record.
    std::fs::remove_file(state.join("instances").join(format!("{}.json", lost.id)))
        .expect("remove record");
    assert!(alive(lost.pid));

    let rt2 = ProcessRuntime::new(state.clone());
    let adopted: Vec<InstanceId> = rt2.adopt().into_iter().map(|i| i.id).collect();
    assert_eq!(adopted, vec![kept.id.clone()]);
    let killed = {
        let deadline = std::time::Instant::now() + PATIENCE;
        while alive(lost.pid) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        !alive(lost.pid)
    };
    if !killed {
        kill(lost.pid, libc::SIGKILL);
    }
    assert!(killed, "an unrecorded instance was left running");
    assert!(alive(kept.pid), "the recorded instance must survive");
    rt2.stop(&kept.id, Duration::from_secs(10))
        .await
        .expect("stop kept");
    let _ = std::fs::remove_dir_all(&root);
}
