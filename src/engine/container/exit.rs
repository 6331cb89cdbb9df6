//! An instance ended: record the exit (the one place that does), tell the
//! backend, emit `die`, then auto-remove or hand over to the restart
//! policy.

use super::super::{Engine, Record};
use super::{Container, Durability};
use crate::api::stream::StdStream;
use crate::runtime::{ExitStatus, OutputSink};
use chrono::{DateTime, Utc};
use std::sync::Arc;

impl Engine {
    pub(super) async fn on_exit(
        self: &Arc<Self>,
        c: &Arc<Container>,
        status: ExitStatus,
        started_at: DateTime<Utc>,
    ) {
        c.set_control(None);
        c.fresh_stdin();
        if let Some(err) = &status.error {
            c.log
                .write(StdStream::Stderr, format!("{err}\n").as_bytes());
        }
        let rec = self.record_exit(c, &status, Utc::now()).await;
        if let Some(b) = rec.kind().and_then(|k| self.backends.get(k)) {
            b.after_exit(self, &rec);
        }
        c.log.exit();
        let code = status.code.to_string();
        self.event(&rec, "die", &[("exitCode", &code)]);
        c.exits.send_modify(|n| *n += 1);
        if rec.host_config.auto_remove {
            if let Err(e) = self.remove_now(c).await {
                tracing::warn!("cannot auto-remove container {}: {e}", rec.name);
            }
            return;
        }
        self.schedule_restart(c, &rec, status.code, started_at)
            .await;
    }

    /// Record an exit. A container about to be auto-removed need not
    /// persist it.
    pub(in crate::engine) async fn record_exit(
        &self,
        c: &Container,
        status: &ExitStatus,
        at: DateTime<Utc>,
    ) -> Record {
        let exited = |r: &mut Record| r.exited(status, at);
        if c.record().host_config.auto_remove {
            return c.set(exited);
        }
        match c.update_as(exited, Durability::State).await {
            Ok(rec) => rec,
            Err(e) => {
                // The exit is recorded in memory all the same.
                tracing::error!("cannot record exit of container {}: {e}", c.name());
                c.record()
            }
        }
    }
}
