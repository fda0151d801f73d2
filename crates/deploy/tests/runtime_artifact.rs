//! Unpacking release artifacts into working directories.

mod runtime_common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use pave_deploy::runtime::{RuntimeError, unpack_artifact};
use runtime_common::scratch_dir;

fn tar(dir: &Path, args: &[&str]) {
    let out = Command::new("tar")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run tar");
    assert!(
        out.status.success(),
        "tar {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_exec(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn is_exec(path: &Path) -> bool {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o111
        != 0
}

#[test]
fn a_tarball_is_unpacked_with_modes_kept_even_without_an_extension() {
    let root = scratch_dir("tgz");
    let src = root.join("src");
    std::fs::create_dir_all(src.join("bin")).expect("src");
    write_exec(&src.join("bin/run"), "#!/bin/sh\necho hi\n");
    std::fs::write(src.join("config.txt"), "port from env\n").expect("config");
    tar(&src, &["-czf", "../app.tar.gz", "."]);

    let dest = root.join("dest");
    unpack_artifact(&root.join("app.tar.gz"), &dest).expect("unpack");
    assert_eq!(
        std::fs::read_to_string(dest.join("config.txt")).expect("config"),
        "port from env\n"
    );
    assert!(is_exec(&dest.join("bin/run")));

    // Content-addressed blobs have no extension: the content decides.
    let blob = root.join("sha256-0123abcd");
    std::fs::copy(root.join("app.tar.gz"), &blob).expect("copy");
    let dest2 = root.join("dest2");
    unpack_artifact(&blob, &dest2).expect("unpack blob");
    assert!(is_exec(&dest2.join("bin/run")));
    assert!(!dest2.join("sha256-0123abcd").exists());

    // A plain tar too.
    tar(&src, &["-cf", "../app.tar", "."]);
    let dest3 = root.join("dest3");
    unpack_artifact(&root.join("app.tar"), &dest3).expect("unpack tar");
    assert!(dest3.join("config.txt").exists());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_single_file_is_copied_with_its_exec_bit() {
    let root = scratch_dir("single");
    let bin = root.join("server");
    write_exec(&bin, "#!/bin/sh\nexec python3 -m http.server \"$PORT\"\n");
    let dest = root.join("dest");
    unpack_artifact(&bin, &dest).expect("unpack");
    assert_eq!(
        std::fs::read(dest.join("server")).expect("copied"),
        std::fs::read(&bin).expect("orig")
    );
    assert!(is_exec(&dest.join("server")));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn archives_reaching_outside_the_destination_are_refused_untouched() {
    let root = scratch_dir("evil");
    let src = root.join("src/inner");
    std::fs::create_dir_all(&src).expect("src");
    std::fs::write(root.join("src/outside.txt"), "escaped").expect("outside");
    std::fs::write(src.join("fine.txt"), "fine").expect("fine");
    // -P keeps the leading "../" in member names.
    tar(
        &src,
        &["-cPf", "../../dotdot.tar", "fine.txt", "../outside.txt"],
    );

    let dest = root.join("work/dest");
    let err = unpack_artifact(&root.join("dotdot.tar"), &dest).expect_err("must refuse");
    assert!(matches!(err, RuntimeError::Artifact { .. }), "{err:?}");
    assert!(err.to_string().contains("outside the destination"), "{err}");
    assert!(!root.join("work/outside.txt").exists());
    assert!(
        !dest.join("fine.txt").exists(),
        "nothing is written from a refused archive"
    );

    // A symlink out of the tree, followed by a write through it.
    let linky = root.join("linky");
    std::fs::create_dir_all(&linky).expect("linky");
    std::os::unix::fs::symlink("/tmp", linky.join("escape")).expect("symlink");
    tar(&linky, &["-cf", "../link.tar", "escape"]);
    let err = unpack_artifact(&root.join("link.tar"), &root.join("dest-link")).expect_err("refuse");
    assert!(err.to_string().contains("symlink"), "{err}");

    // Garbage that claims to be a tarball is an error, not a panic.
    std::fs::write(root.join("junk.tar.gz"), b"not gzip at all").expect("junk");
    assert!(unpack_artifact(&root.join("junk.tar.gz"), &root.join("dest-junk")).is_err());
    assert!(unpack_artifact(&root.join("missing.tgz"), &root.join("dest-missing")).is_err());
    let _ = std::fs::remove_dir_all(&root);
}
