//! What the controller asks the runtime for (specs, ids) and what it gets
//! back (instances, events, errors).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How to run one instance of a release.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSpec {
    /// Service name (`[A-Za-z0-9_-]+`).
    pub service: String,
    /// Environment name (`[A-Za-z0-9_-]+`).
    pub env: String,
    /// Release name, e.g. a version or digest prefix (`[A-Za-z0-9_.:+-]+`).
    pub release: String,
    /// Replica index within the release.
    pub index: u32,
    /// Shell command, run as `sh -c <command>` in `workdir`.
    pub command: String,
    /// Working directory: the unpacked artifact.
    pub workdir: PathBuf,
    /// Extra environment (config and secrets); `PORT` and `PAVE_*` win over these.
    pub env_vars: Vec<(String, String)>,
    /// How to probe the instance's health.
    pub health: HealthSpec,
}

// Debug by hand: env_vars carries secrets, which must never reach logs.
impl fmt::Debug for InstanceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.env_vars.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("InstanceSpec")
            .field("service", &self.service)
            .field("env", &self.env)
            .field("release", &self.release)
            .field("index", &self.index)
            .field("command", &self.command)
            .field("workdir", &self.workdir)
            .field("env_var_names", &names)
            .field("health", &self.health)
            .finish()
    }
}

impl InstanceSpec {
    /// The stable id of the instance this spec describes.
    pub fn id(&self) -> InstanceId {
        InstanceId::new(&self.service, &self.env, &self.release, self.index)
    }

    /// Checks the names that end up in file names and the id.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        let invalid = |what: &str, value: &str, allowed: &str| RuntimeError::InvalidSpec {
            id: self.id(),
            reason: format!("{what} {value:?} must be non-empty and use only {allowed}"),
        };
        if self.service.is_empty() || !self.service.chars().all(plain) {
            return Err(invalid(
                "service",
                &self.service,
                "letters, digits, '-' and '_'",
            ));
        }
        if self.env.is_empty() || !self.env.chars().all(plain) {
            return Err(invalid("env", &self.env, "letters, digits, '-' and '_'"));
        }
        let release_ok = !self.release.is_empty()
            && !self.release.starts_with('.')
            && self.release.len() <= 128
            && self
                .release
                .chars()
                .all(|c| plain(c) || matches!(c, '.' | ':' | '+'));
        if !release_ok {
            return Err(invalid(
                "release",
                &self.release,
                "letters, digits and '-_.:+' (not starting with '.')",
            ));
        }
        if self.command.trim().is_empty() {
            return Err(RuntimeError::InvalidSpec {
                id: self.id(),
                reason: "command is empty".into(),
            });
        }
        if !self.health.path.starts_with('/') || self.health.path.contains(['\r', '\n', ' ']) {
            return Err(RuntimeError::InvalidSpec {
                id: self.id(),
                reason: format!(
                    "health path {:?} must start with '/' and hold no spaces or line breaks",
                    self.health.path
                ),
            });
        }
        Ok(())
    }
}

/// How an instance's health is probed: HTTP GET on loopback, 2xx is healthy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSpec {
    /// Request path, e.g. `/healthz`.
    pub path: String,
    /// Time between background probes.
    #[serde(with = "millis")]
    pub interval: Duration,
    /// How long one probe may take before it counts as failed.
    #[serde(with = "millis")]
    pub timeout: Duration,
}

impl Default for HealthSpec {
    fn default() -> Self {
        HealthSpec {
            path: "/healthz".into(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
        }
    }
}

/// Stable instance id: `<service>.<env>.<release>.<index>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InstanceId(String);

impl InstanceId {
    /// The id of replica `index` of `release` of `service` in `env`.
    pub fn new(service: &str, env: &str, release: &str, index: u32) -> Self {
        InstanceId(format!("{service}.{env}.{release}.{index}"))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps an id read back from a file name or the wire (not validated).
    pub fn from_raw(raw: impl Into<String>) -> Self {
        InstanceId(raw.into())
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A running (or restarting) instance as the runtime sees it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// Its id.
    pub id: InstanceId,
    /// What it runs.
    pub spec: InstanceSpec,
    /// Process id of the current process (its process group and session id too).
    pub pid: u32,
    /// Loopback port given in `PORT`.
    pub port: u16,
    /// Where the proxy reaches it: `127.0.0.1:<port>`.
    pub addr: SocketAddr,
}

/// Something that happened to an instance, broadcast to `ProcessRuntime::events`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstanceEvent {
    /// A process was spawned (first start, or a restart: `attempt` > 0).
    Started {
        id: InstanceId,
        pid: u32,
        addr: SocketAddr,
        attempt: u32,
    },
    /// A process still running from an earlier server was taken over.
    Adopted {
        id: InstanceId,
        pid: u32,
        addr: SocketAddr,
    },
    /// A health probe succeeded after the instance was not healthy.
    Healthy { id: InstanceId, addr: SocketAddr },
    /// The instance stopped being healthy (probes failed, or it exited).
    Unhealthy { id: InstanceId, reason: String },
    /// The process ended. Both are `None` for an adopted process (not our child).
    Exited {
        id: InstanceId,
        pid: u32,
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// The process will be started again after `backoff`.
    Restarting {
        id: InstanceId,
        attempt: u32,
        backoff: Duration,
    },
    /// A restart could not get the old port back: routes must move to `new`.
    AddrChanged {
        id: InstanceId,
        old: SocketAddr,
        new: SocketAddr,
    },
    /// The instance was stopped on request and is no longer supervised.
    Stopped { id: InstanceId },
}

impl InstanceEvent {
    /// The instance the event is about.
    pub fn id(&self) -> &InstanceId {
        match self {
            InstanceEvent::Started { id, .. }
            | InstanceEvent::Adopted { id, .. }
            | InstanceEvent::Healthy { id, .. }
            | InstanceEvent::Unhealthy { id, .. }
            | InstanceEvent::Exited { id, .. }
            | InstanceEvent::Restarting { id, .. }
            | InstanceEvent::AddrChanged { id, .. }
            | InstanceEvent::Stopped { id } => id,
        }
    }
}

/// One line of an instance's captured output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// Which instance wrote it.
    pub instance: InstanceId,
    /// The line, without its newline (invalid UTF-8 replaced).
    pub line: String,
}

/// Everything the runtime can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid instance spec for {id}: {reason}")]
    InvalidSpec { id: InstanceId, reason: String },
    #[error("instance {0} is already running")]
    AlreadyRunning(InstanceId),
    #[error("unknown instance {0}")]
    UnknownInstance(InstanceId),
    #[error("working directory {path} of {id}: {source}")]
    Workdir {
        id: InstanceId,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot spawn {id}: {source}")]
    Spawn {
        id: InstanceId,
        source: std::io::Error,
    },
    #[error("no free loopback port: {0}")]
    NoPort(std::io::Error),
    #[error("{id} did not become healthy within {deadline:?}: {detail}")]
    NotHealthy {
        id: InstanceId,
        deadline: Duration,
        detail: String,
    },
    #[error("runtime state {path}: {source}")]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("artifact {path}: {reason}")]
    Artifact { path: PathBuf, reason: String },
    #[error("artifact {path}: {source}")]
    ArtifactIo {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the runtime needs a tokio runtime to supervise instances")]
    NoTokio,
}

/// Durations as whole milliseconds in records.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
