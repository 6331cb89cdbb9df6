//! `cp` to and from a Linux container. The helper `ketch-monitor cp MODE
//! TARGET PATH` (a single-threaded process, so ketchd spawns it) enters the
//! container's root, so every path, symlinks included, resolves inside it:
//! - a running container's: TARGET is a pid, whose mount namespace it
//!   joins, seeing exactly what the container sees (volumes and tmpfs
//!   mounts too);
//! - a created or stopped one's: TARGET is a [`CopyRoot`] (JSON), whose
//!   overlay it mounts in a private mount namespace of its own (gone when
//!   it exits), and `chroot`s into.
//!
//! - `stat`: prints the path's stat as Docker's `X-Docker-Container-Path-Stat`
//!   JSON;
//! - `get`: writes a tar of the path (named by its base name) to stdout;
//! - `put`: extracts a tar (a file on stdin) into the directory PATH under
//!   the `cp` policy of [`crate::confine::archive`]: checked whole first,
//!   then written by descriptor, whiteouts are plain names.

use serde::Serialize;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Docker's container path stat.
#[derive(Serialize, Debug)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    pub mode: u32,
    pub mtime: String,
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

/// Go's `os.FileMode` bits for the file type, which Docker's clients read.
fn go_mode(m: &std::fs::Metadata) -> u32 {
    let perm = m.mode() & 0o777;
    let ft = m.file_type();
    use std::os::unix::fs::FileTypeExt;
    let kind = if ft.is_dir() {
        1 << 31
    } else if ft.is_symlink() {
        1 << 27
    } else if ft.is_fifo() {
        1 << 25
    } else if ft.is_socket() {
        1 << 24
    } else if ft.is_block_device() {
        1 << 26
    } else if ft.is_char_device() {
        (1 << 26) | (1 << 21)
    } else {
        0
    };
    kind | perm
}

fn stat(path: &Path) -> std::io::Result<PathStat> {
    let m = std::fs::symlink_metadata(path)?;
    let mtime = chrono::DateTime::from_timestamp(m.mtime(), m.mtime_nsec() as u32)
        .unwrap_or_default()
        .to_rfc3339();
    Ok(PathStat {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".into()),
        size: m.len() as i64,
        mode: go_mode(&m),
        mtime,
        link_target: std::fs::read_link(path)
            .map(|t| t.display().to_string())
            .unwrap_or_default(),
    })
}

/// A stopped container's filesystem: its overlay's parts.
#[derive(Serialize, serde::Deserialize, Debug)]
pub struct CopyRoot {
    /// The image's unpacked layers, lowest first.
    pub lower: Vec<std::path::PathBuf>,
    pub upper: std::path::PathBuf,
    pub work: std::path::PathBuf,
    pub mountpoint: std::path::PathBuf,
    /// A lower dir for an image without layers.
    pub empty: std::path::PathBuf,
    /// Its volumes and bind mounts, as it would get them at start.
    #[serde(default)]
    pub binds: Vec<CopyBind>,
}

/// A volume or bind mount of a stopped container.
#[derive(Serialize, serde::Deserialize, Debug)]
pub struct CopyBind {
    pub host: std::path::PathBuf,
    /// The path inside the container: hostile, resolved only after the
    /// `chroot`, so no symlink in the image can point it at the host.
    pub guest: String,
    pub read_only: bool,
}

fn enter_stopped(root: &CopyRoot) -> std::io::Result<()> {
    use super::sys;
    sys::private_mount_namespace()?;
    let empty = [root.empty.clone()];
    let lower = if root.lower.is_empty() {
        &empty[..]
    } else {
        &root.lower[..]
    };
    sys::mount_overlay(lower, &root.upper, &root.work, &root.mountpoint)?;
    // The sources are taken while the host's paths are reachable, and
    // attached once the container's root is the root.
    let trees = root
        .binds
        .iter()
        .map(|b| {
            let dir = std::fs::metadata(&b.host)?.is_dir();
            Ok((sys::clone_tree(&b.host)?, dir, b))
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    std::os::unix::fs::chroot(&root.mountpoint)?;
    std::env::set_current_dir("/")?;
    for (tree, dir, b) in trees {
        let dest = Path::new("/").join(crate::fsutil::clean_abs(&b.guest).trim_start_matches('/'));
        if dir {
            std::fs::create_dir_all(&dest)?;
        } else if std::fs::symlink_metadata(&dest).is_err() {
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::File::create(&dest)?;
        }
        sys::move_mount_to(&tree, &dest).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("mounting {} at {}: {e}", b.host.display(), b.guest),
            )
        })?;
        if b.read_only {
            sys::mount(
                "none",
                &dest,
                "",
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                None,
            )?;
        }
    }
    Ok(())
}

