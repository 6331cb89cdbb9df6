//! The snapshot store: each image layer unpacked once into its own
//! directory, ready to be an overlayfs lower dir. A layer is hostile until
//! proven otherwise: every path is checked before anything is written.
//!
//! Layout: `<root>/<layer digest hex>/` holds the layer's files, with OCI
//! whiteouts turned into overlayfs ones (`.wh.NAME` -> a 0/0 character
//! device, `.wh..wh..opq` -> the `trusted.overlay.opaque` xattr). A layer is
//! unpacked into `<root>/tmp-*` and renamed into place only when complete,
//! so a crash or a rejected layer leaves nothing behind.

use super::store::ImageStore;
use super::ImageError;
use crate::model::Digest;
use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// A layer that unpacks to more than this many times its compressed size
/// (beyond [`BOMB_FLOOR`]) is taken for a decompression bomb.
pub const BOMB_RATIO: u64 = 200;
/// Unpacked bytes always allowed, whatever the ratio: small layers of
/// zeros compress extremely well and are legitimate.
pub const BOMB_FLOOR: u64 = 256 << 20;

pub struct Snapshots {
    root: PathBuf,
}

impl Snapshots {
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        fs::create_dir_all(root).map_err(ImageError::io(root))?;
        // Unfinished unpacks from an earlier run.
        if let Ok(rd) = fs::read_dir(root) {
            for e in rd.flatten() {
                if e.file_name().as_bytes().starts_with(b"tmp-") {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(Snapshots {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, layer: &Digest) -> PathBuf {
        self.root.join(layer.hex())
    }

    /// The unpacked directory of a layer blob, unpacking it first if needed.
    pub fn ensure(&self, store: &ImageStore, layer: &Digest) -> Result<PathBuf, ImageError> {
        let dest = self.path(layer);
        if dest.is_dir() {
            return Ok(dest);
        }
        let tmp = self
            .root
            .join(format!("tmp-{}-{}", layer.hex(), rand::random::<u32>()));
        let result = (|| {
            fs::create_dir(&tmp).map_err(ImageError::io(&tmp))?;
            let blob = store.open_blob(layer)?;
            let size = blob.metadata().map(|m| m.len()).unwrap_or(0);
            unpack_layer(blob, size, &tmp).map_err(|reason| ImageError::Invalid {
                name: format!("layer {layer}"),
                reason,
            })?;
            match fs::rename(&tmp, &dest) {
                Ok(()) => Ok(()),
                // Another unpack of the same layer won the race.
                Err(_) if dest.is_dir() => {
                    let _ = fs::remove_dir_all(&tmp);
                    Ok(())
                }
                Err(e) => Err(ImageError::io(&dest)(e)),
            }
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result.map(|()| dest)
    }

    /// Remove snapshots of layers no longer in the store.
    pub fn gc(&self, store: &ImageStore) -> u64 {
        let mut freed = 0;
        let Ok(rd) = fs::read_dir(&self.root) else {
            return 0;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(d) = Digest::parse(&format!("sha256:{name}")) else {
                continue;
            };
            if !store.has_blob(&d) && fs::remove_dir_all(e.path()).is_ok() {
                freed += 1;
            }
        }
        freed
    }
}

/// Check a tar path and turn it into a relative path of plain components.
/// `..`, absolute paths and empty names are refused.
fn safe_relative(raw: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err(format!("path {raw:?} climbs out with '..'")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("absolute path {raw:?}"))
            }
        }
    }
    Ok(out)
}

/// Refuse to write through a symlink: every parent of `rel` under `root`
/// must be a real directory (or not exist yet).
fn check_parents(root: &Path, rel: &Path) -> Result<(), String> {
    let mut cur = root.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for c in &parts[..parts.len().saturating_sub(1)] {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!("path {rel:?} goes through the symlink {c:?}"))
            }
            Ok(m) if !m.is_dir() => return Err(format!("path {rel:?}: {c:?} is not a directory")),
            _ => {}
        }
    }
    Ok(())
}

/// Does a relative symlink at `rel` pointing to `target` stay inside the
/// layer root? Absolute targets are resolved inside the container's root at
/// run time, so they cannot escape; relative ones are checked lexically.
fn symlink_escapes(rel: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = rel.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    false
}

