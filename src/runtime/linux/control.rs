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
