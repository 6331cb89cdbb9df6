//! The one tar extraction policy, for every archive ketch unpacks: image
//! layers, `cp` in both directions, build contexts and `ADD`.
//!
//! - Names are normalised; `..`, absolute names and NUL bytes are refused.
//! - Nothing is ever written through a symlink: each entry's directory is
//!   opened component by component with `O_NOFOLLOW`, and an entry beneath
//!   an earlier non-directory entry of the same archive is refused.
//! - Whiteouts (`.wh.NAME`, `.wh..wh..opq`) are interpreted only for image
//!   layers, only for names inside the layer; `.wh.`, `.wh..` and `.wh...`
//!   are refused. Elsewhere such names are ordinary files.
//! - A hard link may only point to an earlier non-directory entry.
//! - Device nodes and FIFOs are made as Docker makes them (root only; the
//!   device cgroup still limits their use); build contexts refuse them.
//! - [`Limits`] cap inflated bytes, entries, bytes per entry, metadata
//!   records (GNU long names, PAX headers) and the compression ratio.
//! - Modes, owners and times are set on the descriptor of what was made.
//!
//! Errors name the entry and the rule. Extraction into a fresh directory
//! is undone by the caller removing it; extraction into an existing one
//! ([`Target::Existing`]) checks the whole archive first, so a refused
//! archive writes nothing.

use super::{ConfineError, RelPath, Root, Rule};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::rc::Rc;
use std::sync::OnceLock;

/// A GNU long name or a PAX header bigger than this is refused: the tar
/// reader holds each in memory, so an endless one would exhaust it.
pub const MAX_METADATA: u64 = 1 << 20;
/// Directories nested deeper than this are not removed recursively (a
/// hostile tree could otherwise exhaust the stack).
const MAX_REMOVE_DEPTH: usize = 1024;

/// Bounds on what one archive may make. The defaults let real images
/// through (the largest public layers are a few GiB, with a few hundred
/// thousand files, compressed 2-10x) and stop bombs; `ketchd` flags raise
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Total bytes of entry data.
    pub max_bytes: u64,
    pub max_entries: u64,
    pub max_entry_bytes: u64,
    /// Inflated bytes per compressed byte, checked beyond `ratio_floor`.
    pub max_ratio: u64,
    /// Inflated bytes always allowed, whatever the ratio: small archives
    /// of zeros compress extremely well and are legitimate.
    pub ratio_floor: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 64 << 30,
            max_entries: 4_000_000,
            max_entry_bytes: 32 << 30,
            max_ratio: 200,
            ratio_floor: 256 << 20,
        }
    }
}

/// The limits `ketchd` was started with; set once, at start.
static DAEMON_LIMITS: OnceLock<Limits> = OnceLock::new();

/// The environment variable that hands the limits to a helper process.
pub const LIMITS_ENV: &str = "KETCH_ARCHIVE_LIMITS";

impl Limits {
    /// This process's limits: `ketchd`'s flags, a helper's environment,
    /// else the defaults.
    pub fn daemon() -> Limits {
        *DAEMON_LIMITS.get_or_init(|| {
            std::env::var(LIMITS_ENV)
                .ok()
                .and_then(|v| serde_json::from_str(&v).ok())
                .unwrap_or_default()
        })
    }

    /// Set this process's limits (once, before any archive is read).
    pub fn set_daemon(l: Limits) {
        let _ = DAEMON_LIMITS.set(l);
    }

    /// The form [`LIMITS_ENV`] carries.
    pub fn to_env(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What an archive is for: which entries mean what, and which are allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An image layer: whiteouts are interpreted, relative symlinks may
    /// not lead outside the layer, owners are kept.
    Layer,
    /// `cp` into a container or out of one: owners are kept (as root).
    Copy,
    /// A build context: no devices or FIFOs, owners are not kept.
    Context,
}

#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub kind: Kind,
    pub limits: Limits,
}

/// Where an extraction goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A directory made for this archive: the caller removes it on error.
    Fresh,
    /// A directory with content of its own: the archive is checked whole
    /// before anything is written.
    Existing,
}

