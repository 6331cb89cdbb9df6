//! Leaf types shared by every layer: ids, digests, image references,
//! container status and its legal transitions, restart policies, published
//! ports, sizes, durations and signals.
//!
//! Nothing here depends on the rest of the crate.

pub mod device;
pub mod function;
pub mod ids;
pub mod net;
pub mod network;
pub mod platform;
pub mod ports;
pub mod reference;
pub mod signal;
pub mod status;
pub mod units;

pub use function::HttpOptions;
pub use ids::{ContainerId, Digest, DigestError};
pub use net::{NetGrant, NetGrantError};
pub use platform::{Platform, RuntimeKind};
pub use ports::{PortError, PortMapping, Proto};
pub use reference::{ImageRef, RefError};
pub use status::{RestartPolicy, RestartPolicyError, Status, TransitionError};
pub use units::UnitError;
