//! One instance process as the supervisor holds it: our own child (reaped
//! through tokio, so no zombies) or a process adopted from an earlier server
//! (not our child: its liveness is polled through /proc).

use std::time::Duration;

use tokio::process::Child;
use tokio::time::Instant;

use super::procfs;

/// How often liveness of non-children and of process groups is polled.
const POLL: Duration = Duration::from_millis(50);
/// How long to wait for SIGKILL to take effect before giving up on stragglers.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How often an adopted process is checked for having exited.
const ADOPTED_POLL: Duration = Duration::from_millis(250);

/// How a process ended, as far as we can know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exited with code {c}"),
            (None, Some(s)) => write!(f, "killed by signal {s}"),
            (None, None) => f.write_str("exited (status unknown: not our child)"),
        }
    }
}

/// The leader of an instance's process group (pgid == pid: it ran setsid).
pub(crate) enum Proc {
    Child {
        child: Child,
        pid: u32,
        start_time: u64,
    },
    Adopted {
        pid: u32,
        start_time: u64,
    },
}

/// Waits for a process that is not (or no longer) our child to exit.
async fn poll_until_gone(pid: u32, start_time: u64) -> ExitInfo {
    while procfs::is_same_process(pid, start_time) {
        tokio::time::sleep(ADOPTED_POLL).await;
    }
    ExitInfo {
        code: None,
        signal: None,
    }
}

impl Proc {
    pub fn pid(&self) -> u32 {
        match self {
            Proc::Child { pid, .. } | Proc::Adopted { pid, .. } => *pid,
        }
    }

    pub fn start_time(&self) -> u64 {
        match self {
            Proc::Child { start_time, .. } | Proc::Adopted { start_time, .. } => *start_time,
        }
    }

    fn pgid(&self) -> i32 {
        i32::try_from(self.pid()).unwrap_or(0)
    }

    /// Resolves when the leader exits. Cancel-safe.
    pub async fn wait_exit(&mut self) -> ExitInfo {
        match self {
            Proc::Child {
                child,
                pid,
                start_time,
            } => match child.wait().await {
                Ok(status) => {
                    use std::os::unix::process::ExitStatusExt;
                    ExitInfo {
                        code: status.code(),
                        signal: status.signal(),
                    }
                }
                // Someone else reaped it (a stray waitpid(-1) in the
                // process): it may still be running, so watch /proc instead.
                Err(_) => poll_until_gone(*pid, *start_time).await,
            },
            Proc::Adopted { pid, start_time } => poll_until_gone(*pid, *start_time).await,
        }
    }

    /// Signals the leader's whole group. While the leader is provably ours
    /// (unreaped child, or pid + start time match) the group is signalled at
    /// once; after that only members that started no earlier than the leader
    /// are, one by one, so a recycled pid is never hit.
    pub fn signal_tree(&mut self, signal: i32) {
        let leader_ours = match self {
            // tokio forgets the pid once it has reaped the child.
            Proc::Child { child, .. } => child.id().is_some(),
            Proc::Adopted { pid, start_time } => procfs::is_same_process(*pid, *start_time),
        };
        if leader_ours {
            procfs::signal_group(self.pgid(), signal);
        } else {
            procfs::signal_each(&procfs::leftovers(self.pid(), self.start_time()), signal);
        }
    }

    /// True once the leader has exited (and, for a child, been reaped) and no
    /// other live member of its group is left.
    pub fn is_gone(&mut self) -> bool {
        let leader_gone = match self {
            Proc::Child { child, .. } => !matches!(child.try_wait(), Ok(None)),
            Proc::Adopted { pid, start_time } => !procfs::is_same_process(*pid, *start_time),
        };
        leader_gone && procfs::leftovers(self.pid(), self.start_time()).is_empty()
    }

    async fn wait_gone(&mut self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        loop {
            if self.is_gone() {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// SIGTERM to the group, SIGKILL to whatever is left after `grace`.
    /// Bounded: returns after `grace` plus a few seconds even if a process
    /// cannot be killed (e.g. stuck in uninterruptible sleep).
    pub async fn terminate(&mut self, grace: Duration) {
        self.signal_tree(libc::SIGTERM);
        // A stopped process only acts on SIGTERM once continued.
        self.signal_tree(libc::SIGCONT);
        if self.wait_gone(grace).await {
            return;
        }
        self.signal_tree(libc::SIGKILL);
        if !self.wait_gone(KILL_WAIT).await {
            tracing::warn!(pid = self.pid(), "instance processes survived SIGKILL");
        }
    }

    /// After the leader exited on its own: kill what it left in its group
    /// (it could hold the port the restart needs).
    pub async fn kill_leftovers(&mut self) {
        if !self.is_gone() {
            self.signal_tree(libc::SIGKILL);
            let _ = self.wait_gone(KILL_WAIT).await;
        }
    }
}
