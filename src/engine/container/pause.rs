//! `pause` and `unpause`: suspend an instance without losing its state.

use super::super::{Engine, EngineError};
use crate::model::TransitionError;
use std::sync::Arc;

impl Engine {
    pub async fn pause(self: &Arc<Self>, name: &str) -> Result<(), EngineError> {
        let c = self.lookup(name)?;
        let _op = c.op.lock().await;
        c.check("pause", |s| s.can_pause())?;
        let ctl = c.control();
        let Some(ctl) = ctl else {
            return c.check("pause", |_| Err(TransitionError::NotRunning));
        };
        ctl.pause();
        if let Err(e) = c.transition("pause", |s| s.paused()).await {
            ctl.resume();
            return Err(e);
        }
        self.event(&c.record(), "pause", &[]);
        Ok(())
    }

    pub async fn unpause(self: &Arc<Self>, name: &str) -> Result<(), EngineError> {
        let c = self.lookup(name)?;
        let _op = c.op.lock().await;
        c.check("unpause", |s| s.can_unpause())?;
        if let Some(ctl) = c.control() {
            ctl.resume();
        }
        c.transition("unpause", |s| s.resumed()).await?;
        self.event(&c.record(), "unpause", &[]);
        Ok(())
    }
}
