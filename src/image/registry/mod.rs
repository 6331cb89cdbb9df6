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

pub mod auth;
mod pull;
mod push;

pub use auth::Credentials;
pub use pull::{pull, select_platform, Platform};
pub use push::push;

use super::ImageError;
use crate::api::types::JsonMessage;
use crate::model::ImageRef;
use auth::Challenge;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE,
    LOCATION, TRANSFER_ENCODING, WWW_AUTHENTICATE,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
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

/// The scope key under which a registry's Basic credentials are cached.
const BASIC: &str = "\0basic";
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

    fn build(
        &self,
        make: &impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<reqwest::Request, SendError> {
        make(&self.http).build().map_err(|e| {
            Fatal(ImageError::Registry {
                registry: "-".into(),
                reason: format!("bad request: {}", error_chain(&e)),
            })
        })
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

    /// Send a request built by `make` (called again for each retry), with
    /// auth: a cached token, else the challenge the registry answers with.
    /// Transient failures (connection errors, 429, 5xx) are retried with
    /// exponential backoff.
    pub(crate) async fn send(
        &self,
        repo: &Repo,
        scope: &str,
        make: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, ImageError> {
        let mut delay = BACKOFF_START;
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            match self.send_once(repo, scope, &make).await {
                Ok(resp) if is_transient(resp.status()) && attempt < ATTEMPTS => {
                    last = format!("{} answered {}", repo.registry, resp.status());
                }
                Ok(resp) => return Ok(resp),
                Err(Transient(e)) if attempt < ATTEMPTS => last = e,
                Err(Transient(e)) => {
                    return Err(ImageError::Registry {
                        registry: repo.registry.clone(),
                        reason: e,
                    })
                }
                Err(Fatal(e)) => return Err(e),
            }
            tracing::debug!("retrying in {delay:?}: {last}");
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        Err(ImageError::Registry {
            registry: repo.registry.clone(),
            reason: last,
        })
    }

    async fn send_once(
        &self,
        repo: &Repo,
        scope: &str,
        make: &impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, SendError> {
        // Cached auth is per registry *and* per identity: one client's
        // token must never serve another client's request.
        let host = format!("{}#{}", repo.base, identity(repo.creds.as_ref()));
        let key = (host.clone(), scope.to_string());
        let cached = {
            let t = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
            t.get(&key)
                .or_else(|| t.get(&(host.clone(), BASIC.to_string())))
                .cloned()
        };
        // Credentials go only to the registry's own origin: an upload
        // Location, a redirect, anything else a registry names on another
        // origin gets the request without them.
        let own = url::Url::parse(&repo.base)
            .map(|u| u.origin())
            .map_err(|e| {
                Fatal(ImageError::Registry {
                    registry: repo.registry.clone(),
                    reason: format!("bad registry address {:?}: {e}", repo.base),
                })
            })?;
        let cached_value = cached.as_deref().map(header_value).transpose()?;
        let resp = self
            .execute(repo, make, cached_value.as_ref().map(|a| (&own, a)))
            .await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        if resp.url().origin() != own {
            return Err(Fatal(unauthorized(
                repo,
                &format!(
                    "{} asks for credentials, which go only to {}",
                    resp.url().origin().ascii_serialization(),
                    repo.base
                ),
            )));
        }
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(auth::parse_challenge);
        let (authorization, cache_key) = match challenge {
            Some(Challenge::Basic) => match &repo.creds {
                Some(c) => (basic(c), (host, BASIC.to_string())),
                None => return Err(Fatal(unauthorized(repo, "credentials are required"))),
            },
            Some(Challenge::Bearer {
                realm,
                service,
                scope: asked,
            }) => {
                let scope = if scope.is_empty() {
                    asked.unwrap_or_default()
                } else {
                    scope.to_string()
                };
                let token = self
                    .fetch_token(repo, &realm, service.as_deref(), &scope)
                    .await?;
                (format!("Bearer {token}"), key)
            }
            None => {
                return Err(Fatal(unauthorized(
                    repo,
                    if cached.is_some() {
                        "the token was refused"
                    } else {
                        "no supported authentication challenge"
                    },
                )))
            }
        };
        let value = header_value(&authorization)?;
        let resp = self.execute(repo, make, Some((&own, &value))).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(Fatal(unauthorized(repo, "the credentials were refused")));
        }
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(cache_key, authorization);
        Ok(resp)
    }

    /// Execute the request `make` builds (called again for each hop, so a
    /// 307 re-sends the body), following redirects here: `auth` is the
    /// `Authorization` value and the one origin (scheme, host, port) it
    /// may go to, and it is set on each hop to that origin and on no other.
    ///
    /// reqwest's own following is not used: it strips `Authorization` when
    /// a hop's host or port differs from the hop before, but rebuilds every
    /// hop from the first request's headers, so a second hop inside a
    /// foreign origin got the credentials back.
    async fn execute(
        &self,
        repo: &Repo,
        make: &impl Fn(&reqwest::Client) -> RequestBuilder,
        auth: Option<(&url::Origin, &HeaderValue)>,
    ) -> Result<Response, SendError> {
        let mut req = self.build(make)?;
        let mut hops = 0;
        let mut as_get = false;
        loop {
            let origin = req.url().origin();
            req.headers_mut().remove(AUTHORIZATION);
            if let Some((_, value)) = auth.filter(|(o, _)| **o == origin) {
                req.headers_mut().insert(AUTHORIZATION, value.clone());
            }
            let (from, method) = (req.url().clone(), req.method().clone());
            let resp = self
                .http
                .execute(req)
                .await
                .map_err(|e| Transient(error_chain(&e)))?;
            let status = resp.status();
            let follows = matches!(
                status,
                StatusCode::MOVED_PERMANENTLY
                    | StatusCode::FOUND
                    | StatusCode::SEE_OTHER
                    | StatusCode::TEMPORARY_REDIRECT
                    | StatusCode::PERMANENT_REDIRECT
            );
            let Some(location) = resp.headers().get(LOCATION).filter(|_| follows) else {
                return Ok(resp);
            };
            let refused = |reason: String| {
                Fatal(ImageError::Registry {
                    registry: repo.registry.clone(),
                    reason,
                })
            };
            let to = location
                .to_str()
                .ok()
                .and_then(|l| from.join(l).ok())
                .ok_or_else(|| {
                    refused(format!("{from} redirects to a bad Location {location:?}"))
                })?;
            hops += 1;
            check_redirect(&from, &to, hops).map_err(refused)?;
            as_get |= becomes_get(status, &method);
            req = self.build(make)?;
            *req.url_mut() = to;
            if as_get {
                *req.method_mut() = Method::GET;
                *req.body_mut() = None;
                for h in [
                    CONTENT_TYPE,
                    CONTENT_LENGTH,
                    CONTENT_ENCODING,
                    TRANSFER_ENCODING,
                ] {
                    req.headers_mut().remove(h);
                }
            }
        }
    }

    async fn fetch_token(
        &self,
        repo: &Repo,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, SendError> {
        let mut url = url::Url::parse(realm).map_err(|e| {
            Fatal(unauthorized(
                repo,
                &format!("bad token realm {realm:?}: {e}"),
            ))
        })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scope.split(' ').filter(|s| !s.is_empty()) {
                q.append_pair("scope", s);
            }
        }
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Fatal(unauthorized(
                repo,
                &format!("the token realm {realm:?} is not an http(s) URL"),
            )));
        }
        if url.scheme() != "https" && repo.base.starts_with("https:") && repo.creds.is_some() {
            return Err(Fatal(unauthorized(
                repo,
                &format!("refusing to send credentials to the plain-http token realm {realm:?}"),
            )));
        }
        // Basic credentials go to the realm the registry named (as Docker
        // sends them), and to no other origin it may redirect to.
        let realm_origin = url.origin();
        let creds = repo
            .creds
            .as_ref()
            .map(|c| header_value(&basic(c)))
            .transpose()?;
        let resp = self
            .execute(
                repo,
                &|c: &reqwest::Client| c.get(url.clone()),
                creds.as_ref().map(|v| (&realm_origin, v)),
            )
            .await?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Fatal(unauthorized(
                repo,
                "the token service refused the credentials",
            )));
        }
        if is_transient(status) {
            return Err(Transient(format!("token service answered {status}")));
        }
        #[derive(serde::Deserialize)]
        struct Token {
            #[serde(default)]
            token: String,
            #[serde(default)]
            access_token: String,
        }
        let body = read_limited(resp, MAX_TOKEN_BODY)
            .await
            .map_err(|e| match e {
                Limited::Over => Fatal(ImageError::Registry {
                    registry: repo.registry.clone(),
                    reason: format!("the token service's answer is over {MAX_TOKEN_BODY} bytes"),
                }),
                Limited::Failed(e) => Transient(e),
            })?;
        let t: Token = serde_json::from_slice(&body).map_err(|e| {
            Fatal(ImageError::Registry {
                registry: repo.registry.clone(),
                reason: format!("token service answered {status} with no token: {e}"),
            })
        })?;
        let token = if t.token.is_empty() {
            t.access_token
        } else {
            t.token
        };
        if token.is_empty() {
            return Err(Fatal(unauthorized(
                repo,
                "the token service sent an empty token",
            )));
        }
        Ok(token)
    }

    /// `POST /auth`: check credentials against a registry's `/v2/`.
    pub async fn login(&self, server: &str, creds: &Credentials) -> Result<(), ImageError> {
        let host = normalize_server(server);
        let r = ImageRef::parse(&format!("{host}/x")).map_err(ImageError::from)?;
        let repo = self
            .repos(&r, Some(creds))
            .pop()
            .expect("the registry itself");
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

/// May the `hop`th redirect of a request, from `from` to `to`, be
/// followed? Only to http(s), never from https down to http (where a
/// manifest asked for by tag could be swapped), at most [`MAX_REDIRECTS`].
fn check_redirect(from: &url::Url, to: &url::Url, hop: usize) -> Result<(), String> {
    if hop > MAX_REDIRECTS {
        return Err(format!(
            "more than {MAX_REDIRECTS} redirects (the last from {from} to {to})"
        ));
    }
    match (from.scheme(), to.scheme()) {
        (_, "https") | ("http", "http") => Ok(()),
        ("https", "http") => Err(format!(
            "refusing a redirect from https down to plain http: {from} to {to}"
        )),
        (_, other) => Err(format!(
            "refusing a redirect to a {other}: URL: {from} to {to}"
        )),
    }
}

/// Does a `status` redirect turn a `method` request into a GET without a
/// body (RFC 9110 15.4, as browsers and reqwest do)?
fn becomes_get(status: StatusCode, method: &Method) -> bool {
    match status {
        StatusCode::SEE_OTHER => *method != Method::HEAD,
        StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND => *method == Method::POST,
        _ => false,
    }
}

/// An `Authorization` value, marked sensitive (kept out of debug output).
fn header_value(v: &str) -> Result<HeaderValue, SendError> {
    let mut h = HeaderValue::from_str(v).map_err(|e| {
        Fatal(ImageError::Registry {
            registry: "-".into(),
            reason: format!("bad authorization header: {e}"),
        })
    })?;
    h.set_sensitive(true);
    Ok(h)
}

/// Why a bounded read stopped.
pub(crate) enum Limited {
    Over,
    Failed(String),
}

/// Read a response body, failing as soon as it passes `max` bytes (it is
/// read chunk by chunk, so an endless body costs at most `max` of memory).
/// Every body ketch reads whole from a registry is read through this.
pub(crate) async fn read_limited(mut resp: Response, max: u64) -> Result<Vec<u8>, Limited> {
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(Limited::Over);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| Limited::Failed(error_chain(&e)))?
    {
        if (body.len() + chunk.len()) as u64 > max {
            return Err(Limited::Over);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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

enum SendError {
    Transient(String),
    Fatal(ImageError),
}
use SendError::{Fatal, Transient};

/// A stable, non-reversible name for a set of credentials.
fn identity(c: Option<&Credentials>) -> String {
    use sha2::Digest as _;
    match c {
        None => "anonymous".into(),
        Some(c) => hex::encode(sha2::Sha256::digest(
            format!("{}\0{}\0{}", c.username, c.password, c.identity_token).as_bytes(),
        )),
    }
}

fn is_transient(s: StatusCode) -> bool {
    s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error()
}

fn basic(c: &Credentials) -> String {
    use base64::Engine as _;
    let secret = if c.identity_token.is_empty() {
        &c.password
    } else {
        &c.identity_token
    };
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{secret}", c.username))
    )
}

fn unauthorized(repo: &Repo, why: &str) -> ImageError {
    ImageError::Unauthorized(format!(
        "{}: unauthorized for {}: {why}",
        repo.registry, repo.name
    ))
}

/// An error with its causes, for messages.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_listed_hosts_are_plain_http() {
        let r = Registry::new(RegistryConfig {
            insecure: vec!["reg.lan:5000".into()],
            mirrors: vec![],
        })
        .unwrap();
        for h in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "reg.lan:5000",
        ] {
            assert!(r.is_insecure(h), "{h}");
        }
        for h in [
            "registry-1.docker.io",
            "reg.lan:5001",
            "10.0.0.1:5000",
            "ghcr.io",
        ] {
            assert!(!r.is_insecure(h), "{h}");
        }
    }

    #[test]
    fn docker_hub_names_go_to_mirrors_first() {
        let r = Registry::new(RegistryConfig {
            insecure: vec![],
            mirrors: vec!["http://127.0.0.1:5001/".into()],
        })
        .unwrap();
        let repos = r.repos(&ImageRef::parse("busybox").unwrap(), None);
        assert_eq!(repos[0].base, "http://127.0.0.1:5001");
        assert_eq!(repos[0].name, "library/busybox");
        assert_eq!(repos[1].base, "https://registry-1.docker.io");
        let repos = r.repos(&ImageRef::parse("127.0.0.1:5000/a/b:1").unwrap(), None);
        assert_eq!(repos.len(), 1);
        assert_eq!(
            (repos[0].base.as_str(), repos[0].name.as_str()),
            ("http://127.0.0.1:5000", "a/b")
        );
    }

    #[test]
    fn cached_auth_is_keyed_by_identity() {
        let c = |u: &str, p: &str| Credentials {
            username: u.into(),
            password: p.into(),
            ..Default::default()
        };
        let (anon, ada, ada2, bo) = (
            identity(None),
            identity(Some(&c("ada", "pw"))),
            identity(Some(&c("ada", "other"))),
            identity(Some(&c("bo", "pw"))),
        );
        assert!(anon != ada && ada != ada2 && ada != bo);
        assert_eq!(ada, identity(Some(&c("ada", "pw"))));
        assert!(!ada.contains("pw"));
    }

    #[test]
    fn server_names_normalise() {
        assert_eq!(normalize_server("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_server(""), "docker.io");
        assert_eq!(normalize_server("http://127.0.0.1:5000/"), "127.0.0.1:5000");
    }

    /// A hostile registry on loopback: each connection's request head is
    /// recorded and answered by `answer` (path, head) with raw bytes, then
    /// a body streamed in 64 KiB chunks up to `stream` bytes (`streamed`
    /// counts what the client let it write).
    struct Hostile {
        port: u16,
        heads: Arc<Mutex<Vec<String>>>,
        streamed: Arc<std::sync::atomic::AtomicU64>,
    }

    type Answer = Arc<dyn Fn(&str, &str) -> (Vec<u8>, u64) + Send + Sync>;

    async fn hostile(answer: Answer) -> Hostile {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let streamed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (seen, count) = (heads.clone(), streamed.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let (answer, seen, count) = (answer.clone(), seen.clone(), count.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut b = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                        match s.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&b[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    seen.lock().unwrap().push(head.clone());
                    let (bytes, stream) = answer(&path, &head);
                    let _ = s.write_all(&bytes).await;
                    let chunk = vec![b'a'; 64 << 10];
                    let mut sent = 0;
                    while sent < stream {
                        if s.write_all(&chunk).await.is_err() {
                            break;
                        }
                        sent += chunk.len() as u64;
                        count.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                });
            }
        });
        Hostile {
            port,
            heads,
            streamed,
        }
    }

    fn no_authorization(heads: &[String]) {
        for h in heads {
            assert!(
                !h.to_ascii_lowercase().contains("authorization"),
                "leaked: {h}"
            );
        }
    }

    fn reply(status: &str, headers: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn repo_at(port: u16) -> Repo {
        Repo {
            base: format!("http://127.0.0.1:{port}"),
            name: "app".into(),
            creds: Some(Credentials {
                username: "ada".into(),
                password: "secret".into(),
                ..Default::default()
            }),
            registry: format!("127.0.0.1:{port}"),
        }
    }

    #[tokio::test]
    async fn an_endless_token_answer_is_cut_off_at_its_limit() {
        // No Content-Length: the body ends only when the server stops, here
        // after 64 MiB.
        let tokens = hostile(Arc::new(|_: &str, _: &str| {
            let head = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"token\":\"";
            (head.to_vec(), 64 << 20)
        }))
        .await;
        let realm = format!("http://127.0.0.1:{}/token", tokens.port);
        let reg_srv = hostile(Arc::new(move |_: &str, _: &str| {
            let h = format!("WWW-Authenticate: Bearer realm=\"{realm}\",service=\"x\"\r\n");
            (reply("401 Unauthorized", &h, ""), 0)
        }))
        .await;
        let reg = Registry::new(RegistryConfig::default()).unwrap();
        let repo = repo_at(reg_srv.port);
        let url = format!("{}/v2/app/manifests/1", repo.base);
        let t0 = std::time::Instant::now();
        let err = reg
            .send(&repo, "repository:app:pull", |c| c.get(&url))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("over {MAX_TOKEN_BODY} bytes")),
            "{err}"
        );
        assert!(t0.elapsed() < Duration::from_secs(20));
        // Reading stopped at the limit: what the server got to write is
        // the limit plus the sockets' buffers, far from its 64 MiB.
        let streamed = tokens.streamed.load(std::sync::atomic::Ordering::Relaxed);
        assert!(streamed < 32 << 20, "{streamed} bytes streamed");
        assert_eq!(tokens.heads.lock().unwrap().len(), 1, "not retried");
    }

    #[tokio::test]
    async fn credentials_never_reach_another_origin() {
        // Another port of the same host: a blob redirected there goes one
        // more hop inside it (reqwest's own following put Authorization
        // back on that second hop).
        let other = hostile(Arc::new(|path: &str, _: &str| match path {
            "/hop" => (
                reply("307 Temporary Redirect", "Location: /stolen\r\n", ""),
                0,
            ),
            _ => (reply("200 OK", "", "blob"), 0),
        }))
        .await;
        let to = other.port;
        let reg_srv = hostile(Arc::new(move |path: &str, head: &str| {
            if !head.to_ascii_lowercase().contains("authorization: basic") {
                let h = "WWW-Authenticate: Basic realm=\"r\"\r\n";
                return (reply("401 Unauthorized", h, ""), 0);
            }
            if path.ends_with("/blobs/sha256:00") {
                let h = format!("Location: http://127.0.0.1:{to}/hop\r\n");
                return (reply("307 Temporary Redirect", &h, ""), 0);
            }
            if path.ends_with("/blobs/sha256:11") {
                // A redirect within the registry keeps the credentials.
                let h = "Location: /v2/app/blobs/own\r\n";
                return (reply("302 Found", h, ""), 0);
            }
            let body = if path.ends_with("/own") { "own" } else { "{}" };
            (reply("200 OK", "", body), 0)
        }))
        .await;
        let reg = Registry::new(RegistryConfig::default()).unwrap();
        let repo = repo_at(reg_srv.port);
        // A login caches the Basic credentials for the registry.
        let v2 = format!("{}/v2/", repo.base);
        let r = reg.send(&repo, "", |c| c.get(&v2)).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let scope = "repository:app:pull";
        let blob = format!("{}/v2/app/blobs/sha256:00", repo.base);
        let r = reg.send(&repo, scope, |c| c.get(&blob)).await.unwrap();
        assert_eq!(r.text().await.unwrap(), "blob");
        let own = format!("{}/v2/app/blobs/sha256:11", repo.base);
        let r = reg.send(&repo, scope, |c| c.get(&own)).await.unwrap();
        assert_eq!(r.text().await.unwrap(), "own");
        // An upload Location on another origin (a push follows it itself).
        let loc = format!("http://127.0.0.1:{to}/upload");
        let _ = reg
            .send(&repo, "repository:app:pull,push", |c| c.put(&loc))
            .await;
        let heads = other.heads.lock().unwrap().clone();
        assert_eq!(heads.len(), 3, "{heads:?}");
        no_authorization(&heads);
        assert!(reg_srv
            .heads
            .lock()
            .unwrap()
            .iter()
            .any(|h| h.contains("/own") && h.contains("Basic")));
    }

    #[tokio::test]
    async fn basic_credentials_go_to_the_token_realm_and_no_further() {
        let moved = hostile(Arc::new(|_: &str, _: &str| {
            (reply("200 OK", "", r#"{"token":"t0k"}"#), 0)
        }))
        .await;
        let to = moved.port;
        let realm = hostile(Arc::new(move |_: &str, _: &str| {
            let h = format!("Location: http://127.0.0.1:{to}/token2\r\n");
            (reply("307 Temporary Redirect", &h, ""), 0)
        }))
        .await;
        let challenge = format!(
            "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{}/token\"\r\n",
            realm.port
        );
        let reg_srv = hostile(Arc::new(move |_: &str, head: &str| {
            if head.contains("Bearer t0k") {
                (reply("200 OK", "", "{}"), 0)
            } else {
                (reply("401 Unauthorized", &challenge, ""), 0)
            }
        }))
        .await;
        let reg = Registry::new(RegistryConfig::default()).unwrap();
        let repo = repo_at(reg_srv.port);
        let url = format!("{}/v2/app/manifests/1", repo.base);
        let r = reg
            .send(&repo, "repository:app:pull", |c| c.get(&url))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(realm.heads.lock().unwrap()[0].contains("Basic"));
        no_authorization(&moved.heads.lock().unwrap());
    }

    #[tokio::test]
    async fn redirects_go_only_to_http_and_https() {
        let reg_srv = hostile(Arc::new(|_: &str, _: &str| {
            (
                reply("302 Found", "Location: file:///etc/passwd\r\n", ""),
                0,
            )
        }))
        .await;
        let reg = Registry::new(RegistryConfig::default()).unwrap();
        let mut repo = repo_at(reg_srv.port);
        repo.creds = None;
        let url = format!("{}/v2/app/blobs/sha256:00", repo.base);
        let err = reg
            .send(&repo, "", |c| c.get(&url))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("refusing a redirect to a file: URL")
                && err.contains("file:///etc/passwd"),
            "{err}"
        );
        assert_eq!(reg_srv.heads.lock().unwrap().len(), 1, "not retried");
    }

    #[tokio::test]
    async fn a_redirect_loop_ends_after_the_limit() {
        let reg_srv = hostile(Arc::new(|_: &str, _: &str| {
            (reply("302 Found", "Location: /again\r\n", ""), 0)
        }))
        .await;
        let reg = Registry::new(RegistryConfig::default()).unwrap();
        let mut repo = repo_at(reg_srv.port);
        repo.creds = None;
        let url = format!("{}/v2/", repo.base);
        let err = reg
            .send(&repo, "", |c| c.get(&url))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("more than {MAX_REDIRECTS} redirects")),
            "{err}"
        );
        assert_eq!(reg_srv.heads.lock().unwrap().len(), MAX_REDIRECTS + 1);
    }

    #[test]
    fn redirects_are_checked_hop_by_hop() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        let (http, https) = (u("http://reg:5000/v2/"), u("https://reg/v2/"));
        assert!(check_redirect(&https, &u("https://cdn/b"), 1).is_ok());
        assert!(check_redirect(&http, &u("http://cdn/b"), 1).is_ok());
        assert!(check_redirect(&http, &u("https://cdn/b"), MAX_REDIRECTS).is_ok());
        let down = check_redirect(&https, &u("http://reg/v2/"), 1).unwrap_err();
        assert!(down.contains("down to plain http"), "{down}");
        let file = check_redirect(&http, &u("file:///etc/passwd"), 1).unwrap_err();
        assert!(file.contains("file:///etc/passwd"), "{file}");
        assert!(check_redirect(&https, &u("data:,x"), 1).is_err());
        let many = check_redirect(&https, &u("https://cdn/b"), MAX_REDIRECTS + 1).unwrap_err();
        assert!(many.contains("more than"), "{many}");
        // A 303 (or a 301/302 after a POST) goes on as a GET without a body.
        assert!(becomes_get(StatusCode::SEE_OTHER, &Method::PUT));
        assert!(!becomes_get(StatusCode::SEE_OTHER, &Method::HEAD));
        assert!(becomes_get(StatusCode::FOUND, &Method::POST));
        assert!(!becomes_get(StatusCode::FOUND, &Method::GET));
        assert!(!becomes_get(StatusCode::TEMPORARY_REDIRECT, &Method::POST));
    }

    #[test]
    fn origins_are_scheme_host_and_port() {
        let o = |s: &str| url::Url::parse(s).unwrap().origin();
        let base = o("http://127.0.0.1:5000/v2/");
        assert!(base == o("http://127.0.0.1:5000/x"));
        assert!(base != o("http://127.0.0.1:5001/v2/"));
        assert!(base != o("https://127.0.0.1:5000/v2/"));
        assert!(base != o("http://localhost:5000/v2/"));
        assert!(o("file:///etc/passwd") != o("file:///etc/passwd"));
    }
}
