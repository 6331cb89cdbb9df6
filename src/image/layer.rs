//! Layer tars: deterministic writing (for `build`), decompression, and
//! reading single files out of an image's layer stack (OCI whiteouts
//! honoured), which is how a Wasm container's module is found.

use super::store::ImageStore;
use super::ImageError;
use crate::model::Digest;
use flate2::write::GzEncoder;
use oci_spec::image::ImageManifest;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::{self, Write};

/// A Wasm module larger than this is refused (guards a decompression bomb
/// posing as an entrypoint).
pub const MAX_EXTRACTED_FILE: u64 = 1 << 30;
const MAX_SYMLINK_HOPS: usize = 16;

/// One entry of a layer being built. Paths are absolute in-image paths.
#[derive(Clone, Debug)]
pub enum Entry {
    Dir { mode: u32 },
    File { mode: u32, data: Vec<u8> },
    Symlink { target: String },
}

/// A set of entries, written in sorted order with fixed metadata so the same
/// content always gives the same tar, and so the same digest.
#[derive(Default)]
pub struct LayerBuilder {
    entries: BTreeMap<String, Entry>,
    /// Bytes of file data held (the layer is built in memory).
    data_len: u64,
}

/// A layer built in memory (`COPY`, `ADD`) may hold at most this much file
/// data: an archive or a stage larger than that is refused rather than
/// exhausting ketchd's memory.
pub const MAX_IN_MEMORY_LAYER: u64 = 2 << 30;

/// A written layer: compressed blob digest, uncompressed diff id, size.
pub struct BuiltLayer {
    pub digest: Digest,
    pub diff_id: Digest,
    pub size: u64,
}

/// Store an uncompressed layer tar read from `tar` as a tar+gzip blob
/// (deterministic header), streamed through the store's ingest area: a
/// layer of any size costs ketchd a buffer, not its size in memory. The
/// digest of the tar is the diff id.
pub fn write_tar(store: &ImageStore, tar: impl io::Read) -> Result<BuiltLayer, ImageError> {
    let mut hashing = HashingReader {
        inner: tar,
        hasher: Sha256::new(),
    };
    let digest = store.ingest(
        flate2::read::GzEncoder::new(&mut hashing, flate2::Compression::default()),
        None,
    )?;
    let path = store.blob_path(&digest);
    let size = std::fs::metadata(&path)
        .map_err(ImageError::io(&path))?
        .len();
    Ok(BuiltLayer {
        digest,
        diff_id: Digest::from_hasher(hashing.hasher),
        size,
    })
}

