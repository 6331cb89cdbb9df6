//! What a task's OCI bundle asks for: the Wasm entrypoint in its root
//! filesystem, the argv and env, the directories granted (bind mounts),
//! the memory limit, and which shim process it belongs to.

use super::error::ShimError;
use crate::confine::Root;
use crate::runtime::Grant;
use containerd_shim::protos::api::Mount;
use oci_spec::runtime::Spec;
use std::path::Path;

/// The annotation CRI puts on every container of a pod.
pub(super) const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// `sandbox` on a pod's own (pause) container, `container` on the others.
const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// A module larger than this is refused rather than read into memory.
const MAX_MODULE: u64 = 1 << 30;
/// The first bytes of every Wasm module and component.
const WASM_MAGIC: &[u8] = b"\0asm";
const ELF_MAGIC: &[u8] = b"\x7fELF";
/// Where a bare program name is looked for when the spec sets no PATH.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A bundle's `config.json`.
pub(super) fn load_spec(bundle: &Path) -> Result<Spec, ShimError> {
    let path = bundle.join("config.json");
    Spec::load(&path).map_err(|e| ShimError::Invalid(format!("bundle {}: {e}", path.display())))
}

/// Which shim process serves this container: one per pod, and one for all
/// the other containers of a containerd namespace (the socket address
/// hashes the namespace in).
///
/// The group has a `/`, which no container id has: runc's shim names its
/// sockets the same way after a container id, and never lands on ours.
pub(super) fn grouping(spec: &Spec) -> String {
    match annotation(spec, SANDBOX_ID) {
        Some(pod) if !pod.is_empty() => format!("{}/pod-{pod}", super::RUNTIME_ID),
        _ => format!("{}/ketch", super::RUNTIME_ID),
    }
}

/// A pod's own container, which holds the pod together and runs nothing.
pub(super) fn is_pod_sandbox(spec: &Spec) -> bool {
    annotation(spec, CONTAINER_TYPE) == Some("sandbox")
}

/// Refuse what the shim cannot give: sockets. A guest here runs in the
/// shim's network namespace, not its pod's, so a network grant would
/// reach the wrong network; the shim says so rather than run the guest
/// without what it was granted.
pub(super) fn refuse_unsupported(id: &str, spec: &Spec) -> Result<(), ShimError> {
    use crate::api::annotations::{NET_ALLOW, NET_CONNECTIONS};
    for key in [NET_ALLOW, NET_CONNECTIONS] {
        if annotation(spec, key).is_some() {
            return Err(ShimError::Invalid(format!(
                "task {id}: annotation {key}: the ketch shim gives guests no sockets (they would be in the shim's network namespace, not the pod's); run networked Wasm containers with ketchd"
            )));
        }
    }
    Ok(())
}

fn annotation<'a>(spec: &'a Spec, key: &str) -> Option<&'a str> {
    spec.annotations().as_ref()?.get(key).map(String::as_str)
}

/// The program a Wasm task runs, read from its root filesystem.
pub(super) struct Entrypoint {
    /// The path in the image, as the spec names it.
    pub path: String,
    pub bytes: Vec<u8>,
}

/// Mounts the rootfs containerd prepared (the image's layers as its
/// snapshotter made them) under the bundle, reads the entrypoint beneath
/// it by descriptor, and unmounts it again: a Wasm guest is never given
/// its image's files, only its bind mounts.
pub(super) async fn read_entrypoint(
    id: &str,
    bundle: &Path,
    rootfs: &[Mount],
    spec: &Spec,
) -> Result<Entrypoint, ShimError> {
    let path = spec
        .process()
        .as_ref()
        .and_then(|p| p.args().as_ref())
        .and_then(|a| a.first())
        .cloned()
        .ok_or_else(|| {
            ShimError::Invalid(format!(
                "task {id} has no Wasm entrypoint: the image sets no entrypoint or command"
            ))
        })?;
    // containerd's snapshot is mounted at `<bundle>/rootfs`; a spec with
    // a root of its own (`ctr run --rootfs DIR`) comes with no mounts, and
    // nothing is mounted over it.
    let mount_at = bundle.join("rootfs");
    let root = match spec.root().as_ref().map(|r| r.path()) {
        Some(p) if rootfs.is_empty() => bundle.join(p),
        _ => mount_at.clone(),
    };
    let mounted = Mounted::new(&mount_at, rootfs).await?;
    let candidates = entry_candidates(&path, spec);
    let found = tokio::task::spawn_blocking(move || {
        let mut last = (candidates[0].clone(), Err(None));
        for c in candidates {
            let read = read_beneath(&root, &c);
            let absent = matches!(read, Err(None));
            last = (c, read);
            if !absent {
                break;
            }
        }
        last
    })
    .await;
    drop(mounted);
    let (path, read) =
        found.map_err(|e| ShimError::Internal(format!("task {id}: reading stopped: {e}")))?;
    let bytes = read.map_err(|e| match e {
        Some(e) => ShimError::Invalid(format!("task {id}: cannot read its entrypoint {path}: {e}")),
        None => ShimError::Invalid(format!(
            "task {id} has no Wasm entrypoint: {path} is not in the image"
        )),
    })?;
    if bytes.starts_with(WASM_MAGIC) {
        return Ok(Entrypoint { path, bytes });
    }
    let what = if bytes.starts_with(ELF_MAGIC) {
        "a Linux executable (ELF); the ketch runtime runs WebAssembly only, so run this image with io.containerd.runc.v2"
    } else if bytes.starts_with(b"#!") {
        "a script; the ketch runtime runs WebAssembly only"
    } else {
        "not a WebAssembly module or component"
    };
    Err(ShimError::Invalid(format!(
        "task {id} has no Wasm entrypoint: {path} is {what}"
    )))
}

