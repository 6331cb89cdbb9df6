//! OCI archive tars for `save` and `load`.
//!
//! `save` writes an OCI image layout (plus Docker's `manifest.json`, so
//! `docker load` reads it too). `load` accepts that, or Docker's legacy
//! `docker save` format. Every file in the tar is treated as hostile: paths
//! are used only as lookup keys, never as file names, and each blob is
//! digest-verified on the way into the store.

use super::store::{
    oci_digest, ImageStore, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, MAX_METADATA_BLOB,
};
use super::{canonical_json, Image, ImageError};
use crate::model::{Digest, ImageRef};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, ImageManifestBuilder, MediaType};
use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};

/// Write `images` (each with the names to record) as one archive.
pub fn save(
    store: &ImageStore,
    images: &[(Image, Vec<ImageRef>)],
    w: impl Write,
) -> Result<(), ImageError> {
    let io_err = |e: std::io::Error| ImageError::Io {
        path: "archive".into(),
        source: e,
    };
    let mut tar = tar::Builder::new(w);
    tar.mode(tar::HeaderMode::Deterministic);
    let add = |tar: &mut tar::Builder<_>, path: &str, data: &[u8]| -> Result<(), ImageError> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        tar.append_data(&mut h, path, data).map_err(io_err)
    };
    let mut blobs: BTreeSet<Digest> = BTreeSet::new();
    let mut index_entries = Vec::new();
    let mut docker_manifest = Vec::new();
    for (img, names) in images {
        blobs.insert(img.manifest_digest.clone());
        blobs.insert(img.id.clone());
        let mut layer_paths = Vec::new();
        for l in img.manifest.layers() {
            let d = crate::image::store::digest_of(l.digest())?;
            layer_paths.push(format!("blobs/sha256/{}", d.hex()));
            blobs.insert(d);
        }
        let size = std::fs::metadata(store.blob_path(&img.manifest_digest))
            .map_err(io_err)?
            .len();
        let manifest_digest = oci_digest(&img.manifest_digest)?;
        let entry = |r: Option<&ImageRef>| {
            let mut d = Descriptor::new(MediaType::ImageManifest, size, manifest_digest.clone());
            if let Some(r) = r {
                d.set_annotations(Some(HashMap::from([
                    (ANNOTATION_CONTAINERD_NAME.to_string(), r.to_string()),
                    (
                        ANNOTATION_REF_NAME.to_string(),
                        r.tag.clone().unwrap_or_default(),
                    ),
                ])));
            }
            d
        };
        if names.is_empty() {
            index_entries.push(entry(None));
        }
        for r in names {
            index_entries.push(entry(Some(r)));
        }
        docker_manifest.push(serde_json::json!({
            "Config": format!("blobs/sha256/{}", img.id.hex()),
            "RepoTags": names.iter().map(|r| r.familiar()).collect::<Vec<_>>(),
            "Layers": layer_paths,
        }));
    }
    add(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let index = oci_spec::image::ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(index_entries)
        .build()
        .map_err(|e| ImageError::Archive(e.to_string()))?;
    add(&mut tar, "index.json", &canonical_json(&index)?)?;
    add(
        &mut tar,
        "manifest.json",
        &serde_json::to_vec(&docker_manifest).map_err(ImageError::Encode)?,
    )?;
    for d in &blobs {
        let f = store.open_blob(d)?;
        let len = f.metadata().map_err(io_err)?.len();
        let mut h = tar::Header::new_gnu();
        h.set_size(len);
        h.set_mode(0o644);
        h.set_mtime(0);
        tar.append_data(&mut h, format!("blobs/sha256/{}", d.hex()), f)
            .map_err(io_err)?;
    }
    tar.into_inner().map_err(io_err)?.flush().map_err(io_err)?;
    Ok(())
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Import an archive. Returns the names (or ids) loaded, for
/// `Loaded image: ...` lines.
pub fn load(store: &ImageStore, r: impl Read) -> Result<Vec<String>, ImageError> {
    use crate::confine::archive::{self, EntryKind, Kind, Limits, Policy};
    let bad = |m: String| ImageError::Archive(m);
    let mut files: HashMap<String, Digest> = HashMap::new();
    let mut index_json: Option<Vec<u8>> = None;
    let mut manifest_json: Option<Vec<u8>> = None;
    let policy = Policy {
        kind: Kind::Copy,
        limits: Limits::daemon(),
    };
    // Paths are lookup keys only, never file names; every entry is read
    // under the archive limits.
    let mut failed: Option<ImageError> = None;
    let walked = archive::entries(r, &policy, &mut |e, data| {
        if e.kind != EntryKind::File || failed.is_some() {
            return Ok(());
        }
        let path = e.path.to_string();
        let small =
            |data: &mut dyn Read| crate::confine::read_bounded(data, MAX_METADATA_BLOB, &path);
        match path.as_str() {
            "index.json" => index_json = Some(small(data)?),
            "manifest.json" => manifest_json = Some(small(data)?),
            "oci-layout" | "repositories" => {}
            p => {
                let expect = match p
                    .strip_prefix("blobs/sha256/")
                    .map(|h| Digest::parse(&format!("sha256:{h}")))
                    .transpose()
                {
                    Ok(d) => d,
                    Err(_) => {
                        failed = Some(bad(format!("bad blob name {p:?}")));
                        return Ok(());
                    }
                };
                match store.ingest(data, expect.as_ref().map(|d| (d, e.size))) {
                    Ok(d) => {
                        files.insert(p.to_string(), d);
                    }
                    Err(err) => failed = Some(err),
                }
            }
        }
        Ok(())
    });
    if let Some(e) = failed {
        return Err(e);
    }
    walked.map_err(|e| bad(e.to_string()))?;
    let mut loaded = Vec::new();
    if let Some(idx) = index_json {
        let idx: ImageIndex =
            serde_json::from_slice(&idx).map_err(|e| bad(format!("bad index.json: {e}")))?;
        for desc in idx.manifests() {
            let (digest, size, media) = resolve_manifest(store, desc)?;
            check_complete(store, &digest)?;
            let name = super::store::ref_of(desc);
            store.add_manifest(&digest, size, media, name.as_ref())?;
            loaded.push(match name {
                Some(n) => format!("Loaded image: {}", n.familiar()),
                None => format!(
                    "Loaded image ID: {}",
                    store
                        .read_json_blob::<ImageManifest>(&digest, "manifest")?
                        .config()
                        .digest()
                ),
            });
        }
    } else if let Some(m) = manifest_json {
        let entries: Vec<DockerManifestEntry> =
            serde_json::from_slice(&m).map_err(|e| bad(format!("bad manifest.json: {e}")))?;
        for ent in entries {
            let find = |p: &str| {
                files.get(p).cloned().ok_or_else(|| {
                    bad(format!(
                        "manifest.json names {p:?}, which the archive lacks"
                    ))
                })
            };
            let config = find(&ent.config)?;
            let mut layers = Vec::new();
            for l in &ent.layers {
                let d = find(l)?;
                let size = std::fs::metadata(store.blob_path(&d))
                    .map_err(ImageError::io(store.blob_path(&d)))?
                    .len();
                let mut magic = [0u8; 2];
                let gz =
                    store.open_blob(&d)?.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
                layers.push(Descriptor::new(
                    if gz {
                        MediaType::ImageLayerGzip
                    } else {
                        MediaType::ImageLayer
                    },
                    size,
                    oci_digest(&d)?,
                ));
            }
            let csize = std::fs::metadata(store.blob_path(&config))
                .map_err(ImageError::io(store.blob_path(&config)))?
                .len();
            let manifest = ImageManifestBuilder::default()
                .schema_version(2u32)
                .media_type(MediaType::ImageManifest)
                .config(Descriptor::new(
                    MediaType::ImageConfig,
                    csize,
                    oci_digest(&config)?,
                ))
                .layers(layers)
                .build()
                .map_err(|e| bad(e.to_string()))?;
            let mbytes = canonical_json(&manifest)?;
            let md = store.put_blob(&mbytes)?;
            let tags: Vec<ImageRef> = ent
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|t| ImageRef::parse(t))
                .collect::<Result<_, _>>()?;
            if tags.is_empty() {
                store.add_manifest(&md, mbytes.len() as u64, MediaType::ImageManifest, None)?;
                loaded.push(format!("Loaded image ID: {config}"));
            }
            for t in tags {
                store.add_manifest(&md, mbytes.len() as u64, MediaType::ImageManifest, Some(&t))?;
                loaded.push(format!("Loaded image: {}", t.familiar()));
            }
        }
    } else {
        return Err(bad(
            "archive has neither index.json nor manifest.json".into()
        ));
    }
    Ok(loaded)
}

