//! What /proc says about a process, and signals that never hit a stranger.
//!
//! A pid alone does not name a process: pids are recycled. A process is ours
//! when its pid *and* its start time (clock ticks since boot, /proc stat field
//! 22) *and* the boot id match what we recorded.

use std::path::Path;

/// The parts of `/proc/<pid>/stat` the runtime needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub pid: i32,
    pub state: char,
    pub pgrp: i32,
    pub session: i32,
    pub start_time: u64,
}

impl ProcStat {
    /// A zombie has exited; it only waits for its parent to reap it.
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Reads `/proc/<pid>/stat`; `None` when the process does not exist.
pub(crate) fn stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses a stat line. The command name may hold spaces and parentheses, so
/// fields are counted from the last ')'.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let (head, rest) = text.rsplit_once(')')?;
    let pid = head.split_once('(')?.0.trim().parse().ok()?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state), so field N is fields[N - 3].
    Some(ProcStat {
        pid,
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// The kernel's boot id: start times only compare within one boot.
pub(crate) fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Live session leaders: every instance leads its own session.
pub(crate) fn session_leaders() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir(Path::new("/proc")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .filter(|s| s.session == s.pid && !s.is_zombie())
        .collect()
}

/// One variable of the environment `pid` was started with (unreadable for
/// other users' processes: `None`).
pub(crate) fn environ_var(pid: i32, name: &str) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    raw.split(|&b| b == 0).find_map(|kv| {
        let kv = std::str::from_utf8(kv).ok()?;
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// True when `pid` is running (not a zombie) and started at `start_time`.
pub(crate) fn is_same_process(pid: u32, start_time: u64) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    matches!(stat(pid), Some(s) if !s.is_zombie() && s.start_time == start_time)
}

/// Live (non-zombie) members of process group `pgid` that started no earlier
/// than `min_start`: what is left of an instance whose leader may be gone.
pub(crate) fn group_members(pgid: i32, min_start: u64) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir(Path::new("/proc")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .filter(|s| s.pgrp == pgid && !s.is_zombie() && s.start_time >= min_start)
        .map(|s| s.pid)
        .collect()
}

/// What is left of the group an instance leader `pid` (started at
/// `start_time`) led: nothing if `pid` now names another process, because
/// the kernel does not hand out a pid while a group of that id still exists.
pub(crate) fn leftovers(pid: u32, start_time: u64) -> Vec<i32> {
    let Ok(pgid) = i32::try_from(pid) else {
        return Vec::new();
    };
    match stat(pgid) {
        Some(s) if s.start_time != start_time => Vec::new(),
        _ => group_members(pgid, start_time),
    }
}

/// Signals the whole group. Call only while its leader is known to be ours
/// (an unreaped child, or pid and start time just checked): then the group
/// id cannot have been recycled.
pub(crate) fn signal_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: killpg has no memory-safety preconditions.
        unsafe {
            libc::killpg(pgid, signal);
        }
    }
}

/// Signals each listed pid (leftovers of a group whose leader is gone).
pub(crate) fn signal_each(pids: &[i32], signal: i32) {
    for &pid in pids {
        if pid > 1 {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, signal);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_command_name_with_spaces_and_parens() {
        let line = "4242 (my (odd) app) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10 0";
        let s = parse_stat(line).expect("parses");
        assert_eq!(s.pid, 4242);
        assert_eq!(s.state, 'S');
        assert_eq!(s.pgrp, 4242);
        assert_eq!(s.session, 4242);
        assert_eq!(s.start_time, 987654);
    }

    #[test]
    fn reads_our_own_process() {
        let me = std::process::id();
        let s = stat(me as i32).expect("own stat");
        assert!(is_same_process(me, s.start_time));
        assert!(!is_same_process(me, s.start_time + 1));
    }
}
