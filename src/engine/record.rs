//! A container's persisted record: its config and its state, stored as
//! `<data-root>/containers/<id>/container.jsonl` (see `record_file`).
//!
//! [`StateRecord`] is the state machine: its fields are private, and each
//! move is a method that checks the move is legal (an illegal one is a
//! [`TransitionError`], HTTP 409) and changes every field that move
//! changes, so an exit, say, is recorded in exactly one place.

use crate::api::types::{ContainerConfig, HostConfig, PortBinding};
use crate::model::TransitionError;
use crate::model::{ContainerId, Digest, Platform, RestartPolicy, RuntimeKind, Status};
use crate::runtime::ExitStatus;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Published ports of a running container, keyed `80/tcp`.
pub type Published = BTreeMap<String, Vec<PortBinding>>;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StateRecord {
    status: Status,
    exit_code: i64,
    error: String,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    oom_killed: bool,
    restart_count: u32,
    /// Set by stop/kill; a manually stopped container is not restarted.
    manually_stopped: bool,
    /// While running: the ports bound, keyed `80/tcp`.
    #[serde(default)]
    ports: Published,
}

impl Default for StateRecord {
    fn default() -> Self {
        StateRecord {
            status: Status::Created,
            exit_code: 0,
            error: String::new(),
            started_at: None,
            finished_at: None,
            oom_killed: false,
            restart_count: 0,
            manually_stopped: false,
            ports: BTreeMap::new(),
        }
    }
}

impl StateRecord {
    pub fn status(&self) -> Status {
        self.status
    }
    pub fn exit_code(&self) -> i64 {
        self.exit_code
    }
    /// Why the last run failed (a trap, a start error), or empty.
    pub fn error(&self) -> &str {
        &self.error
    }
    pub fn started_at(&self) -> Option<DateTime<Utc>> {
        self.started_at
    }
    pub fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.finished_at
    }
    pub fn oom_killed(&self) -> bool {
        self.oom_killed
    }
    pub fn restart_count(&self) -> u32 {
        self.restart_count
    }
    pub fn manually_stopped(&self) -> bool {
        self.manually_stopped
    }
    pub fn ports(&self) -> &Published {
        &self.ports
    }

    /// Was an instance alive (or about to be restarted)?
    pub fn was_alive(&self) -> bool {
        matches!(
            self.status,
            Status::Running | Status::Paused | Status::Restarting
        )
    }

    /// An instance started (by `start`, `restart` or the restart policy).
    pub fn running(&mut self, at: DateTime<Utc>, ports: Published) -> Result<(), TransitionError> {
        if self.status != Status::Restarting {
            self.status.can_start()?;
        }
        self.status = Status::Running;
        self.ports = ports;
        self.manually_stopped = false;
        self.started_at = Some(at);
        self.exit_code = 0;
        self.error.clear();
        self.oom_killed = false;
        Ok(())
    }

    /// The instance ended. An exit is a fact, so this is always legal;
    /// it is the one place an exit is recorded.
    pub fn exited(&mut self, exit: &ExitStatus, at: DateTime<Utc>) {
        self.status = Status::Exited;
        self.ports.clear();
        self.exit_code = exit.code;
        self.error = exit.error.clone().unwrap_or_default();
        self.oom_killed = exit.oom_killed;
        self.finished_at = Some(at);
    }

    /// The restart policy will start it again after a backoff.
    pub fn restarting(&mut self) -> Result<(), TransitionError> {
        if self.status != Status::Exited {
            return Err(TransitionError::NotRunning);
        }
        self.status = Status::Restarting;
        Ok(())
    }

    /// The backoff is over and the policy's restart begins.
    pub fn restart_begins(&mut self) -> Result<(), TransitionError> {
        if self.status != Status::Restarting {
            return Err(TransitionError::NotRunning);
        }
        self.restart_count += 1;
        Ok(())
    }

    /// A policy restart failed to start the instance.
    /// The start failed before anything ran (the command is missing or
    /// cannot run): it stays as it was, with Docker's exit code and the
    /// reason.
    pub fn start_failed(&mut self, code: i64, error: String) {
        self.exit_code = code;
        self.error = error;
    }

    pub fn restart_failed(&mut self, error: String) {
        self.status = Status::Exited;
        self.error = error;
    }

    /// `stop` or `kill` asked: the policy will not restart it. Returns
    /// whether an instance is alive to be stopped (a container waiting
    /// out its restart backoff simply becomes exited).
    pub fn stop_requested(&mut self, kill: bool) -> Result<bool, TransitionError> {
        if kill {
            self.status.can_kill()?;
        } else {
            self.status.can_stop()?;
        }
        self.manually_stopped = true;
        self.end_restarting()
    }

    /// The daemon stops it as it shuts down: not by the user, so its
    /// restart policy brings it back at the next start. Returns whether
    /// an instance runs to be stopped.
    pub fn shutdown_requested(&mut self) -> Result<bool, TransitionError> {
        self.status.can_stop()?;
        self.end_restarting()
    }

    fn end_restarting(&mut self) -> Result<bool, TransitionError> {
        if self.status == Status::Restarting {
            self.status = Status::Exited;
            return Ok(false);
        }
        Ok(true)
    }

    pub fn paused(&mut self) -> Result<(), TransitionError> {
        self.status.can_pause()?;
        self.status = Status::Paused;
        Ok(())
    }

    pub fn resumed(&mut self) -> Result<(), TransitionError> {
        self.status.can_unpause()?;
        self.status = Status::Running;
        Ok(())
    }

    /// `rm` asked. Returns whether an instance must be killed first.
    pub fn remove_requested(&mut self, force: bool) -> Result<bool, TransitionError> {
        self.status.can_remove(force)?;
        let alive = self.status.is_alive() || self.status == Status::Restarting;
        if alive {
            self.manually_stopped = true;
        }
        Ok(alive)
    }

    /// The container is being deleted; nothing else may happen to it.
    pub fn removing(&mut self) {
        self.status = Status::Removing;
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub id: ContainerId,
    pub name: String,
    pub created: DateTime<Utc>,
    /// The image as the user named it.
    pub image: String,
    pub image_id: Digest,
    /// Image defaults merged with the create request.
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    /// argv[0] and the rest, as run.
    pub path: String,
    pub args: Vec<String>,
    /// Which runtime runs it: `wasi/wasm`, or `linux/<arch>`.
    pub platform: Platform,
    pub state: StateRecord,
    /// Linux containers: the networks they are on, by network name.
    #[serde(default)]
    pub networks: BTreeMap<String, super::networks::Endpoint>,
    /// The binds `VolumesFrom` copied into `host_config.binds` at create:
    /// inspect shows `Binds` as given, without them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inherited_binds: Vec<String>,
}

