//! The OCI distribution client: pull and push of images against registries
//! (OCI and Docker schema 2 manifests and indexes, CNCF Wasm artifacts),
//! with Bearer-token and Basic auth.
//!
//! Transport: plain HTTP for loopback hosts and `--insecure-registry`
//! entries, HTTPS with the system's roots otherwise. `docker.io` names go
//! to `registry-1.docker.io`, or to the `--registry-mirror`s first.
//!
//! Every blob is written to the store's ingest area under a name fixed by
//! its digest, verified against digest and size, and only then renamed into
//! place; an interrupted download resumes from what is there (HTTP Range).
//!
//! [`transport`] sends requests (retries, auth, redirects), [`token`]
//! talks to token services, [`pull`] and [`push`] move images.

pub mod auth;
mod pull;
mod push;
#[cfg(test)]
mod tests;
mod token;
mod transport;

pub use auth::{AuthHeaderError, Credentials};
pub use pull::{host_arch, inspect, pull, select_platform, Platform, PlatformError};
pub use push::push;

pub(crate) use transport::{error_chain, read_limited, Limited};

use super::ImageError;
use crate::api::types::JsonMessage;
use crate::model::ImageRef;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// CNCF TAG-Runtime Wasm OCI artifact: the config and layer media types.
pub const MEDIA_WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
pub const MEDIA_WASM_LAYER: &str = "application/wasm";

/// Docker Hub's API host, for `docker.io` names.
const DOCKER_HUB: &str = "registry-1.docker.io";
/// Attempts per request before a transient failure is final.
const ATTEMPTS: u32 = 5;
const BACKOFF_START: Duration = Duration::from_millis(200);
/// Blobs fetched or pushed at once.
pub const PARALLEL_TRANSFERS: usize = 4;
/// A token service's answer larger than this is refused: an endless one
/// would otherwise grow ketchd without bound.
pub const MAX_TOKEN_BODY: u64 = 1 << 20;
/// Of an error answer, at most this much is read (for the message).
pub const MAX_ERROR_BODY: u64 = 64 << 10;
/// Redirects followed for one request: a registry that redirects in a
/// loop must not keep ketchd asking forever.
const MAX_REDIRECTS: usize = 10;

#[derive(Clone, Debug, Default)]
pub struct RegistryConfig {
    /// Hosts (`host[:port]`) spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// Base URLs tried first for `docker.io` names.
    pub mirrors: Vec<String>,
}

/// A progress message for the client (Docker's JSON progress lines).
pub type ProgressFn<'a> = &'a (dyn Fn(JsonMessage) + Send + Sync);

pub struct Registry {
    http: reqwest::Client,
    cfg: RegistryConfig,
    /// `Authorization` values that worked: Bearer tokens by (registry and
    /// identity, scope), Basic credentials by (registry and identity, [`BASIC`]).
    tokens: Mutex<HashMap<(String, String), String>>,
    /// One download per blob at a time (they share the partial file).
    blob_locks: Mutex<HashMap<crate::model::Digest, Arc<tokio::sync::Mutex<()>>>>,
}

/// One repository on one registry endpoint, with the credentials to use.
#[derive(Clone)]
pub(crate) struct Repo {
    /// `http://127.0.0.1:5000` or `https://registry-1.docker.io`.
    pub base: String,
    /// The name inside the registry (`library/busybox`).
    pub name: String,
    pub creds: Option<Credentials>,
    /// For messages: the registry as the user knows it.
    pub registry: String,
}

