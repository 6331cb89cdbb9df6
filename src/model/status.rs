//! Container status and the legal moves between states.
//!
//! created -> running <-> paused -> exited -> removed. Every verb asks the
//! status first; an illegal move is a [`TransitionError`] (HTTP 409), never a
//! panic or a silent no-op.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
    Removing,
    Dead,
}

/// Why a verb may not be applied in the current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("container is not running")]
    NotRunning,
    #[error("container is already running")]
    AlreadyRunning,
    #[error("container is paused, unpause the container before stopping or killing")]
    Paused,
    #[error("container is already paused")]
    AlreadyPaused,
    #[error("container is not paused")]
    NotPaused,
    #[error("container is being removed")]
    Removing,
    #[error("cannot remove a running container, stop it first or force the removal")]
    RemoveRunning,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
            Status::Removing => "removing",
            Status::Dead => "dead",
        }
    }

    /// Alive means an instance exists (running or paused).
    pub fn is_alive(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }

    pub fn can_start(self) -> Result<(), TransitionError> {
        match self {
            Status::Created | Status::Exited | Status::Dead => Ok(()),
            Status::Running | Status::Restarting => Err(TransitionError::AlreadyRunning),
            Status::Paused => Err(TransitionError::Paused),
            Status::Removing => Err(TransitionError::Removing),
        }
    }

    /// stop is allowed on a paused container (it is resumed, then stopped).
    pub fn can_stop(self) -> Result<(), TransitionError> {
        match self {
            Status::Running | Status::Paused | Status::Restarting => Ok(()),
            Status::Removing => Err(TransitionError::Removing),
            _ => Err(TransitionError::NotRunning),
        }
    }

    pub fn can_kill(self) -> Result<(), TransitionError> {
        match self {
            Status::Running | Status::Paused | Status::Restarting => Ok(()),
            _ => Err(TransitionError::NotRunning),
        }
    }

    pub fn can_pause(self) -> Result<(), TransitionError> {
        match self {
            Status::Running => Ok(()),
            Status::Paused => Err(TransitionError::AlreadyPaused),
            _ => Err(TransitionError::NotRunning),
        }
    }

    pub fn can_unpause(self) -> Result<(), TransitionError> {
        match self {
            Status::Paused => Ok(()),
            _ => Err(TransitionError::NotPaused),
        }
    }

    pub fn can_remove(self, force: bool) -> Result<(), TransitionError> {
        match self {
            Status::Running | Status::Paused | Status::Restarting if !force => {
                Err(TransitionError::RemoveRunning)
            }
            Status::Removing => Err(TransitionError::Removing),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A restart policy that does not parse. The text is quoted as given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RestartPolicyError {
    #[error("invalid restart policy {0:?}")]
    Unknown(String),
    #[error("invalid restart policy {0:?}: bad retry count")]
    RetryCount(String),
}

/// `--restart no|on-failure[:N]|always|unless-stopped`
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    #[default]
    No,
    OnFailure {
        max_retries: u32,
    },
    Always,
    UnlessStopped,
}

impl RestartPolicy {
    /// From the Engine API's `{"Name": ..., "MaximumRetryCount": N}`.
    pub fn from_api(name: &str, max_retries: i64) -> Result<Self, RestartPolicyError> {
        let max_retries = u32::try_from(max_retries.max(0)).unwrap_or(u32::MAX);
        match name {
            "" | "no" => Ok(RestartPolicy::No),
            "always" => Ok(RestartPolicy::Always),
            "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
            "on-failure" => Ok(RestartPolicy::OnFailure { max_retries }),
            other => Err(RestartPolicyError::Unknown(other.to_string())),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure { .. } => "on-failure",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
        }
    }

    pub fn max_retries(&self) -> u32 {
        match self {
            RestartPolicy::OnFailure { max_retries } => *max_retries,
            _ => 0,
        }
    }

    /// After an exit while the daemon runs: restart?
    /// `restart_count` counts restarts already made.
    pub fn should_restart(
        &self,
        exit_code: i64,
        restart_count: u32,
        manually_stopped: bool,
    ) -> bool {
        if manually_stopped {
            return false;
        }
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            RestartPolicy::OnFailure { max_retries } => {
                exit_code != 0 && (*max_retries == 0 || restart_count < *max_retries)
            }
        }
    }

    /// When the daemon starts: bring this container back up?
    /// `always` comes back even after a manual stop, as in Docker.
    pub fn restart_on_daemon_start(
        &self,
        exit_code: i64,
        was_alive: bool,
        manually_stopped: bool,
    ) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always => true,
            RestartPolicy::UnlessStopped => !manually_stopped,
            RestartPolicy::OnFailure { .. } => was_alive && !manually_stopped && exit_code != 0,
        }
    }
}

impl FromStr for RestartPolicy {
    type Err = RestartPolicyError;
    fn from_str(s: &str) -> Result<Self, RestartPolicyError> {
        match s.split_once(':') {
            Some(("on-failure", n)) => {
                let n: u32 = n
                    .parse()
                    .map_err(|_| RestartPolicyError::RetryCount(s.to_string()))?;
                Ok(RestartPolicy::OnFailure { max_retries: n })
            }
            Some(_) => Err(RestartPolicyError::Unknown(s.to_string())),
            None => RestartPolicy::from_api(s, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Status::*;
    use super::*;

    #[test]
    fn transitions() {
        assert!(Created.can_start().is_ok());
        assert!(Exited.can_start().is_ok());
        assert_eq!(Running.can_start(), Err(TransitionError::AlreadyRunning));
        assert_eq!(Paused.can_start(), Err(TransitionError::Paused));
        assert!(Running.can_pause().is_ok());
        assert_eq!(Paused.can_pause(), Err(TransitionError::AlreadyPaused));
        assert_eq!(Exited.can_pause(), Err(TransitionError::NotRunning));
        assert!(Paused.can_unpause().is_ok());
        assert_eq!(Running.can_unpause(), Err(TransitionError::NotPaused));
        assert!(Paused.can_stop().is_ok());
        assert_eq!(Created.can_stop(), Err(TransitionError::NotRunning));
        assert_eq!(Exited.can_kill(), Err(TransitionError::NotRunning));
        assert_eq!(
            Running.can_remove(false),
            Err(TransitionError::RemoveRunning)
        );
        assert!(Running.can_remove(true).is_ok());
        assert!(Exited.can_remove(false).is_ok());
        assert_eq!(Removing.can_remove(true), Err(TransitionError::Removing));
    }

    #[test]
    fn restart_policies() {
        assert_eq!(
            "on-failure:3".parse(),
            Ok(RestartPolicy::OnFailure { max_retries: 3 })
        );
        assert_eq!("always".parse(), Ok(RestartPolicy::Always));
        assert!("sometimes".parse::<RestartPolicy>().is_err());
        assert!("on-failure:x".parse::<RestartPolicy>().is_err());
        let p = RestartPolicy::OnFailure { max_retries: 2 };
        assert!(p.should_restart(1, 0, false));
        assert!(p.should_restart(1, 1, false));
        assert!(!p.should_restart(1, 2, false));
        assert!(!p.should_restart(0, 0, false));
        assert!(!RestartPolicy::Always.should_restart(0, 0, true));
        assert!(RestartPolicy::Always.restart_on_daemon_start(0, false, true));
        assert!(!RestartPolicy::UnlessStopped.restart_on_daemon_start(0, false, true));
        assert!(RestartPolicy::UnlessStopped.restart_on_daemon_start(255, true, false));
        assert!(!RestartPolicy::No.restart_on_daemon_start(255, true, false));
    }
}
