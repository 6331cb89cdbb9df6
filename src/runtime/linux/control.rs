//! [`LinuxControl`]: signals to a running container's init through its
//! pidfd, and pause, resume, processes and stats through its cgroup.

use super::{cgroup_path, sys};
use crate::runtime::{Control, RuntimeStats};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

/// The handle ketchd keeps on a running Linux container.
pub struct LinuxControl {
    pub(super) id: String,
    pub(super) pid: i32,
    /// `None` when the init had exited before ketchd could open it.
    pub(super) init: Option<OwnedFd>,
    pub(super) stop_signal: i32,
}

impl LinuxControl {
    fn cgroup(&self) -> Option<libcgroups::common::AnyCgroupManager> {
        libcgroups::common::create_cgroup_manager(libcgroups::common::CgroupConfig {
            cgroup_path: PathBuf::from(cgroup_path(&self.id)),
            systemd_cgroup: false,
            container_name: self.id.clone(),
        })
        .map_err(|e| tracing::warn!("cgroup of container {}: {e}", self.id))
        .ok()
    }

    fn freeze(&self, state: libcgroups::common::FreezerState) {
        use libcgroups::common::CgroupManager;
        if let Some(m) = self.cgroup() {
            if let Err(e) = m.freeze(state) {
                tracing::warn!("freezer of container {}: {e}", self.id);
            }
        }
    }
}

impl Control for LinuxControl {
    /// Written to the container's cgroup at once (libcgroups, v1 or v2).
    fn update(&self, r: &crate::runtime::Resources) -> Result<(), String> {
        use libcgroups::common::{CgroupManager, ControllerOpt};
        use oci_spec::runtime::{
            LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
        };
        let bad = |e: &dyn std::fmt::Display| e.to_string();
        let mut res = LinuxResourcesBuilder::default();
        if r.memory.is_some() || r.memory_swap.is_some() {
            let mut m = LinuxMemoryBuilder::default();
            if let Some(limit) = r.memory {
                m = m.limit(i64::try_from(limit).unwrap_or(i64::MAX));
            }
            if let Some(swap) = r.memory_swap {
                m = m.swap(swap);
            }
            res = res.memory(m.build().map_err(|e| bad(&e))?);
        }
        if r.nano_cpus.is_some() || r.cpu_shares.is_some() {
            let mut c = LinuxCpuBuilder::default();
            if let Some(n) = r.nano_cpus {
                let period: u64 = 100_000;
                c = c.period(period).quota(n * period as i64 / 1_000_000_000);
            }
            if let Some(s) = r.cpu_shares {
                c = c.shares(s);
            }
            res = res.cpu(c.build().map_err(|e| bad(&e))?);
        }
        if let Some(p) = r.pids_limit {
            res = res.pids(
                LinuxPidsBuilder::default()
                    .limit(p)
                    .build()
                    .map_err(|e| bad(&e))?,
            );
        }
        let res = res.build().map_err(|e| bad(&e))?;
        let m = self
            .cgroup()
            .ok_or_else(|| "its cgroup cannot be opened".to_string())?;
        m.apply(&ControllerOpt {
            resources: &res,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        })
        .map_err(|e| bad(&e))
    }

    fn kill(&self) {
        self.signal(libc::SIGKILL);
    }

    fn terminate(&self) {
        self.signal(self.stop_signal);
    }

    fn signal(&self, sig: i32) -> bool {
        self.init
            .as_ref()
            .is_some_and(|fd| sys::pidfd_send_signal(fd.as_raw_fd(), sig).is_ok())
    }

    /// The cgroup's processes, the init first (it lives as long as the
    /// container; an exec'd process may be gone by the time it is used).
    fn pids(&self) -> Vec<i32> {
        use libcgroups::common::CgroupManager;
        let mut pids: Vec<i32> = self
            .cgroup()
            .and_then(|m| m.get_all_pids().ok())
            .map(|v| v.into_iter().map(|p| p.as_raw()).collect())
            .unwrap_or_default();
        pids.retain(|p| *p != self.pid);
        pids.insert(0, self.pid);
        pids
    }

    fn pause(&self) {
        self.freeze(libcgroups::common::FreezerState::Frozen);
    }

    fn resume(&self) {
        self.freeze(libcgroups::common::FreezerState::Thawed);
    }

    fn stats(&self) -> RuntimeStats {
        use libcgroups::common::CgroupManager;
        let Some(s) = self.cgroup().and_then(|m| m.stats().ok()) else {
            return RuntimeStats::default();
        };
        RuntimeStats {
            cpu_ns: s.cpu.usage.usage_total,
            memory_bytes: s.memory.memory.usage,
            memory_peak: s.memory.memory.max_usage,
            memory_limit: Some(s.memory.memory.limit).filter(|l| *l > 0 && *l < i64::MAX as u64),
            pids: Some(s.pids.current),
            http: None,
        }
    }
}
