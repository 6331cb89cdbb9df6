//! Images: the on-disk OCI image layout store, layer tars, OCI archives
//! (`save`/`load`), `build` from a Dockerfile, and the registry client.

pub mod archive;
pub mod build;
pub mod layer;
pub mod registry;
pub mod store;
#[cfg(target_os = "linux")]
pub mod unpack;

pub use store::{Image, ImageStore};

use crate::model::{DigestError, RefError};

/// Errors of the image layer. Messages name the object.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("No such image: {0}")]
    NotFound(String),
    #[error(transparent)]
    Reference(#[from] RefError),
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error("blob {digest} failed verification: {reason}")]
    Corrupt { digest: String, reason: String },
    #[error("invalid image {name}: {reason}")]
    Invalid { name: String, reason: String },
    /// An image document that cannot be written as JSON.
    #[error("cannot encode an image document: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("invalid archive: {0}")]
    Archive(String),
    #[error("hostile path in {context}: {path:?}")]
    HostilePath { context: String, path: String },
    #[error("{0}")]
    Build(#[from] build::BuildError),
    #[error("conflict: {0}")]
    Conflict(String),
    /// A registry has no such repository, tag or blob.
    #[error("{0}")]
    RemoteNotFound(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("registry {registry}: {reason}")]
    Registry { registry: String, reason: String },
    #[error("image store i/o on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl ImageError {
    pub fn io(path: impl AsRef<std::path::Path>) -> impl FnOnce(std::io::Error) -> ImageError {
        let path = path.as_ref().display().to_string();
        move |source| ImageError::Io { path, source }
    }
}

/// Serialise with sorted map keys so equal content gives equal digests
/// (oci-spec keeps labels and annotations in `HashMap`s).
pub fn canonical_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, ImageError> {
    let value = serde_json::to_value(v).map_err(ImageError::Encode)?;
    serde_json::to_vec(&value).map_err(ImageError::Encode)
}
