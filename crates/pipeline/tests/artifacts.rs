//! The artifact store: digests, write-once blobs, deterministic directory packing.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use pave_pipeline::artifacts::{ArtifactError, ArtifactStore, MEDIA_TYPE_FILE, MEDIA_TYPE_TAR};
use sha2::{Digest, Sha256};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "pave-artifacts-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Blobs are read-only files in writable directories: removal works.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn file_digest_is_the_sha256_of_its_bytes() {
    let t = TempDir::new("file");
    let store = ArtifactStore::open(t.path().join("store")).unwrap();
    let f = t.path().join("app.tar.gz");
    std::fs::write(&f, b"binary\x00content").unwrap();
    let a = store.put_path("app", &f).unwrap();
    assert_eq!(a.digest, format!("sha256:{}", sha(b"binary\x00content")));
    assert_eq!(a.size, 14);
    assert_eq!(a.media_type, MEDIA_TYPE_FILE);
    assert_eq!(a.name, "app");
    assert_eq!(store.read(&a.digest).unwrap(), b"binary\x00content");
    let blob = store.blob_path(&a.digest).unwrap();
    assert!(blob.ends_with(format!("blobs/sha256/{}", sha(b"binary\x00content"))));

    // Same content, another name and path → same digest.
    let g = t.path().join("copy");
    std::fs::write(&g, b"binary\x00content").unwrap();
    assert_eq!(store.put_path("other", &g).unwrap().digest, a.digest);
    // Different content → different digest.
    std::fs::write(&g, b"binary\x00content!").unwrap();
    assert_ne!(store.put_path("other", &g).unwrap().digest, a.digest);
}