/// Counts bytes read, failing once `limit` is passed.
struct Capped<R> {
    inner: R,
    read: u64,
    limit: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::other(format!(
                "unpacks to over {} bytes: a decompression bomb",
                self.limit
            )));
        }
        Ok(n)
    }
}

fn remove_existing(path: &Path) {
    if let Ok(m) = fs::symlink_metadata(path) {
        if m.is_dir() {
            let _ = fs::remove_dir_all(path);
        } else {
            let _ = fs::remove_file(path);
        }
    }
}

fn mknod_whiteout(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: c is a valid NUL-terminated path; mknod does not retain it.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_opaque(dir: &Path) -> io::Result<()> {
    let c = CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let name = b"trusted.overlay.opaque\0";
    // SAFETY: both strings are NUL-terminated; the value is 1 valid byte.
    let rc =
        unsafe { libc::lsetxattr(c.as_ptr(), name.as_ptr().cast(), b"y".as_ptr().cast(), 1, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An error with its causes (tar's own messages hide them).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

/// Unpack one layer blob (tar, tar+gzip or tar+zstd) into `dest`.
pub fn unpack_layer(blob: impl Read, compressed: u64, dest: &Path) -> Result<(), String> {
    let limit = BOMB_FLOOR.max(compressed.saturating_mul(BOMB_RATIO));
    let reader = super::layer::decompress(blob).map_err(|e| e.to_string())?;
    let mut ar = tar::Archive::new(Capped {
        inner: reader,
        read: 0,
        limit,
    });
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(true);
    ar.set_preserve_mtime(true);
    ar.set_unpack_xattrs(false);
    let mut opaque = Vec::new();
    for entry in ar.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let raw = entry.path().map_err(|e| e.to_string())?.into_owned();
        let rel = safe_relative(&raw)?;
        if rel.as_os_str().is_empty() {
            continue; // the layer root itself
        }
        check_parents(dest, &rel)?;
        let path = dest.join(&rel);
        let name = rel
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default();
        if name == b".wh..wh..opq" {
            let parent = path.parent().unwrap_or(dest).to_path_buf();
            fs::create_dir_all(&parent).map_err(|e| format!("{rel:?}: {e}"))?;
            opaque.push(parent);
            continue;
        }
        if let Some(hidden) = name.strip_prefix(b".wh.") {
            let target = path.with_file_name(std::ffi::OsStr::from_bytes(hidden));
            if let Some(p) = target.parent() {
                fs::create_dir_all(p).map_err(|e| format!("{rel:?}: {e}"))?;
            }
            remove_existing(&target);
            mknod_whiteout(&target).map_err(|e| format!("whiteout {rel:?}: {e}"))?;
            continue;
        }
        let kind = entry.header().entry_type();
        if let Some(p) = path.parent() {
            fs::create_dir_all(p).map_err(|e| format!("{rel:?}: {e}"))?;
        }
        match kind {
            tar::EntryType::Directory => {
                if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                    remove_existing(&path);
                }
            }
            tar::EntryType::Regular
            | tar::EntryType::Continuous
            | tar::EntryType::Fifo
            | tar::EntryType::Symlink => remove_existing(&path),
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("hard link {rel:?} has no target"))?
                    .into_owned();
                let trel = safe_relative(&target)
                    .map_err(|e| format!("hard link {rel:?} points outside the layer: {e}"))?;
                check_parents(dest, &trel)?;
                let tpath = dest.join(&trel);
                match fs::symlink_metadata(&tpath) {
                    Ok(m) if m.is_file() => {}
                    _ => {
                        return Err(format!(
                        "hard link {rel:?} points to {target:?}, which is not a file in the layer"
                    ))
                    }
                }
                remove_existing(&path);
                fs::hard_link(&tpath, &path).map_err(|e| format!("hard link {rel:?}: {e}"))?;
                continue;
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(format!("device node {rel:?} is not allowed in a layer"))
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            other => return Err(format!("entry {rel:?} has an unsupported type {other:?}")),
        }
        if kind == tar::EntryType::Symlink {
            let target = entry
                .link_name()
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("symlink {rel:?} has no target"))?;
            if symlink_escapes(&rel, &target) {
                return Err(format!(
                    "symlink {rel:?} -> {target:?} points outside the layer"
                ));
            }
        }
        entry
            .unpack(&path)
            .map_err(|e| format!("unpacking {rel:?}: {}", chain(&e)))?;
    }
    // Marked once every entry is in, so the directories surely exist.
    for dir in opaque {
        set_opaque(&dir).map_err(|e| format!("opaque directory {dir:?}: {e}"))?;
    }
    Ok(())
}

/// The changes in an overlay upper dir as an OCI layer tar: files,
/// directories and symlinks with their modes and owners (mtimes zeroed, in
/// sorted order, so the same changes give the same layer), overlayfs
/// whiteouts as `.wh.NAME`, opaque directories as `.wh..wh..opq`.
pub fn diff_upper(upper: &Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut b = tar::Builder::new(Vec::new());
    let mut stack = vec![PathBuf::new()];
    let mut paths = Vec::new();
    while let Some(rel) = stack.pop() {
        let dir = upper.join(&rel);
        let mut names: Vec<_> = fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names.into_iter().rev() {
            let r = rel.join(&n);
            if fs::symlink_metadata(upper.join(&r)).is_ok_and(|m| m.is_dir()) {
                stack.push(r.clone());
            }
            paths.push(r);
        }
    }
    paths.sort();
    let err = |p: &Path, e: io::Error| format!("{}: {e}", p.display());
    for rel in paths {
        let full = upper.join(&rel);
        let m = fs::symlink_metadata(&full).map_err(|e| err(&full, e))?;
        let ft = m.file_type();
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_uid(m.uid() as u64);
        h.set_gid(m.gid() as u64);
        h.set_mode(m.mode() & 0o7777);
        if ft.is_char_device() && m.rdev() == 0 {
            let name = rel
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            let wh = rel.with_file_name(format!(".wh.{name}"));
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(0);
            b.append_data(&mut h, &wh, io::empty())
                .map_err(|e| err(&wh, e))?;
        } else if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            b.append_data(&mut h, &rel, io::empty())
                .map_err(|e| err(&rel, e))?;
            if is_opaque(&full) {
                let mut o = tar::Header::new_gnu();
                o.set_mtime(0);
                o.set_mode(0o644);
                o.set_size(0);
                o.set_entry_type(tar::EntryType::Regular);
                b.append_data(&mut o, rel.join(".wh..wh..opq"), io::empty())
                    .map_err(|e| err(&rel, e))?;
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(&full).map_err(|e| err(&full, e))?;
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, &rel, &target)
                .map_err(|e| err(&rel, e))?;
        } else if ft.is_file() {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(m.len());
            let f = fs::File::open(&full).map_err(|e| err(&full, e))?;
            b.append_data(&mut h, &rel, f).map_err(|e| err(&rel, e))?;
        } else if ft.is_fifo() {
            h.set_entry_type(tar::EntryType::Fifo);
            h.set_size(0);
            b.append_data(&mut h, &rel, io::empty())
                .map_err(|e| err(&rel, e))?;
        }
        // Sockets and device nodes made by a RUN step are not kept.
    }
    b.into_inner().map_err(|e| e.to_string())
}

