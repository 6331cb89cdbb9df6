//! Registry authentication: `WWW-Authenticate` challenges (Bearer with
//! realm/service/scope, and Basic), and the credentials a client passes in
//! Docker's `X-Registry-Auth` header.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// An `X-Registry-Auth` header that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum AuthHeaderError {
    #[error("invalid X-Registry-Auth header: {0}")]
    Base64(#[source] base64::DecodeError),
    #[error("invalid X-Registry-Auth header: {0}")]
    Json(#[source] serde_json::Error),
}

/// A user's credentials for one registry. `identitytoken` (a refresh token)
/// is accepted in place of a password, as Docker does.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Credentials {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    #[serde(default, rename = "serveraddress")]
    pub server_address: String,
    #[serde(
        default,
        rename = "identitytoken",
        skip_serializing_if = "String::is_empty"
    )]
    pub identity_token: String,
}

impl Credentials {
    pub fn is_empty(&self) -> bool {
        self.username.is_empty() && self.password.is_empty() && self.identity_token.is_empty()
    }

    /// Decode an `X-Registry-Auth` header: base64url (padded or not) JSON.
    pub fn from_header(v: &str) -> Result<Option<Self>, AuthHeaderError> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(v.trim_end_matches('='))
            .or_else(|_| base64::engine::general_purpose::STANDARD.decode(v))
            .map_err(AuthHeaderError::Base64)?;
        let c: Credentials = serde_json::from_slice(&raw).map_err(AuthHeaderError::Json)?;
        Ok((!c.is_empty()).then_some(c))
    }

    pub fn to_header(&self) -> String {
        // Four strings always serialise; were it to fail, the empty header
        // means "anonymous", which the registry would refuse.
        base64::engine::general_purpose::URL_SAFE
            .encode(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic,
}

/// Parse `Bearer realm="https://auth/token",service="reg",scope="repository:x:pull"`
/// or `Basic realm="..."`.
pub fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = std::collections::HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], q[end + 1..].trim_start())
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim(), &after[end..])
        };
        params.insert(key, value.to_string());
        rest = next.trim_start_matches(',').trim_start();
    }
    Some(Challenge::Bearer {
        realm: params.remove("realm")?,
        service: params.remove("service"),
        scope: params.remove("scope"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Bearer realm="http://127.0.0.1:1/t""#),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/t".into(),
                service: None,
                scope: None
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="basic-realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
    }

    #[test]
    fn registry_auth_header_round_trips() {
        let c = Credentials {
            username: "ada".into(),
            password: "p@ss:word".into(),
            server_address: "127.0.0.1:5000".into(),
            identity_token: String::new(),
        };
        assert_eq!(Credentials::from_header(&c.to_header()).unwrap(), Some(c));
        assert_eq!(Credentials::from_header("").unwrap(), None);
        assert!(Credentials::from_header("!!!").is_err());
        // Docker sends `{}` base64-encoded when logged out.
        assert_eq!(Credentials::from_header("e30=").unwrap(), None);
    }
}
