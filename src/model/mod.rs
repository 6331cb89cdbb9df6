//! Leaf types shared by every layer: ids, digests, image references,
//! container status and its legal transitions, restart policies.
//!
//! Nothing here depends on the rest of the crate.

pub mod ids;
pub mod reference;
pub mod status;

pub use ids::{ContainerId, Digest, DigestError};
pub use reference::{ImageRef, RefError};
pub use status::{RestartPolicy, Status, TransitionError};
