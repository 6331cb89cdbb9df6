//! The end of a build: the last stage's config and manifest written to
//! the store, and its tags.

use super::stage::Stage;
use super::BuildError;
use crate::image::store::oci_digest;
use crate::image::{canonical_json, ImageError, ImageStore};
use crate::model::{Digest, ImageRef};
use oci_spec::image::{Descriptor, ImageManifestBuilder, MediaType};

/// The `created` time of everything a build writes: `SOURCE_DATE_EPOCH`,
/// else the epoch, so the same context builds the same image id.
pub(super) fn created_time() -> String {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Write the stage as an image; returns its id (the config digest).
pub(super) fn commit(
    store: &ImageStore,
    stage: &Stage,
    tags: &[ImageRef],
) -> Result<Digest, ImageError> {
    let config = stage.config(&created_time())?;
    write_image(store, stage, config, tags)
}

/// Write `config` (the stage's, perhaps amended) and its manifest, and tag.
fn write_image(
    store: &ImageStore,
    stage: &Stage,
    config: oci_spec::image::ImageConfiguration,
    tags: &[ImageRef],
) -> Result<Digest, ImageError> {
    let config_bytes = match &stage.healthcheck {
        // Docker's image config carries the health check; OCI's has no
        // field for it.
        Some(hc) => {
            let mut v = serde_json::to_value(&config).map_err(ImageError::Encode)?;
            if let Some(c) = v.get_mut("config").and_then(|c| c.as_object_mut()) {
                c.insert(
                    "Healthcheck".into(),
                    serde_json::to_value(hc).map_err(ImageError::Encode)?,
                );
            }
            canonical_json(&v)?
        }
        None => canonical_json(&config)?,
    };
    let config_digest = store.put_blob(&config_bytes)?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(
            MediaType::ImageConfig,
            config_bytes.len() as u64,
            oci_digest(&config_digest)?,
        ))
        .layers(stage.layers.clone())
        .build()
        .map_err(BuildError::Config)?;
    let manifest_bytes = canonical_json(&manifest)?;
    let manifest_digest = store.put_blob(&manifest_bytes)?;
    if tags.is_empty() {
        store.add_manifest(
            &manifest_digest,
            manifest_bytes.len() as u64,
            MediaType::ImageManifest,
            None,
        )?;
    }
    for t in tags {
        store.add_manifest(
            &manifest_digest,
            manifest_bytes.len() as u64,
            MediaType::ImageManifest,
            Some(t),
        )?;
    }
    Ok(config_digest)
}

/// What `commit` makes an image of: the container's changes and config.
pub struct CommitRequest<'a> {
    /// The container's image.
    pub image: &'a crate::image::Image,
    /// The container's config (its env, command, labels, …).
    pub config: &'a crate::api::types::ContainerConfig,
    /// Its changes, as a layer tar read from its start.
    pub layer: std::fs::File,
    /// Dockerfile instructions applied over the config (`--change`).
    pub changes: &'a [String],
    pub comment: &'a str,
    pub author: &'a str,
    /// The history entry's `created_by`: the container's command.
    pub created_by: String,
    pub tag: Option<&'a ImageRef>,
}

/// The instructions `commit --change` takes, as Docker's.
const CHANGES: &[&str] = &[
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "LABEL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
    "HEALTHCHECK",
];

/// `commit`: the container's changes as a new layer over its image, its
/// config (with `--change` applied) as the image config; made now, tagged
/// if asked. Returns the image id.
pub fn commit_container(store: &ImageStore, req: CommitRequest) -> Result<Digest, ImageError> {
    let img = req.image;
    let cfg = req.config;
    let mut stage = Stage::of_image(img);
    stage.history = img
        .config
        .history()
        .iter()
        .flatten()
        .map(|h| {
            (
                h.created_by().clone().unwrap_or_default(),
                h.empty_layer().unwrap_or(false),
            )
        })
        .collect();
    stage.env = cfg
        .env
        .iter()
        .flatten()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    stage.cmd = cfg.cmd.clone();
    stage.entrypoint = cfg.entrypoint.clone();
    stage.workdir = cfg.working_dir.clone();
    stage.user = cfg.user.clone();
    stage.labels = cfg.labels.clone().unwrap_or_default();
    stage.exposed = cfg
        .exposed_ports
        .iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect();
    stage.volumes = cfg
        .volumes
        .iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect();
    stage.stop_signal = cfg.stop_signal.clone();
    stage.healthcheck = cfg.healthcheck.clone();
    apply_changes(&mut stage, req.changes)?;
    add_layer(
        store,
        stage,
        req.layer,
        Made {
            created_by: &req.created_by,
            comment: req.comment,
            author: req.author,
            tag: req.tag,
        },
    )
}

