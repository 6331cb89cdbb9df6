//! `POST /containers/{id}/kill`: deliver a signal. A backend without
//! signals (Wasm) takes only the ones that end a process, and ends it.

use super::super::{Engine, EngineError};
use crate::model::signal::{SIGINT, SIGKILL, SIGTERM};
use std::sync::Arc;

impl Engine {
    pub async fn kill(
        self: &Arc<Self>,
        name: &str,
        signal: Option<&str>,
    ) -> Result<(), EngineError> {
        let c = self.lookup(name)?;
        let sig_name = signal.filter(|s| !s.is_empty()).unwrap_or("KILL");
        let signo = crate::model::signal::number(sig_name)
            .ok_or_else(|| EngineError::InvalidArgument(format!("invalid signal: {sig_name}")))?;
        let rec = c.record();
        let signals = rec
            .kind()
            .and_then(|k| self.backends.get(k))
            .is_some_and(|b| b.caps().signals);
        let deliver = signals && signo != SIGKILL;
        if !deliver && ![SIGKILL, SIGTERM, SIGINT].contains(&signo) {
            return Err(EngineError::InvalidArgument(format!("signal {sig_name} cannot be delivered to a Wasm container: only KILL, TERM and INT end it")));
        }
        let seen = c.exits_seen();
        if !c.transition("kill", |s| s.stop_requested(true)).await? {
            return Ok(());
        }
        if let Some(ctl) = c.control() {
            self.event(&rec, "kill", &[("signal", &signo.to_string())]);
            if deliver {
                // Docker does not wait for the container to act on it.
                ctl.signal(signo);
                return Ok(());
            }
            c.kill_and_wait(seen).await;
        }
        Ok(())
    }
}
