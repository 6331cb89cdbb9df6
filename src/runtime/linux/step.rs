//! Errors of the helper processes (the monitor, the exec helper) and of
//! host checks: which step failed, and its cause. A helper reports one to
//! ketchd as text, since it crosses a process boundary.

use std::error::Error;

type Cause = Box<dyn Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// A step failed because of `source`.
    #[error("{step}: {source}")]
    Failed {
        step: String,
        #[source]
        source: Cause,
    },
    /// Something a step needs is not there.
    #[error("{0}")]
    Missing(String),
    /// The container's command cannot be run: `code` is Docker's exit
    /// status for that (127 not found, 126 not executable).
    #[error("{reason}")]
    CannotExec { code: i64, reason: String },
}

impl StepError {
    pub fn missing(what: impl Into<String>) -> Self {
        StepError::Missing(what.into())
    }
}

/// `result.step("mounting the root")?`: name the step that failed.
pub trait Step<T> {
    fn step(self, step: impl Into<String>) -> Result<T, StepError>;
}

impl<T, E: Into<Cause>> Step<T> for Result<T, E> {
    fn step(self, step: impl Into<String>) -> Result<T, StepError> {
        self.map_err(|e| StepError::Failed {
            step: step.into(),
            source: e.into(),
        })
    }
}
