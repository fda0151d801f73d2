//! The content-addressed step cache with real steps and files.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use pave_pipeline::cache::{CacheError, CacheLookup, CacheSpec, CacheStore, cache_key};
use pave_pipeline::exec::{CancelSignal, LogLine, LogStream, StepCommand, StepOutcome, run_step};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "pave-cache-test-{tag}-{}-{}",
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
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const BUILD: &str = r#"echo "building" 
echo run >> "$COUNTER"
mkdir -p dist/sub dist/empty
cat src/*.txt > dist/out.txt
printf '#!/bin/sh\necho hi\n' > dist/sub/run.sh
chmod 755 dist/sub/run.sh
head -c 100000 /dev/urandom > dist/sub/blob.bin
ln -sf out.txt dist/link
echo "single" > report.txt
echo "first=$(head -n1 src/a.txt)" >> "$PAVE_OUTPUT"
echo "warn: flag $MODE" >&2
"#;

struct Fixture {
    _root: TempDir,
    ws: PathBuf,
    counter: PathBuf,
    store: CacheStore,
    spec: CacheSpec,
}

fn fixture(tag: &str) -> Fixture {
    let root = TempDir::new(tag);
    let ws = root.path().join("ws");
    std::fs::create_dir_all(ws.join("src")).unwrap();
    std::fs::write(ws.join("src/a.txt"), "alpha\n").unwrap();
    std::fs::write(ws.join("src/b.txt"), "beta\n").unwrap();
    std::fs::write(ws.join("README"), "not an input\n").unwrap();
    let counter = root.path().join("counter");
    let store = CacheStore::open(root.path().join("cache")).unwrap();
    let spec = CacheSpec {
        inputs: vec!["src/**/*.txt".into(), "missing/*.c".into()],
        outputs: vec!["dist".into(), "report.txt".into()],
        env: vec!["MODE".into()],
    };
    Fixture {
        _root: root,
        ws,
        counter,
        store,
        spec,
    }
}

impl Fixture {
    fn cmd(&self) -> StepCommand {
        let mut cmd = StepCommand::new(BUILD, &self.ws);
        cmd.env
            .insert("COUNTER".into(), self.counter.display().to_string());
        cmd.env.insert("MODE".into(), "release".into());
        cmd.env.insert("UNRELATED".into(), "1".into());
        cmd
    }

    fn runs(&self) -> usize {
        std::fs::read_to_string(&self.counter)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// What the integrator does: key → restore or run+save.
    async fn run_cached(
        &self,
        cmd: &StepCommand,
    ) -> (bool, Vec<LogLine>, BTreeMap<String, String>) {
        let key = cache_key(&self.ws, cmd, &self.spec).unwrap();
        match self.store.restore(&key, &self.ws).unwrap() {
            CacheLookup::Hit(hit) => (true, hit.log, hit.outputs),
            CacheLookup::Miss | CacheLookup::Corrupt(_) => {
                let mut log = Vec::new();
                let res = run_step(cmd, &mut log, &CancelSignal::new()).await.unwrap();
                assert_eq!(res.outcome, StepOutcome::Success, "{log:?}");
                self.store
                    .save(&key, &self.ws, &self.spec.outputs, &log, &res.outputs)
                    .unwrap();
                (false, log, res.outputs)
            }
        }
    }
}

fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    let mut out = BTreeMap::new();
    fn rec(base: &Path, dir: &Path, out: &mut BTreeMap<String, (Vec<u8>, u32)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                out.insert(rel, (t.display().to_string().into_bytes(), 0o120000));
            } else if meta.is_dir() {
                out.insert(rel, (Vec::new(), 0o040000));
                rec(base, &p, out);
            } else {
                let mode = meta.permissions().mode() & 0o777;
                out.insert(rel, (std::fs::read(&p).unwrap(), mode));
            }
        }
    }
    rec(dir, dir, &mut out);
    out
}

#[tokio::test]
async fn miss_run_save_then_hit_restores_byte_identical_outputs() {
    let f = fixture("hit");
    let cmd = f.cmd();
    let (hit, log1, out1) = f.run_cached(&cmd).await;
    assert!(!hit);
    assert_eq!(f.runs(), 1);
    assert_eq!(out1["first"], "alpha");
    let before = snapshot(&f.ws);

    // A fresh checkout: outputs gone.
    std::fs::remove_dir_all(f.ws.join("dist")).unwrap();
    std::fs::remove_file(f.ws.join("report.txt")).unwrap();

    let (hit, log2, out2) = f.run_cached(&cmd).await;
    assert!(hit, "second run must hit");
    assert_eq!(f.runs(), 1, "the command was skipped");
    assert_eq!(out2, out1, "step outputs replayed");
    assert_eq!(log2, log1, "log replayed");
    assert!(log2.contains(&LogLine {
        stream: LogStream::Stderr,
        text: "warn: flag release".into()
    }));
    assert_eq!(
        snapshot(&f.ws),
        before,
        "restored tree is byte- and mode-identical"
    );
    assert_eq!(
        std::fs::metadata(f.ws.join("dist/sub/run.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    assert!(f.ws.join("dist/empty").is_dir());
}

#[tokio::test]
async fn key_depends_on_inputs_script_and_named_env_only() {
    let f = fixture("key");
    let cmd = f.cmd();
    let base = cache_key(&f.ws, &cmd, &f.spec).unwrap();
    assert_eq!(base.len(), 64);
    assert_eq!(
        cache_key(&f.ws, &cmd, &f.spec).unwrap(),
        base,
        "deterministic"
    );

    // Same tree in another workspace location → same key (paths are relative).
    let g = fixture("key2");
    assert_eq!(
        cache_key(&g.ws, &g.cmd_with_counter(&f.counter), &g.spec).unwrap(),
        base
    );

    // Unnamed env var and non-input files do not matter.
    let mut other = cmd.clone();
    other.env.insert("UNRELATED".into(), "2".into());
    other.env.insert("NEW_ONE".into(), "x".into());
    assert_eq!(cache_key(&f.ws, &other, &f.spec).unwrap(), base);
    std::fs::write(f.ws.join("README"), "changed").unwrap();
    assert_eq!(cache_key(&f.ws, &cmd, &f.spec).unwrap(), base);

    // A named env var's value does.
    let mut other = cmd.clone();
    other.env.insert("MODE".into(), "debug".into());
    assert_ne!(cache_key(&f.ws, &other, &f.spec).unwrap(), base);
    let mut other = cmd.clone();
    other.inherit_env = false;
    other.env.remove("MODE");
    assert_ne!(
        cache_key(&f.ws, &other, &f.spec).unwrap(),
        base,
        "unset differs"
    );

    // The script does.
    let mut other = cmd.clone();
    other.script.push_str("\ntrue\n");
    assert_ne!(cache_key(&f.ws, &other, &f.spec).unwrap(), base);

    // The shell and the working directory do.
    let mut other = cmd.clone();
    other.shell = Some("sh".into());
    assert_ne!(cache_key(&f.ws, &other, &f.spec).unwrap(), base);
    let mut other = cmd.clone();
    other.working_dir = f.ws.join("src");
    assert_ne!(cache_key(&f.ws, &other, &f.spec).unwrap(), base);

    // Input content, a new input file, an executable bit do.
    std::fs::write(f.ws.join("src/a.txt"), "ALPHA\n").unwrap();
    let changed = cache_key(&f.ws, &cmd, &f.spec).unwrap();
    assert_ne!(changed, base);
    std::fs::write(f.ws.join("src/a.txt"), "alpha\n").unwrap();
    assert_eq!(
        cache_key(&f.ws, &cmd, &f.spec).unwrap(),
        base,
        "content, not mtime"
    );
    std::fs::create_dir_all(f.ws.join("src/deep")).unwrap();
    std::fs::write(f.ws.join("src/deep/c.txt"), "c").unwrap();
    let added = cache_key(&f.ws, &cmd, &f.spec).unwrap();
    assert_ne!(added, base);
    std::fs::set_permissions(
        f.ws.join("src/deep/c.txt"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    assert_ne!(cache_key(&f.ws, &cmd, &f.spec).unwrap(), added);
}

impl Fixture {
    fn cmd_with_counter(&self, counter: &Path) -> StepCommand {
        let mut cmd = self.cmd();
        cmd.env
            .insert("COUNTER".into(), counter.display().to_string());
        cmd
    }
}

#[tokio::test]
async fn changed_input_misses_and_reruns() {
    let f = fixture("rerun");
    let cmd = f.cmd();
    assert!(!f.run_cached(&cmd).await.0);
    assert!(f.run_cached(&cmd).await.0);
    std::fs::write(f.ws.join("src/b.txt"), "BETA\n").unwrap();
    assert!(!f.run_cached(&cmd).await.0);
    assert_eq!(f.runs(), 2);
    assert_eq!(
        std::fs::read_to_string(f.ws.join("dist/out.txt")).unwrap(),
        "alpha\nBETA\n"
    );
}

#[tokio::test]
async fn corrupt_blob_is_a_miss_and_never_restores_wrong_bytes() {
    let f = fixture("corrupt");
    let cmd = f.cmd();
    f.run_cached(&cmd).await;
    let good = std::fs::read(f.ws.join("dist/out.txt")).unwrap();
    std::fs::remove_dir_all(f.ws.join("dist")).unwrap();

    // Flip the content of the blob holding dist/out.txt.
    let cas = f._root.path().join("cache/cas");
    let mut tampered = false;
    for e in std::fs::read_dir(&cas).unwrap().flatten() {
        if std::fs::read(e.path()).unwrap() == good {
            std::fs::write(e.path(), b"alpha\nEVIL\n").unwrap();
            tampered = true;
        }
    }
    assert!(tampered);
    let key = cache_key(&f.ws, &cmd, &f.spec).unwrap();
    match f.store.restore(&key, &f.ws).unwrap() {
        CacheLookup::Corrupt(reason) => assert!(reason.contains("verification"), "{reason}"),
        other => panic!("expected corrupt, got {other:?}"),
    }
    assert!(
        !f.ws.join("dist/out.txt").exists(),
        "no wrong bytes restored"
    );
    // No staging leftovers either.
    let leftovers: Vec<_> = std::fs::read_dir(f.ws.join("dist"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        leftovers
            .iter()
            .all(|n| !n.to_string_lossy().starts_with(".pave-restore")),
        "{leftovers:?}"
    );
    // The bad entry was dropped: the next run misses, runs and saves again.
    assert_eq!(f.store.restore(&key, &f.ws).unwrap(), CacheLookup::Miss);
    assert!(!f.run_cached(&cmd).await.0);
    std::fs::remove_dir_all(f.ws.join("dist")).unwrap();
    assert!(f.run_cached(&cmd).await.0);
    assert_eq!(std::fs::read(f.ws.join("dist/out.txt")).unwrap(), good);
}

#[tokio::test]
async fn corrupt_manifest_is_a_miss() {
    let f = fixture("manifest");
    let cmd = f.cmd();
    f.run_cached(&cmd).await;
    let key = cache_key(&f.ws, &cmd, &f.spec).unwrap();
    let manifest = f._root.path().join(format!("cache/ac/{key}.json"));
    std::fs::write(&manifest, b"{ not json").unwrap();
    assert!(matches!(
        f.store.restore(&key, &f.ws).unwrap(),
        CacheLookup::Corrupt(_)
    ));
    assert_eq!(f.store.restore(&key, &f.ws).unwrap(), CacheLookup::Miss);
}

#[tokio::test]
async fn entries_are_immutable() {
    let f = fixture("immutable");
    let cmd = f.cmd();
    f.run_cached(&cmd).await;
    let key = cache_key(&f.ws, &cmd, &f.spec).unwrap();
    let manifest = f._root.path().join(format!("cache/ac/{key}.json"));
    let first = std::fs::read(&manifest).unwrap();
    let saved = f
        .store
        .save(&key, &f.ws, &["report.txt".into()], &[], &BTreeMap::new())
        .unwrap();
    assert!(!saved.created);
    assert_eq!(std::fs::read(&manifest).unwrap(), first);
}

#[test]
fn unsafe_paths_and_missing_outputs_are_errors() {
    let f = fixture("unsafe");
    let cmd = f.cmd();
    for spec in [
        CacheSpec {
            inputs: vec!["../*".into()],
            ..Default::default()
        },
        CacheSpec {
            inputs: vec!["/etc/*".into()],
            ..Default::default()
        },
        CacheSpec {
            outputs: vec!["../escape".into()],
            ..Default::default()
        },
    ] {
        assert!(
            matches!(
                cache_key(&f.ws, &cmd, &spec),
                Err(CacheError::UnsafePath(_))
            ),
            "{spec:?}"
        );
    }
    assert!(matches!(
        cache_key(
            &f.ws,
            &cmd,
            &CacheSpec {
                inputs: vec!["src/[".into()],
                ..Default::default()
            }
        ),
        Err(CacheError::Pattern { .. })
    ));
    let key = cache_key(&f.ws, &cmd, &f.spec).unwrap();
    assert!(matches!(
        f.store
            .save(&key, &f.ws, &["nope".into()], &[], &BTreeMap::new()),
        Err(CacheError::MissingOutput(_))
    ));
    assert!(matches!(
        f.store.restore("../../etc/passwd", &f.ws),
        Err(CacheError::InvalidKey(_))
    ));
}
