//! The image store: an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256`) under `<data-root>/image`.
//!
//! Blobs are content-addressed and written through an ingest area: temp
//! file, digest check, fsync, rename. `index.json` is replaced atomically and
//! names each tagged manifest with `org.opencontainers.image.ref.name` set to
//! the fully qualified reference, so `skopeo inspect oci:DIR:REF` and `umoci`
//! read the store as it is.

use super::{canonical_json, ImageError};
use crate::fsutil;
use crate::model::{Digest, ImageRef};
use oci_spec::image::{
    Descriptor, ImageConfiguration, ImageIndex, ImageIndexBuilder, ImageManifest, MediaType,
};
use sha2::{Digest as _, Sha256};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// Manifests and configs are small; a larger one is hostile.
pub const MAX_METADATA_BLOB: u64 = 8 << 20;
/// Ingest files of downloads in progress are named by their digest.
const PARTIAL_PREFIX: &str = "partial-";

/// An image resolved from the store.
#[derive(Clone, Debug)]
pub struct Image {
    pub manifest_digest: Digest,
    pub manifest: ImageManifest,
    /// The image id, as Docker's: the config digest.
    pub id: Digest,
    pub config: ImageConfiguration,
    /// `config.Healthcheck`, which Docker's image config has and the OCI
    /// one does not.
    pub healthcheck: Option<crate::api::types::HealthConfig>,
    pub refs: Vec<ImageRef>,
}

impl Image {
    pub fn size(&self) -> i64 {
        self.manifest
            .layers()
            .iter()
            .map(|l| l.size() as i64)
            .sum::<i64>()
            + self.manifest.config().size() as i64
    }

    pub fn is_wasi_platform(&self) -> bool {
        let os = self.config.os().to_string();
        let arch = self.config.architecture().to_string();
        os == "wasi" || os == "wasip1" || os == "wasip2" || arch == "wasm" || arch == "wasm32"
    }
}

pub struct ImageStore {
    root: PathBuf,
    /// Guards read-modify-write of `index.json`.
    index_lock: Mutex<()>,
    /// Parsed images, valid while `index.json` keeps this (mtime, size).
    cache: Mutex<Option<(IndexStamp, Vec<Image>)>>,
    /// Blobs an operation in progress needs but the index does not reach
    /// yet (a pull between its first blob and its manifest): GC keeps them.
    pinned: Mutex<HashMap<String, usize>>,
}

/// Keeps blobs from GC while alive (see [`ImageStore::pin`]).
pub struct Pin<'a> {
    store: &'a ImageStore,
    hexes: Vec<String>,
}

impl Drop for Pin<'_> {
    fn drop(&mut self) {
        let mut p = self.store.pinned.lock().unwrap_or_else(|e| e.into_inner());
        for h in &self.hexes {
            if let Some(n) = p.get_mut(h) {
                *n -= 1;
                if *n == 0 {
                    p.remove(h);
                }
            }
        }
    }
}

type IndexStamp = (std::time::SystemTime, u64);