/// Follow a nested index to an image manifest (first entry for this host).
fn resolve_manifest(
    store: &ImageStore,
    desc: &Descriptor,
) -> Result<(Digest, u64, MediaType), ImageError> {
    let mut d = crate::image::store::digest_of(desc.digest())?;
    let mut size = desc.size();
    let mut media = desc.media_type().clone();
    for _ in 0..4 {
        if !matches!(media, MediaType::ImageIndex)
            && media.to_string() != "application/vnd.docker.distribution.manifest.list.v2+json"
        {
            return Ok((d, size, MediaType::ImageManifest));
        }
        let idx: ImageIndex = store.read_json_blob(&d, "image index")?;
        let first = idx
            .manifests()
            .first()
            .ok_or_else(|| ImageError::Archive(format!("image index {d} is empty")))?;
        d = crate::image::store::digest_of(first.digest())?;
        size = first.size();
        media = first.media_type().clone();
    }
    Err(ImageError::Archive("image indexes nest too deeply".into()))
}

fn check_complete(store: &ImageStore, manifest: &Digest) -> Result<(), ImageError> {
    let m: ImageManifest = store.read_json_blob(manifest, "manifest")?;
    for d in std::iter::once(m.config()).chain(m.layers().iter()) {
        let d = crate::image::store::digest_of(d.digest())?;
        if !store.has_blob(&d) {
            return Err(ImageError::Archive(format!(
                "archive lacks blob {d} of manifest {manifest}"
            )));
        }
    }
    Ok(())
}

