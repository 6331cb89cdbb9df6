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
