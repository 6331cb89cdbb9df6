//! The one mapping from errors to HTTP status codes.

use crate::engine::EngineError;
use crate::image::ImageError;
use crate::runtime::RuntimeError;
use hyper::StatusCode;

pub fn status_of(e: &EngineError) -> StatusCode {
    match e {
        EngineError::NotFound(_) => StatusCode::NOT_FOUND,
        EngineError::Conflict(_) => StatusCode::CONFLICT,
        EngineError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
        EngineError::Forbidden(_) => StatusCode::FORBIDDEN,
        EngineError::NotModified(_) => StatusCode::NOT_MODIFIED,
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
            ImageError::Corrupt { .. } | ImageError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        },
        EngineError::Runtime(r) => match r {
            RuntimeError::InvalidModule { .. }
            | RuntimeError::Grant { .. }
            | RuntimeError::Unsupported(_)
            | RuntimeError::Instantiate { .. }
            | RuntimeError::Start { .. } => StatusCode::BAD_REQUEST,
            RuntimeError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            // As dockerd: a port that cannot be bound fails the start.
            RuntimeError::Publish { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        },
        EngineError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
                    reason: "0.0.0.0:8080 is already in use".into()
                }
                .into()
            ),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
