//! Writing archives out beneath a root: the whole-archive check for an
//! existing target, then each entry made by descriptor, never through a
//! symlink, with its mode, owner, times and xattrs.

use super::read::entries;
use super::{to_confine, Entry, EntryKind, Kind, Policy, Target};
use crate::confine::{ConfineError, RelPath, Root, Rule};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Directories nested deeper than this are not removed recursively (a
/// hostile tree could otherwise exhaust the stack).
const MAX_REMOVE_DEPTH: usize = 1024;

/// What an extraction made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub entries: u64,
}

/// Extract an archive beneath `root` under `policy`. `open` gives the
/// archive's bytes from the start; it is called twice for an
/// [`Target::Existing`] target (check, then write).
pub fn extract<'s>(
    root: &Root,
    open: &mut dyn FnMut() -> io::Result<Box<dyn Read + 's>>,
    policy: &Policy,
    target: Target,
) -> Result<Stats, ConfineError> {
    extract_filtered(root, open, policy, target, &|_| true)
}

/// [`extract`], skipping the entries `keep` says no to (a build
/// context's `.dockerignore`).
pub fn extract_filtered<'s>(
    root: &Root,
    open: &mut dyn FnMut() -> io::Result<Box<dyn Read + 's>>,
    policy: &Policy,
    target: Target,
    keep: &dyn Fn(&Entry) -> bool,
) -> Result<Stats, ConfineError> {
    if target == Target::Existing {
        let mut fine: HashSet<RelPath> = HashSet::new();
        let src = open().map_err(|e| to_confine("archive", e))?;
        entries(src, policy, &mut |e, _| {
            if !keep(e) {
                return Ok(());
            }
            check_against(root, e, &mut fine)?;
            if e.kind == EntryKind::Dir {
                fine.insert(e.path.clone());
            }
            Ok(())
        })?;
    }
    let mut w = Writer {
        root,
        policy,
        as_root: rustix::process::geteuid().is_root(),
        existing: target == Target::Existing,
        cached: None,
        dirs: Vec::new(),
        made: Vec::new(),
        stats: Stats::default(),
    };
    let src = open().map_err(|e| to_confine("archive", e))?;
    let result = entries(src, policy, &mut |e, data| {
        if keep(e) {
            w.write(e, data)
        } else {
            Ok(())
        }
    })
    .and_then(|()| w.finish());
    if result.is_err() && target == Target::Existing {
        w.undo();
    }
    result.map(|()| w.stats)
}

/// Before writing into an existing directory: every directory an entry
/// goes through is a real directory there (or missing, or made by an
/// earlier entry).
fn check_against(root: &Root, e: &Entry, fine: &mut HashSet<RelPath>) -> Result<(), ConfineError> {
    let mut dirs: Vec<RelPath> = e.path.ancestors().collect();
    if e.kind == EntryKind::Opaque {
        dirs.push(e.path.clone());
    }
    if let EntryKind::HardLink(t) = &e.kind {
        dirs.extend(t.ancestors());
    }
    for a in dirs {
        if fine.contains(&a) {
            continue;
        }
        match root.dir_nofollow(&a, false) {
            Ok(_) => {
                fine.insert(a);
            }
            Err(err) if err.is_not_found() => return Ok(()),
            Err(ConfineError::Refused { rule, .. }) => {
                return Err(ConfineError::refused(&e.path, rule))
            }
            Err(err) => return Err(err),
        }
    }
    // As Docker: an existing directory is never replaced by a file or a
    // link (that would delete the tree below it).
    if matches!(e.kind, EntryKind::Dir | EntryKind::Opaque) {
        return Ok(());
    }
    if let Some((parent, name)) = e.path.split_last() {
        if let Ok(dir) = root.dir_nofollow(&parent, false) {
            if rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
            {
                return Err(ConfineError::refused(
                    &e.path,
                    Rule::ReplacesDirectory(e.path.to_string()),
                ));
            }
        }
    }
    Ok(())
}

struct Writer<'a> {
    root: &'a Root,
    policy: &'a Policy,
    as_root: bool,
    /// Writing into a directory with content of its own.
    existing: bool,
    /// The directory of the previous entry (most entries share one).
    cached: Option<(RelPath, OwnedFd)>,
    /// Directory entries, whose modes and times are set at the end (their
    /// contents would change the times, and a read-only mode would stop
    /// the writes).
    dirs: Vec<(RelPath, u32, u64, u64, u64)>,
    /// What did not exist before (for undoing in an existing directory).
    made: Vec<RelPath>,
    stats: Stats,
}