/// An accepted entry.
#[derive(Debug)]
pub struct Entry {
    pub path: RelPath,
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    /// The data's size, as the header gives it.
    pub size: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File,
    Symlink(OsString),
    HardLink(RelPath),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
    /// A layer's `.wh.NAME`: `path` is the hidden name.
    Whiteout,
    /// A layer's `.wh..wh..opq`: `path` is the opaque directory.
    Opaque,
}

/// An error carried through `io::Error` from the limit readers.
#[derive(Debug)]
struct Broken(Rule);

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Broken {}

fn broken(rule: Rule) -> io::Error {
    io::Error::other(Broken(rule))
}

/// An `io::Error` from reading an archive as the rule it broke, if any.
fn to_confine(what: &str, e: io::Error) -> ConfineError {
    match e.get_ref().and_then(|i| i.downcast_ref::<Broken>()) {
        Some(Broken(rule)) => ConfineError::refused(what, rule.clone()),
        None if e.kind() == io::ErrorKind::InvalidData
            || e.kind() == io::ErrorKind::UnexpectedEof
            || e.kind() == io::ErrorKind::Other =>
        {
            ConfineError::refused(what, Rule::Malformed(super_chain(&e)))
        }
        None => ConfineError::io(what)(e),
    }
}

/// An error with its causes (tar's own messages hide them).
fn super_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

/// Wrap an archive in the decompressor its magic bytes call for (gzip,
/// zstd, or none).
pub fn decompress<'a>(r: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut br = BufReader::with_capacity(1 << 16, r);
    let head = br.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(br)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(br)?))
    } else {
        Ok(Box::new(br))
    }
}

/// Counts the compressed bytes read.
struct Counting<R> {
    inner: R,
    n: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n.set(self.n.get() + n as u64);
        Ok(n)
    }
}

/// The inflated stream: checks the ratio, and bounds what the tar reader
/// reads by itself between two entries (headers and metadata records,
/// which it holds in memory).
struct Guard<R> {
    inner: R,
    compressed: Rc<Cell<u64>>,
    inflated: u64,
    limits: Limits,
    /// Set while entry data is read through [`EntryData`].
    in_data: Rc<Cell<bool>>,
    /// Bytes the tar reader read by itself since the last entry.
    meta: Rc<Cell<u64>>,
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.inflated += n as u64;
        let l = &self.limits;
        if self.inflated > l.ratio_floor
            && self.inflated > self.compressed.get().saturating_mul(l.max_ratio)
        {
            return Err(broken(Rule::Bomb(l.max_ratio)));
        }
        if !self.in_data.get() {
            let meta = self.meta.get() + n as u64;
            self.meta.set(meta);
            // A header block and padding are always allowed on top.
            if meta > MAX_METADATA + 4096 {
                return Err(broken(Rule::MetadataTooLarge {
                    size: meta,
                    limit: MAX_METADATA,
                }));
            }
        }
        Ok(n)
    }
}

/// One entry's data, counted against the per-entry and total limits.
struct EntryData<'a> {
    inner: &'a mut dyn Read,
    in_data: Rc<Cell<bool>>,
    read: u64,
    total: &'a Cell<u64>,
    limits: Limits,
}

impl Read for EntryData<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.in_data.set(true);
        let r = self.inner.read(buf);
        self.in_data.set(false);
        let n = r?;
        self.read += n as u64;
        self.total.set(self.total.get() + n as u64);
        if self.read > self.limits.max_entry_bytes {
            return Err(broken(Rule::EntryTooLarge {
                size: self.read,
                limit: self.limits.max_entry_bytes,
            }));
        }
        if self.total.get() > self.limits.max_bytes {
            return Err(broken(Rule::TooLarge(self.limits.max_bytes)));
        }
        Ok(n)
    }
}

/// The checks that depend on earlier entries.
#[derive(Default)]
struct Seen {
    /// Paths whose current entry is not a directory.
    nondirs: HashSet<RelPath>,
}

