//! The engine's error type. The daemon maps it to HTTP status in one place
//! (`daemon::error`).
//!
//! Leaves are typed where a cause or an object is known. Where Docker
//! clients match on Docker's words (`No such container: web`, `You cannot
//! remove a running container …`), those words are rendered here, and only
//! here.

use crate::api::annotations::AnnotationError;
use crate::image::ImageError;
use crate::model::{ContainerId, PortError, RestartPolicyError, TransitionError};
use crate::runtime::RuntimeError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    #[error("No such exec instance: {0}")]
    NoSuchExec(String),
    /// Some other object is missing (a network, a volume).
    #[error("{0}")]
    NotFound(String),
    #[error("Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameInUse { name: String, id: String },
    /// A verb is illegal in the container's state (HTTP 409; starting a
    /// running container or stopping a stopped one is a 304).
    #[error("{}", transition_message(.verb, .id, .source))]
    Transition {
        verb: &'static str,
        id: ContainerId,
        #[source]
        source: TransitionError,
    },
    /// A conflict with some other state (a name in use, an image in use).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Port(#[from] PortError),
    #[error(transparent)]
    RestartPolicy(#[from] RestartPolicyError),
    #[error(transparent)]
    Annotation(#[from] AnnotationError),
    /// Refused outright (a predefined network's removal): HTTP 403.
    #[error("{0}")]
    Forbidden(String),
    /// The verb had nothing to do (start of a running container): HTTP 304.
    #[error("container {0} is already in the requested state")]
    NotModified(String),
    /// A feature of Docker's that this configuration lacks (reading the
    /// log of a container whose driver stores none): HTTP 501.
    #[error("{0}")]
    NotImplemented(String),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("state i/o on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Blocking work run off the async runtime panicked or was cancelled.
    #[error("{what} failed: {source}")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// Docker's words for an illegal state change, which clients match on.
fn transition_message(verb: &str, id: &ContainerId, e: &TransitionError) -> String {
    match (verb, e) {
        (_, TransitionError::RemoveRunning) => format!("You cannot remove a running container {id}. Stop the container before attempting removal or force remove"),
        ("exec", TransitionError::Paused) => {
            format!("Container {id} is paused, unpause the container before exec")
        }
        ("start" | "restart", TransitionError::Paused) => {
            "cannot start a paused container, try unpause instead".into()
        }
        (_, TransitionError::Paused) => format!(
            "Container {id} is paused. Unpause the container before stopping or killing"
        ),
        (_, TransitionError::NotRunning) => format!("Container {id} is not running"),
        (_, TransitionError::AlreadyRunning) => format!("Container {id} is already running"),
        (_, TransitionError::AlreadyPaused) => format!("Container {id} is already paused"),
        (_, TransitionError::NotPaused) => format!("Container {id} is not paused"),
        (_, TransitionError::Removing) => {
            format!("removal of container {id} is already in progress")
        }
    }
}

impl EngineError {
    pub fn no_such_container(name: &str) -> Self {
        EngineError::NoSuchContainer(name.to_string())
    }

    pub fn io(path: impl AsRef<std::path::Path>) -> impl FnOnce(std::io::Error) -> EngineError {
        let path = path.as_ref().display().to_string();
        move |source| EngineError::Io { path, source }
    }

    /// A blocking task of `what` panicked or was cancelled.
    pub fn task(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> EngineError {
        move |source| EngineError::Task { what, source }
    }

    /// The verb needs a running container (exec, top, network connect):
    /// Docker's 409 and words.
    pub fn not_running(verb: &'static str, id: &ContainerId) -> Self {
        EngineError::Transition {
            verb,
            id: id.clone(),
            source: TransitionError::NotRunning,
        }
    }

    pub fn name_in_use(name: &str, id: &str) -> Self {
        EngineError::NameInUse {
            name: name.to_string(),
            id: id.to_string(),
        }
    }

    /// `verb` is illegal now: Docker answers 304 for a start of a running
    /// container and a stop of a stopped one, else 409 in its own words.
    pub fn transition(
        verb: &'static str,
        id: &ContainerId,
        name: &str,
        e: TransitionError,
    ) -> Self {
        match (verb, e) {
            ("start", TransitionError::AlreadyRunning) | ("stop", TransitionError::NotRunning) => {
                EngineError::NotModified(name.to_string())
            }
            _ => EngineError::Transition {
                verb,
                id: id.clone(),
                source: e,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockers_words_for_illegal_moves() {
        let id = ContainerId::random();
        let e = |verb, t| EngineError::transition(verb, &id, "web", t).to_string();
        assert_eq!(
            e("remove", TransitionError::RemoveRunning),
            format!("You cannot remove a running container {id}. Stop the container before attempting removal or force remove")
        );
        assert_eq!(
            e("pause", TransitionError::NotRunning),
            format!("Container {id} is not running")
        );
        assert_eq!(
            EngineError::not_running("exec", &id).to_string(),
            format!("Container {id} is not running")
        );
        assert_eq!(
            e("exec", TransitionError::Paused),
            format!("Container {id} is paused, unpause the container before exec")
        );
        assert_eq!(
            e("pause", TransitionError::AlreadyPaused),
            format!("Container {id} is already paused")
        );
        assert_eq!(
            e("unpause", TransitionError::NotPaused),
            format!("Container {id} is not paused")
        );
        assert_eq!(
            e("start", TransitionError::Paused),
            "cannot start a paused container, try unpause instead"
        );
        assert!(matches!(
            EngineError::transition("start", &id, "web", TransitionError::AlreadyRunning),
            EngineError::NotModified(_)
        ));
        assert_eq!(
            EngineError::no_such_container("web").to_string(),
            "No such container: web"
        );
    }
}