impl ImageStore {
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        let io = ImageError::io;
        fs::create_dir_all(root.join("blobs/sha256")).map_err(io(root))?;
        fs::create_dir_all(root.join("ingest")).map_err(io(root))?;
        // Leftovers of an interrupted write are never visible blobs. Partial
        // downloads stay: the next pull of that blob resumes them.
        if let Ok(rd) = fs::read_dir(root.join("ingest")) {
            for e in rd.flatten() {
                if !e.file_name().to_string_lossy().starts_with(PARTIAL_PREFIX) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        let layout = root.join("oci-layout");
        if !layout.exists() {
            fsutil::write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)
                .map_err(io(&layout))?;
        }
        let index = root.join("index.json");
        if !index.exists() {
            let empty = ImageIndexBuilder::default()
                .schema_version(2u32)
                .manifests(vec![])
                .build()
                .map_err(|e| ImageError::Invalid {
                    name: index.display().to_string(),
                    reason: e.to_string(),
                })?;
            fsutil::write_atomic(&index, &canonical_json(&empty)?).map_err(io(&index))?;
        }
        Ok(ImageStore {
            root: root.to_path_buf(),
            index_lock: Mutex::new(()),
            pinned: Mutex::new(HashMap::new()),
            cache: Mutex::new(None),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// When `img` was made, for the filters that ask how old an image is
    /// (`until`, `before`, `since`): its config's `created`, or, when that
    /// is the epoch (a reproducible build's default), when it came into
    /// this store (its manifest's blob was written).
    pub fn made_at(&self, img: &Image) -> Option<chrono::DateTime<chrono::Utc>> {
        let created = img
            .config
            .created()
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc));
        match created {
            Some(t) if t.timestamp() != 0 => Some(t),
            _ => fs::metadata(self.blob_path(&img.manifest_digest))
                .and_then(|m| m.modified())
                .ok()
                .map(chrono::DateTime::<chrono::Utc>::from)
                .or(created),
        }
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).exists()
    }

    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, ImageError> {
        let p = self.blob_path(d);
        fs::read(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ImageError::Corrupt {
                digest: d.to_string(),
                reason: "blob is missing from the store".into(),
            },
            _ => ImageError::Io {
                path: p.display().to_string(),
                source: e,
            },
        })
    }

    pub fn open_blob(&self, d: &Digest) -> Result<fs::File, ImageError> {
        let p = self.blob_path(d);
        fs::File::open(&p).map_err(ImageError::io(&p))
    }

    /// Store bytes as a blob; returns its digest.
    /// Keep these blobs through any GC until the guard drops.
    pub fn pin(&self, blobs: &[Digest]) -> Pin<'_> {
        let mut p = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
        let hexes: Vec<String> = blobs.iter().map(|d| d.hex().to_string()).collect();
        for h in &hexes {
            *p.entry(h.clone()).or_default() += 1;
        }
        Pin { store: self, hexes }
    }

    /// Where a download of `d` is written until it is verified.
    pub fn partial_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("ingest")
            .join(format!("{PARTIAL_PREFIX}{}", d.hex()))
    }

    /// Make a verified download visible as blob `d`: fsync, rename, fsync
    /// the directory.
    pub fn commit_partial(&self, partial: &Path, d: &Digest) -> Result<(), ImageError> {
        fs::File::open(partial)
            .and_then(|f| f.sync_all())
            .map_err(ImageError::io(partial))?;
        let dest = self.blob_path(d);
        fs::rename(partial, &dest).map_err(ImageError::io(&dest))?;
        fsutil::sync_dir(dest.parent().unwrap_or(&self.root)).map_err(ImageError::io(&dest))
    }

    /// Remove downloads left unfinished; returns the bytes freed.
    pub fn remove_partials(&self) -> u64 {
        let mut freed = 0;
        if let Ok(rd) = fs::read_dir(self.root.join("ingest")) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(PARTIAL_PREFIX) {
                    freed += e.metadata().map_or(0, |m| m.len());
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        freed
    }

    pub fn put_blob(&self, data: &[u8]) -> Result<Digest, ImageError> {
        let d = Digest::of(data);
        self.ingest(data, Some((&d, data.len() as u64)))
    }

    /// Stream a blob in through the ingest area. With `expect`, the content
    /// must match that digest and size or nothing is stored.
    pub fn ingest(
        &self,
        mut r: impl Read,
        expect: Option<(&Digest, u64)>,
    ) -> Result<Digest, ImageError> {
        if let Some((d, _)) = expect {
            if self.has_blob(d) {
                // Drain so a streaming caller stays in sync, then skip.
                std::io::copy(&mut r, &mut std::io::sink())
                    .map_err(ImageError::io(self.blob_path(d)))?;
                return Ok(d.clone());
            }
        }
        let tmp = self.root.join("ingest").join(format!(
            "{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let result = (|| {
            let mut f = fs::File::create(&tmp).map_err(ImageError::io(&tmp))?;
            let mut h = Sha256::new();
            let mut n = 0u64;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let k = r.read(&mut buf).map_err(ImageError::io(&tmp))?;
                if k == 0 {
                    break;
                }
                h.update(&buf[..k]);
                f.write_all(&buf[..k]).map_err(ImageError::io(&tmp))?;
                n += k as u64;
            }
            let got = Digest::from_hasher(h);
            if let Some((d, size)) = expect {
                if &got != d {
                    return Err(ImageError::Corrupt {
                        digest: d.to_string(),
                        reason: format!("content has digest {got}"),
                    });
                }
                if n != size {
                    return Err(ImageError::Corrupt {
                        digest: d.to_string(),
                        reason: format!("size {n}, expected {size}"),
                    });
                }
            }
            f.sync_all().map_err(ImageError::io(&tmp))?;
            let dest = self.blob_path(&got);
            fs::rename(&tmp, &dest).map_err(ImageError::io(&dest))?;
            fsutil::sync_dir(dest.parent().unwrap_or(&self.root)).map_err(ImageError::io(&dest))?;
            Ok(got)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    pub fn read_json_blob<T: serde::de::DeserializeOwned>(
        &self,
        d: &Digest,
        what: &str,
    ) -> Result<T, ImageError> {
        let meta = fs::metadata(self.blob_path(d)).map_err(ImageError::io(self.blob_path(d)))?;
        if meta.len() > MAX_METADATA_BLOB {
            return Err(ImageError::Corrupt {
                digest: d.to_string(),
                reason: format!("{what} is too large"),
            });
        }
        let data = self.read_blob(d)?;
        serde_json::from_slice(&data).map_err(|e| ImageError::Corrupt {
            digest: d.to_string(),
            reason: format!("bad {what}: {e}"),
        })
    }

    fn read_index(&self) -> Result<ImageIndex, ImageError> {
        let p = self.root.join("index.json");
        let data = fs::read(&p).map_err(ImageError::io(&p))?;
        serde_json::from_slice(&data).map_err(|e| ImageError::Corrupt {
            digest: "index.json".into(),
            reason: e.to_string(),
        })
    }

    fn write_index(&self, idx: &ImageIndex) -> Result<(), ImageError> {
        // mtime granularity could hide two writes within one tick: drop the cache.
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let p = self.root.join("index.json");
        fsutil::write_durable(&p, &canonical_json(idx)?).map_err(ImageError::io(&p))
    }

    fn load_image(
        &self,
        manifest_digest: &Digest,
        refs: Vec<ImageRef>,
    ) -> Result<Image, ImageError> {
        let manifest: ImageManifest = self.read_json_blob(manifest_digest, "manifest")?;
        let id = crate::image::store::digest_of(manifest.config().digest())?;
        let mut healthcheck = None;
        let config: ImageConfiguration =
            if manifest.config().media_type().to_string() == super::registry::MEDIA_WASM_CONFIG {
                let wasm: serde_json::Value = self.read_json_blob(&id, "wasm config")?;
                wasm_artifact_config(&manifest, &wasm)?
            } else {
                let raw: serde_json::Value = self.read_json_blob(&id, "image config")?;
                healthcheck = raw
                    .pointer("/config/Healthcheck")
                    .and_then(|h| serde_json::from_value(h.clone()).ok());
                serde_json::from_value(raw).map_err(|e| ImageError::Corrupt {
                    digest: id.to_string(),
                    reason: format!("bad image config: {e}"),
                })?
            };
        Ok(Image {
            manifest_digest: manifest_digest.clone(),
            manifest,
            id,
            config,
            healthcheck,
            refs,
        })
    }

    fn index_stamp(&self) -> Option<IndexStamp> {
        let m = fs::metadata(self.root.join("index.json")).ok()?;
        Some((m.modified().ok()?, m.len()))
    }

    /// Every image in the store, one entry per manifest, with its references.
    /// Cached while `index.json` is unchanged (other tools may write it too).
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        let stamp = self.index_stamp();
        if let (Some(st), Some((cached_st, images))) = (
            stamp,
            &*self.cache.lock().unwrap_or_else(|e| e.into_inner()),
        ) {
            if st == *cached_st {
                return Ok(images.clone());
            }
        }
        let images = self.list_uncached()?;
        if let Some(st) = stamp {
            *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = Some((st, images.clone()));
        }
        Ok(images)
    }

    fn list_uncached(&self) -> Result<Vec<Image>, ImageError> {
        let idx = self.read_index()?;
        let mut order: Vec<Digest> = Vec::new();
        let mut refs: HashMap<Digest, Vec<ImageRef>> = HashMap::new();
        for desc in idx.manifests() {
            let Ok(d) = crate::image::store::digest_of(desc.digest()) else {
                continue;
            };
            if !refs.contains_key(&d) {
                order.push(d.clone());
            }
            let entry = refs.entry(d).or_default();
            if let Some(r) = ref_of(desc) {
                entry.push(r);
            }
        }
        let mut out = Vec::new();
        for d in order {
            let r = refs.remove(&d).unwrap_or_default();
            match self.load_image(&d, r) {
                Ok(img) => out.push(img),
                Err(e) => tracing::warn!("skipping unreadable image {d}: {e}"),
            }
        }
        Ok(out)
    }

    /// Find an image by reference, full or short id (`sha256:` optional),
    /// or `name@digest`.
    pub fn resolve(&self, name: &str) -> Result<Image, ImageError> {
        let images = self.list()?;
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        let looks_like_id = hex.len() >= 4
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if looks_like_id {
            // An exact reference wins over an id prefix (Docker's order).
            if let Ok(r) = ImageRef::parse(name) {
                if let Some(img) = images.iter().find(|i| i.refs.contains(&r)) {
                    return Ok(img.clone());
                }
            }
            let matches: Vec<&Image> = images
                .iter()
                .filter(|i| i.id.hex().starts_with(hex))
                .collect();
            let mut ids: Vec<&Digest> = matches.iter().map(|i| &i.id).collect();
            ids.dedup();
            match ids.len() {
                1 => return Ok(matches[0].clone()),
                0 => {}
                _ => {
                    return Err(ImageError::Conflict(format!(
                        "ambiguous image id prefix {name}"
                    )))
                }
            }
            if name.starts_with("sha256:") {
                return Err(ImageError::NotFound(name.to_string()));
            }
        }
        let r = ImageRef::parse(name)?;
        let found = match &r.digest {
            // The manifest's own digest, or the index digest a pull recorded.
            Some(d) => images.into_iter().find(|i| {
                (&i.manifest_digest == d && i.refs.iter().any(|x| x.repository() == r.repository()))
                    || i.refs.contains(&r)
            }),
            None => images.into_iter().find(|i| i.refs.contains(&r)),
        };
        found.ok_or_else(|| ImageError::NotFound(name.to_string()))
    }

    /// Add a manifest (already stored as a blob) to the index under `r`
    /// (or untagged with `None`). A tag already on another image moves.
    pub fn add_manifest(
        &self,
        manifest_digest: &Digest,
        size: u64,
        media_type: MediaType,
        r: Option<&ImageRef>,
    ) -> Result<(), ImageError> {
        let _g = self.index_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut idx = self.read_index()?;
        let mut manifests: Vec<Descriptor> = idx.manifests().clone();
        let same = |d: &Descriptor| d.digest().to_string() == manifest_digest.as_str();
        if let Some(r) = r {
            let (moved, kept): (Vec<Descriptor>, Vec<Descriptor>) = manifests
                .into_iter()
                .partition(|d| ref_of(d).as_ref() == Some(r));
            manifests = kept;
            // The image the tag leaves stays, untagged (dangling), as
            // Docker's does: containers may still run it.
            for mut old in moved {
                let digest = old.digest().to_string();
                if !same(&old) && !manifests.iter().any(|d| d.digest().to_string() == digest) {
                    old.set_annotations(None);
                    manifests.push(old);
                }
            }
        }
        // An untagged entry for this manifest is replaced by a tagged one.
        manifests.retain(|d| !(same(d) && ref_of(d).is_none()));
        if r.is_some() || !manifests.iter().any(same) {
            let mut desc = Descriptor::new(media_type, size, oci_digest(manifest_digest)?);
            if let Some(r) = r {
                desc.set_annotations(Some(HashMap::from([(
                    ANNOTATION_REF_NAME.to_string(),
                    r.to_string(),
                )])));
            }
            manifests.push(desc);
        }
        idx.set_manifests(manifests);
        self.write_index(&idx)
    }

    /// Tag an existing image.
    pub fn tag(&self, img: &Image, r: &ImageRef) -> Result<(), ImageError> {
        let size = fs::metadata(self.blob_path(&img.manifest_digest))
            .map_err(ImageError::io(self.blob_path(&img.manifest_digest)))?
            .len();
        self.add_manifest(
            &img.manifest_digest,
            size,
            MediaType::ImageManifest,
            Some(r),
        )
    }

    /// Remove one reference. Returns true when the manifest has no name left
    /// (it is then dropped from the index).
    pub fn untag(&self, r: &ImageRef) -> Result<bool, ImageError> {
        let _g = self.index_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut idx = self.read_index()?;
        let mut manifests: Vec<Descriptor> = idx.manifests().clone();
        let Some(pos) = manifests.iter().position(|d| ref_of(d).as_ref() == Some(r)) else {
            return Err(ImageError::NotFound(r.familiar()));
        };
        let removed = manifests.remove(pos);
        let digest = removed.digest().to_string();
        let orphan = !manifests.iter().any(|d| d.digest().to_string() == digest);
        idx.set_manifests(manifests);
        self.write_index(&idx)?;
        Ok(orphan)
    }

    /// Drop every index entry of a manifest (tagged or not).
    pub fn remove_manifest(&self, d: &Digest) -> Result<(), ImageError> {
        let _g = self.index_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut idx = self.read_index()?;
        let mut manifests: Vec<Descriptor> = idx.manifests().clone();
        manifests.retain(|x| x.digest().to_string() != d.as_str());
        idx.set_manifests(manifests);
        self.write_index(&idx)
    }

    /// Delete blobs no manifest in the index reaches. Returns the deleted.
    /// Delete every blob no index entry reaches; returns each with its size.
    pub fn gc(&self) -> Result<Vec<(Digest, u64)>, ImageError> {
        let _g = self.index_lock.lock().unwrap_or_else(|e| e.into_inner());
        let idx = self.read_index()?;
        let mut live: HashSet<String> = HashSet::new();
        for desc in idx.manifests() {
            let Ok(d) = crate::image::store::digest_of(desc.digest()) else {
                continue;
            };
            live.insert(d.hex().to_string());
            if let Ok(m) = self.read_json_blob::<ImageManifest>(&d, "manifest") {
                live.insert(m.config().digest().digest().to_string());
                for l in m.layers() {
                    live.insert(l.digest().digest().to_string());
                }
            }
        }
        live.extend(
            self.pinned
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .cloned(),
        );
        let dir = self.root.join("blobs/sha256");
        let mut deleted = Vec::new();
        for e in fs::read_dir(&dir).map_err(ImageError::io(&dir))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !live.contains(&name) {
                if let Ok(d) = Digest::parse(&format!("sha256:{name}")) {
                    let size = e.metadata().map_or(0, |m| m.len());
                    fs::remove_file(e.path()).map_err(ImageError::io(e.path()))?;
                    deleted.push((d, size));
                }
            }
        }
        Ok(deleted)
    }
}