/// Where the entrypoint may be, in order: a relative path is taken from
/// the working directory, as ketchd takes it; a bare name is then looked
/// for on the spec's PATH, as execvp does.
fn entry_candidates(entry: &str, spec: &Spec) -> Vec<String> {
    let (_, env, cwd) = process(spec);
    let mut out = vec![crate::fsutil::entry_path(entry, &cwd)];
    if !entry.contains('/') {
        let search = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
        out.extend(
            search
                .split(':')
                .filter(|d| !d.is_empty())
                .map(|d| crate::fsutil::clean_abs(&format!("{d}/{entry}"))),
        );
    }
    out
}

/// `None`: the file is absent.
fn read_beneath(root: &Path, path: &str) -> Result<Vec<u8>, Option<String>> {
    let root = Root::open(root).map_err(|e| Some(e.to_string()))?;
    let rel = path.trim_start_matches('/');
    root.read_file(rel.as_bytes(), MAX_MODULE).map_err(|e| {
        if e.is_not_found() {
            None
        } else {
            Some(e.to_string())
        }
    })
}

/// The rootfs mounts of one task, unmounted when dropped.
struct Mounted<'a> {
    target: &'a Path,
    count: usize,
}

impl<'a> Mounted<'a> {
    async fn new(target: &'a Path, mounts: &[Mount]) -> Result<Self, ShimError> {
        let mut this = Mounted { target, count: 0 };
        if mounts.is_empty() {
            return Ok(this);
        }
        std::fs::create_dir_all(target)
            .map_err(|e| ShimError::Internal(format!("cannot make {}: {e}", target.display())))?;
        for m in mounts {
            containerd_shim::asynchronous::util::mount_rootfs(m, target)
                .await
                .map_err(|e| {
                    ShimError::Internal(format!(
                        "cannot mount the rootfs ({} {}) at {}: {e}",
                        m.type_,
                        m.source,
                        target.display()
                    ))
                })?;
            this.count += 1;
        }
        Ok(this)
    }
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        for _ in 0..self.count {
            unmount(self.target);
        }
    }
}

/// Detaches whatever is mounted at `target`; nothing if nothing is.
pub(super) fn unmount(target: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(target.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) && e.raw_os_error() != Some(libc::ENOENT) {
            log::warn!("cannot unmount {}: {e}", target.display());
        }
    }
}

/// The guest's argv and env.
pub(super) fn process(spec: &Spec) -> (Vec<String>, Vec<(String, String)>, String) {
    let Some(p) = spec.process() else {
        return (Vec::new(), Vec::new(), "/".into());
    };
    let argv = p.args().clone().unwrap_or_default();
    let env = p
        .env()
        .iter()
        .flatten()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (argv, env, p.cwd().display().to_string())
}

/// Bind mounts of directories become preopened directories at their
/// destinations, read-only if the mount is. Files (`/etc/hosts`, …) and
/// anything under `/dev`, `/proc` and `/sys` (CRI's `/dev/shm`) are not
/// granted.
pub(super) fn grants(spec: &Spec) -> Vec<Grant> {
    let mut out = Vec::new();
    for m in spec.mounts().iter().flatten() {
        let opts = m.options().clone().unwrap_or_default();
        let bind =
            m.typ().as_deref() == Some("bind") || opts.iter().any(|o| o == "bind" || o == "rbind");
        let Some(source) = m.source() else { continue };
        let dest = m.destination();
        // CRI binds /dev/shm (the host's with hostIPC): devices and kernel
        // filesystems are no guest's business.
        let kernel = ["/dev", "/proc", "/sys"]
            .iter()
            .any(|k| dest.starts_with(k));
        if !bind || kernel || !source.is_dir() {
            continue;
        }
        out.push(Grant {
            host: source.clone(),
            guest: m.destination().display().to_string(),
            read_only: opts.iter().any(|o| o == "ro"),
        });
    }
    out
}

