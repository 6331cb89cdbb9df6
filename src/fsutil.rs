//! Small filesystem helpers: atomic file replacement and hostile-path checks.
//!
//! Every state file ketch keeps (container records, `index.json`) is written
//! through [`write_atomic`], so a crash leaves either the old or the new file,
//! never a torn one.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

/// Write `data` to `path` atomically: temp file in the same directory, fsync,
/// rename over the target (moby's `AtomicWriteFile`). A crash leaves the old
/// or the new content, never a torn file. The directory is not fsynced: use
/// [`write_durable`] where the rename itself must survive a power loss.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    replace_file(path, data, true)
}

/// Atomic but not durable: no fsync. For records that are worthless after a
/// crash anyway (an `--rm` container is removed when the daemon starts).
pub fn write_atomic_volatile(path: &Path, data: &[u8]) -> io::Result<()> {
    replace_file(path, data, false)
}

fn replace_file(path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(data)?;
        if sync {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// [`write_atomic`], then fsync the directory so the rename is durable too.
pub fn write_durable(path: &Path, data: &[u8]) -> io::Result<()> {
    write_atomic(path, data)?;
    sync_dir(path.parent().unwrap_or_else(|| Path::new(".")))
}

/// fsync a directory so a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Resolve a relative, untrusted path (from an image, a tar or a request)
/// beneath `root` lexically: `..` may not climb above `root`, absolute paths
/// are re-rooted. Returns `None` for a path that tries to escape.
pub fn join_beneath(root: &Path, untrusted: &str) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for comp in Path::new(untrusted).components() {
        match comp {
            Component::Normal(p) => parts.push(p),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                parts.pop()?;
            }
        }
    }
    let mut out = root.to_path_buf();
    out.extend(parts);
    Some(out)
}

/// Where an image's program is: an absolute path as it is, a relative one
/// taken from the working directory (`/` when unset), cleaned.
pub fn entry_path(entry: &str, workdir: &str) -> String {
    if entry.starts_with('/') {
        clean_abs(entry)
    } else {
        clean_abs(&format!(
            "{}/{entry}",
            if workdir.is_empty() { "/" } else { workdir }
        ))
    }
}

/// Normalise an in-image path: make it absolute and resolve `.`/`..`
/// lexically without climbing above `/`.
pub fn clean_abs(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Create a private directory.
/// Creates `dir` (and parents) with `mode`.
pub fn create_dir_mode(dir: &Path, mode: u32) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    Ok(())
}

/// A sync shared by the writers that need it at once: each caller of
/// [`GroupSync::sync`] returns once a sync that began after it called has
/// finished. One caller syncs while the others queue; when it is done, one
/// of them syncs for all queued meanwhile, so concurrent writers share
/// their flushes. Every caller passes the same sync (of one directory, or
/// of one append-only file); whichever caller runs it runs its own.
#[derive(Default)]
pub struct GroupSync {
    state: std::sync::Mutex<GroupSyncState>,
    finished: std::sync::Condvar,
}

#[derive(Default)]
struct GroupSyncState {
    /// A sync is under way.
    running: bool,
    /// Syncs finished so far.
    rounds: u64,
    /// How the latest one ended.
    last: Option<(io::ErrorKind, String)>,
}

impl GroupSync {
    /// Return once `sync`, run by this caller or another after this call
    /// began, has finished. Blocking.
    pub fn sync(&self, sync: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        let mut sync = Some(sync);
        let mut st = self.lock();
        // A sync already running may have begun before this caller's
        // write was made: wait for the one after it.
        let want = st.rounds + if st.running { 2 } else { 1 };
        while st.rounds < want {
            if st.running {
                st = self.finished.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            st.running = true;
            drop(st);
            // This caller's own sync runs at most once: the round it runs
            // is the last it waits for.
            let r = sync.take().map_or(Ok(()), |f| f());
            st = self.lock();
            st.running = false;
            st.rounds += 1;
            st.last = r.err().map(|e| (e.kind(), e.to_string()));
            self.finished.notify_all();
        }
        // Every round that finished after this call began covers it: the
        // latest one's outcome answers.
        match &st.last {
            None => Ok(()),
            Some((kind, msg)) => Err(io::Error::new(*kind, msg.clone())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GroupSyncState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_callers_share_a_sync() {
        let d = tempfile::tempdir().unwrap();
        let sync = std::sync::Arc::new(GroupSync::default());
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let (s, p) = (sync.clone(), d.path().join(format!("f{i}")));
                std::thread::spawn(move || {
                    for j in 0..8 {
                        fs::write(p.with_extension(j.to_string()), b"x").unwrap();
                        s.sync(|| sync_dir(p.parent().unwrap())).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let rounds = sync.lock().rounds;
        // Callers queued behind a running fsync shared the next one.
        assert!(rounds < 16 * 8, "{rounds} fsyncs for 128 callers");
        // A directory that is gone is an error for its caller.
        let gone = GroupSync::default();
        assert!(gone.sync(|| sync_dir(&d.path().join("nope"))).is_err());
    }

    #[test]
    fn join_beneath_rejects_escapes() {
        let root = Path::new("/r");
        assert_eq!(join_beneath(root, "a/b"), Some(PathBuf::from("/r/a/b")));
        assert_eq!(
            join_beneath(root, "/etc/passwd"),
            Some(PathBuf::from("/r/etc/passwd"))
        );
        assert_eq!(join_beneath(root, "a/../b"), Some(PathBuf::from("/r/b")));
        assert_eq!(join_beneath(root, "../x"), None);
        assert_eq!(join_beneath(root, "a/../../x"), None);
    }

    #[test]
    fn clean_abs_never_climbs() {
        assert_eq!(clean_abs("../../etc"), "/etc");
        assert_eq!(clean_abs("a/./b/"), "/a/b");
        assert_eq!(clean_abs("/"), "/");
    }

    #[test]
    fn write_atomic_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::read_dir(d.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