/// The reference an index entry carries, if any.
/// A CNCF Wasm artifact seen as an image: platform from its config, and
/// its (first) `application/wasm` layer as the entrypoint, at the path
/// [`crate::image::layer::wasm_layer_path`] gives it.
fn wasm_artifact_config(
    manifest: &ImageManifest,
    wasm: &serde_json::Value,
) -> Result<ImageConfiguration, ImageError> {
    let os = wasm
        .get("os")
        .and_then(|v| v.as_str())
        .unwrap_or("wasip1")
        .to_string();
    let entry: Vec<String> = manifest
        .layers()
        .iter()
        .find(|l| l.media_type().to_string() == super::registry::MEDIA_WASM_LAYER)
        .map(|l| vec![crate::image::layer::wasm_layer_path(l)])
        .unwrap_or_default();
    let cfg = serde_json::json!({
        "created": wasm.get("created").and_then(|v| v.as_str()),
        "author": wasm.get("author").and_then(|v| v.as_str()),
        "architecture": "wasm",
        "os": os,
        "config": {"Entrypoint": entry},
        "rootfs": {"type": "layers", "diff_ids": []},
    });
    serde_json::from_value(cfg).map_err(|e| ImageError::Invalid {
        name: "Wasm artifact".into(),
        reason: format!("its configuration: {e}"),
    })
}

