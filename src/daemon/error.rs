//! The one mapping from errors to HTTP status codes.

use crate::engine::EngineError;
use crate::image::ImageError;
use crate::runtime::RuntimeError;
use hyper::StatusCode;

/// What the daemon itself refuses, before or around the engine.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A malformed request: HTTP 400.
    #[error("{0}")]
    Invalid(String),
    #[error("page not found: {method} {path}")]
    NoRoute { method: String, path: String },
    /// A path a `cp` helper did not find: HTTP 404.
    #[error("{0}")]
    NoSuchPath(String),
    /// An upload over its limit: HTTP 413.
    #[error("{what} is larger than {max} bytes")]
    TooLarge { what: &'static str, max: u64 },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl RequestError {
    pub fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> RequestError {
        move |source| RequestError::Io { what, source }
    }
}

/// The status of anything the daemon answers with an error.
pub fn request_status(e: &RequestError) -> StatusCode {
    match e {
        RequestError::Engine(e) => status_of(e),
        RequestError::Invalid(_) => StatusCode::BAD_REQUEST,
        RequestError::NoRoute { .. } | RequestError::NoSuchPath(_) => StatusCode::NOT_FOUND,
        RequestError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        RequestError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub fn status_of(e: &EngineError) -> StatusCode {
    match e {
        EngineError::NoSuchContainer(_) | EngineError::NoSuchExec(_) | EngineError::NotFound(_) => {
            StatusCode::NOT_FOUND
        }
        EngineError::NameInUse { .. }
        | EngineError::Transition { .. }
        | EngineError::Conflict(_) => StatusCode::CONFLICT,
        EngineError::InvalidArgument(_)
        | EngineError::Port(_)
        | EngineError::RestartPolicy(_)
        | EngineError::Annotation(_) => StatusCode::BAD_REQUEST,
        EngineError::Forbidden(_) => StatusCode::FORBIDDEN,
        EngineError::NotModified(_) => StatusCode::NOT_MODIFIED,
        EngineError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
        EngineError::Image(i) => match i {
            ImageError::NotFound(_) | ImageError::RemoteNotFound(_) => StatusCode::NOT_FOUND,
            ImageError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ImageError::Registry { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ImageError::Reference(_)
            | ImageError::Digest(_)
            | ImageError::Build(_)
            | ImageError::Archive(_)
            | ImageError::HostilePath { .. }
            | ImageError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ImageError::Conflict(_) => StatusCode::CONFLICT,
            ImageError::Corrupt { .. } | ImageError::Io { .. } | ImageError::Encode(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        },
        EngineError::Runtime(r) => match r {
            RuntimeError::InvalidModule { .. }
            | RuntimeError::Grant { .. }
            | RuntimeError::Unsupported(_)
            | RuntimeError::Instantiate { .. }
            | RuntimeError::Start { .. }
            // As dockerd: an invalid configuration, not a fault.
            | RuntimeError::CannotExec { .. } => StatusCode::BAD_REQUEST,
            RuntimeError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            // As dockerd: a port that cannot be bound fails the start.
            RuntimeError::Publish { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            // Past what ketchd can hold: the reason names the limit.
            RuntimeError::Capacity { .. } => StatusCode::SERVICE_UNAVAILABLE,
        },
        EngineError::Io { .. } | EngineError::Task { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_daemons_own_refusals() {
        let no_route = RequestError::NoRoute {
            method: "GET".into(),
            path: "/x".into(),
        };
        assert_eq!(request_status(&no_route), StatusCode::NOT_FOUND);
        assert_eq!(no_route.to_string(), "page not found: GET /x");
        assert_eq!(
            request_status(&RequestError::TooLarge {
                what: "the archive",
                max: 1
            }),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            request_status(&RequestError::Invalid("bad".into())),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            request_status(&EngineError::no_such_container("x").into()),
            StatusCode::NOT_FOUND
        );
    }
    use crate::model::{ImageRef, TransitionError};

    #[test]
    fn maps_each_kind() {
        assert_eq!(
            status_of(&EngineError::Forbidden("bridge is pre-defined".into())),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status_of(&EngineError::no_such_container("x")),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status_of(&EngineError::Conflict(
                TransitionError::AlreadyPaused.to_string()
            )),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status_of(&EngineError::InvalidArgument("bad".into())),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status_of(&EngineError::NotModified("x".into())),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(
            status_of(&ImageError::NotFound("hello".into()).into()),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status_of(&ImageError::Reference(ImageRef::parse("Bad").unwrap_err()).into()),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status_of(&ImageError::Conflict("in use".into()).into()),
            StatusCode::CONFLICT
        );
        let io = std::io::Error::other("disk");
        assert_eq!(
            status_of(&EngineError::Io {
                path: "/x".into(),
                source: io
            }),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            status_of(
                &RuntimeError::InvalidModule {
                    name: "m".into(),
                    reason: "r".into()
                }
                .into()
            ),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status_of(
                &RuntimeError::Publish {
                    name: "fn".into(),
                    port: "80/tcp".into(),
                    reason: "Bind for 0.0.0.0:8080 failed: port is already allocated".into()
                }
                .into()
            ),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
