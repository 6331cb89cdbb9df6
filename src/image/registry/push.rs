//! `push`: upload an image's blobs (skipping those the registry has,
//! mounting those another repository of it has) and then its manifest.
//! With `artifact`, a Wasm image goes up in the CNCF Wasm artifact form.

use super::{
    bytes_msg, msg, short, ProgressFn, Registry, Repo, MEDIA_OCI_MANIFEST, MEDIA_WASM_CONFIG,
    MEDIA_WASM_LAYER, PARALLEL_TRANSFERS,
};
use crate::api::types::JsonMessage;
use crate::image::layer::{read_image_file, ANNOTATION_TITLE};
use crate::image::store::{digest_of, oci_digest};
use crate::image::{canonical_json, Image, ImageError, ImageStore};
use crate::model::{Digest, ImageRef};
use futures_util::StreamExt;
use oci_spec::image::{Descriptor, MediaType};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;
use std::sync::Arc;

/// Push `img` as `target`. Returns the manifest digest.
pub async fn push(
    reg: &Registry,
    store: &Arc<ImageStore>,
    img: &Image,
    target: &ImageRef,
    creds: Option<&super::Credentials>,
    artifact: bool,
    progress: ProgressFn<'_>,
) -> Result<Digest, ImageError> {
    // The registry itself is always the last endpoint.
    let Some(repo) = reg.repos(target, creds).pop() else {
        return Err(ImageError::Registry {
            registry: target.domain.clone(),
            reason: "no endpoint".into(),
        });
    };
    progress(msg(
        format!(
            "The push refers to repository [{}]",
            target.familiar_repository()
        ),
        None,
    ));
    let (manifest_bytes, media, blobs) = if artifact {
        let (s, i) = (store.clone(), img.clone());
        tokio::task::spawn_blocking(move || wasm_artifact(&s, &i))
            .await
            .map_err(super::task_failed)??
    } else {
        let bytes = store.read_blob(&img.manifest_digest)?;
        let media = img
            .manifest
            .media_type()
            .as_ref()
            .map_or(MEDIA_OCI_MANIFEST.to_string(), |m| m.to_string());
        let mut blobs = img.manifest.layers().clone();
        blobs.push(img.manifest.config().clone());
        (bytes, media, blobs)
    };
    // An artifact's blobs are in no index entry: keep them from GC.
    let mut pinned = vec![Digest::of(&manifest_bytes)];
    for b in &blobs {
        pinned.push(digest_of(b.digest())?);
    }
    let _pin = store.pin(&pinned);
    // Other repositories of this registry that hold the image: blobs can
    // be mounted from them instead of uploaded.
    let sources: Vec<String> = img
        .refs
        .iter()
        .filter(|r| r.domain == target.domain && r.path != target.path)
        .map(|r| r.path.clone())
        .collect();
    let results: Vec<Result<(), ImageError>> = futures_util::stream::iter(blobs)
        .map(|d| push_blob(reg, store, &repo, d, &sources, progress))
        .buffer_unordered(PARALLEL_TRANSFERS)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>, _>>()?;

    let reference = match (&target.tag, &target.digest) {
        (Some(t), _) => t.clone(),
        (None, Some(d)) => d.to_string(),
        (None, None) => "latest".into(),
    };
    let url = format!("{}/v2/{}/manifests/{reference}", repo.base, repo.name);
    let size = manifest_bytes.len();
    let body = bytes::Bytes::from(manifest_bytes);
    let resp = reg
        .send(&repo, &push_scope(&repo, &[]), |c| {
            c.put(&url)
                .header(CONTENT_TYPE, media.as_str())
                .body(body.clone())
        })
        .await?;
    if !resp.status().is_success() {
        return Err(refused(&repo, &format!("manifest {reference}"), resp).await);
    }
    let digest = Digest::of(&body);
    progress(msg(
        format!("{reference}: digest: {digest} size: {size}"),
        None,
    ));
    progress(JsonMessage {
        aux: Some(
            serde_json::json!({"Tag": reference, "Digest": digest.to_string(), "Size": size}),
        ),
        ..Default::default()
    });
    Ok(digest)
}

fn push_scope(repo: &Repo, mount_from: &[&str]) -> String {
    let mut s = format!("repository:{}:pull,push", repo.name);
    for m in mount_from {
        s.push_str(&format!(" repository:{m}:pull"));
    }
    s
}

async fn refused(repo: &Repo, what: &str, resp: reqwest::Response) -> ImageError {
    let status = resp.status();
    let text = super::read_limited(resp, super::MAX_ERROR_BODY)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let detail = text.trim();
    ImageError::Registry {
        registry: repo.registry.clone(),
        reason: format!(
            "{what} of {} was refused: {status}{}{detail}",
            repo.name,
            if detail.is_empty() { "" } else { ": " }
        ),
    }
}