impl Record {
    pub fn restart_policy(&self) -> RestartPolicy {
        RestartPolicy::from_api(
            &self.host_config.restart_policy.name,
            self.host_config.restart_policy.maximum_retry_count,
        )
        .unwrap_or_default()
    }

    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.path.clone())
            .chain(self.args.iter().cloned())
            .collect()
    }

    /// The instance ended: its state records the exit, and its addresses
    /// go back to their networks (they are held only while it runs).
    pub fn exited(&mut self, exit: &ExitStatus, at: DateTime<Utc>) {
        self.state.exited(exit, at);
        self.networks
            .values_mut()
            .for_each(super::networks::Endpoint::release);
    }

    pub fn kind(&self) -> Option<RuntimeKind> {
        self.platform.kind()
    }

    pub fn is(&self, kind: RuntimeKind) -> bool {
        self.platform.is(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: i64) -> ExitStatus {
        ExitStatus {
            code,
            error: (code != 0).then(|| "failed".to_string()),
            oom_killed: false,
        }
    }

    #[test]
    fn a_run_and_its_exit_set_every_field_they_own() {
        let mut s = StateRecord::default();
        let mut ports = Published::new();
        ports.insert("80/tcp".into(), vec![]);
        s.running(Utc::now(), ports).unwrap();
        assert_eq!(s.status(), Status::Running);
        assert_eq!(s.ports().len(), 1);
        assert_eq!(
            s.running(Utc::now(), Published::new()),
            Err(TransitionError::AlreadyRunning)
        );
        s.exited(&exit(3), Utc::now());
        assert_eq!(
            (s.status(), s.exit_code(), s.error()),
            (Status::Exited, 3, "failed")
        );
        assert!(s.ports().is_empty() && s.finished_at().is_some());
        // A new run clears what the last exit left.
        s.running(Utc::now(), Published::new()).unwrap();
        assert_eq!((s.exit_code(), s.error()), (0, ""));
    }

    #[test]
    fn illegal_moves_are_transition_errors() {
        let mut s = StateRecord::default();
        assert_eq!(s.paused(), Err(TransitionError::NotRunning));
        assert_eq!(s.resumed(), Err(TransitionError::NotPaused));
        assert_eq!(s.stop_requested(false), Err(TransitionError::NotRunning));
        assert_eq!(s.restarting(), Err(TransitionError::NotRunning));
        s.running(Utc::now(), Published::new()).unwrap();
        assert_eq!(
            s.remove_requested(false),
            Err(TransitionError::RemoveRunning)
        );
        s.paused().unwrap();
        assert_eq!(s.paused(), Err(TransitionError::AlreadyPaused));
        assert_eq!(
            s.running(Utc::now(), Published::new()),
            Err(TransitionError::Paused)
        );
        s.resumed().unwrap();
        assert_eq!(s.remove_requested(true), Ok(true));
        assert!(s.manually_stopped());
        s.removing();
        assert_eq!(s.remove_requested(true), Err(TransitionError::Removing));
    }

    #[test]
    fn a_restart_counts_and_a_stop_during_backoff_just_exits() {
        let mut s = StateRecord::default();
        s.running(Utc::now(), Published::new()).unwrap();
        s.exited(&exit(1), Utc::now());
        s.restarting().unwrap();
        s.restart_begins().unwrap();
        assert_eq!(s.restart_count(), 1);
        s.running(Utc::now(), Published::new()).unwrap();
        s.exited(&exit(1), Utc::now());
        s.restarting().unwrap();
        assert_eq!(s.stop_requested(false), Ok(false));
        assert_eq!(s.status(), Status::Exited);
        assert!(s.manually_stopped());
        assert_eq!(s.restart_begins(), Err(TransitionError::NotRunning));
    }
}
