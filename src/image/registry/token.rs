//! Tokens and credentials: the round trip to a Bearer token service, the
//! Basic `Authorization` value, and the identity under which what worked
//! is cached.

use super::transport::{
    header_value, is_transient, read_limited, Fatal, Limited, SendError, Transient,
};
use super::{Credentials, Registry, Repo, MAX_TOKEN_BODY};
use crate::image::ImageError;
use reqwest::StatusCode;

/// The scope key under which a registry's Basic credentials are cached.
pub(super) const BASIC: &str = "\0basic";

impl Registry {
    pub(super) async fn fetch_token(
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
}

/// A stable, non-reversible name for a set of credentials.
pub(super) fn identity(c: Option<&Credentials>) -> String {
    use sha2::Digest as _;
    match c {
        None => "anonymous".into(),
        Some(c) => hex::encode(sha2::Sha256::digest(
            format!("{}\0{}\0{}", c.username, c.password, c.identity_token).as_bytes(),
        )),
    }
}

/// The Basic `Authorization` value (the identity token, if any, stands in
/// for the password).
pub(super) fn basic(c: &Credentials) -> String {
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

/// The refusal a user sees, naming registry and repository.
pub(super) fn unauthorized(repo: &Repo, why: &str) -> ImageError {
    ImageError::Unauthorized(format!(
        "{}: unauthorized for {}: {why}",
        repo.registry, repo.name
    ))
}