/// Read every entry of an archive (compressed or not) under `policy`,
/// calling `f` with each accepted entry and a reader of its data. What
/// `f` leaves unread is read (and counted) before the next entry.
pub fn entries(
    src: impl Read,
    policy: &Policy,
    f: &mut dyn FnMut(&Entry, &mut dyn Read) -> Result<(), ConfineError>,
) -> Result<(), ConfineError> {
    entries_until(src, policy, &mut |e, data| f(e, data).map(|()| true))
}

/// [`entries`], stopping early when `f` returns `false`.
pub fn entries_until(
    src: impl Read,
    policy: &Policy,
    f: &mut dyn FnMut(&Entry, &mut dyn Read) -> Result<bool, ConfineError>,
) -> Result<(), ConfineError> {
    let compressed = Rc::new(Cell::new(0));
    let in_data = Rc::new(Cell::new(false));
    let meta = Rc::new(Cell::new(0));
    let inflated = decompress(Counting {
        inner: src,
        n: compressed.clone(),
    })
    .map_err(|e| to_confine("archive", e))?;
    let mut ar = tar::Archive::new(Guard {
        inner: inflated,
        compressed,
        inflated: 0,
        limits: policy.limits,
        in_data: in_data.clone(),
        meta: meta.clone(),
    });
    let total = Cell::new(0u64);
    let mut count = 0u64;
    let mut seen = Seen::default();
    for e in ar.entries().map_err(|e| to_confine("archive", e))? {
        let mut e = e.map_err(|e| to_confine("archive", e))?;
        meta.set(0);
        count += 1;
        if count > policy.limits.max_entries {
            return Err(ConfineError::refused(
                "archive",
                Rule::TooManyEntries(policy.limits.max_entries),
            ));
        }
        let shown = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let checked = check(&e, policy, &mut seen).map_err(|r| ConfineError::refused(&shown, r))?;
        let mut data = EntryData {
            inner: &mut e,
            in_data: in_data.clone(),
            read: 0,
            total: &total,
            limits: policy.limits,
        };
        if let Some(entry) = checked {
            if !f(&entry, &mut data)? {
                return Ok(());
            }
        }
        io::copy(&mut data, &mut io::sink()).map_err(|e| to_confine(&shown, e))?;
    }
    Ok(())
}

/// Check one entry against the policy and what came before it.
fn check<R: Read>(
    e: &tar::Entry<'_, R>,
    policy: &Policy,
    seen: &mut Seen,
) -> Result<Option<Entry>, Rule> {
    let h = e.header();
    let ty = h.entry_type();
    if matches!(ty, tar::EntryType::XGlobalHeader | tar::EntryType::XHeader) {
        return Ok(None);
    }
    let mut path = RelPath::parse(&e.path_bytes())?;
    let Some((parent, name)) = path.split_last().map(|(p, n)| (p, n.to_os_string())) else {
        return Ok(None); // the archive's root directory itself
    };
    let size = e.size();
    if size > policy.limits.max_entry_bytes {
        return Err(Rule::EntryTooLarge {
            size,
            limit: policy.limits.max_entry_bytes,
        });
    }
    let mut kind = None;
    if policy.kind == Kind::Layer {
        if let Some(hidden) = name.as_bytes().strip_prefix(b".wh.") {
            if hidden == b".wh..opq" {
                path = parent.clone();
                kind = Some(EntryKind::Opaque);
            } else if hidden.starts_with(b".wh.") {
                return Ok(None); // AUFS metadata, as Docker skips it
            } else if matches!(hidden, b"" | b"." | b"..") {
                return Err(Rule::BadWhiteout(name.to_string_lossy().into_owned()));
            } else {
                path = parent.join(OsStr::from_bytes(hidden));
                kind = Some(EntryKind::Whiteout);
            }
        }
    }
    for a in path.ancestors().chain(
        // An opaque marker lives inside its directory.
        (kind == Some(EntryKind::Opaque)).then(|| path.clone()),
    ) {
        if seen.nondirs.contains(&a) {
            return Err(Rule::ThroughSymlink(a.to_string()));
        }
    }
    let kind = match kind {
        Some(k) => k,
        None => entry_kind(e, policy, &path)?,
    };
    if let EntryKind::HardLink(t) = &kind {
        if !seen.nondirs.contains(t) {
            return Err(Rule::HardLinkNotEarlier(t.to_string()));
        }
    }
    match kind {
        EntryKind::Dir | EntryKind::Opaque => {
            seen.nondirs.remove(&path);
        }
        _ => {
            seen.nondirs.insert(path.clone());
        }
    }
    Ok(Some(Entry {
        path,
        kind,
        mode: h.mode().unwrap_or(0o644) & 0o7777,
        uid: h.uid().unwrap_or(0),
        gid: h.gid().unwrap_or(0),
        mtime: h.mtime().unwrap_or(0),
        size,
    }))
}

