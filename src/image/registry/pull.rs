//! `pull`: resolve a reference to a manifest (picking a platform from an
//! index), fetch its config and layers in parallel, verify everything, and
//! tag it in the store.

use super::{
    bytes_msg, error_chain, manifest_accept, msg, read_limited, short, Limited, ProgressFn,
    Registry, Repo, ATTEMPTS, BACKOFF_START, MEDIA_DOCKER_LIST, MEDIA_OCI_INDEX,
    PARALLEL_TRANSFERS,
};
use crate::image::store::{digest_of, MAX_METADATA_BLOB};
use crate::image::{ImageError, ImageStore};
use crate::model::{Digest, ImageRef};
use futures_util::StreamExt;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use sha2::{Digest as _, Sha256};
use std::path::Path;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// Progress is reported at most this often (bytes).
const PROGRESS_STEP: u64 = 512 * 1024;

/// A `--platform` value that is not `os[/arch[/variant]]`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {0:?}: expected os[/arch[/variant]]")]
pub struct PlatformError(pub String);

/// `os/arch[/variant]`, as `--platform` takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

const WASM_OS: [&str; 3] = ["wasi", "wasip1", "wasip2"];
const WASM_ARCH: [&str; 2] = ["wasm", "wasm32"];

impl Platform {
    pub fn parse(s: &str) -> Result<Self, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        let (Some(os), false) = (
            parts.first(),
            parts.iter().any(|p| p.is_empty()) || parts.len() > 3,
        ) else {
            return Err(PlatformError(s.to_string()));
        };
        let os = os.to_ascii_lowercase();
        let default_arch = if WASM_OS.contains(&os.as_str()) {
            "wasm"
        } else {
            host_arch()
        };
        Ok(Platform {
            arch: parts
                .get(1)
                .map_or(default_arch, |a| a)
                .to_ascii_lowercase(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
            os,
        })
    }

    fn is_wasm(&self) -> bool {
        WASM_OS.contains(&self.os.as_str()) || WASM_ARCH.contains(&self.arch.as_str())
    }

    /// How well an index entry fits: exact > Wasm family > none.
    fn score(&self, p: &oci_spec::image::Platform) -> u8 {
        let os = p.os().to_string();
        let arch = p.architecture().to_string();
        let variant_ok = self
            .variant
            .as_ref()
            .is_none_or(|v| p.variant().as_deref() == Some(v.as_str()));
        if os == self.os && arch == self.arch && variant_ok {
            return 2;
        }
        if self.is_wasm() && WASM_OS.contains(&os.as_str()) && WASM_ARCH.contains(&arch.as_str()) {
            return 1;
        }
        0
    }
}

/// The host's architecture as OCI names it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "x86" => "386",
        other => other,
    }
}

/// Pick the manifest for `want` from an index. With no platform asked for:
/// `linux/amd64` (the host's Linux arch), else a Wasm entry, which runs
/// anywhere.
pub fn select_platform(index: &ImageIndex, want: Option<&Platform>) -> Option<Descriptor> {
    let score =
        |want: &Platform, d: &Descriptor| d.platform().as_ref().map_or(0, |p| want.score(p));
    let best = |want: &Platform| {
        index
            .manifests()
            .iter()
            .filter(|d| score(want, d) > 0)
            .max_by_key(|d| score(want, d))
            .cloned()
    };
    match want {
        Some(w) => best(w),
        None => best(&Platform {
            os: "linux".into(),
            arch: host_arch().into(),
            variant: None,
        })
        .or_else(|| {
            best(&Platform {
                os: "wasip2".into(),
                arch: "wasm".into(),
                variant: None,
            })
        }),
    }
}

/// Pull `r` into the store; returns the image id. Mirrors are tried first
/// for docker.io names, and skipped on any failure.
pub async fn pull(
    reg: &Registry,
    store: &Arc<ImageStore>,
    r: &ImageRef,
    platform: Option<&Platform>,
    creds: Option<&super::Credentials>,
    progress: ProgressFn<'_>,
) -> Result<Digest, ImageError> {
    let reference = reference_of(r);
    at_endpoints(reg, r, creds, |repo| {
        let reference = &reference;
        async move { pull_from(reg, store, &repo, r, reference, platform, progress).await }
    })
    .await
}

/// `r`'s digest, or its tag (`latest` when it names neither), as the
/// registry's manifest URL takes it.
fn reference_of(r: &ImageRef) -> String {
    match (&r.digest, &r.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".into(),
    }
}