/// An OCI archive holding one `wasi/wasm` image whose only layer is the
/// module at `path`, named `r`. Built in memory: this is how `ketch run
/// ./file.wasm` hands a local module to the daemon.
pub fn single_module_archive(
    r: &ImageRef,
    path: &str,
    module: &[u8],
) -> Result<Vec<u8>, ImageError> {
    use oci_spec::image::{Arch, ConfigBuilder, ImageConfigurationBuilder, Os, RootFsBuilder};
    let mut layer = super::layer::LayerBuilder::default();
    layer.add(
        path,
        super::layer::Entry::File {
            mode: 0o755,
            data: module.to_vec(),
        },
    );
    let invalid = |reason: String| ImageError::Invalid {
        name: r.to_string(),
        reason,
    };
    let (blob, diff_id) = layer
        .finish()
        .map_err(|e| invalid(format!("its layer: {e}")))?;
    let config = ImageConfigurationBuilder::default()
        .created("1970-01-01T00:00:00Z")
        .architecture(Arch::from("wasm"))
        .os(Os::from("wasi"))
        .config(
            ConfigBuilder::default()
                .entrypoint(vec![path.to_string()])
                .build()
                .map_err(|e| invalid(format!("its config: {e}")))?,
        )
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![diff_id.to_string()])
                .build()
                .map_err(|e| invalid(format!("its rootfs: {e}")))?,
        )
        .build()
        .map_err(|e| invalid(format!("its configuration: {e}")))?;
    let config = canonical_json(&config)?;
    let (cd, ld) = (Digest::of(&config), Digest::of(&blob));
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(
            MediaType::ImageConfig,
            config.len() as u64,
            oci_digest(&cd)?,
        ))
        .layers(vec![Descriptor::new(
            MediaType::ImageLayerGzip,
            blob.len() as u64,
            oci_digest(&ld)?,
        )])
        .build()
        .map_err(|e| invalid(format!("its manifest: {e}")))?;
    let manifest = canonical_json(&manifest)?;
    let md = Digest::of(&manifest);
    let mut entry = Descriptor::new(
        MediaType::ImageManifest,
        manifest.len() as u64,
        oci_digest(&md)?,
    );
    entry.set_annotations(Some(HashMap::from([(
        ANNOTATION_CONTAINERD_NAME.to_string(),
        r.to_string(),
    )])));
    let index = oci_spec::image::ImageIndexBuilder::default()
        .schema_version(2u32)
        .manifests(vec![entry])
        .build()
        .map_err(|e| invalid(format!("its index: {e}")))?;
    let mut tar = tar::Builder::new(Vec::new());
    let index = canonical_json(&index)?;
    let files: [(String, &[u8]); 5] = [
        ("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("index.json".into(), &index),
        (format!("blobs/sha256/{}", md.hex()), &manifest),
        (format!("blobs/sha256/{}", cd.hex()), &config),
        (format!("blobs/sha256/{}", ld.hex()), &blob),
    ];
    for (p, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, &p, data)
            .map_err(|e| invalid(format!("{p}: {e}")))?;
    }
    tar.into_inner()
        .map_err(|e| invalid(format!("its archive: {e}")))
}
