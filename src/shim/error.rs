//! The shim's errors, and the ttrpc status codes containerd maps them to
//! (its `errdefs`: NotFound, AlreadyExists, FailedPrecondition, …), so
//! `ctr` and the CRI plugin say what went wrong.

use containerd_shim::protos::ttrpc::{self, Code};

#[derive(Debug, thiserror::Error)]
pub(super) enum ShimError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Exists(String),
    /// The task is not in a state that allows this.
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    Internal(String),
}

impl ShimError {
    fn code(&self) -> Code {
        match self {
            ShimError::NotFound(_) => Code::NOT_FOUND,
            ShimError::Exists(_) => Code::ALREADY_EXISTS,
            ShimError::Precondition(_) => Code::FAILED_PRECONDITION,
            ShimError::Invalid(_) => Code::INVALID_ARGUMENT,
            ShimError::Unimplemented(_) => Code::UNIMPLEMENTED,
            ShimError::Internal(_) => Code::INTERNAL,
        }
    }
}

impl From<ShimError> for ttrpc::Error {
    fn from(e: ShimError) -> Self {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), e.to_string()))
    }
}