fn entry_kind<R: Read>(
    e: &tar::Entry<'_, R>,
    policy: &Policy,
    path: &RelPath,
) -> Result<EntryKind, Rule> {
    let h = e.header();
    let link = || -> Result<Vec<u8>, Rule> {
        match e.link_name_bytes() {
            Some(t) if !t.is_empty() && !t.contains(&0) => Ok(t.into_owned()),
            _ => Err(Rule::Malformed("a link without a target".into())),
        }
    };
    let device = |make: fn(u32, u32) -> EntryKind| -> Result<EntryKind, Rule> {
        if policy.kind == Kind::Context {
            return Err(Rule::DeviceRefused);
        }
        Ok(make(
            h.device_major().ok().flatten().unwrap_or(0),
            h.device_minor().ok().flatten().unwrap_or(0),
        ))
    };
    Ok(match h.entry_type() {
        tar::EntryType::Directory => EntryKind::Dir,
        tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
        // The tar reader fills a sparse file's holes itself, out of sight
        // of the ratio check: a few bytes could write gigabytes of zeros.
        // Docker's own archives never hold them.
        tar::EntryType::Symlink => {
            let target = link()?;
            if policy.kind == Kind::Layer && symlink_escapes(path, &target) {
                return Err(Rule::SymlinkEscapes(
                    String::from_utf8_lossy(&target).into_owned(),
                ));
            }
            EntryKind::Symlink(OsString::from_vec(target))
        }
        tar::EntryType::Link => {
            let raw = link()?;
            let shown = String::from_utf8_lossy(&raw).into_owned();
            let target =
                RelPath::parse(&raw).map_err(|_| Rule::HardLinkNotEarlier(shown.clone()))?;
            EntryKind::HardLink(target)
        }
        tar::EntryType::Char => device(EntryKind::Char)?,
        tar::EntryType::Block => device(EntryKind::Block)?,
        tar::EntryType::Fifo if policy.kind == Kind::Context => return Err(Rule::DeviceRefused),
        tar::EntryType::Fifo => EntryKind::Fifo,
        other => return Err(Rule::UnsupportedType(format!("{other:?}"))),
    })
}

/// Does a relative symlink at `path` pointing to `target` climb above the
/// layer's root? Absolute targets are resolved inside the container's
/// root when followed, so they cannot.
fn symlink_escapes(path: &RelPath, target: &[u8]) -> bool {
    if target.first() == Some(&b'/') {
        return false;
    }
    let mut depth = path.components().len() as i64 - 1;
    for c in target.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

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
        if self.cached.as_ref().is_none_or(|(p, _)| p != rel) {
            let fd = self.root.dir_nofollow(rel, true)?;
            self.cached = Some((rel.clone(), fd));
        }
        Ok(self
            .cached
            .as_ref()
            .map(|(_, fd)| fd.as_fd())
            .expect("just set"))
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
pub(crate) fn remove_tree(dir: BorrowedFd<'_>, name: &OsStr, depth: usize) -> io::Result<()> {
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
    for n in super::list_dir(sub.as_fd())? {
        remove_tree(sub.as_fd(), &n, depth + 1)?;
    }
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}

#[cfg(test)]
mod tests;
