//! The containers' cgroups: their path, their removal from every
//! hierarchy, and priming the kernel's migration lock before a start.

use super::step::{Step, StepError};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub fn cgroup_path(id: &str) -> String {
    format!("/ketch/{id}")
}

/// Kill whatever is left in a container's cgroup and remove the cgroup.
pub fn remove_cgroup(id: &str) -> Result<(), StepError> {
    remove_cgroup_under(Path::new(CGROUP_ROOT), id).or_else(|e| {
        // Something the plain walk could not remove (a child cgroup made
        // inside): leave it to libcgroups, which knows every layout.
        tracing::debug!("cgroup of {id}: {e}; retrying through libcgroups");
        use libcgroups::common::CgroupManager;
        libcgroups::common::create_cgroup_manager(libcgroups::common::CgroupConfig {
            cgroup_path: PathBuf::from(cgroup_path(id)),
            systemd_cgroup: false,
            container_name: id.to_string(),
        })
        .step(format!("the cgroup manager of {id}"))?
        .remove()
        .step(format!("removing the cgroup of {id}"))
    })
}

pub(super) const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// `CGROUP2_SUPER_MAGIC`: the filesystem type of a unified hierarchy.
const CGROUP2_MAGIC: u64 = 0x6367_7270;

/// The cgroup namespace a container gets when it asks for none, as
/// Docker chooses it: `private` on a host with only the unified (v2)
/// hierarchy, `host` on a v1 or hybrid one.
pub fn default_cgroupns() -> &'static str {
    let unified = rustix::fs::statfs(CGROUP_ROOT).is_ok_and(|s| s.f_type as u64 == CGROUP2_MAGIC);
    if unified {
        "private"
    } else {
        "host"
    }
}

