//! Restarts: the `restart` verb, and the restart policy's backoff after an
//! exit (100 ms doubling to 60 s, reset by a run of over 10 s).

use super::super::{Engine, EngineError, Record};
use super::Container;
use chrono::{DateTime, Utc};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

const RESTART_BACKOFF_START: Duration = Duration::from_millis(100);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A run longer than this resets the restart backoff.
const RESTART_BACKOFF_RESET: Duration = Duration::from_secs(10);

/// How long to wait before the policy's next restart.
pub(crate) fn backoff(restart_count: u32, ran: Duration) -> Duration {
    let n = if ran > RESTART_BACKOFF_RESET {
        0
    } else {
        restart_count.min(16)
    };
    (RESTART_BACKOFF_START * 2u32.pow(n)).min(RESTART_BACKOFF_MAX)
}

impl Engine {
    /// `POST /containers/{id}/restart`: stop if running, then start.
    pub async fn restart(
        self: &Arc<Self>,
        name: &str,
        timeout: Option<i64>,
    ) -> Result<(), EngineError> {
        let c = self.lookup(name)?;
        let _op = c.op.lock().await;
        if c.status().can_stop().is_ok() {
            self.stop_locked(&c, timeout).await?;
        }
        c.check("restart", |s| s.can_start())?;
        self.start_container(&c).await?;
        self.event(&c.record(), "restart", &[]);
        Ok(())
    }

    /// After an exit: restart per policy, after the backoff.
    pub(super) async fn schedule_restart(
        self: &Arc<Self>,
        c: &Arc<Container>,
        rec: &Record,
        exit_code: i64,
        started_at: DateTime<Utc>,
    ) {
        let state = &rec.state;
        if self.shutting_down() {
            return;
        }
        if !rec.restart_policy().should_restart(
            exit_code,
            state.restart_count(),
            state.manually_stopped(),
        ) {
            return;
        }
        let ran = (Utc::now() - started_at).to_std().unwrap_or_default();
        let delay = backoff(state.restart_count(), ran);
        if c.transition("restart", |s| s.restarting()).await.is_err() {
            return;
        }
        let engine = self.clone();
        let c = c.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _op = c.op.lock().await;
            if c.is_removed() || engine.shutting_down() {
                return;
            }
            match c.transition("restart", |s| s.restart_begins()).await {
                Ok(()) => {}
                // Stopped during the backoff.
                Err(EngineError::Transition { .. }) => return,
                // The count could not be written: restart all the same,
                // rather than stay "restarting" for good.
                Err(e) => tracing::warn!("restart of container {}: {e}", c.name()),
            }
            // Boxed: start -> exit -> restart -> start is a cycle of futures.
            let restart: Pin<Box<dyn Future<Output = Result<(), EngineError>> + Send>> =
                Box::pin(engine.start_container_owned(c.clone()));
            if let Err(e) = restart.await {
                tracing::warn!("restart of container {} failed: {e}", c.name());
                let _ = c.update(|r| r.state.restart_failed(e.to_string())).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets_after_a_long_run() {
        let short = Duration::from_secs(1);
        assert_eq!(backoff(0, short), Duration::from_millis(100));
        assert_eq!(backoff(1, short), Duration::from_millis(200));
        assert_eq!(backoff(5, short), Duration::from_millis(3200));
        assert_eq!(backoff(12, short), RESTART_BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX, short), RESTART_BACKOFF_MAX);
        assert_eq!(backoff(12, Duration::from_secs(11)), RESTART_BACKOFF_START);
    }
}