/// An unnamed file in the store's ingest area (gone when closed, or at a
/// crash), for a layer tar too large to hold in memory.
pub fn spool(store: &ImageStore) -> Result<std::fs::File, ImageError> {
    let dir = store.root().join("ingest");
    tempfile::tempfile_in(&dir).map_err(ImageError::io(&dir))
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: io::Read> io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

impl LayerBuilder {
    /// Add an entry; missing parent directories are added too.
    pub fn add(&mut self, path: &str, entry: Entry) {
        let path = crate::fsutil::clean_abs(path);
        let mut parent = String::new();
        for comp in path
            .trim_start_matches('/')
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map(|(_, p)| p.to_vec())
            .unwrap_or_default()
        {
            parent.push('/');
            parent.push_str(comp);
            self.entries
                .entry(parent.clone())
                .or_insert(Entry::Dir { mode: 0o755 });
        }
        if path != "/" {
            if let Entry::File { data, .. } = &entry {
                self.data_len += data.len() as u64;
            }
            if let Some(Entry::File { data, .. }) = self.entries.insert(path, entry) {
                self.data_len -= data.len() as u64;
            }
        }
    }

    /// Remove `path` and everything below it (a whiteout).
    pub fn remove(&mut self, path: &str) {
        let path = crate::fsutil::clean_abs(path);
        self.remove_below(&path);
        self.take(&path);
    }

    /// Remove everything below `dir` (an opaque directory).
    pub fn remove_below(&mut self, dir: &str) {
        let prefix = format!("{}/", crate::fsutil::clean_abs(dir).trim_end_matches('/'));
        let below: Vec<String> = self
            .entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in below {
            self.take(&k);
        }
    }

    fn take(&mut self, path: &str) {
        if let Some(Entry::File { data, .. }) = self.entries.remove(path) {
            self.data_len -= data.len() as u64;
        }
    }

    /// Every entry, in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries.iter()
    }

    /// What is at `path`, if anything.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(&crate::fsutil::clean_abs(path))
    }

    /// How many more bytes of file data this layer may take.
    pub fn room(&self) -> u64 {
        MAX_IN_MEMORY_LAYER.saturating_sub(self.data_len)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Write tar+gzip into the store.
    pub fn write(self, store: &ImageStore) -> Result<BuiltLayer, ImageError> {
        let (blob, diff_id) = self.finish()?;
        let digest = store.put_blob(&blob)?;
        Ok(BuiltLayer {
            digest,
            diff_id,
            size: blob.len() as u64,
        })
    }

    /// The tar+gzip bytes and the uncompressed digest (diff id).
    pub fn finish(self) -> Result<(Vec<u8>, Digest), ImageError> {
        let io_err = |e: io::Error| ImageError::Io {
            path: "layer".into(),
            source: e,
        };
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut diff = Sha256::new();
        {
            let mut tee = HashingWriter {
                inner: &mut gz,
                hasher: &mut diff,
            };
            let mut tar = tar::Builder::new(&mut tee);
            tar.mode(tar::HeaderMode::Deterministic);
            for (path, entry) in &self.entries {
                let rel = path.trim_start_matches('/');
                let mut h = tar::Header::new_gnu();
                h.set_mtime(0);
                h.set_uid(0);
                h.set_gid(0);
                match entry {
                    Entry::Dir { mode } => {
                        h.set_entry_type(tar::EntryType::Directory);
                        h.set_mode(*mode);
                        h.set_size(0);
                        tar.append_data(&mut h, format!("{rel}/"), io::empty())
                            .map_err(io_err)?;
                    }
                    Entry::File { mode, data } => {
                        h.set_entry_type(tar::EntryType::Regular);
                        h.set_mode(*mode);
                        h.set_size(data.len() as u64);
                        tar.append_data(&mut h, rel, &data[..]).map_err(io_err)?;
                    }
                    Entry::Symlink { target } => {
                        h.set_entry_type(tar::EntryType::Symlink);
                        h.set_mode(0o777);
                        h.set_size(0);
                        tar.append_link(&mut h, rel, target).map_err(io_err)?;
                    }
                }
            }
            tar.finish().map_err(io_err)?;
        }
        let blob = gz.finish().map_err(io_err)?;
        Ok((blob, Digest::from_hasher(diff)))
    }
}

struct HashingWriter<'a, W: Write> {
    inner: &'a mut W,
    hasher: &'a mut Sha256,
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Found {
    File(Vec<u8>),
    Link(String),
    /// A directory, device or FIFO: no file to read, and it hides the
    /// layers below.
    NotFile,
    Hidden,
    Absent,
}

/// Read one file from the image's merged filesystem. `None` if the image
/// does not have it as a file. Symlinks inside the image are followed.
/// The annotation naming a layer's file (`org.opencontainers.image.title`).
pub const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";