/// `linux.resources.memory.limit`, if positive.
pub(super) fn memory_limit(spec: &Spec) -> Option<u64> {
    let limit = spec
        .linux()
        .as_ref()?
        .resources()
        .as_ref()?
        .memory()
        .as_ref()?
        .limit()?;
    u64::try_from(limit).ok().filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn pods_share_a_shim_and_everything_else_shares_the_namespace_one() {
        let plain = spec(serde_json::json!({"ociVersion": "1.0.2"}));
        assert_eq!(grouping(&plain), "io.containerd.ketch.v1/ketch");
        assert!(!is_pod_sandbox(&plain));
        let pod = spec(serde_json::json!({"ociVersion": "1.0.2", "annotations": {
            SANDBOX_ID: "abc", CONTAINER_TYPE: "sandbox"}}));
        assert_eq!(grouping(&pod), "io.containerd.ketch.v1/pod-abc");
        assert!(is_pod_sandbox(&pod));
    }

    #[test]
    fn directory_bind_mounts_are_granted_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hosts");
        std::fs::write(&file, "").unwrap();
        let d = dir.path().display().to_string();
        let s = spec(serde_json::json!({"ociVersion": "1.0.2",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/data", "type": "bind", "source": d, "options": ["rbind", "ro"]},
                {"destination": "/rw", "source": d, "options": ["rbind", "rw"]},
                {"destination": "/dev/shm", "type": "bind", "source": d, "options": ["rbind", "rw"]},
                {"destination": "/etc/hosts", "type": "bind", "source": file, "options": ["rbind"]}],
            "linux": {"resources": {"memory": {"limit": 8_388_608}}}}));
        let g = grants(&s);
        assert_eq!(g.len(), 2, "{g:?}");
        assert_eq!((g[0].guest.as_str(), g[0].read_only), ("/data", true));
        assert_eq!((g[1].guest.as_str(), g[1].read_only), ("/rw", false));
        assert_eq!(memory_limit(&s), Some(8 << 20));
    }

    #[test]
    fn a_relative_entrypoint_is_taken_from_the_working_directory_then_the_path() {
        let s = spec(serde_json::json!({"ociVersion": "1.0.2",
            "process": {"args": ["x"], "cwd": "/app", "user": {"uid": 0, "gid": 0},
                        "env": ["PATH=/opt/bin:/bin"]}}));
        assert_eq!(entry_candidates("./run.wasm", &s), ["/app/run.wasm"]);
        assert_eq!(entry_candidates("/run.wasm", &s), ["/run.wasm"]);
        assert_eq!(
            entry_candidates("sh", &s),
            ["/app/sh", "/opt/bin/sh", "/bin/sh"]
        );
    }

    #[tokio::test]
    async fn the_entrypoint_is_read_beneath_the_rootfs_and_must_be_wasm() {
        let bundle = tempfile::tempdir().unwrap();
        let rootfs = bundle.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::write(rootfs.join("app.wasm"), b"\0asm\x01\0\0\0").unwrap();
        std::fs::write(rootfs.join("bin/sh"), b"\x7fELF....").unwrap();
        // An entrypoint that climbs out of the rootfs stays inside it.
        std::os::unix::fs::symlink("/../../../../etc/passwd", rootfs.join("escape")).unwrap();
        let with = |arg: &str| {
            spec(serde_json::json!({"ociVersion": "1.0.2",
                "process": {"args": [arg], "cwd": "/", "user": {"uid": 0, "gid": 0}},
                "root": {"path": "rootfs"}}))
        };
        let ok = read_entrypoint("t", bundle.path(), &[], &with("/app.wasm"))
            .await
            .unwrap();
        assert_eq!(ok.bytes.len(), 8);
        let elf = read_entrypoint("t", bundle.path(), &[], &with("sh"))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            elf.contains("/bin/sh is a Linux executable") && elf.contains("runc"),
            "{elf}"
        );
        for absent in ["/nope.wasm", "/escape", "/../../etc/passwd"] {
            let e = read_entrypoint("t", bundle.path(), &[], &with(absent))
                .await
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("has no Wasm entrypoint"), "{absent}: {e}");
        }
    }
}