impl Registry {
    pub fn new(cfg: RegistryConfig) -> Result<Self, ImageError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("ketch/", env!("CARGO_PKG_VERSION")))
            // Redirects are followed by `execute`, which decides per hop
            // whether credentials go along.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(15))
            // A stalled transfer is retried (and resumed) rather than hung on.
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ImageError::Registry {
                registry: "-".into(),
                reason: format!("http client: {e}"),
            })?;
        Ok(Registry {
            http,
            cfg,
            tokens: Mutex::new(HashMap::new()),
            blob_locks: Mutex::new(HashMap::new()),
        })
    }

    /// Is `host` spoken to over plain HTTP?
    pub fn is_insecure(&self, host: &str) -> bool {
        let bare = host
            .rsplit_once(':')
            .filter(|(h, p)| {
                !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':')
            })
            .map_or(host, |(h, _)| h);
        let bare = bare.trim_start_matches('[').trim_end_matches(']');
        bare == "localhost"
            || bare
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
            || self.cfg.insecure.iter().any(|i| i == host || i == bare)
    }

    /// The endpoints to try for a reference: mirrors first for docker.io.
    pub(crate) fn repos(&self, r: &ImageRef, creds: Option<&Credentials>) -> Vec<Repo> {
        let mut out = Vec::new();
        if r.domain == "docker.io" {
            for m in &self.cfg.mirrors {
                out.push(Repo {
                    base: m.trim_end_matches('/').to_string(),
                    name: r.path.clone(),
                    creds: None,
                    registry: m.clone(),
                });
            }
        }
        let host = if r.domain == "docker.io" {
            DOCKER_HUB
        } else {
            r.domain.as_str()
        };
        let scheme = if self.is_insecure(host) {
            "http"
        } else {
            "https"
        };
        out.push(Repo {
            base: format!("{scheme}://{host}"),
            name: r.path.clone(),
            creds: creds.cloned(),
            registry: r.domain.clone(),
        });
        out
    }

    /// `POST /auth`: check credentials against a registry's `/v2/`.
    pub async fn login(&self, server: &str, creds: &Credentials) -> Result<(), ImageError> {
        let host = normalize_server(server);
        let r = ImageRef::parse(&format!("{host}/x")).map_err(ImageError::from)?;
        // The registry itself is always the last endpoint.
        let Some(repo) = self.repos(&r, Some(creds)).pop() else {
            return Err(ImageError::Registry {
                registry: host,
                reason: "no endpoint".into(),
            });
        };
        let base = repo.base.clone();
        let resp = self
            .send(&repo, "", |c| c.get(format!("{base}/v2/")))
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(ImageError::Registry {
                registry: repo.registry.clone(),
                reason: format!("login answered {}", resp.status()),
            })
        }
    }

    /// The lock for downloading blob `d`. Entries nobody holds are dropped.
    pub(crate) fn blob_lock(&self, d: &crate::model::Digest) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.blob_locks.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, l| Arc::strong_count(l) > 1);
        m.entry(d.clone()).or_default().clone()
    }
}

/// `https://index.docker.io/v1/` and friends are Docker Hub.
pub fn normalize_server(s: &str) -> String {
    let s = s
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let s = s.strip_suffix("/v1").or(s.strip_suffix("/v2")).unwrap_or(s);
    match s {
        "" | "docker.io" | "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        other => other.to_string(),
    }
}

/// A blocking task of a pull or push that panicked or was cancelled.
pub(crate) fn task_failed(e: tokio::task::JoinError) -> ImageError {
    ImageError::Registry {
        registry: "-".into(),
        reason: format!("background task failed: {e}"),
    }
}

/// A progress line: `status`, about blob `id` when given.
pub(crate) fn msg(status: impl Into<String>, id: Option<&str>) -> JsonMessage {
    JsonMessage {
        status: Some(status.into()),
        id: id.map(str::to_string),
        ..Default::default()
    }
}

/// A progress line with bytes done of a blob's total.
pub(crate) fn bytes_msg(status: &str, id: &str, current: u64, total: u64) -> JsonMessage {
    JsonMessage {
        progress_detail: Some(crate::api::types::ProgressDetail { current, total }),
        ..msg(status, Some(id))
    }
}

/// The short id progress lines use for a blob.
pub(crate) fn short(d: &crate::model::Digest) -> &str {
    &d.hex()[..12]
}

/// Accept header for manifest requests.
pub(crate) fn manifest_accept() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        ACCEPT,
        HeaderValue::from_static(concat!(
            "application/vnd.oci.image.manifest.v1+json, ",
            "application/vnd.oci.image.index.v1+json, ",
            "application/vnd.docker.distribution.manifest.v2+json, ",
            "application/vnd.docker.distribution.manifest.list.v2+json"
        )),
    );
    h
}