/// The path a raw `application/wasm` layer is seen at: `/` + its title when
/// that is a plain file name, else `/module.wasm`.
pub fn wasm_layer_path(layer: &oci_spec::image::Descriptor) -> String {
    let title = layer
        .annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_TITLE))
        .filter(|t| {
            !t.is_empty()
                && *t != "."
                && *t != ".."
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
    format!("/{}", title.map_or("module.wasm", |t| t.as_str()))
}

pub fn read_image_file(
    store: &ImageStore,
    manifest: &ImageManifest,
    path: &str,
) -> Result<Option<Vec<u8>>, ImageError> {
    read_image_file_max(store, manifest, path, MAX_EXTRACTED_FILE)
}

/// [`read_image_file`] with a size limit of its own (for small files such
/// as `/etc/passwd`, which a hostile image may make endless).
pub fn read_image_file_max(
    store: &ImageStore,
    manifest: &ImageManifest,
    path: &str,
    max: u64,
) -> Result<Option<Vec<u8>>, ImageError> {
    let layers = manifest
        .layers()
        .iter()
        .map(|l| {
            let d = crate::image::store::digest_of(l.digest())?;
            let wasm = l.media_type().to_string() == super::registry::MEDIA_WASM_LAYER;
            Ok(ImageLayer {
                digest: d,
                wasm_path: wasm.then(|| wasm_layer_path(l)),
            })
        })
        .collect::<Result<Vec<_>, ImageError>>()?;
    read_layers_file(store, &layers, path, max)
}

/// One layer of a stack being read: a tar, or a Wasm artifact's module.
pub struct ImageLayer {
    pub digest: Digest,
    /// For a raw `application/wasm` layer: the path its module is seen at.
    pub wasm_path: Option<String>,
}

/// Read one file from a layer stack's merged filesystem (lowest layer
/// first), at most `max` bytes. `None` if the stack does not have it.
/// Symlinks inside the stack are followed, resolved as if its root were
/// `/`; nothing on the host is ever opened. Layers are read under the
/// layer policy of [`crate::confine::archive`] (bombs are refused).
pub fn read_layers_file(
    store: &ImageStore,
    layers: &[ImageLayer],
    path: &str,
    max: u64,
) -> Result<Option<Vec<u8>>, ImageError> {
    let mut want = crate::fsutil::clean_abs(path);
    'hops: for _ in 0..MAX_SYMLINK_HOPS {
        for layer in layers.iter().rev() {
            if let Some(p) = &layer.wasm_path {
                // A Wasm artifact's layer is the module itself, not a tar.
                if *p == want {
                    return store.read_blob(&layer.digest).map(Some);
                }
                continue;
            }
            match find_in_layer(store, &layer.digest, &want, max)? {
                Found::File(data) => return Ok(Some(data)),
                Found::Link(target) => {
                    want = if target.starts_with('/') {
                        crate::fsutil::clean_abs(&target)
                    } else {
                        let parent = want.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                        crate::fsutil::clean_abs(&format!("{parent}/{target}"))
                    };
                    continue 'hops;
                }
                Found::Hidden | Found::NotFile => return Ok(None),
                Found::Absent => {}
            }
        }
        return Ok(None);
    }
    Err(ImageError::Invalid {
        name: path.to_string(),
        reason: "too many levels of symbolic links".into(),
    })
}