/// `f` at each endpoint that serves `r` in turn, until one answers: the
/// mirrors of a docker.io name first, each skipped on any failure, then
/// the registry itself, whose answer is final.
async fn at_endpoints<T, F, Fut>(
    reg: &Registry,
    r: &ImageRef,
    creds: Option<&super::Credentials>,
    mut f: F,
) -> Result<T, ImageError>
where
    F: FnMut(Repo) -> Fut,
    Fut: std::future::Future<Output = Result<T, ImageError>>,
{
    let repos = reg.repos(r, creds);
    let last = repos.len() - 1;
    for (i, repo) in repos.into_iter().enumerate() {
        let registry = repo.registry.clone();
        match f(repo).await {
            Ok(v) => return Ok(v),
            Err(e) if i < last => tracing::warn!("mirror {registry} failed for {r}: {e}"),
            Err(e) => return Err(e),
        }
    }
    unreachable!("the registry itself is always the last endpoint")
}

async fn pull_from(
    reg: &Registry,
    store: &Arc<ImageStore>,
    repo: &Repo,
    r: &ImageRef,
    reference: &str,
    platform: Option<&Platform>,
    progress: ProgressFn<'_>,
) -> Result<Digest, ImageError> {
    let (mut bytes, mut media) = fetch_manifest(reg, repo, r, reference).await?;
    let from_index = media == MEDIA_OCI_INDEX || media == MEDIA_DOCKER_LIST;
    let shown = r.tag.clone().unwrap_or_else(|| reference.to_string());
    progress(msg(
        format!("Pulling from {}", r.familiar_repository()),
        Some(&shown),
    ));
    if media == MEDIA_OCI_INDEX || media == MEDIA_DOCKER_LIST {
        let index: ImageIndex =
            serde_json::from_slice(&bytes).map_err(|e| invalid(r, format!("bad index: {e}")))?;
        let desc = select_platform(&index, platform).ok_or_else(|| {
            ImageError::RemoteNotFound(format!(
                "no matching manifest for {} in the manifest list entries of {r}",
                platform.map_or_else(
                    || format!("linux/{} or wasi/wasm", host_arch()),
                    |p| { format!("{}/{}", p.os, p.arch) }
                )
            ))
        })?;
        (bytes, media) = fetch_manifest(reg, repo, r, desc.digest().as_ref()).await?;
    }
    let manifest_digest = Digest::of(&bytes);
    let manifest: ImageManifest =
        serde_json::from_slice(&bytes).map_err(|e| invalid(r, format!("bad manifest: {e}")))?;
    // Until the manifest is in the index, GC must not take these blobs.
    let mut needed = vec![
        manifest_digest.clone(),
        digest_of(manifest.config().digest())?,
    ];
    for l in manifest.layers() {
        needed.push(digest_of(l.digest())?);
    }
    let _pin = store.pin(&needed);
    // The config is read whole later: one declared larger than that limit
    // is refused before a byte of it is fetched.
    if manifest.config().size() > MAX_METADATA_BLOB {
        return Err(invalid(
            r,
            format!(
                "its config is {} bytes, over {MAX_METADATA_BLOB}",
                manifest.config().size()
            ),
        ));
    }
    // The config first: it is small, and says whether the platform fits.
    fetch_blob(reg, store, repo, manifest.config().clone(), progress).await?;
    // An index entry's platform is authoritative; a lone manifest's is
    // its config's.
    if let (Some(want), false) = (platform, from_index) {
        check_platform(store, r, &manifest, want)?;
    }
    let blobs = manifest.layers().clone();
    for b in manifest.layers() {
        let d = digest_of(b.digest())?;
        progress(msg(
            if store.has_blob(&d) {
                "Already exists"
            } else {
                "Pulling fs layer"
            },
            Some(short(&d)),
        ));
    }
    let results: Vec<Result<(), ImageError>> = futures_util::stream::iter(blobs)
        .map(|desc| fetch_blob(reg, store, repo, desc, progress))
        .buffer_unordered(PARALLEL_TRANSFERS)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    let tag_ref = match (&r.digest, &r.tag) {
        (Some(_), _) => r.clone(),
        (None, Some(_)) => r.clone(),
        (None, None) => r.with_tag("latest"),
    };
    let before = store
        .resolve(&tag_ref.to_string())
        .ok()
        .map(|i| i.manifest_digest);
    let size = bytes.len() as u64;
    let media_type = MediaType::from(media.as_str());
    let (s, d, tr) = (store.clone(), manifest_digest.clone(), tag_ref.clone());
    tokio::task::spawn_blocking(move || {
        s.ingest(&bytes[..], Some((&d, size)))?;
        s.add_manifest(&d, size, media_type, Some(&tr))
    })
    .await
    .map_err(super::task_failed)??;
    progress(msg(format!("Digest: {manifest_digest}"), None));
    progress(msg(
        if before.as_ref() == Some(&manifest_digest) {
            format!("Status: Image is up to date for {}", tag_ref.familiar())
        } else {
            format!("Status: Downloaded newer image for {}", tag_ref.familiar())
        },
        None,
    ));
    Ok(digest_of(manifest.config().digest())?)
}

