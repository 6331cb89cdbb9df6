//! Hostile paths resolved beneath a [`Root`] by descriptor: `openat2`
//! where the kernel has it, an fd-by-fd walk otherwise.

use super::{read_bounded, ConfineError, RelPath, Rule};
pub use rustix::fs::Stat;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

/// Symlinks followed in one resolution before it fails (the kernel's own
/// limit): a loop of links cannot spin forever.
const MAX_SYMLINK_HOPS: usize = 40;

/// What [`Root::open_node`] and [`Root::walk`] find.
pub enum Node {
    /// A directory, opened for reading its entries.
    Dir(OwnedFd),
    /// A regular file, opened for reading.
    File(std::fs::File),
    /// A symlink and its target (only from [`Root::walk`], which does not
    /// follow them).
    Symlink(OsString),
    /// Anything else (a FIFO, socket or device): never opened.
    Other(FileType),
}

/// A directory that hostile paths are resolved beneath.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// Whether `openat2` works here: 0 unknown, 1 yes, 2 no.
static OPENAT2: AtomicU8 = AtomicU8::new(0);

impl Root {
    /// Open a trusted directory path as a root.
    pub fn open(path: &Path) -> Result<Root, ConfineError> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ConfineError::io(path.display())(e.into()))?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Open `path` (hostile; absolute or relative) with every symlink
    /// followed as if the root were `/`: nothing outside the root is ever
    /// reached. `flags` must not ask to create.
    pub fn open_in_root(&self, path: &[u8], flags: OFlags) -> Result<OwnedFd, ConfineError> {
        let shown = String::from_utf8_lossy(path).into_owned();
        if path.contains(&0) {
            return Err(ConfineError::refused(shown, Rule::Nul));
        }
        let flags = flags | OFlags::CLOEXEC;
        if OPENAT2.load(Ordering::Relaxed) != 2 {
            match openat2_in_root(self.fd(), path, flags) {
                Ok(fd) => {
                    OPENAT2.store(1, Ordering::Relaxed);
                    return Ok(fd);
                }
                // ENOSYS: an old kernel; EPERM: a seccomp filter that does
                // not know it. Both mean: walk by hand from now on.
                Err(e) if e == rustix::io::Errno::NOSYS || e == rustix::io::Errno::PERM => {
                    OPENAT2.store(2, Ordering::Relaxed);
                }
                Err(e) => return Err(resolve_error(&shown, e)),
            }
        }
        walk_in_root(self.fd(), path, flags).map_err(|e| resolve_error(&shown, e))
    }

    /// Read the regular file at `path` (symlinks followed inside the root),
    /// refusing anything else and anything over `max` bytes. A FIFO or a
    /// device is never opened.
    pub fn read_file(&self, path: &[u8], max: u64) -> Result<Vec<u8>, ConfineError> {
        let shown = String::from_utf8_lossy(path).into_owned();
        match self.open_node(path)? {
            Node::File(f) => read_bounded(f, max, &shown),
            Node::Dir(_) => Err(ConfineError::refused(shown, Rule::NotRegular)),
            _ => Err(ConfineError::refused(shown, Rule::NotRegular)),
        }
    }

    /// Resolve `path` in the root, following symlinks (the last one too),
    /// and open what it names: a directory for listing, a regular file for
    /// reading; anything else is reported, not opened.
    pub fn open_node(&self, path: &[u8]) -> Result<Node, ConfineError> {
        let shown = String::from_utf8_lossy(path).into_owned();
        let fd = self.open_in_root(path, OFlags::PATH)?;
        reopen(&fd, &shown)
    }

    /// Open the directory `rel` beneath the root with no symlink on the
    /// way (each component opened `O_NOFOLLOW`). With `create`, missing
    /// directories are made (mode 0755) on the way.
    pub fn dir_nofollow(&self, rel: &RelPath, create: bool) -> Result<OwnedFd, ConfineError> {
        let mut cur: Option<OwnedFd> = None;
        for (i, c) in rel.components().iter().enumerate() {
            let dir = cur.as_ref().map_or(self.fd(), |f| f.as_fd());
            let open = || {
                rustix::fs::openat(
                    dir,
                    c.as_os_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
            };
            let fd = match open() {
                Err(rustix::io::Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(dir, c.as_os_str(), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(ConfineError::io(rel)(e.into())),
                    }
                    open()
                }
                other => other,
            };
            let shown = RelPath(rel.components()[..=i].to_vec());
            cur = Some(fd.map_err(|e| match e {
                rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => {
                    ConfineError::refused(rel, Rule::ThroughSymlink(shown.to_string()))
                }
                e => ConfineError::io(&shown)(e.into()),
            })?);
        }
        match cur {
            Some(fd) => Ok(fd),
            None => rustix::fs::openat(
                self.fd(),
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| ConfineError::io(&self.path.display())(e.into())),
        }
    }

    /// Visit everything below the directory `dir` (opened from this root)
    /// in name order, depth first, without following symlinks. `f` gets
    /// the path relative to `dir` and what is there; returning `false` for
    /// a directory skips its contents.
    pub fn walk(dir: BorrowedFd<'_>, f: &mut WalkFn<'_>) -> Result<(), ConfineError> {
        walk_dir(dir, &RelPath::default(), f)
    }
}

