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
        Ok(())
    }
}