#[test]
fn blobs_are_immutable_and_write_once() {
    let t = TempDir::new("immutable");
    let store = ArtifactStore::open(t.path().join("store")).unwrap();
    let f = t.path().join("app");
    std::fs::write(&f, b"v1").unwrap();
    let first = store.put_path("app", &f).unwrap();
    let blob = store.blob_path(&first.digest).unwrap();
    let inode = std::fs::metadata(&blob).unwrap();

    std::fs::write(&f, b"v2").unwrap();
    let second = store.put_path("app", &f).unwrap();
    assert_ne!(second.digest, first.digest);
    assert_eq!(
        store.read(&first.digest).unwrap(),
        b"v1",
        "first blob unchanged"
    );
    assert_eq!(store.read(&second.digest).unwrap(), b"v2");

    // Re-putting v1 does not rewrite the existing blob.
    std::fs::write(&f, b"v1").unwrap();
    assert_eq!(store.put_path("app", &f).unwrap().digest, first.digest);
    use std::os::unix::fs::MetadataExt as _;
    let after = std::fs::metadata(&blob).unwrap();
    assert_eq!(after.ino(), inode.ino());
    assert_eq!(after.permissions().mode() & 0o222, 0, "blobs are read-only");
    // No temp files left behind.
    assert_eq!(
        std::fs::read_dir(t.path().join("store/tmp"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn open_verifies_the_digest() {
    let t = TempDir::new("verify");
    let store = ArtifactStore::open(t.path().join("store")).unwrap();
    let f = t.path().join("app");
    std::fs::write(&f, b"trusted").unwrap();
    let a = store.put_path("app", &f).unwrap();
    let blob = store.blob_path(&a.digest).unwrap();
    std::fs::set_permissions(&blob, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&blob, b"tampered").unwrap();
    assert!(matches!(
        store.open_blob(&a.digest),
        Err(ArtifactError::Corrupt { .. })
    ));
    assert!(matches!(
        store.read(&a.digest),
        Err(ArtifactError::Corrupt { .. })
    ));
    let missing = format!("sha256:{}", sha(b"nothing"));
    assert!(matches!(
        store.open_blob(&missing),
        Err(ArtifactError::NotFound(_))
    ));
    assert!(matches!(
        store.open_blob("sha256:../../etc/passwd"),
        Err(ArtifactError::InvalidDigest(_))
    ));
    assert!(matches!(
        store.put_path("a/b", &f),
        Err(ArtifactError::InvalidName(_))
    ));
    assert!(matches!(
        store.put_path("x", &t.path().join("nope")),
        Err(ArtifactError::Io { .. })
    ));
}

/// Builds the same logical tree with different creation order, mtimes and
/// irrelevant permission bits.
fn make_tree(root: &Path, reverse: bool) {
    let long_dir = "d".repeat(60);
    let long_name = format!("{}/{}.txt", long_dir, "n".repeat(70));
    let mut files: Vec<(String, &[u8], u32)> = vec![
        ("b.txt".into(), b"bee\n", 0o644),
        ("a/z.txt".into(), b"zed\n", 0o600),
        ("a/run.sh".into(), b"#!/bin/sh\necho hi\n", 0o700),
        ("empty.bin".into(), b"", 0o644),
        (long_name, b"long path\n", 0o640),
    ];
    if reverse {
        files.reverse();
    }
    for (path, content, mode) in files {
        let p = root.join(&path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::create_dir_all(root.join("emptydir")).unwrap();
    std::os::unix::fs::symlink("../b.txt", root.join("a/link")).unwrap();
    if reverse {
        // Different mtimes.
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let f = std::fs::File::options()
            .write(true)
            .open(root.join("b.txt"))
            .unwrap();
        f.set_modified(t).unwrap();
    }
}

#[test]
fn directories_pack_deterministically_into_a_valid_tar() {
    let t = TempDir::new("dir");
    let store = ArtifactStore::open(t.path().join("store")).unwrap();
    let one = t.path().join("one");
    let two = t.path().join("two");
    make_tree(&one, false);
    std::thread::sleep(std::time::Duration::from_millis(20));
    make_tree(&two, true);
    let a = store.put_path("dist", &one).unwrap();
    let b = store.put_path("dist", &two).unwrap();
    assert_eq!(a.media_type, MEDIA_TYPE_TAR);
    assert_eq!(a.digest, b.digest, "identical trees give identical digests");
    assert_eq!(a.size % 512, 0);

    // The system tar reads it back to the same tree.
    let blob = store.blob_path(&a.digest).unwrap();
    let listing = Command::new("tar").arg("-tvf").arg(&blob).output().unwrap();
    assert!(listing.status.success(), "{listing:?}");
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("-rwxr-xr-x 0/0"), "{listing}");
    assert!(listing.contains("a/link -> ../b.txt"), "{listing}");
    let out = t.path().join("extracted");
    std::fs::create_dir_all(&out).unwrap();
    let status = Command::new("tar")
        .arg("-xf")
        .arg(&blob)
        .arg("-C")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let long = format!("{}/{}.txt", "d".repeat(60), "n".repeat(70));
    assert_eq!(std::fs::read(out.join(&long)).unwrap(), b"long path\n");
    assert_eq!(std::fs::read(out.join("a/z.txt")).unwrap(), b"zed\n");
    assert!(out.join("emptydir").is_dir());
    let mode = std::fs::metadata(out.join("a/run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111);
    assert_eq!(
        std::fs::read_link(out.join("a/link")).unwrap(),
        Path::new("../b.txt")
    );
    // Re-packing the extracted tree gives the same digest again.
    assert_eq!(store.put_path("dist", &out).unwrap().digest, a.digest);

    // Any content change changes the digest.
    std::fs::write(two.join("a/z.txt"), b"zed!\n").unwrap();
    assert_ne!(store.put_path("dist", &two).unwrap().digest, a.digest);
    // So does an executable bit, or a rename.
    std::fs::write(two.join("a/z.txt"), b"zed\n").unwrap();
    std::fs::set_permissions(two.join("b.txt"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_ne!(store.put_path("dist", &two).unwrap().digest, a.digest);
    std::fs::set_permissions(two.join("b.txt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(store.put_path("dist", &two).unwrap().digest, a.digest);
    std::fs::rename(two.join("empty.bin"), two.join("empty2.bin")).unwrap();
    assert_ne!(store.put_path("dist", &two).unwrap().digest, a.digest);
}