/// A single-platform image asked for with `--platform` must be that
/// platform (Wasm artifacts and wasi images fit any Wasm platform).
fn check_platform(
    store: &ImageStore,
    r: &ImageRef,
    manifest: &ImageManifest,
    want: &Platform,
) -> Result<(), ImageError> {
    let config_digest = digest_of(manifest.config().digest())?;
    let cfg: serde_json::Value = store.read_json_blob(&config_digest, "image config")?;
    let os = cfg["os"].as_str().unwrap_or_default().to_string();
    let arch = cfg["architecture"].as_str().unwrap_or_default().to_string();
    let is_wasm_config = manifest.config().media_type().to_string() == super::MEDIA_WASM_CONFIG;
    let fits = (os == want.os && arch == want.arch)
        || (want.is_wasm()
            && (is_wasm_config
                || WASM_OS.contains(&os.as_str())
                || WASM_ARCH.contains(&arch.as_str())));
    if fits {
        return Ok(());
    }
    Err(ImageError::RemoteNotFound(format!(
        "image {} is for {os}/{arch}, not the requested platform {}/{}",
        r.familiar(),
        want.os,
        want.arch
    )))
}

fn invalid(r: &ImageRef, reason: String) -> ImageError {
    ImageError::Invalid {
        name: r.to_string(),
        reason,
    }
}

/// GET a manifest; verified against its digest when asked by digest.
/// Returns the body and its media type.
async fn fetch_manifest(
    reg: &Registry,
    repo: &Repo,
    r: &ImageRef,
    reference: &str,
) -> Result<(Vec<u8>, String), ImageError> {
    let url = format!("{}/v2/{}/manifests/{reference}", repo.base, repo.name);
    let resp = reg
        .send(repo, &pull_scope(repo), |c| {
            c.get(&url).headers(manifest_accept())
        })
        .await?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(ImageError::RemoteNotFound(format!(
            "manifest for {}:{reference} not found: manifest unknown",
            r.familiar_repository()
        )));
    }
    if !status.is_success() {
        return Err(ImageError::Registry {
            registry: repo.registry.clone(),
            reason: format!("manifest {reference} of {}: {status}", repo.name),
        });
    }
    let header_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
    let body = read_limited(resp, MAX_METADATA_BLOB)
        .await
        .map_err(|e| match e {
            Limited::Over => invalid(
                r,
                format!("manifest {reference} is over {MAX_METADATA_BLOB} bytes"),
            ),
            Limited::Failed(e) => ImageError::Registry {
                registry: repo.registry.clone(),
                reason: format!("reading manifest {reference}: {e}"),
            },
        })?;
    if let Ok(want) = Digest::parse(reference) {
        let got = Digest::of(&body);
        if got != want {
            return Err(ImageError::Corrupt {
                digest: want.to_string(),
                reason: format!("{} sent a manifest with digest {got}", repo.registry),
            });
        }
    }
    let in_body = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("mediaType")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        });
    // The body's own mediaType wins over a generic Content-Type.
    let media = in_body
        .or(header_type.filter(|t| t.starts_with("application/vnd.")))
        .unwrap_or_else(|| super::MEDIA_OCI_MANIFEST.to_string());
    Ok((body, media))
}

pub(crate) fn pull_scope(repo: &Repo) -> String {
    format!("repository:{}:pull", repo.name)
}

/// Fetch one blob into the store unless it is there: resumable, verified,
/// retried.
async fn fetch_blob(
    reg: &Registry,
    store: &Arc<ImageStore>,
    repo: &Repo,
    desc: Descriptor,
    progress: ProgressFn<'_>,
) -> Result<(), ImageError> {
    let d = digest_of(desc.digest())?;
    let size = desc.size();
    if store.has_blob(&d) {
        return Ok(());
    }
    let lock = reg.blob_lock(&d);
    let _held = lock.lock().await;
    if store.has_blob(&d) {
        return Ok(());
    }
    let partial = store.partial_path(&d);
    let mut delay = BACKOFF_START;
    let mut attempt = 1;
    loop {
        match download(reg, repo, &d, size, &partial, progress).await {
            Ok(()) => break,
            Err(Step::Retry(why)) if attempt < ATTEMPTS => {
                tracing::debug!("blob {d}: {why}; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(Step::Retry(why)) => {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(ImageError::Registry {
                    registry: repo.registry.clone(),
                    reason: format!("blob {d} of {}: {why}", repo.name),
                });
            }
            Err(Step::Fail(e)) => {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(e);
            }
        }
    }
    let s = store.clone();
    let (p, dd) = (partial.clone(), d.clone());
    tokio::task::spawn_blocking(move || s.commit_partial(&p, &dd))
        .await
        .map_err(super::task_failed)??;
    progress(msg("Pull complete", Some(short(&d))));
    Ok(())
}

