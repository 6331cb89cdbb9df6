//! A container's persisted record: its config and its state, stored as
//! `<data-root>/containers/<id>/container.json`, always replaced atomically.

use crate::api::types::{ContainerConfig, HostConfig, PortBinding};
use crate::model::{ContainerId, Digest, RestartPolicy, Status};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StateRecord {
    pub status: Status,
    pub exit_code: i64,
    pub error: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub oom_killed: bool,
    pub restart_count: u32,
    /// Set by stop/kill; a manually stopped container is not restarted.
    pub manually_stopped: bool,
    /// While running: the ports bound, keyed `80/tcp`.
    #[serde(default)]
    pub ports: BTreeMap<String, Vec<PortBinding>>,
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
    /// `wasi/wasm` for Wasm containers.
    pub platform: String,
    pub state: StateRecord,
    /// Linux containers: the networks they are on, by network name.
    #[serde(default)]
    pub networks: BTreeMap<String, super::networks::Endpoint>,
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
}