/// What [`Root::walk`] calls for each entry: its path, what it is, and its
/// `lstat`.
pub type WalkFn<'a> = dyn FnMut(&RelPath, Node, &Stat) -> Result<bool, ConfineError> + 'a;

fn walk_dir(dir: BorrowedFd<'_>, rel: &RelPath, f: &mut WalkFn<'_>) -> Result<(), ConfineError> {
    let mut names = list_dir(dir).map_err(ConfineError::io(rel))?;
    names.sort();
    for name in names {
        let path = rel.join(&name);
        let (node, st) = open_entry(dir, &name).map_err(ConfineError::io(&path))?;
        let sub = match &node {
            Node::Dir(fd) => Some(
                rustix::io::fcntl_dupfd_cloexec(fd, 0)
                    .map_err(|e| ConfineError::io(&path)(e.into()))?,
            ),
            _ => None,
        };
        if f(&path, node, &st)? {
            if let Some(fd) = sub {
                walk_dir(fd.as_fd(), &path, f)?;
            }
        }
    }
    Ok(())
}

/// The names in a directory (without `.` and `..`).
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let mut out = Vec::new();
    for e in rustix::fs::Dir::read_from(dir)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(OsString::from_vec(n.to_vec()));
        }
    }
    Ok(out)
}

/// Open the entry `name` of `dir` without following it.
fn open_entry(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<(Node, Stat)> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Symlink => {
            let t = rustix::fs::readlinkat(dir, name, Vec::new())?;
            Ok((Node::Symlink(OsString::from_vec(t.into_bytes())), st))
        }
        _ => match reopen(&fd, &name.to_string_lossy()) {
            Ok(node) => Ok((node, st)),
            Err(ConfineError::Io { source, .. }) => Err(source),
            Err(other) => Err(io::Error::other(other.to_string())),
        },
    }
}

/// Turn an `O_PATH` descriptor into a readable one, for directories and
/// regular files only (re-opened through `/proc/self/fd`, which reaches
/// the same inode without a path walk).
fn reopen(fd: &OwnedFd, shown: &str) -> Result<Node, ConfineError> {
    let st = rustix::fs::fstat(fd).map_err(|e| ConfineError::io(shown)(e.into()))?;
    let kind = FileType::from_raw_mode(st.st_mode);
    let flags = match kind {
        FileType::Directory => OFlags::RDONLY | OFlags::DIRECTORY,
        FileType::RegularFile => OFlags::RDONLY,
        other => return Ok(Node::Other(other)),
    };
    let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd));
    let opened = rustix::fs::open(proc_path.as_str(), flags | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| ConfineError::io(shown)(e.into()))?;
    // The same inode, or the descriptor was swapped under us.
    let again = rustix::fs::fstat(&opened).map_err(|e| ConfineError::io(shown)(e.into()))?;
    if again.st_ino != st.st_ino || again.st_dev != st.st_dev {
        return Err(ConfineError::io(shown)(io::Error::other(
            "the file changed while it was opened",
        )));
    }
    Ok(match kind {
        FileType::Directory => Node::Dir(opened),
        _ => Node::File(std::fs::File::from(opened)),
    })
}

fn resolve_error(shown: &str, e: rustix::io::Errno) -> ConfineError {
    if e == rustix::io::Errno::LOOP {
        ConfineError::refused(shown, Rule::SymlinkLoop)
    } else {
        ConfineError::io(shown)(e.into())
    }
}

fn openat2_in_root(
    root: BorrowedFd<'_>,
    path: &[u8],
    flags: OFlags,
) -> Result<OwnedFd, rustix::io::Errno> {
    let path = if path.is_empty() { b"." as &[u8] } else { path };
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(
            root,
            OsStr::from_bytes(path),
            flags,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            // A concurrent rename anywhere on the system can make the
            // kernel ask for a retry.
            Err(rustix::io::Errno::AGAIN) if tries < 16 => tries += 1,
            other => return other,
        }
    }
}