enum Step {
    Retry(String),
    Fail(ImageError),
}

/// One attempt: continue the partial file from where it ends.
async fn download(
    reg: &Registry,
    repo: &Repo,
    d: &Digest,
    size: u64,
    partial: &Path,
    progress: ProgressFn<'_>,
) -> Result<(), Step> {
    let io = |e: std::io::Error| Step::Fail(ImageError::io(partial)(e));
    let mut have = tokio::fs::metadata(partial).await.map_or(0, |m| m.len());
    if have > size {
        tokio::fs::remove_file(partial).await.map_err(io)?;
        have = 0;
    }
    // Hash what an earlier attempt (or an earlier ketchd) left.
    let mut hasher = {
        let p = partial.to_path_buf();
        tokio::task::spawn_blocking(move || -> std::io::Result<Sha256> {
            let mut h = Sha256::new();
            if have > 0 {
                let mut f = std::fs::File::open(&p)?;
                std::io::copy(&mut std::io::Read::take(&mut f, have), &mut h)?;
            }
            Ok(h)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        .map_err(io)?
    };
    let url = format!("{}/v2/{}/blobs/{d}", repo.base, repo.name);
    let resp = reg
        .send(repo, &pull_scope(repo), |c| {
            let b = c.get(&url);
            if have > 0 {
                b.header(reqwest::header::RANGE, format!("bytes={have}-"))
            } else {
                b
            }
        })
        .await
        .map_err(Step::Fail)?;
    let status = resp.status();
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(partial)
        .await
        .map_err(io)?;
    match status {
        reqwest::StatusCode::PARTIAL_CONTENT if have > 0 => {}
        reqwest::StatusCode::OK => {
            if have > 0 {
                // The server ignored the range: start over.
                file.set_len(0).await.map_err(io)?;
                hasher = Sha256::new();
                have = 0;
            }
        }
        reqwest::StatusCode::RANGE_NOT_SATISFIABLE if have == size => {}
        reqwest::StatusCode::NOT_FOUND => {
            return Err(Step::Fail(ImageError::RemoteNotFound(format!(
                "blob {d} of {} not found on {}",
                repo.name, repo.registry
            ))))
        }
        s => {
            let _ = file.set_len(0).await;
            return Err(Step::Retry(format!("registry answered {s}")));
        }
    }
    let mut n = have;
    let mut reported = n;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                file.flush().await.map_err(io)?;
                return Err(Step::Retry(format!(
                    "transfer broke after {n} of {size} bytes: {}",
                    error_chain(&e)
                )));
            }
        };
        n += chunk.len() as u64;
        if n > size {
            return Err(Step::Fail(ImageError::Corrupt {
                digest: d.to_string(),
                reason: format!("{} sent more than its {size} bytes", repo.registry),
            }));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(io)?;
        if n - reported >= PROGRESS_STEP || n == size {
            reported = n;
            progress(bytes_msg("Downloading", short(d), n, size));
        }
    }
    file.flush().await.map_err(io)?;
    if n < size {
        return Err(Step::Retry(format!(
            "{} sent only {n} of {size} bytes",
            repo.registry
        )));
    }
    let got = Digest::from_hasher(hasher);
    if &got != d {
        return Err(Step::Fail(ImageError::Corrupt {
            digest: d.to_string(),
            reason: format!("{} sent content with digest {got}", repo.registry),
        }));
    }
    Ok(())
}

/// `GET /distribution/{name}/json`: what the registry holds for `r`
/// without pulling it: the manifest (or index) descriptor, and the
/// platforms it serves (an index's entries, or a lone manifest's config).
pub async fn inspect(
    reg: &Registry,
    r: &ImageRef,
    creds: Option<&super::Credentials>,
) -> Result<serde_json::Value, ImageError> {
    let reference = reference_of(r);
    at_endpoints(reg, r, creds, |repo| {
        let reference = &reference;
        async move { inspect_at(reg, &repo, r, reference).await }
    })
    .await
}

