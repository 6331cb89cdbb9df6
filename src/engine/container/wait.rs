//! `POST /containers/{id}/wait`: resolves to the exit code.

use super::super::{Engine, EngineError};
use super::Container;
use crate::model::Status;
use std::future::Future;
use std::sync::Arc;

/// What `wait` waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

impl Engine {
    /// Subscribes before returning, so a caller may start the container
    /// afterwards and still see its exit.
    pub fn wait(
        self: &Arc<Self>,
        name: &str,
        cond: WaitCondition,
    ) -> Result<impl Future<Output = (i64, Option<String>)> + Send + 'static, EngineError> {
        let c = self.lookup(name)?;
        let mut exits = c.exits.subscribe();
        let mut removed = c.removed.subscribe();
        let seen = *exits.borrow();
        let status = c.status();
        Ok(async move {
            let result = |c: &Container| {
                let r = c.record();
                let error = r.state.error();
                (
                    r.state.exit_code(),
                    Some(error.to_string()).filter(|e| !e.is_empty()),
                )
            };
            match cond {
                WaitCondition::NotRunning if !status.is_alive() && status != Status::Restarting => {
                    return result(&c)
                }
                WaitCondition::NotRunning | WaitCondition::NextExit => {
                    let _ = exits.wait_for(|n| *n > seen).await;
                }
                WaitCondition::Removed => {
                    let _ = removed.wait_for(|r| *r).await;
                }
            }
            result(&c)
        })
    }
}
