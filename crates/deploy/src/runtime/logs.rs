//! Instance logs: each instance appends stdout and stderr to
//! `<state_dir>/logs/<id>.log` (a file outlives the server, a pipe would
//! not). Logs are kept after an instance stops, so the output of a failed
//! release can still be read after its rollback.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::spec::{InstanceId, LogLine};

/// Reading backwards stops after this many bytes per file, so one endless
/// line cannot make a tail read the whole file into memory.
const MAX_TAIL_BYTES: u64 = 8 << 20;
const BLOCK: u64 = 16 << 10;

/// A log larger than this is moved aside to `<id>.log.1` (one generation
/// kept), so a chatty instance cannot fill the disk.
pub(crate) const MAX_LOG_BYTES: u64 = 64 << 20;

/// Where logs live.
pub(crate) fn logs_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("logs")
}

/// The log file of one instance.
pub(crate) fn log_path(state_dir: &Path, id: &InstanceId) -> PathBuf {
    logs_dir(state_dir).join(format!("{id}.log"))
}

/// Copies a log over `limit` bytes to `<name>.1` and empties it. The
/// instance keeps its O_APPEND descriptor, so its next write lands at the
/// start of the emptied file; lines written during the copy are lost, which
/// is the price of not restarting the instance to rotate.
pub(crate) fn rotate_if_large(path: &Path, limit: u64) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.len() <= limit {
        return;
    }
    let mut old = path.as_os_str().to_owned();
    old.push(".1");
    if std::fs::copy(path, &old).is_err() {
        return;
    }
    if let Ok(f) = std::fs::OpenOptions::new().write(true).open(path) {
        let _ = f.set_len(0);
    }
}

/// The last `n` lines of one file (fewer if it is shorter or missing).
pub(crate) fn tail_file(path: &Path, n: usize) -> Vec<String> {
    if n == 0 {
        return Vec::new();
    }
    let Ok(mut file) = File::open(path) else {
        return Vec::new();
    };
    let Ok(len) = file.seek(SeekFrom::End(0)) else {
        return Vec::new();
    };
    let floor = len.saturating_sub(MAX_TAIL_BYTES);
    let mut pos = len;
    let mut buf: Vec<u8> = Vec::new();
    // n lines need n line breaks before them (plus the trailing one).
    while pos > floor && buf.iter().filter(|&&b| b == b'\n').count() <= n {
        let start = pos.saturating_sub(BLOCK).max(floor);
        let mut block = vec![0u8; (pos - start) as usize];
        if file.seek(SeekFrom::Start(start)).is_err() || file.read_exact(&mut block).is_err() {
            break;
        }
        block.extend_from_slice(&buf);
        buf = block;
        pos = start;
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    // Unless we reached the start of the file, the first piece is partial.
    if pos > 0 && !lines.is_empty() {
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(n);
    lines[skip..]
        .iter()
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
        .collect()
}

/// The last `n` lines written by instances of `service` in `env`, current
/// and stopped. Files are taken oldest-written first and their lines kept in
/// file order; lines of instances running side by side are not interleaved
/// by time (the files carry no timestamps).
pub(crate) fn tail_service(state_dir: &Path, service: &str, env: &str, n: usize) -> Vec<LogLine> {
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !plain(service) || !plain(env) {
        return Vec::new();
    }
    // Service and env names hold no '.', so this prefix selects exactly them.
    let prefix = format!("{service}.{env}.");
    let Ok(entries) = std::fs::read_dir(logs_dir(state_dir)) else {
        return Vec::new();
    };
    let mut files: Vec<(std::time::SystemTime, String, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let id = name.strip_suffix(".log")?.to_string();
            if !id.starts_with(&prefix) {
                return None;
            }
            let modified = e.metadata().ok()?.modified().ok()?;
            Some((modified, id, e.path()))
        })
        .collect();
    files.sort();
    let mut out: Vec<LogLine> = Vec::new();
    for (_, id, path) in files {
        let instance = InstanceId::from_raw(id);
        out.extend(tail_file(&path, n).into_iter().map(|line| LogLine {
            instance: instance.clone(),
            line,
        }));
    }
    let skip = out.len().saturating_sub(n);
    out.split_off(skip)
}

#[cfg(test)]
mod tests {
    use super::tail_file;

    #[test]
    fn tails_across_blocks_and_partial_lines() {
        let dir = std::env::temp_dir().join(format!("pave-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("a.log");
        let text: String = (0..5000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, text).expect("write");
        assert_eq!(tail_file(&path, 2), vec!["line 4998", "line 4999"]);
        assert_eq!(tail_file(&path, 5000).len(), 5000);
        assert_eq!(tail_file(&path, 9000).len(), 5000);
        std::fs::write(&path, "no newline at end").expect("write");
        assert_eq!(tail_file(&path, 3), vec!["no newline at end"]);
        assert!(tail_file(&dir.join("missing.log"), 3).is_empty());

        std::fs::write(&path, "0123456789\n").expect("write");
        super::rotate_if_large(&path, 100);
        assert_eq!(std::fs::read(&path).expect("kept").len(), 11);
        super::rotate_if_large(&path, 5);
        assert_eq!(std::fs::read(&path).expect("emptied").len(), 0);
        let rotated = std::fs::read_to_string(dir.join("a.log.1")).expect("rotated");
        assert_eq!(rotated, "0123456789\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
