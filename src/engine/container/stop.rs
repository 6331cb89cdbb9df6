//! `POST /containers/{id}/stop`: close stdin and ask the instance to
//! finish, wait out the timeout, then kill. A Wasm guest has no signals;
//! stdin EOF is its cue to finish.

use super::super::{Engine, EngineError};
use super::Container;
use std::sync::Arc;
use std::time::Duration;

/// Seconds a stop waits before it kills, unless the request or the
/// container says otherwise (Docker's default).
const DEFAULT_STOP_TIMEOUT: i64 = 10;

impl Engine {
    pub async fn stop(
        self: &Arc<Self>,
        name: &str,
        timeout: Option<i64>,
    ) -> Result<(), EngineError> {
        let c = self.lookup(name)?;
        let _op = c.op.lock().await;
        self.stop_locked(&c, timeout).await
    }

    pub(super) async fn stop_locked(
        &self,
        c: &Arc<Container>,
        timeout: Option<i64>,
    ) -> Result<(), EngineError> {
        let seen = c.exits_seen();
        if !c.transition("stop", |s| s.stop_requested(false)).await? {
            return Ok(());
        }
        self.end_run(c, seen, timeout).await;
        Ok(())
    }

    /// ketchd is shutting down: stop every container with its own stop
    /// timeout, all at once, but (`live_restore`) those whose instances
    /// are host processes, which run on and are adopted at the next start.
    /// Restart policies are held from now on; they apply again at the next
    /// start, as the user did not stop these.
    pub async fn shutdown(self: &Arc<Self>, live_restore: bool) {
        use futures_util::stream::{self, StreamExt};
        self.shutting_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        stream::iter(self.list())
            .for_each_concurrent(None, |c| async move {
                let rec = c.record();
                let outlives = rec
                    .kind()
                    .and_then(|k| self.backends.get(k))
                    .is_some_and(|b| b.caps().processes);
                if live_restore && outlives {
                    return;
                }
                let _op = c.op.lock().await;
                let seen = c.exits_seen();
                match c.transition("stop", |s| s.shutdown_requested()).await {
                    Ok(true) => self.end_run(&c, seen, None).await,
                    Ok(false) | Err(EngineError::Transition { .. }) => {}
                    Err(e) => tracing::warn!("cannot stop container {} at shutdown: {e}", c.name()),
                }
            })
            .await;
    }

    /// Is ketchd shutting down (restart policies held)?
    pub(in crate::engine) fn shutting_down(&self) -> bool {
        self.shutting_down.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// End the current run: terminate, and kill at the stop timeout.
    async fn end_run(&self, c: &Arc<Container>, seen: u64, timeout: Option<i64>) {
        let rec = c.record();
        let secs = timeout
            .or(rec.config.stop_timeout)
            .unwrap_or(DEFAULT_STOP_TIMEOUT);
        if let Some(ctl) = c.control() {
            self.event(&rec, "kill", &[("signal", "15")]);
            ctl.resume();
            drop(c.take_stdin());
            ctl.terminate();
            let wait = Duration::from_secs(u64::try_from(secs).unwrap_or(0));
            let drained = secs != 0 && c.exit_after(seen, Some(wait)).await;
            if !drained {
                self.event(&rec, "kill", &[("signal", "9")]);
                ctl.kill();
                c.exit_after(seen, None).await;
            }
        }
        self.event(&rec, "stop", &[]);
    }
}
