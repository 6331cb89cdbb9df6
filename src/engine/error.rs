//! The engine's error type. The daemon maps it to HTTP status in one place
//! (`daemon::error`).

use crate::image::ImageError;
use crate::runtime::RuntimeError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// "No such container: x" and the like.
    #[error("{0}")]
    NotFound(String),
    /// An illegal state change, a name in use.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// Refused outright (a predefined network's removal): HTTP 403.
    #[error("{0}")]
    Forbidden(String),
    /// The verb had nothing to do (start of a running container): HTTP 304.
    #[error("container {0} is already in the requested state")]
    NotModified(String),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("state i/o on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl EngineError {
    pub fn no_such_container(name: &str) -> Self {
        EngineError::NotFound(format!("No such container: {name}"))
    }

    pub fn io(path: impl AsRef<std::path::Path>) -> impl FnOnce(std::io::Error) -> EngineError {
        let path = path.as_ref().display().to_string();
        move |source| EngineError::Io { path, source }
    }
}

impl EngineError {
    /// A blocking task of `what` panicked or was cancelled.
    pub fn task(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> EngineError {
        move |e| EngineError::Io {
            path: what.to_string(),
            source: std::io::Error::other(e),
        }
    }

    /// Docker's words, which clients match on.
    pub fn name_in_use(name: &str, other: &str) -> Self {
        EngineError::Conflict(format!(
            "Conflict. The container name \"/{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
        ))
    }
}
