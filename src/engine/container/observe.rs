//! Verbs that look at (or size) a running instance and change no state:
//! `stats`, `top`, `resize`.

use super::super::{Engine, EngineError, Record};
use crate::model::Status;
use crate::runtime::RuntimeStats;

impl Engine {
    /// `GET /containers/{id}/stats`: live counters of a running container
    /// (`None` when it is not running).
    pub fn stats(&self, name: &str) -> Result<(Record, Option<RuntimeStats>), EngineError> {
        let c = self.lookup(name)?;
        let stats = c.control().map(|ctl| ctl.stats());
        Ok((c.record(), stats))
    }

    /// `GET /containers/{id}/top`: the host pids of a running container's
    /// processes.
    pub fn top(&self, name: &str) -> Result<Vec<i32>, EngineError> {
        let c = self.lookup(name)?;
        let rec = c.record();
        let not_running = || EngineError::not_running("top", &rec.id);
        if !matches!(rec.state.status(), Status::Running | Status::Paused) {
            return Err(not_running());
        }
        let ctl = c.control().ok_or_else(not_running)?;
        let pids = ctl.pids();
        if pids.is_empty() {
            return Err(EngineError::InvalidArgument(format!(
                "container {}: a Wasm container has no processes to list (its instance runs inside ketchd)",
                rec.name
            )));
        }
        Ok(pids)
    }

    /// `POST /containers/{id}/resize`: a running `-t` container's terminal
    /// size (anything else has no terminal to size).
    pub fn resize(&self, name: &str, rows: u16, cols: u16) -> Result<(), EngineError> {
        let c = self.lookup(name)?;
        let rec = c.record();
        if !rec.config.tty || !rec.state.status().is_alive() {
            return Ok(());
        }
        match rec.kind().and_then(|k| self.backends.get(k)) {
            Some(b) if b.caps().terminal => b.resize(&c, rows, cols).map_err(|e| {
                EngineError::Conflict(format!(
                    "resizing the terminal of container {}: {e}",
                    rec.name
                ))
            }),
            _ => Ok(()),
        }
    }
}