pub fn ref_of(desc: &Descriptor) -> Option<ImageRef> {
    let a = desc.annotations().as_ref()?;
    let name = a
        .get(ANNOTATION_CONTAINERD_NAME)
        .or_else(|| a.get(ANNOTATION_REF_NAME))?;
    // A pull by digest records `name@digest`: an image with no tag.
    ImageRef::parse(name)
        .ok()
        .filter(|r| r.tag.is_some() || r.digest.is_some())
}

/// An oci-spec digest as ketch's validated [`Digest`] (sha256 only).
pub fn digest_of(d: &oci_spec::image::Digest) -> Result<Digest, crate::model::DigestError> {
    Digest::parse(d.as_ref())
}

pub fn oci_digest(d: &Digest) -> Result<oci_spec::image::Digest, ImageError> {
    d.as_str().parse().map_err(|e| ImageError::Corrupt {
        digest: d.to_string(),
        reason: format!("not an OCI digest: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gc_keeps_pinned_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let a = store.put_blob(b"pulled, manifest not yet indexed").unwrap();
        let b = store.put_blob(b"garbage").unwrap();
        {
            let _pin = store.pin(std::slice::from_ref(&a));
            let gone: Vec<Digest> = store.gc().unwrap().into_iter().map(|(d, _)| d).collect();
            assert_eq!(gone, vec![b]);
            assert!(store.has_blob(&a));
        }
        let gone: Vec<Digest> = store.gc().unwrap().into_iter().map(|(d, _)| d).collect();
        assert_eq!(gone, vec![a]);
    }

    #[test]
    fn ingest_rejects_wrong_content_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = ImageStore::open(dir.path()).unwrap();
        let good = Digest::of(b"hello");
        let err = s.ingest(&b"hellO"[..], Some((&good, 5))).unwrap_err();
        assert!(err.to_string().contains(good.as_str()), "{err}");
        assert!(!s.has_blob(&good));
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);
        assert_eq!(s.put_blob(b"hello").unwrap(), good);
        assert!(s.has_blob(&good));
    }
}
