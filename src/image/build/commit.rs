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
    /// Its changes, as a layer tar.
    pub layer: &'a [u8],
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
pub fn commit_container(store: &ImageStore, req: &CommitRequest) -> Result<Digest, ImageError> {
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
    for change in req.changes {
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
    let built = crate::image::layer::write_tar(store, req.layer)?;
    stage.layers.push(Descriptor::new(
        MediaType::ImageLayerGzip,
        built.size,
        oci_digest(&built.digest)?,
    ));
    stage.diff_ids.push(built.diff_id.to_string());
    stage.history.push((req.created_by.clone(), false));
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mut config = stage.config(&now)?;
    if !req.author.is_empty() {
        config.set_author(Some(req.author.to_string()));
    }
    if let Some(last) = config.history_mut().as_mut().and_then(|h| h.last_mut()) {
        if !req.comment.is_empty() {
            last.set_comment(Some(req.comment.to_string()));
        }
        if !req.author.is_empty() {
            last.set_author(Some(req.author.to_string()));
        }
    }
    write_image(
        store,
        &stage,
        config,
        &req.tag.into_iter().cloned().collect::<Vec<_>>(),
    )
}
