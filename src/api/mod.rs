//! The wire contract both ends share: Engine API request/response types,
//! the stdio multiplexing frame format, and the API version ketch speaks.
//!
//! Depends only on `model`.

pub mod annotations;
pub mod detach;
pub mod stream;
pub mod types;

/// The Engine API version served (Docker 28.2's).
pub const API_VERSION: &str = "1.50";
/// The oldest version clients may ask for.
pub const MIN_API_VERSION: &str = "1.24";
/// Reported as the engine version.
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");

pub const MEDIA_MULTIPLEXED: &str = "application/vnd.docker.multiplexed-stream";
pub const MEDIA_RAW: &str = "application/vnd.docker.raw-stream";

/// Strip an optional `/v1.NN` prefix from a request path. Returns the rest
/// and the version asked for, or `None` for a malformed version segment.
pub fn strip_version(path: &str) -> Option<(&str, Option<&str>)> {
    let Some(rest) = path.strip_prefix("/v") else {
        return Some((path, None));
    };
    let (ver, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let numeric = ver.split('.').count() == 2
        && ver
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if numeric {
        Some((tail, Some(ver)))
    } else if ver.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
        None
    } else {
        // A path like `/volumes` that just starts with `v`.
        Some((path, None))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn strips_version_prefix() {
        assert_eq!(
            super::strip_version("/v1.50/containers/json"),
            Some(("/containers/json", Some("1.50")))
        );
        assert_eq!(
            super::strip_version("/containers/json"),
            Some(("/containers/json", None))
        );
        assert_eq!(super::strip_version("/volumes"), Some(("/volumes", None)));
        assert_eq!(super::strip_version("/v1/x"), None);
    }
}
