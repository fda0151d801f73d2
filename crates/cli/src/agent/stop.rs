//! Stopping an agent gracefully: the signals `pave agent` stops on, and the
//! handle `pave up` keeps on its in-process agent so that shutting the
//! server down first stops the agent's jobs (while the server can still
//! take them back).

use super::{AgentOptions, run};
use crate::config::Target;
use pave_pipeline::exec::CancelSignal;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Longest wait for a stopping agent: its steps' grace (SIGTERM, then
/// SIGKILL) plus handing the jobs back, with room to spare.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// An agent running on this process's runtime (the one `pave up` starts).
pub struct InProcessAgent {
    stop: CancelSignal,
    task: JoinHandle<()>,
}

impl InProcessAgent {
    /// Starts the agent; it runs until [`InProcessAgent::stop`].
    pub fn spawn(target: Target, options: AgentOptions) -> InProcessAgent {
        let stop = CancelSignal::new();
        let until = stop.clone();
        let task = tokio::spawn(async move {
            let stopped = async move { until.cancelled().await };
            if let Err(e) = run(target, options, stopped).await {
                tracing::error!(error = %format!("{e:#}"), "in-process agent stopped");
            }
        });
        InProcessAgent { stop, task }
    }

    /// Stops the agent: its running steps are stopped and their jobs handed
    /// back. Returns when it is done, or after a bounded wait.
    pub async fn stop(self) {
        self.stop.cancel();
        if tokio::time::timeout(STOP_TIMEOUT, self.task).await.is_err() {
            tracing::warn!("the in-process agent did not stop in time; its leases will expire");
        }
    }
}