async fn push_blob(
    reg: &Registry,
    store: &Arc<ImageStore>,
    repo: &Repo,
    desc: Descriptor,
    sources: &[String],
    progress: ProgressFn<'_>,
) -> Result<(), ImageError> {
    let d = digest_of(desc.digest())?;
    let id = short(&d);
    let base = &repo.base;
    let head = format!("{base}/v2/{}/blobs/{d}", repo.name);
    let resp = reg
        .send(repo, &push_scope(repo, &[]), |c| c.head(&head))
        .await?;
    if resp.status() == StatusCode::OK {
        progress(msg("Layer already exists", Some(id)));
        return Ok(());
    }
    let mut location = None;
    for src in sources {
        let url = format!(
            "{base}/v2/{}/blobs/uploads/?mount={d}&from={src}",
            repo.name
        );
        let resp = reg
            .send(repo, &push_scope(repo, &[src]), |c| c.post(&url))
            .await?;
        match resp.status() {
            StatusCode::CREATED => {
                progress(msg(format!("Mounted from {src}"), Some(id)));
                return Ok(());
            }
            StatusCode::ACCEPTED => {
                location = resp.headers().get(LOCATION).cloned();
                break;
            }
            _ => {}
        }
    }
    let location = match location {
        Some(l) => l,
        None => {
            let url = format!("{base}/v2/{}/blobs/uploads/", repo.name);
            let resp = reg
                .send(repo, &push_scope(repo, &[]), |c| c.post(&url))
                .await?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(refused(repo, &format!("upload of blob {d}"), resp).await);
            }
            resp.headers()
                .get(LOCATION)
                .cloned()
                .ok_or_else(|| ImageError::Registry {
                    registry: repo.registry.clone(),
                    reason: format!("upload of blob {d}: no Location in the answer"),
                })?
        }
    };
    let location = location.to_str().unwrap_or_default();
    let mut put = url::Url::parse(base)
        .and_then(|b| b.join(location))
        .map_err(|e| ImageError::Registry {
            registry: repo.registry.clone(),
            reason: format!("upload of blob {d}: bad Location {location:?}: {e}"),
        })?;
    put.query_pairs_mut().append_pair("digest", d.as_str());
    let path = store.blob_path(&d);
    let size = desc.size();
    progress(bytes_msg("Pushing", id, 0, size));
    let resp = reg
        .send(repo, &push_scope(repo, &[]), |c| {
            // A fresh handle per attempt: each starts at the beginning.
            let body = match std::fs::File::open(&path) {
                Ok(f) => reqwest::Body::from(tokio::fs::File::from_std(f)),
                Err(_) => reqwest::Body::from(Vec::new()),
            };
            c.put(put.clone())
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, size)
                .body(body)
        })
        .await
        .map_err(|e| match e {
            ImageError::Registry { registry, reason } => ImageError::Registry {
                registry,
                reason: format!("upload of blob {d}: {reason}"),
            },
            e => e,
        })?;
    if resp.status() != StatusCode::CREATED {
        return Err(refused(repo, &format!("upload of blob {d}"), resp).await);
    }
    progress(msg("Pushed", Some(id)));
    Ok(())
}

/// Re-express a Wasm image as a CNCF Wasm artifact: its entrypoint module
/// as one `application/wasm` layer and a `application/vnd.wasm.config.v0+json`
/// config. The new blobs are stored locally. Returns the manifest bytes,
/// its media type and the blobs it refers to.
fn wasm_artifact(
    store: &ImageStore,
    img: &Image,
) -> Result<(Vec<u8>, String, Vec<Descriptor>), ImageError> {
    let name = img
        .refs
        .first()
        .map_or_else(|| img.id.to_string(), |r| r.familiar());
    let cfg = img.config.config().clone().unwrap_or_default();
    let entry = cfg
        .entrypoint()
        .iter()
        .flatten()
        .chain(cfg.cmd().iter().flatten())
        .next()
        .cloned()
        .ok_or_else(|| ImageError::Invalid {
            name: name.clone(),
            reason: "no ENTRYPOINT or CMD names its Wasm module".into(),
        })?;
    let workdir = cfg.working_dir().clone().unwrap_or_else(|| "/".into());
    let path = if entry.starts_with('/') {
        entry.clone()
    } else {
        format!("{workdir}/{entry}")
    };
    let module = read_image_file(store, &img.manifest, &path)?
        .filter(|b| b.starts_with(b"\0asm"))
        .ok_or_else(|| ImageError::Invalid {
            name: name.clone(),
            reason: format!("entrypoint {path} is not a WebAssembly module in the image"),
        })?;
    let component = module.len() >= 8 && module[6..8] == [1, 0];
    let layer_digest = store.put_blob(&module)?;
    let title = path.rsplit('/').next().unwrap_or("module.wasm").to_string();
    let layer = serde_json::json!({
        "mediaType": MEDIA_WASM_LAYER,
        "digest": layer_digest.to_string(),
        "size": module.len(),
        "annotations": {ANNOTATION_TITLE: title},
    });
    let config = serde_json::json!({
        "created": img.config.created().clone().unwrap_or_else(|| "1970-01-01T00:00:00Z".into()),
        "author": img.config.author().clone().unwrap_or_default(),
        "architecture": "wasm",
        "os": if component { "wasip2" } else { "wasip1" },
        "layerDigests": [layer_digest.to_string()],
    });
    let config_bytes = canonical_json(&config)?;
    let config_digest = store.put_blob(&config_bytes)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "config": {
            "mediaType": MEDIA_WASM_CONFIG,
            "digest": config_digest.to_string(),
            "size": config_bytes.len(),
        },
        "layers": [layer],
    });
    let manifest_bytes = canonical_json(&manifest)?;
    store.put_blob(&manifest_bytes)?;
    let layer: Descriptor = serde_json::from_value(layer).map_err(|e| ImageError::Invalid {
        name: "wasm artifact layer".into(),
        reason: e.to_string(),
    })?;
    let config = Descriptor::new(
        MediaType::Other(MEDIA_WASM_CONFIG.into()),
        config_bytes.len() as u64,
        oci_digest(&config_digest)?,
    );
    Ok((
        manifest_bytes,
        MEDIA_OCI_MANIFEST.into(),
        vec![layer, config],
    ))
}