/// `import`: a root filesystem tar (plain or compressed) as a one-layer
/// Linux image of the host's architecture, with `--change` applied. The
/// tar is read under the layer policy and written again entry by entry,
/// so the stored layer is only what the policy passed.
pub fn import_rootfs(
    store: &ImageStore,
    src: impl std::io::Read,
    changes: &[String],
    comment: &str,
    source: &str,
    tag: Option<&ImageRef>,
) -> Result<Digest, ImageError> {
    use crate::confine::archive::{self, EntryKind, Kind, Limits, Policy};
    let policy = Policy {
        kind: Kind::Layer,
        limits: Limits::daemon(),
    };
    // Written again into a spool file: an import may be larger than
    // ketchd's memory.
    let mut out = tar::Builder::new(crate::image::layer::spool(store)?);
    let bad = |e: std::io::Error| ImageError::Invalid {
        name: source.to_string(),
        reason: e.to_string(),
    };
    archive::entries(src, &policy, &mut |e, data| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(e.mtime);
        h.set_size(0);
        let path = e.path.to_path_buf();
        let io = |r: std::io::Result<()>| r.map_err(crate::confine::ConfineError::io(&e.path));
        match &e.kind {
            EntryKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                io(out.append_data(&mut h, &path, std::io::empty()))?;
            }
            EntryKind::File => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(e.size);
                io(out.append_data(&mut h, &path, data))?;
            }
            EntryKind::Symlink(t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                io(out.append_link(&mut h, &path, t))?;
            }
            EntryKind::HardLink(t) => {
                h.set_entry_type(tar::EntryType::Link);
                io(out.append_link(&mut h, &path, t.to_path_buf()))?;
            }
            EntryKind::Char(ma, mi) | EntryKind::Block(ma, mi) => {
                h.set_entry_type(if matches!(e.kind, EntryKind::Block(..)) {
                    tar::EntryType::Block
                } else {
                    tar::EntryType::Char
                });
                io(h.set_device_major(*ma))?;
                io(h.set_device_minor(*mi))?;
                io(out.append_data(&mut h, &path, std::io::empty()))?;
            }
            EntryKind::Fifo => {
                h.set_entry_type(tar::EntryType::Fifo);
                io(out.append_data(&mut h, &path, std::io::empty()))?;
            }
            // A root filesystem hides nothing below it.
            EntryKind::Whiteout | EntryKind::Opaque => {}
        }
        Ok(())
    })
    .map_err(|e| ImageError::Invalid {
        name: source.to_string(),
        reason: e.to_string(),
    })?;
    let mut layer = out.into_inner().map_err(bad)?;
    std::io::Seek::rewind(&mut layer).map_err(bad)?;
    let mut stage = Stage {
        os: "linux".into(),
        arch: crate::image::registry::host_arch().into(),
        ..Default::default()
    };
    apply_changes(&mut stage, changes)?;
    add_layer(
        store,
        stage,
        layer,
        Made {
            created_by: &format!("Imported from {source}"),
            comment,
            author: "",
            tag,
        },
    )
}

/// Who made a committed or imported image's one new layer, and how.
struct Made<'a> {
    created_by: &'a str,
    comment: &'a str,
    author: &'a str,
    tag: Option<&'a ImageRef>,
}

/// `--change` instructions applied over a stage's config.
fn apply_changes(stage: &mut Stage, changes: &[String]) -> Result<(), ImageError> {
    for change in changes {
        let keyword = change
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        if !CHANGES.contains(&keyword.as_str()) {
            return Err(ImageError::Invalid {
                name: change.clone(),
                reason: format!("{keyword} is not a valid change command"),
            });
        }
        let steps =
            super::dockerfile::parse(&format!("FROM scratch\n{change}\n")).map_err(|e| {
                ImageError::Invalid {
                    name: change.clone(),
                    reason: e.to_string(),
                }
            })?;
        for s in steps.iter().skip(1) {
            stage.apply(&s.inst).map_err(|e| ImageError::Invalid {
                name: change.clone(),
                reason: e.to_string(),
            })?;
        }
    }
    Ok(())
}

/// Add `layer` to the stage and write it as an image made now.
fn add_layer(
    store: &ImageStore,
    mut stage: Stage,
    layer: impl std::io::Read,
    made: Made,
) -> Result<Digest, ImageError> {
    let built = crate::image::layer::write_tar(store, layer)?;
    stage.layers.push(Descriptor::new(
        MediaType::ImageLayerGzip,
        built.size,
        oci_digest(&built.digest)?,
    ));
    stage.diff_ids.push(built.diff_id.to_string());
    stage.history.push((made.created_by.to_string(), false));
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mut config = stage.config(&now)?;
    if !made.author.is_empty() {
        config.set_author(Some(made.author.to_string()));
    }
    if let Some(last) = config.history_mut().as_mut().and_then(|h| h.last_mut()) {
        if !made.comment.is_empty() {
            last.set_comment(Some(made.comment.to_string()));
        }
        if !made.author.is_empty() {
            last.set_author(Some(made.author.to_string()));
        }
    }
    let tags: Vec<ImageRef> = made.tag.into_iter().cloned().collect();
    write_image(store, &stage, config, &tags)
}