/// [`remove_cgroup`] under a cgroup filesystem mounted at `root`: the
/// container's directory in every v1 hierarchy (`root/<controller>/...`)
/// and the v2 one (`root/...`), whichever exist. Its processes are killed
/// first (after its init has exited there are normally none: the kernel
/// ended its pid namespace).
pub(super) fn remove_cgroup_under(root: &Path, id: &str) -> Result<(), StepError> {
    let rel = cgroup_path(id);
    let rel = rel.trim_start_matches('/');
    let mut dirs = vec![root.join(rel)];
    if let Ok(rd) = std::fs::read_dir(root) {
        dirs.extend(rd.flatten().map(|e| e.path().join(rel)));
    }
    // Co-mounted v1 controllers (`cpu,cpuacct` and its symlinks) name
    // one directory several times.
    dirs.retain(|d| d.is_dir());
    dirs.sort();
    dirs.dedup();
    let mut attempts = 0;
    loop {
        let mut busy = None;
        for d in &dirs {
            match std::fs::remove_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
                    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                        // SAFETY: a plain signal to a process of this container's cgroup.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                    busy = Some(Err::<(), _>(e).step(format!("removing {}", d.display())));
                }
            }
        }
        attempts += 1;
        match busy {
            None => return Ok(()),
            Some(e) if attempts == 50 => return e,
            Some(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Moving a process into a cgroup write-locks a kernel-wide per-cpu rwsem,
/// and taking it out of its fast mode waits for an RCU grace period: 7-15
/// ms on a small VM, unless the hierarchy is mounted with `favordynmods`.
/// libcontainer moves the container's first process into its cgroup a few
/// milliseconds after the monitor is spawned, and would wait that long on
/// the critical path of every start. So ketchd takes the lock first, from a
/// thread of its own, by a migration that changes nothing (its own pid into
/// the cgroup it is already in): the grace period elapses while the monitor
/// starts, and the lock stays in its slow mode for about one more grace
/// period, in which libcontainer's migration does not wait.
pub(super) fn prime_cgroup_migration(procs: PathBuf) {
    let _ = std::thread::Builder::new()
        .name("cgroup-prime".into())
        .spawn(move || {
            let write = std::fs::OpenOptions::new()
                .write(true)
                .open(&procs)
                .and_then(|mut f| {
                    use std::io::Write;
                    f.write_all(std::process::id().to_string().as_bytes())
                });
            if let Err(e) = write {
                tracing::debug!("priming cgroup migration through {}: {e}", procs.display());
            }
        });
}

/// The `cgroup.procs` of the cgroup this process is in, from the text of
/// `/proc/self/cgroup`, under a cgroup filesystem mounted at `root`: the
/// v2 one on a pure v2 host, else one of its v1 hierarchies (the named,
/// controller-less `systemd` one if mounted, whose attach does nothing).
pub(super) fn own_cgroup_procs(root: &Path, proc_self_cgroup: &str) -> Option<PathBuf> {
    let mut lines: Vec<(&str, &str)> = proc_self_cgroup
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctl, path) = (f.next()?, f.next()?, f.next()?);
            Some((ctl, path.trim_start_matches('/')))
        })
        .collect();
    if root.join("cgroup.procs").is_file() {
        let (_, path) = lines.iter().find(|(ctl, _)| ctl.is_empty())?;
        return Some(root.join(path).join("cgroup.procs")).filter(|p| p.is_file());
    }
    lines.retain(|(ctl, _)| !ctl.is_empty());
    lines.sort_by_key(|(ctl, _)| *ctl != "name=systemd");
    lines.iter().find_map(|(ctl, path)| {
        let dir = ctl.strip_prefix("name=").unwrap_or(ctl);
        Some(root.join(dir).join(path).join("cgroup.procs")).filter(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroups_are_removed_from_every_hierarchy_and_only_the_containers() {
        let root = tempfile::tempdir().unwrap();
        let mine = ["memory", "pids", "cpu,cpuacct", ""];
        for ctl in mine {
            std::fs::create_dir_all(root.path().join(ctl).join("ketch/c1")).unwrap();
            std::fs::create_dir_all(root.path().join(ctl).join("ketch/c2")).unwrap();
        }
        // A co-mounted hierarchy seen through its symlink as well.
        std::os::unix::fs::symlink("cpu,cpuacct", root.path().join("cpu")).unwrap();
        remove_cgroup_under(root.path(), "c1").unwrap();
        for ctl in mine {
            let base = root.path().join(ctl).join("ketch");
            assert!(!base.join("c1").exists(), "{ctl}/ketch/c1 is left");
            assert!(base.join("c2").is_dir(), "{ctl}/ketch/c2 was removed");
        }
        // Nothing to remove is not an error.
        remove_cgroup_under(root.path(), "c1").unwrap();
    }

    #[test]
    fn own_cgroup_is_found_on_v1_and_v2() {
        let v1 = tempfile::tempdir().unwrap();
        for d in ["systemd/user.slice", "memory/box", "pids"] {
            std::fs::create_dir_all(v1.path().join(d)).unwrap();
            std::fs::write(v1.path().join(d).join("cgroup.procs"), "").unwrap();
        }
        let text = "9:pids:/\n4:memory:/box\n1:name=systemd:/user.slice\n0::/\n";
        assert_eq!(
            own_cgroup_procs(v1.path(), text),
            Some(v1.path().join("systemd/user.slice/cgroup.procs"))
        );
        assert_eq!(
            own_cgroup_procs(v1.path(), "9:pids:/\n4:memory:/box\n"),
            Some(v1.path().join("pids/cgroup.procs"))
        );
        let v2 = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(v2.path().join("system.slice/ketchd.service")).unwrap();
        for d in ["", "system.slice/ketchd.service"] {
            std::fs::write(v2.path().join(d).join("cgroup.procs"), "").unwrap();
        }
        assert_eq!(
            own_cgroup_procs(v2.path(), "0::/system.slice/ketchd.service\n"),
            Some(v2.path().join("system.slice/ketchd.service/cgroup.procs"))
        );
        assert_eq!(own_cgroup_procs(v2.path(), ""), None);
    }
}