fn ts(mtime: u64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime.min(i64::MAX as u64) as i64,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn errno(path: &RelPath) -> impl Fn(rustix::io::Errno) -> ConfineError + '_ {
    move |e| ConfineError::io(path)(e.into())
}

impl Writer<'_> {
    /// The directory `rel`, made if missing, with no symlink on the way.
    fn dir(&mut self, rel: &RelPath) -> Result<BorrowedFd<'_>, ConfineError> {
        let cached = match self.cached.take() {
            Some((p, fd)) if p == *rel => (p, fd),
            _ => (rel.clone(), self.root.dir_nofollow(rel, true)?),
        };
        let (_, fd) = &*self.cached.insert(cached);
        Ok(fd.as_fd())
    }

    fn owners(&self, e: &Entry) -> Option<(rustix::fs::Uid, rustix::fs::Gid)> {
        if !self.as_root || self.policy.kind == Kind::Context {
            return None;
        }
        let uid = u32::try_from(e.uid).ok().filter(|u| *u != u32::MAX)?;
        let gid = u32::try_from(e.gid).ok().filter(|g| *g != u32::MAX)?;
        Some((
            rustix::fs::Uid::from_raw(uid),
            rustix::fs::Gid::from_raw(gid),
        ))
    }

    fn write(&mut self, e: &Entry, data: &mut dyn Read) -> Result<(), ConfineError> {
        self.stats.entries += 1;
        let path = &e.path;
        if e.kind == EntryKind::Opaque {
            let fd = self.root.dir_nofollow(path, true)?;
            return rustix::fs::fsetxattr(&fd, "trusted.overlay.opaque", b"y", XattrFlags::empty())
                .map_err(|err| self.needs_root(path, err));
        }
        let Some((parent, name)) = path.split_last() else {
            return Ok(());
        };
        let name = name.to_os_string();
        let existed = self.clear(&parent, &name, &e.kind, path)?;
        if !existed {
            self.made.push(path.clone());
        }
        let owners = self.owners(e);
        let mode = Mode::from_raw_mode(e.mode);
        let as_root = self.as_root;
        let dir = self.dir(&parent)?;
        let at_nofollow = |dir: BorrowedFd<'_>| -> Result<(), ConfineError> {
            if let Some((u, g)) = owners {
                rustix::fs::chownat(dir, &name, Some(u), Some(g), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(errno(path))?;
            }
            Ok(())
        };
        match &e.kind {
            EntryKind::Dir => {
                match rustix::fs::mkdirat(dir, &name, Mode::from_raw_mode(0o700)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(err) => return Err(errno(path)(err)),
                }
                self.dirs
                    .push((path.clone(), e.mode, e.mtime, e.uid, e.gid));
            }
            EntryKind::File => {
                let fd = rustix::fs::openat(
                    dir,
                    &name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(errno(path))?;
                let mut f = std::fs::File::from(fd);
                io::copy(data, &mut f).map_err(|err| to_confine(&path.to_string(), err))?;
                if let Some((u, g)) = owners {
                    rustix::fs::fchown(&f, Some(u), Some(g)).map_err(errno(path))?;
                }
                // After chown, which clears setuid bits.
                rustix::fs::fchmod(&f, mode).map_err(errno(path))?;
                rustix::fs::futimens(&f, &ts(e.mtime)).map_err(errno(path))?;
            }
            EntryKind::Symlink(target) => {
                rustix::fs::symlinkat(target.as_os_str(), dir, &name).map_err(errno(path))?;
                at_nofollow(dir)?;
                let _ = rustix::fs::utimensat(dir, &name, &ts(e.mtime), AtFlags::SYMLINK_NOFOLLOW);
            }
            EntryKind::HardLink(target) => {
                let Some((tparent, tname)) = target.split_last() else {
                    return Err(ConfineError::refused(
                        path,
                        Rule::HardLinkNotEarlier(target.to_string()),
                    ));
                };
                let tdir = self.root.dir_nofollow(&tparent, false)?;
                let dir = self.dir(&parent)?;
                rustix::fs::linkat(&tdir, tname, dir, &name, AtFlags::empty())
                    .map_err(errno(path))?;
            }
            EntryKind::Char(..) | EntryKind::Block(..) | EntryKind::Fifo | EntryKind::Whiteout => {
                let (ft, dev, mode) = match e.kind {
                    EntryKind::Char(ma, mi) => {
                        (FileType::CharacterDevice, rustix::fs::makedev(ma, mi), mode)
                    }
                    EntryKind::Block(ma, mi) => {
                        (FileType::BlockDevice, rustix::fs::makedev(ma, mi), mode)
                    }
                    EntryKind::Whiteout => (FileType::CharacterDevice, 0, Mode::empty()),
                    _ => (FileType::Fifo, 0, mode),
                };
                if ft != FileType::Fifo && !as_root {
                    return Err(ConfineError::refused(path, Rule::NeedsRoot));
                }
                rustix::fs::mknodat(dir, &name, ft, mode, dev).map_err(errno(path))?;
                at_nofollow(dir)?;
                // mknod applies the umask; the entry's own mode is wanted.
                rustix::fs::chmodat(dir, &name, mode, AtFlags::empty()).map_err(errno(path))?;
                let _ = rustix::fs::utimensat(dir, &name, &ts(e.mtime), AtFlags::SYMLINK_NOFOLLOW);
            }
            EntryKind::Opaque => unreachable!("handled above"),
        }
        Ok(())
    }

    fn needs_root(&self, path: &RelPath, e: rustix::io::Errno) -> ConfineError {
        if e == rustix::io::Errno::PERM && !self.as_root {
            ConfineError::refused(path, Rule::NeedsRoot)
        } else {
            errno(path)(e)
        }
    }

    /// Make room for an entry: what is at its name goes, unless both are
    /// directories. Returns whether something was there.
    fn clear(
        &mut self,
        parent: &RelPath,
        name: &OsStr,
        kind: &EntryKind,
        path: &RelPath,
    ) -> Result<bool, ConfineError> {
        let existing = self.existing;
        let dir = self.dir(parent)?;
        let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => return Ok(false),
            Err(e) => return Err(errno(path)(e)),
        };
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        if is_dir && *kind == EntryKind::Dir {
            return Ok(true);
        }
        if is_dir && existing {
            return Err(ConfineError::refused(
                path,
                Rule::ReplacesDirectory(path.to_string()),
            ));
        }
        if is_dir {
            remove_tree(dir, name, 0).map_err(|e| ConfineError::io(path)(e))?;
            // A cached descriptor may have been inside what went, and the
            // directories below it need no mode any more.
            self.cached = None;
            self.dirs
                .retain(|d| !d.0.components().starts_with(path.components()));
        } else {
            rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(errno(path))?;
        }
        Ok(true)
    }

    /// Directory modes, owners and times, deepest first.
    fn finish(&mut self) -> Result<(), ConfineError> {
        self.cached = None;
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by(|a, b| b.0.cmp(&a.0));
        for (path, mode, mtime, uid, gid) in dirs {
            let fd = self.root.dir_nofollow(&path, false)?;
            let e = Entry {
                path: path.clone(),
                kind: EntryKind::Dir,
                mode,
                uid,
                gid,
                mtime,
                size: 0,
            };
            if let Some((u, g)) = self.owners(&e) {
                rustix::fs::fchown(&fd, Some(u), Some(g)).map_err(errno(&path))?;
            }
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(errno(&path))?;
            rustix::fs::futimens(&fd, &ts(mtime)).map_err(errno(&path))?;
        }
        Ok(())
    }

    /// Remove what this extraction made (best effort).
    fn undo(&mut self) {
        self.cached = None;
        for p in self.made.iter().rev() {
            if let Some((parent, name)) = p.split_last() {
                if let Ok(dir) = self.root.dir_nofollow(&parent, false) {
                    let _ = remove_tree(dir.as_fd(), name, 0).or_else(|_| {
                        rustix::fs::unlinkat(&dir, name, AtFlags::empty()).map_err(io::Error::from)
                    });
                }
            }
        }
    }
}

/// Remove `name` in `dir` and everything below it, by descriptor.
fn remove_tree(dir: BorrowedFd<'_>, name: &OsStr, depth: usize) -> io::Result<()> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?);
    }
    if depth > MAX_REMOVE_DEPTH {
        return Err(io::Error::other("directories nested too deep to remove"));
    }
    let sub = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for n in crate::confine::list_dir(sub.as_fd())? {
        remove_tree(sub.as_fd(), &n, depth + 1)?;
    }
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}