/// `RESOLVE_IN_ROOT` by hand: one component at a time from descriptors,
/// `..` pops the stack of opened directories (never the kernel's `..`),
/// and a symlink's target is spliced in front of what remains (restarting
/// at the root when it is absolute).
fn walk_in_root(
    root: BorrowedFd<'_>,
    path: &[u8],
    flags: OFlags,
) -> Result<OwnedFd, rustix::io::Errno> {
    let split = |p: &[u8]| -> Vec<Vec<u8>> {
        p.split(|b| *b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .map(<[u8]>::to_vec)
            .collect()
    };
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut pending: VecDeque<Vec<u8>> = split(path).into();
    let mut hops = 0;
    while let Some(c) = pending.pop_front() {
        if c == b".." {
            stack.pop();
            continue;
        }
        let cur = stack.last().map_or(root, |f| f.as_fd());
        let name = OsStr::from_bytes(&c);
        let st = rustix::fs::statat(cur, name, AtFlags::SYMLINK_NOFOLLOW)?;
        let last = pending.is_empty();
        if FileType::from_raw_mode(st.st_mode) == FileType::Symlink
            && (!last || !flags.contains(OFlags::NOFOLLOW))
        {
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                return Err(rustix::io::Errno::LOOP);
            }
            let target = rustix::fs::readlinkat(cur, name, Vec::new())?.into_bytes();
            if target.first() == Some(&b'/') {
                stack.clear();
            }
            for t in split(&target).into_iter().rev() {
                pending.push_front(t);
            }
            continue;
        }
        if last {
            return rustix::fs::openat(cur, name, flags | OFlags::NOFOLLOW, Mode::empty());
        }
        let fd = rustix::fs::openat(
            cur,
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        stack.push(fd);
    }
    let cur = stack.last().map_or(root, |f| f.as_fd());
    rustix::fs::openat(cur, ".", flags, Mode::empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A root with a secret beside it, and links that try to reach it.
    fn hostile_tree() -> (tempfile::TempDir, Root) {
        let top = tempfile::tempdir().unwrap();
        std::fs::write(top.path().join("secret"), b"host secret").unwrap();
        let root = top.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), b"root:x:0:0::/:/bin/sh\n").unwrap();
        std::fs::write(root.join("secret"), b"inside").unwrap();
        symlink("../../secret", root.join("etc/up")).unwrap();
        symlink("/secret", root.join("abs")).unwrap();
        symlink("/etc", root.join("etclink")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        symlink("/dev/zero", root.join("zero")).unwrap();
        let r = Root::open(&root).unwrap();
        (top, r)
    }

    fn both_ways(f: impl Fn(&Root, bool)) {
        let (_top, root) = hostile_tree();
        f(&root, true);
        let saved = OPENAT2.swap(2, Ordering::SeqCst);
        f(&root, false);
        OPENAT2.store(saved, Ordering::SeqCst);
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        both_ways(|root, _| {
            for p in [
                "etc/up",
                "abs",
                "../secret",
                "/../../secret",
                "etclink/../secret",
            ] {
                assert_eq!(root.read_file(p.as_bytes(), 100).unwrap(), b"inside", "{p}");
            }
            assert!(root
                .read_file(b"etclink/passwd", 100)
                .unwrap()
                .starts_with(b"root:"));
        });
    }

    #[test]
    fn loops_devices_and_big_files_are_refused() {
        both_ways(|root, _| {
            let e = root.read_file(b"loop1", 100).unwrap_err();
            assert!(e.to_string().contains("symbolic links"), "{e}");
            // /dev/zero is not in the root: not found, never the host's.
            assert!(root.read_file(b"zero", 100).unwrap_err().is_not_found());
            let e = root.read_file(b"etc/passwd", 4).unwrap_err();
            assert!(e.to_string().contains("limit of 4 bytes"), "{e}");
            let e = root.read_file(b"etc", 100).unwrap_err();
            assert!(e.to_string().contains("not a regular file"), "{e}");
        });
    }

    #[test]
    fn nofollow_refuses_symlinked_dirs() {
        let (_top, root) = hostile_tree();
        let rel = RelPath::parse(b"etclink/x").unwrap();
        let e = root.dir_nofollow(&rel, true).unwrap_err();
        assert!(e.to_string().contains("\"etclink\""), "{e}");
        let made = root
            .dir_nofollow(&RelPath::parse(b"new/deep").unwrap(), true)
            .unwrap();
        assert!(rustix::fs::fstat(&made).is_ok());
        assert!(root.path().join("new/deep").is_dir());
    }

    #[test]
    fn walk_lists_without_following() {
        let (_top, root) = hostile_tree();
        let mut seen = Vec::new();
        Root::walk(root.fd(), &mut |p, n, _| {
            let kind = match n {
                Node::Dir(_) => "d",
                Node::File(_) => "f",
                Node::Symlink(_) => "l",
                Node::Other(_) => "o",
            };
            seen.push(format!("{kind} {p}"));
            Ok(true)
        })
        .unwrap();
        assert!(seen.contains(&"l etclink".to_string()), "{seen:?}");
        assert!(seen.contains(&"f etc/passwd".to_string()), "{seen:?}");
        assert!(!seen.iter().any(|s| s.contains("etclink/")), "{seen:?}");
    }
}