async fn inspect_at(
    reg: &Registry,
    repo: &Repo,
    r: &ImageRef,
    reference: &str,
) -> Result<serde_json::Value, ImageError> {
    let (bytes, media) = fetch_manifest(reg, repo, r, reference).await?;
    let descriptor = serde_json::json!({
        "mediaType": media,
        "digest": Digest::of(&bytes).to_string(),
        "size": bytes.len(),
    });
    let platform = |os: &str, arch: &str, variant: Option<&str>| {
        let mut p = serde_json::json!({"architecture": arch, "os": os});
        if let Some(v) = variant.filter(|v| !v.is_empty()) {
            p["variant"] = serde_json::json!(v);
        }
        p
    };
    let platforms: Vec<serde_json::Value> =
        if media == MEDIA_OCI_INDEX || media == MEDIA_DOCKER_LIST {
            let index: ImageIndex = serde_json::from_slice(&bytes)
                .map_err(|e| invalid(r, format!("bad index: {e}")))?;
            index
                .manifests()
                .iter()
                .filter_map(|d| d.platform().as_ref())
                .map(|p| {
                    platform(
                        &p.os().to_string(),
                        &p.architecture().to_string(),
                        p.variant().as_deref(),
                    )
                })
                .collect()
        } else {
            let manifest: ImageManifest = serde_json::from_slice(&bytes)
                .map_err(|e| invalid(r, format!("bad manifest: {e}")))?;
            let config = manifest.config();
            if config.size() > MAX_METADATA_BLOB {
                return Err(invalid(r, "its config is too large".into()));
            }
            let digest = digest_of(config.digest())?;
            let url = format!("{}/v2/{}/blobs/{digest}", repo.base, repo.name);
            let resp = reg.send(repo, &pull_scope(repo), |c| c.get(&url)).await?;
            if !resp.status().is_success() {
                return Err(ImageError::Registry {
                    registry: repo.registry.clone(),
                    reason: format!("config {digest} of {}: {}", repo.name, resp.status()),
                });
            }
            let body = read_limited(resp, MAX_METADATA_BLOB)
                .await
                .map_err(|_| invalid(r, format!("reading its config {digest}")))?;
            if Digest::of(&body) != digest {
                return Err(ImageError::Corrupt {
                    digest: digest.to_string(),
                    reason: format!("{} sent a config with another digest", repo.registry),
                });
            }
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            vec![platform(
                v["os"].as_str().unwrap_or(""),
                v["architecture"].as_str().unwrap_or(""),
                v["variant"].as_str(),
            )]
        };
    Ok(serde_json::json!({"Descriptor": descriptor, "Platforms": platforms}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[(&str, &str)]) -> ImageIndex {
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .enumerate()
            .map(|(i, (os, arch))| {
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": format!("sha256:{:064x}", i),
                    "size": 1,
                    "platform": {"os": os, "architecture": arch}
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({"schemaVersion": 2, "manifests": manifests}))
            .unwrap()
    }

    fn picked(i: &ImageIndex, want: Option<&str>) -> Option<String> {
        let p = want.map(|w| Platform::parse(w).unwrap());
        select_platform(i, p.as_ref()).map(|d| {
            let p = d.platform().clone().unwrap();
            format!("{}/{}", p.os(), p.architecture())
        })
    }

    #[test]
    fn picks_platforms_from_an_index() {
        let i = index(&[("linux", "arm64"), ("linux", "amd64"), ("wasip2", "wasm")]);
        assert_eq!(
            picked(&i, None).as_deref(),
            Some(format!("linux/{}", host_arch())).as_deref()
        );
        assert_eq!(
            picked(&i, Some("linux/arm64")).as_deref(),
            Some("linux/arm64")
        );
        assert_eq!(
            picked(&i, Some("wasi/wasm")).as_deref(),
            Some("wasip2/wasm")
        );
        assert_eq!(picked(&i, Some("wasip2")).as_deref(), Some("wasip2/wasm"));
        assert_eq!(picked(&i, Some("windows/amd64")), None);
        // With no Linux entry, a Wasm one runs anywhere.
        let w = index(&[("wasip1", "wasm32")]);
        assert_eq!(picked(&w, None).as_deref(), Some("wasip1/wasm32"));
    }

    #[test]
    fn platform_strings() {
        assert_eq!(
            Platform::parse("linux/arm64/v8"),
            Ok(Platform {
                os: "linux".into(),
                arch: "arm64".into(),
                variant: Some("v8".into())
            })
        );
        assert_eq!(Platform::parse("wasi").unwrap().arch, "wasm");
        assert!(Platform::parse("linux//x").is_err());
        assert!(Platform::parse("a/b/c/d").is_err());
    }
}
