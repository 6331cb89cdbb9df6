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
use crate::confine::archive::{self, Limits, Policy};
use crate::confine::{ConfineError, Node, RelPath, Root};
use crate::model::Digest;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub struct Snapshots {
    root: PathBuf,
    limits: Limits,
}

impl Snapshots {
    pub fn open(root: &Path, limits: Limits) -> Result<Self, ImageError> {
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
            limits,
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
            unpack_layer(blob, &self.limits, &tmp).map_err(|e| ImageError::Invalid {
                name: format!("layer {layer}"),
                reason: e.to_string(),
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

/// Unpack one layer blob (tar, tar+gzip or tar+zstd) into the fresh
/// directory `dest`, under the layer policy of [`crate::confine::archive`].
pub fn unpack_layer(blob: impl Read, limits: &Limits, dest: &Path) -> Result<(), ConfineError> {
    let root = Root::open(dest)?;
    let mut blob = Some(blob);
    archive::extract(
        &root,
        &mut || {
            blob.take()
                .map(|b| Box::new(b) as Box<dyn Read>)
                .ok_or_else(|| io::Error::other("a layer is read once"))
        },
        &Policy {
            kind: archive::Kind::Layer,
            limits: *limits,
        },
        archive::Target::Fresh,
    )
    .map(|_| ())
}

/// The changes in an overlay upper dir as an OCI layer tar: files,
/// directories, symlinks, FIFOs and device nodes with their modes and owners (mtimes zeroed, in
/// sorted order, so the same changes give the same layer), overlayfs
/// whiteouts as `.wh.NAME`, opaque directories as `.wh..wh..opq`. The
/// upper dir was written by a container: it is walked by descriptor.
pub fn diff_upper<W: io::Write>(upper: &Path, out: W) -> Result<W, ConfineError> {
    use rustix::fs::FileType;
    let root = Root::open(upper)?;
    let mut b = tar::Builder::new(out);
    let err = |p: &RelPath| {
        let p = p.to_string();
        move |e: io::Error| ConfineError::io(&p)(e)
    };
    Root::walk(root.fd(), &mut |rel, node, st| {
        let path = rel.to_path_buf();
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_uid(st.st_uid as u64);
        h.set_gid(st.st_gid as u64);
        h.set_mode(st.st_mode & 0o7777);
        h.set_size(0);
        match node {
            Node::Other(FileType::CharacterDevice) if st.st_rdev == 0 => {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default();
                let wh = path.with_file_name(format!(".wh.{name}"));
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                b.append_data(&mut h, &wh, io::empty()).map_err(err(rel))?;
            }
            Node::Dir(fd) => {
                h.set_entry_type(tar::EntryType::Directory);
                b.append_data(&mut h, &path, io::empty())
                    .map_err(err(rel))?;
                let mut v = [0u8; 4];
                let opaque = rustix::fs::fgetxattr(&fd, "trusted.overlay.opaque", &mut v)
                    .is_ok_and(|n| n == 1 && v[0] == b'y');
                if opaque {
                    let mut o = tar::Header::new_gnu();
                    o.set_mtime(0);
                    o.set_mode(0o644);
                    o.set_size(0);
                    o.set_entry_type(tar::EntryType::Regular);
                    b.append_data(&mut o, path.join(".wh..wh..opq"), io::empty())
                        .map_err(err(rel))?;
                }
            }
            Node::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                b.append_link(&mut h, &path, &target).map_err(err(rel))?;
            }
            Node::File(f) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(st.st_size as u64);
                b.append_data(&mut h, &path, f.take(st.st_size as u64))
                    .map_err(err(rel))?;
            }
            Node::Other(FileType::Fifo) => {
                h.set_entry_type(tar::EntryType::Fifo);
                b.append_data(&mut h, &path, io::empty())
                    .map_err(err(rel))?;
            }
            // Device nodes are kept, as Docker keeps them: a node grants
            // nothing in a container, whose device cgroup allows only the
            // standard devices.
            Node::Other(ft @ (FileType::CharacterDevice | FileType::BlockDevice)) => {
                h.set_entry_type(if ft == FileType::BlockDevice {
                    tar::EntryType::Block
                } else {
                    tar::EntryType::Char
                });
                let (major, minor) = (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev));
                h.set_device_major(major).map_err(err(rel))?;
                h.set_device_minor(minor).map_err(err(rel))?;
                b.append_data(&mut h, &path, io::empty())
                    .map_err(err(rel))?;
            }
            // Sockets made by a RUN step are not kept.
            Node::Other(_) => {}
        }
        Ok(true)
    })?;
    b.into_inner().map_err(ConfineError::io("layer"))
}

/// [`diff_upper`] into an unnamed file under `spool` (gone when closed),
/// read back from its start: a container's changes may be larger than
/// ketchd's memory. An upper dir never made (a container that never ran)
/// is an empty layer.
pub fn diff_upper_file(upper: &Path, spool: &Path) -> Result<fs::File, ConfineError> {
    let f = tempfile::tempfile_in(spool).map_err(ConfineError::io(spool.display().to_string()))?;
    let mut f = if upper.exists() {
        diff_upper(upper, f)?
    } else {
        tar::Builder::new(f)
            .into_inner()
            .map_err(ConfineError::io("layer"))?
    };
    io::Seek::rewind(&mut f).map_err(ConfineError::io("layer"))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layer_unpacks_and_its_diff_round_trips() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(3);
        h.set_mode(0o640);
        h.set_path("etc/motd").unwrap();
        h.set_cksum();
        b.append(&h, &b"hi\n"[..]).unwrap();
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Symlink);
        l.set_size(0);
        l.set_path("bin/sh").unwrap();
        l.set_link_name("/bin/busybox").unwrap();
        l.set_cksum();
        b.append(&l, io::empty()).unwrap();
        let data = b.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        unpack_layer(&data[..], &Limits::default(), dir.path()).unwrap();
        assert_eq!(fs::read(dir.path().join("etc/motd")).unwrap(), b"hi\n");
        let diff = diff_upper(dir.path(), Vec::new()).unwrap();
        let mut names = Vec::new();
        for e in tar::Archive::new(&diff[..]).entries().unwrap() {
            names.push(e.unwrap().path().unwrap().display().to_string());
        }
        assert_eq!(names, ["bin", "bin/sh", "etc", "etc/motd"]);
        // An upper dir never made is an empty layer.
        let f = diff_upper_file(&dir.path().join("never"), dir.path()).unwrap();
        assert_eq!(tar::Archive::new(f).entries().unwrap().count(), 0);
    }
}
