//! `POST /containers/{id}/update`: new limits and restart policy, checked
//! as a create checks them, applied at once to a running container (a
//! Linux container's cgroup, a Wasm guest's memory cap) and then recorded,
//! so the next start has them too.

use super::super::config::validate_host_config;
use super::super::{Engine, EngineError};
use crate::api::types::UpdateConfig;
use crate::runtime::Resources;
use std::sync::Arc;

impl Engine {
    pub async fn update(self: &Arc<Self>, name: &str, u: UpdateConfig) -> Result<(), EngineError> {
        let c = self.lookup(name)?;
        let _op = c.op.lock().await;
        let rec = c.record();
        let mut hc = rec.host_config.clone();
        let mut live = Resources::default();
        if u.memory != 0 {
            hc.memory = u.memory;
            live.memory = u64::try_from(u.memory).ok();
        }
        if u.memory_swap != 0 {
            hc.memory_swap = u.memory_swap;
            live.memory_swap = Some(u.memory_swap);
        }
        if u.nano_cpus != 0 {
            hc.nano_cpus = u.nano_cpus;
            live.nano_cpus = Some(u.nano_cpus);
        }
        if u.cpu_shares != 0 {
            hc.cpu_shares = u.cpu_shares;
            live.cpu_shares = u64::try_from(u.cpu_shares).ok();
        }
        if let Some(p) = u.pids_limit.filter(|p| *p != 0) {
            hc.pids_limit = Some(p);
            live.pids_limit = Some(p);
        }
        if let Some(p) = u.restart_policy.filter(|p| !p.name.is_empty()) {
            hc.restart_policy = p;
        }
        let cannot = |e: String| {
            EngineError::InvalidArgument(format!("Cannot update container {}: {e}", rec.id))
        };
        validate_host_config(&hc, &self.volumes).map_err(|e| cannot(e.to_string()))?;
        let backend = self.backends.for_platform(&rec.platform, &rec.image)?;
        backend.validate(&hc).map_err(|e| cannot(e.to_string()))?;
        if live != Resources::default() && rec.state.status().is_alive() {
            if let Some(ctl) = c.control() {
                ctl.update(&live).map_err(cannot)?;
            }
        }
        let rec = c.update(|r| r.host_config = hc).await?;
        self.event(&rec, "update", &[]);
        Ok(())
    }
}
