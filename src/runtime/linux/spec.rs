//! The OCI runtime spec of a Linux container, made the way runc and Docker
//! make it: Docker's default capabilities, `no_new_privs`, runc's masked
//! and read-only paths, a default seccomp filter, and the run options.

mod seccomp;

use super::devices::{Device, DeviceRule};
use super::LinuxProgram;
use crate::runtime::{RunSpec, RuntimeError};
use oci_spec::runtime::Spec;
use seccomp::{known_syscalls, seccomp};
use serde_json::json;

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capability set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability name the kernel knows, for `--cap-add ALL`.
const ALL_CAPS: &[&str] = &[
    "CAP_AUDIT_CONTROL",
    "CAP_AUDIT_READ",
    "CAP_AUDIT_WRITE",
    "CAP_BLOCK_SUSPEND",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_KILL",
    "CAP_LEASE",
    "CAP_LINUX_IMMUTABLE",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_MKNOD",
    "CAP_NET_ADMIN",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_RAW",
    "CAP_PERFMON",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_CHROOT",
    "CAP_SYS_MODULE",
    "CAP_SYS_NICE",
    "CAP_SYS_PACCT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
];

/// Every capability a process started here may hold (`--cap-add ALL`,
/// `exec --privileged`): those of ketchd's bounding set, since a host may
/// withhold some from it, and asking for more fails the start.
pub fn all_capabilities() -> Vec<String> {
    let mut all: Vec<String> = match caps::read(None, caps::CapSet::Bounding) {
        Ok(set) => set
            .iter()
            .map(|c| c.to_string())
            .filter(|c| ALL_CAPS.contains(&c.as_str()))
            .collect(),
        Err(_) => ALL_CAPS.iter().map(|c| c.to_string()).collect(),
    };
    all.sort();
    all
}

/// Normalise a capability name given on the command line (`net_admin`,
/// `CAP_NET_ADMIN`, `ALL`).
fn cap_name(raw: &str) -> Result<String, RuntimeError> {
    let up = raw.trim().to_ascii_uppercase();
    let name = if up == "ALL" || up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if name != "ALL" && !ALL_CAPS.contains(&name.as_str()) {
        return Err(RuntimeError::Unsupported(format!("capability {raw:?}")));
    }
    Ok(name)
}

/// The effective capability set: Docker's defaults, plus `add`, minus `drop`.
pub fn capabilities(add: &[String], drop: &[String]) -> Result<Vec<String>, RuntimeError> {
    let add: Vec<String> = add.iter().map(|c| cap_name(c)).collect::<Result<_, _>>()?;
    let drop: Vec<String> = drop.iter().map(|c| cap_name(c)).collect::<Result<_, _>>()?;
    let mut caps: Vec<String> = if drop.iter().any(|c| c == "ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPS.iter().map(|c| c.to_string()).collect()
    };
    caps.retain(|c| !drop.contains(c));
    for c in add {
        if c == "ALL" {
            caps = all_capabilities();
        } else if !caps.contains(&c) {
            caps.push(c);
        }
    }
    caps.sort();
    Ok(caps)
}