fn enter(pid: i32) -> std::io::Result<()> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))?;
    use std::os::fd::AsRawFd;
    super::sys::setns(ns.as_raw_fd(), libc::CLONE_NEWNS)?;
    // setns leaves the root where the namespace's is: the container's.
    std::env::set_current_dir("/")
}

/// `export`: the container's root filesystem as a tar, names relative to
/// `/`, without what is mounted on it (`/proc`, `/sys`, `/dev`, volumes,
/// the hosts files): only what is on the root's own filesystem, as
/// Docker's export has the image's layers and the container's changes.
fn export<W: std::io::Write>(b: &mut tar::Builder<W>) -> std::io::Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let root_dev = std::fs::symlink_metadata("/")?.dev();
    let mut stack = vec![std::path::PathBuf::from("/")];
    while let Some(dir) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(&dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        for name in names.into_iter().rev() {
            let path = dir.join(&name);
            let m = std::fs::symlink_metadata(&path)?;
            if m.dev() != root_dev || m.file_type().is_socket() {
                continue;
            }
            let rel = path.strip_prefix("/").unwrap_or(&path);
            b.append_path_with_name(&path, rel)?;
            if m.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok(())
}

/// Entry point of `ketch-monitor cp MODE PID PATH`. Exit status 2 means the path
/// does not exist (a 404), 1 any other failure (its message on stderr).
pub fn main(mode: &str, pid: &str, path: &str) -> i32 {
    let fail = |code: i32, msg: String| {
        let _ = writeln!(std::io::stderr(), "{msg}");
        code
    };
    let entered = match (pid.parse::<i32>(), serde_json::from_str::<CopyRoot>(pid)) {
        (Ok(pid), _) => enter(pid),
        (_, Ok(root)) => enter_stopped(&root),
        _ => return fail(1, format!("bad cp target {pid:?}")),
    };
    if let Err(e) = entered {
        return fail(1, format!("entering the container: {e}"));
    }
    let p = Path::new(path);
    let missing = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound {
            fail(2, format!("Could not find the file {path} in container"))
        } else {
            fail(1, format!("{path}: {e}"))
        }
    };
    match mode {
        "stat" => match stat(p) {
            Ok(s) => {
                println!("{}", serde_json::to_string(&s).unwrap_or_default());
                0
            }
            Err(e) => missing(e),
        },
        "get" => {
            let st = match stat(p) {
                Ok(s) => s,
                Err(e) => return missing(e),
            };
            let out = std::io::stdout().lock();
            let mut b = tar::Builder::new(std::io::BufWriter::new(out));
            b.follow_symlinks(false);
            let r = if std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
                b.append_dir_all(&st.name, p)
            } else {
                b.append_path_with_name(p, &st.name)
            };
            match r.and_then(|()| b.into_inner()).and_then(|mut w| w.flush()) {
                Ok(()) => 0,
                Err(e) => fail(1, format!("archiving {path}: {e}")),
            }
        }
        "export" => {
            let out = std::io::stdout().lock();
            let mut b = tar::Builder::new(std::io::BufWriter::new(out));
            b.follow_symlinks(false);
            match export(&mut b)
                .and_then(|()| b.into_inner())
                .and_then(|mut w| w.flush())
            {
                Ok(()) => 0,
                Err(e) => fail(1, format!("exporting the container's root: {e}")),
            }
        }
        "put" => {
            use crate::confine::archive::{self, Limits, Policy};
            let root = match crate::confine::Root::open(p) {
                Ok(r) => r,
                Err(e) if e.is_not_found() => {
                    return fail(2, format!("Could not find the file {path} in container"))
                }
                Err(_) => return fail(1, format!("extraction point {path} is not a directory")),
            };
            // ketchd hands the upload over as a file, read twice: checked
            // whole, then written.
            use std::io::Seek;
            use std::os::fd::AsFd;
            let upload = match std::io::stdin().as_fd().try_clone_to_owned() {
                Ok(fd) => std::fs::File::from(fd),
                Err(e) => return fail(1, format!("reading the archive: {e}")),
            };
            let policy = Policy {
                kind: archive::Kind::Copy,
                limits: Limits::daemon(),
            };
            let mut open = || -> std::io::Result<Box<dyn std::io::Read + '_>> {
                (&upload).seek(std::io::SeekFrom::Start(0))?;
                Ok(Box::new(&upload))
            };
            match archive::extract(&root, &mut open, &policy, archive::Target::Existing) {
                Ok(_) => 0,
                Err(e) => fail(1, format!("extracting into {path}: {e}")),
            }
        }
        other => fail(1, format!("unknown cp mode {other:?}")),
    }
}