fn find_in_layer(
    store: &ImageStore,
    d: &Digest,
    want: &str,
    max: u64,
) -> Result<Found, ImageError> {
    use crate::confine::archive::{self, EntryKind, Kind, Limits, Policy};
    let f = store.open_blob(d)?;
    let policy = Policy {
        kind: Kind::Layer,
        limits: Limits::daemon(),
    };
    let mut result = Found::Absent;
    // `want` is clean and absolute; entry paths are relative.
    let inside = |p: &crate::confine::RelPath| {
        let p = format!("/{p}");
        want == p || want.starts_with(&format!("{p}/"))
    };
    archive::entries_until(f, &policy, &mut |e, data| {
        match &e.kind {
            // A whiteout of the file or of a directory above it, or an
            // opaque directory above it, hides the lower layers.
            EntryKind::Whiteout if inside(&e.path) => result = Found::Hidden,
            EntryKind::Opaque if inside(&e.path) && matches!(result, Found::Absent) => {
                result = Found::Hidden
            }
            _ if format!("/{}", e.path) != want => {}
            EntryKind::File => {
                let data = crate::confine::read_bounded(data, max, want)?;
                result = Found::File(data);
                return Ok(false);
            }
            EntryKind::Symlink(t) => {
                result = Found::Link(t.to_string_lossy().into_owned());
                return Ok(false);
            }
            EntryKind::HardLink(t) => {
                result = Found::Link(format!("/{t}"));
                return Ok(false);
            }
            _ => {
                result = Found::NotFile;
                return Ok(false);
            }
        }
        Ok(true)
    })
    .map_err(|e| ImageError::Invalid {
        name: format!("{want} in layer {d}"),
        reason: e.to_string(),
    })?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(entries: &[(&str, Entry)], store: &ImageStore) -> BuiltLayer {
        let mut b = LayerBuilder::default();
        for (p, e) in entries {
            b.add(p, e.clone());
        }
        b.write(store).unwrap()
    }

    #[test]
    fn deterministic_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let f = || Entry::File {
            mode: 0o644,
            data: b"hi".to_vec(),
        };
        let a = build(&[("/app/x.wasm", f()), ("/etc/y", f())], &store);
        let b = build(&[("/etc/y", f()), ("/app/x.wasm", f())], &store);
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.diff_id, b.diff_id);
        let hide_y = build(
            &[(
                "/etc/.wh.y",
                Entry::File {
                    mode: 0,
                    data: vec![],
                },
            )],
            &store,
        );
        let layer = |l: &BuiltLayer| {
            oci_spec::image::Descriptor::new(
                oci_spec::image::MediaType::ImageLayerGzip,
                l.size,
                super::super::store::oci_digest(&l.digest).unwrap(),
            )
        };
        let cfg = oci_spec::image::Descriptor::new(
            oci_spec::image::MediaType::ImageConfig,
            0,
            super::super::store::oci_digest(&a.digest).unwrap(),
        );
        let m = oci_spec::image::ImageManifestBuilder::default()
            .schema_version(2u32)
            .config(cfg.clone())
            .layers(vec![layer(&a)])
            .build()
            .unwrap();
        assert_eq!(
            read_image_file(&store, &m, "/app/x.wasm")
                .unwrap()
                .as_deref(),
            Some(&b"hi"[..])
        );
        assert_eq!(
            read_image_file(&store, &m, "app/../etc/y")
                .unwrap()
                .as_deref(),
            Some(&b"hi"[..])
        );
        assert_eq!(read_image_file(&store, &m, "/nope").unwrap(), None);
        let link = build(
            &[(
                "/x",
                Entry::Symlink {
                    target: "app/x.wasm".into(),
                },
            )],
            &store,
        );
        let m2 = oci_spec::image::ImageManifestBuilder::default()
            .schema_version(2u32)
            .config(cfg.clone())
            .layers(vec![layer(&a), layer(&link)])
            .build()
            .unwrap();
        assert_eq!(
            read_image_file(&store, &m2, "/x").unwrap().as_deref(),
            Some(&b"hi"[..])
        );
        let m3 = oci_spec::image::ImageManifestBuilder::default()
            .schema_version(2u32)
            .config(cfg)
            .layers(vec![layer(&a), layer(&hide_y)])
            .build()
            .unwrap();
        assert_eq!(
            read_image_file(&store, &m3, "/etc/y").unwrap(),
            None,
            "whiteout hides the lower file"
        );
        assert!(read_image_file(&store, &m3, "/app/x.wasm")
            .unwrap()
            .is_some());
    }
}

#[cfg(test)]
mod wasm_layer_tests {
    use super::*;

    fn layer(title: Option<&str>) -> oci_spec::image::Descriptor {
        let mut v = serde_json::json!({
            "mediaType": "application/wasm",
            "digest": format!("sha256:{:064x}", 1),
            "size": 1,
        });
        if let Some(t) = title {
            v["annotations"] = serde_json::json!({ ANNOTATION_TITLE: t });
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn wasm_layer_titles_cannot_escape() {
        assert_eq!(wasm_layer_path(&layer(Some("app.wasm"))), "/app.wasm");
        assert_eq!(wasm_layer_path(&layer(None)), "/module.wasm");
        for hostile in [
            "../../etc/passwd",
            "/abs.wasm",
            "a/b.wasm",
            "..",
            ".",
            "",
            "x y",
        ] {
            assert_eq!(
                wasm_layer_path(&layer(Some(hostile))),
                "/module.wasm",
                "{hostile}"
            );
        }
    }
}