/// Build the spec. `rootfs` is relative to the bundle directory.
pub fn build(run: &RunSpec, p: &LinuxProgram, rootfs: &str) -> Result<Spec, RuntimeError> {
    let caps = capabilities(&p.cap_add, &p.cap_drop)?;
    let mut env: Vec<String> = run.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    // As Docker: an image without a PATH gets the usual one.
    if !run.env.iter().any(|(k, _)| k == "PATH") {
        env.push(DEFAULT_PATH.into());
    }
    let cwd = if run.workdir.is_empty() {
        "/".to_string()
    } else {
        crate::fsutil::clean_abs(&run.workdir)
    };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={}", p.shm_size)]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    for (dest, file) in [
        ("/etc/hosts", "hosts"),
        ("/etc/hostname", "hostname"),
        ("/etc/resolv.conf", "resolv.conf"),
    ] {
        mounts.push(json!({
            "destination": dest, "type": "bind",
            "source": p.run_dir.join(file), "options": ["rbind", "rprivate"],
        }));
    }
    for g in &run.grants {
        let mut opts = vec!["rbind", "rprivate"];
        if g.read_only {
            opts.push("ro");
        }
        mounts.push(json!({
            "destination": crate::fsutil::clean_abs(&g.guest), "type": "bind",
            "source": g.host, "options": opts,
        }));
    }
    if let Some(init) = &p.init {
        mounts.push(json!({
            "destination": super::devices::INIT_DEST, "type": "bind",
            "source": init, "options": ["bind", "ro", "rprivate"],
        }));
    }
    for (dest, opts) in &p.tmpfs {
        let mut o: Vec<&str> = vec!["nosuid", "nodev", "noexec"];
        o.extend(opts.split(',').filter(|s| !s.is_empty()));
        mounts.push(json!({
            "destination": crate::fsutil::clean_abs(dest), "type": "tmpfs",
            "source": "tmpfs", "options": o,
        }));
    }
    // No network namespace here: the monitor makes it (and brings `lo` up)
    // before the container starts, and the container inherits it.
    let mut namespaces = vec![json!({"type": "mount"})];
    if p.private_cgroupns {
        namespaces.push(json!({"type": "cgroup"}));
    }
    for (kind, mode) in [("pid", &p.pid_ns), ("ipc", &p.ipc_ns), ("uts", &p.uts_ns)] {
        match mode {
            super::NsMode::Private => namespaces.push(json!({"type": kind})),
            super::NsMode::Join(path) => namespaces.push(json!({"type": kind, "path": path})),
            super::NsMode::Host => {}
        }
    }
    // Docker's standard devices; then `--device` and
    // `--device-cgroup-rule`: a device in the image itself is still refused.
    let standard = [
        (1, Some(3)),
        (1, Some(5)),
        (1, Some(7)),
        (1, Some(8)),
        (1, Some(9)),
        (5, Some(0)),
        (5, Some(1)),
        (5, Some(2)),
        (136, None),
    ]
    .map(|(major, minor)| DeviceRule {
        kind: 'c',
        major: Some(major),
        minor,
        access: "rwm".into(),
    });
    let mut allowed = vec![json!({"allow": false, "access": "rwm"})];
    for r in standard
        .into_iter()
        .chain(p.devices.iter().map(Device::rule))
        .chain(p.device_rules.iter().cloned())
    {
        allowed.push(
            json!({"allow": true, "type": r.kind.to_string(), "major": r.major,
            "minor": r.minor, "access": r.access}),
        );
    }
    let mut resources = json!({ "devices": allowed });
    let devices: Vec<serde_json::Value> = p
        .devices
        .iter()
        .map(|d| {
            json!({"path": d.path, "type": d.kind.to_string(), "major": d.major,
                "minor": d.minor, "fileMode": d.file_mode, "uid": d.uid, "gid": d.gid})
        })
        .collect();
    let args: Vec<String> = match &p.init {
        // As Docker: `docker-init -- CMD...`.
        Some(_) => [super::devices::INIT_DEST, "--"]
            .iter()
            .map(|s| s.to_string())
            .chain(run.argv.iter().cloned())
            .collect(),
        None => run.argv.clone(),
    };
    if let Some(limit) = run.memory_limit {
        let mut m = json!({"limit": limit});
        if let Some(swap) = p.memory_swap {
            m["swap"] = json!(swap);
        }
        resources["memory"] = m;
    }
    if p.nano_cpus > 0 {
        let period: i64 = 100_000;
        resources["cpu"] = json!({"quota": p.nano_cpus * period / 1_000_000_000, "period": period});
    }
    if let Some(shares) = p.cpu_shares {
        resources["cpu"]["shares"] = json!(shares);
    }
    if !p.cpuset_cpus.is_empty() {
        resources["cpu"]["cpus"] = json!(p.cpuset_cpus);
    }
    if !p.cpuset_mems.is_empty() {
        resources["cpu"]["mems"] = json!(p.cpuset_mems);
    }
    if let Some(s) = p.memory_swappiness {
        resources["memory"]["swappiness"] = json!(s);
    }
    if let Some(pids) = p.pids_limit.filter(|n| *n > 0) {
        resources["pids"] = json!({"limit": pids});
    }
    // As Docker: a generous open-file limit, but never above what this
    // process may grant (raising a hard limit needs more than root here).
    let nofile = {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: lim is a valid out pointer.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
        lim.rlim_max.min(1 << 20)
    };
    let spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": p.tty,
            "user": {"uid": p.uid, "gid": p.gid, "additionalGids": p.additional_gids},
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": true,
        },
        "root": {"path": rootfs, "readonly": p.read_only},
        // A host or joined UTS namespace keeps its own name.
        "hostname": (p.uts_ns == super::NsMode::Private).then_some(&p.hostname),
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "devices": devices,
            "cgroupsPath": p.cgroup_path(),
            "resources": resources,
            "maskedPaths": crate::api::types::LINUX_MASKED_PATHS,
            "readonlyPaths": crate::api::types::LINUX_READONLY_PATHS,
            "seccomp": known_syscalls(seccomp(&caps)),
        },
    });
    serde_json::from_value(spec)
        .map_err(|e| RuntimeError::Unsupported(format!("runtime spec: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_follow_docker() {
        let caps = capabilities(&[], &[]).unwrap();
        assert_eq!(caps.len(), DEFAULT_CAPS.len());
        let caps = capabilities(&["net_admin".into()], &["CAP_CHOWN".into()]).unwrap();
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert!(capabilities(&[], &["ALL".into()]).unwrap().is_empty());
        assert_eq!(
            capabilities(&["ALL".into()], &[]).unwrap(),
            all_capabilities()
        );
        assert!(all_capabilities().contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(capabilities(&["bogus".into()], &[])
            .unwrap_err()
            .to_string()
            .contains("bogus"));
    }
}