fn is_opaque(dir: &Path) -> bool {
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut v = [0u8; 4];
    // SAFETY: NUL-terminated strings and a buffer of the given size.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            v.as_mut_ptr().cast(),
            v.len(),
        )
    };
    n == 1 && v[0] == b'y'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(f: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        f(&mut b);
        b.into_inner().unwrap()
    }

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h
    }

    /// Write a raw path into the header, bypassing tar's own checks, as a
    /// hostile layer would.
    fn raw_path(h: &mut tar::Header, p: &str) {
        let name = &mut h.as_old_mut().name;
        name.fill(0);
        name[..p.len()].copy_from_slice(p.as_bytes());
    }

    fn unpack(data: &[u8]) -> (tempfile::TempDir, Result<(), String>) {
        let dir = tempfile::tempdir().unwrap();
        let r = unpack_layer(data, data.len() as u64, dir.path());
        (dir, r)
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, p: &str, data: &[u8]) {
        let mut h = header(tar::EntryType::Regular, data.len() as u64);
        raw_path(&mut h, p);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, p: &str, target: &str) {
        let mut h = header(kind, 0);
        raw_path(&mut h, p);
        h.set_link_name(target).unwrap();
        h.set_cksum();
        b.append(&h, io::empty()).unwrap();
    }

    #[test]
    fn unpacks_files_dirs_and_links() {
        let data = tar_with(|b| {
            file(b, "etc/motd", b"hi\n");
            link(b, tar::EntryType::Symlink, "bin/sh", "/bin/busybox");
            link(b, tar::EntryType::Symlink, "usr/lib64", "../lib");
            link(b, tar::EntryType::Link, "etc/motd2", "etc/motd");
        });
        let (dir, r) = unpack(&data);
        r.unwrap();
        assert_eq!(fs::read(dir.path().join("etc/motd2")).unwrap(), b"hi\n");
        assert_eq!(
            fs::read_link(dir.path().join("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
    }

    #[test]
    fn refuses_hostile_paths() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (tar_with(|b| file(b, "../evil", b"x")), "'..'"),
            (tar_with(|b| file(b, "/etc/evil", b"x")), "absolute"),
            (tar_with(|b| file(b, "a/../../evil", b"x")), "'..'"),
            (
                tar_with(|b| {
                    link(b, tar::EntryType::Symlink, "escape", "/etc");
                    file(b, "escape/passwd", b"x");
                }),
                "through the symlink",
            ),
            (
                tar_with(|b| link(b, tar::EntryType::Symlink, "up", "../../../etc")),
                "outside the layer",
            ),
            (
                tar_with(|b| link(b, tar::EntryType::Link, "h", "../../etc/passwd")),
                "outside the layer",
            ),
            (
                tar_with(|b| link(b, tar::EntryType::Link, "h", "/etc/passwd")),
                "outside the layer",
            ),
            (
                tar_with(|b| {
                    let mut h = header(tar::EntryType::Char, 0);
                    raw_path(&mut h, "dev/mem");
                    h.set_device_major(1).unwrap();
                    h.set_device_minor(1).unwrap();
                    h.set_cksum();
                    b.append(&h, io::empty()).unwrap();
                }),
                "device node",
            ),
        ];
        for (data, want) in cases {
            let (dir, r) = unpack(&data);
            let err = r.expect_err(want);
            assert!(err.contains(want), "{err} should mention {want}");
            assert!(!Path::new("/etc/evil").exists());
            drop(dir);
        }
    }

    #[test]
    fn refuses_decompression_bombs() {
        // 300 MiB of zeros gzips to ~300 KiB: over the ratio and the floor.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        {
            let mut b = tar::Builder::new(&mut gz);
            let size = 300u64 << 20;
            let h = {
                let mut h = header(tar::EntryType::Regular, size);
                h.set_path("zeros").unwrap();
                h.set_cksum();
                h
            };
            b.append(&h, io::repeat(0).take(size)).unwrap();
            b.finish().unwrap();
        }
        let data = gz.finish().unwrap();
        let (_dir, r) = unpack(&data);
        let err = r.unwrap_err();
        assert!(err.contains("decompression bomb"), "{err}");
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: whiteouts need root to mknod");
            return;
        }
        let data = tar_with(|b| {
            file(b, "etc/.wh.gone", b"");
            file(b, "var/.wh..wh..opq", b"");
        });
        let (dir, r) = unpack(&data);
        r.unwrap();
        use std::os::unix::fs::FileTypeExt;
        let m = fs::symlink_metadata(dir.path().join("etc/gone")).unwrap();
        assert!(m.file_type().is_char_device());
    }

    #[test]
    fn zstd_layers_unpack() {
        let data = tar_with(|b| file(b, "hello", b"zstd\n"));
        let z = zstd::encode_all(&data[..], 3).unwrap();
        let (dir, r) = unpack(&z);
        r.unwrap();
        assert_eq!(fs::read(dir.path().join("hello")).unwrap(), b"zstd\n");
    }
}
