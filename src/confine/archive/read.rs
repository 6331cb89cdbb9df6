//! Reading archives: decompression, the bounds on what they inflate to,
//! and the checks every entry passes before anyone acts on it.

use super::{broken, to_confine, Entry, EntryKind, Kind, Limits, Policy, MAX_METADATA};
use crate::confine::{os_name, ConfineError, RelPath, Rule};
use std::cell::Cell;
use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

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
        if let Some(hidden) = name.as_encoded_bytes().strip_prefix(b".wh.") {
            if hidden == b".wh..opq" {
                path = parent.clone();
                kind = Some(EntryKind::Opaque);
            } else if hidden.starts_with(b".wh.") {
                return Ok(None); // AUFS metadata, as Docker skips it
            } else if matches!(hidden, b"" | b"." | b"..") {
                return Err(Rule::BadWhiteout(name.to_string_lossy().into_owned()));
            } else {
                path = parent.join(&os_name(hidden));
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
            EntryKind::Symlink(os_name(&target))
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
