//! `pave demo --exit` end to end: Pave, a python-http service from the
//! golden path, its pipeline, dev → staging → prod under load, and the bad
//! release rolled back by the canary on its own.

mod common;

use common::{pave_cmd, scratch_dir, stderr, stdout};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_demo_ships_a_service_and_rolls_back_the_bad_release() {
    let dir = scratch_dir("demo");
    let listen = format!("127.0.0.1:{}", free_port());
    let edge = format!("127.0.0.1:{}", free_port());
    let out = pave_cmd(&dir)
        .args([
            "demo",
            "--exit",
            "--listen",
            &listen,
            "--edge-listen",
            &edge,
        ])
        .output()
        .expect("run pave demo");
    // The demo's narration and the commands it runs share stdout and stderr.
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{text}");
    for line in [
        "deployment #1 of hello to dev succeeded",
        "deployment #1 of hello to staging succeeded",
        "deployment #2 of hello to prod succeeded",
        "deployment #3 of hello to prod rolled back",
        "The canary analysis rolled the bad release back on its own",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    // The service repository came from the golden path, with its lock file.
    assert!(dir.join("pave-demo/hello/.pave/template.lock").is_file());
}
