//! Sending requests to a registry: retries with backoff, auth from the
//! token cache or the registry's challenge, redirects followed hop by hop
//! with credentials only for their own origin, and bounded body reads.

use super::auth::{self, Challenge};
use super::token::{basic, identity, unauthorized, BASIC};
use super::{Registry, Repo, ATTEMPTS, BACKOFF_START, MAX_REDIRECTS};
use crate::image::ImageError;
use reqwest::header::{
    HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, LOCATION,
    TRANSFER_ENCODING, WWW_AUTHENTICATE,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

impl Registry {
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
    pub(super) async fn execute(
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
            check_redirect(&from, &to, hops).map_err(|e| refused(e.to_string()))?;
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
}

/// A redirect ketch will not follow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum RedirectError {
    #[error("more than {max} redirects (the last from {from} to {to})", max = MAX_REDIRECTS)]
    TooMany { from: String, to: String },
    #[error("refusing a redirect from https down to plain http: {from} to {to}")]
    Downgrade { from: String, to: String },
    #[error("refusing a redirect to a {scheme}: URL: {from} to {to}")]
    Scheme {
        scheme: String,
        from: String,
        to: String,
    },
}

/// May the `hop`th redirect of a request, from `from` to `to`, be
/// followed? Only to http(s), never from https down to http (where a
/// manifest asked for by tag could be swapped), at most [`MAX_REDIRECTS`].
pub(super) fn check_redirect(
    from: &url::Url,
    to: &url::Url,
    hop: usize,
) -> Result<(), RedirectError> {
    let (scheme_from, scheme_to) = (from.scheme(), to.scheme());
    let (from, to) = (from.to_string(), to.to_string());
    if hop > MAX_REDIRECTS {
        return Err(RedirectError::TooMany { from, to });
    }
    match (scheme_from, scheme_to) {
        (_, "https") | ("http", "http") => Ok(()),
        ("https", "http") => Err(RedirectError::Downgrade { from, to }),
        (_, other) => Err(RedirectError::Scheme {
            scheme: other.to_string(),
            from,
            to,
        }),
    }
}

/// Does a `status` redirect turn a `method` request into a GET without a
/// body (RFC 9110 15.4, as browsers and reqwest do)?
pub(super) fn becomes_get(status: StatusCode, method: &Method) -> bool {
    match status {
        StatusCode::SEE_OTHER => *method != Method::HEAD,
        StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND => *method == Method::POST,
        _ => false,
    }
}

/// An `Authorization` value, marked sensitive (kept out of debug output).
pub(super) fn header_value(v: &str) -> Result<HeaderValue, SendError> {
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

/// A failed send: worth retrying, or final.
pub(super) enum SendError {
    Transient(String),
    Fatal(ImageError),
}
pub(super) use SendError::{Fatal, Transient};

/// Answers worth retrying: too many requests, server errors.
pub(super) fn is_transient(s: StatusCode) -> bool {
    s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error()
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
