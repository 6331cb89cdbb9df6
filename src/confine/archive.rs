//! The one tar extraction policy, for every archive ketch unpacks: image
//! layers, `cp` in both directions, build contexts and `ADD`.
//!
//! - Names are normalised; `..`, absolute names and NUL bytes are refused.
//! - Nothing is ever written through a symlink: each entry's directory is
//!   opened component by component with `O_NOFOLLOW`, and an entry beneath
//!   an earlier non-directory entry of the same archive is refused.
//! - Whiteouts (`.wh.NAME`, `.wh..wh..opq`) are interpreted only for image
//!   layers, only for names inside the layer; `.wh.`, `.wh..` and `.wh...`
//!   are refused. Elsewhere such names are ordinary files.
//! - A hard link may only point to an earlier non-directory entry.
//! - Device nodes and FIFOs are made as Docker makes them (root only; the
//!   device cgroup still limits their use); build contexts refuse them.
//! - [`Limits`] cap inflated bytes, entries, bytes per entry, metadata
//!   records (GNU long names, PAX headers) and the compression ratio.
//! - Modes, owners and times are set on the descriptor of what was made.
//!
//! Errors name the entry and the rule. Extraction into a fresh directory
//! is undone by the caller removing it; extraction into an existing one
//! ([`Target::Existing`]) checks the whole archive first, so a refused
//! archive writes nothing.

mod read;
// Writing stands on the descriptor-based `Root`.
#[cfg(target_os = "linux")]
mod write;

pub use read::{decompress, entries, entries_until};
#[cfg(target_os = "linux")]
pub use write::{extract, extract_filtered, Stats};

use super::{ConfineError, RelPath, Rule};
use std::ffi::OsString;
use std::io;
use std::sync::OnceLock;

/// A GNU long name or a PAX header bigger than this is refused: the tar
/// reader holds each in memory, so an endless one would exhaust it.
pub const MAX_METADATA: u64 = 1 << 20;

/// Bounds on what one archive may make. The defaults let real images
/// through (the largest public layers are a few GiB, with a few hundred
/// thousand files, compressed 2-10x) and stop bombs; `ketchd` flags raise
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Total bytes of entry data.
    pub max_bytes: u64,
    pub max_entries: u64,
    pub max_entry_bytes: u64,
    /// Inflated bytes per compressed byte, checked beyond `ratio_floor`.
    pub max_ratio: u64,
    /// Inflated bytes always allowed, whatever the ratio: small archives
    /// of zeros compress extremely well and are legitimate.
    pub ratio_floor: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 64 << 30,
            max_entries: 4_000_000,
            max_entry_bytes: 32 << 30,
            max_ratio: 200,
            ratio_floor: 256 << 20,
        }
    }
}

/// The limits `ketchd` was started with; set once, at start.
static DAEMON_LIMITS: OnceLock<Limits> = OnceLock::new();

/// The environment variable that hands the limits to a helper process.
pub const LIMITS_ENV: &str = "KETCH_ARCHIVE_LIMITS";

impl Limits {
    /// This process's limits: `ketchd`'s flags, a helper's environment,
    /// else the defaults.
    pub fn daemon() -> Limits {
        *DAEMON_LIMITS.get_or_init(|| {
            std::env::var(LIMITS_ENV)
                .ok()
                .and_then(|v| serde_json::from_str(&v).ok())
                .unwrap_or_default()
        })
    }

    /// Set this process's limits (once, before any archive is read).
    pub fn set_daemon(l: Limits) {
        let _ = DAEMON_LIMITS.set(l);
    }

    /// The form [`LIMITS_ENV`] carries.
    pub fn to_env(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What an archive is for: which entries mean what, and which are allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An image layer: whiteouts are interpreted, relative symlinks may
    /// not lead outside the layer, owners are kept.
    Layer,
    /// `cp` into a container or out of one: owners are kept (as root).
    Copy,
    /// A build context: no devices or FIFOs, owners are not kept.
    Context,
}

#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub kind: Kind,
    pub limits: Limits,
}

/// Where an extraction goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A directory made for this archive: the caller removes it on error.
    Fresh,
    /// A directory with content of its own: the archive is checked whole
    /// before anything is written.
    Existing,
}

/// An accepted entry.
#[derive(Debug)]
pub struct Entry {
    pub path: RelPath,
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    /// The data's size, as the header gives it.
    pub size: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File,
    Symlink(OsString),
    HardLink(RelPath),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
    /// A layer's `.wh.NAME`: `path` is the hidden name.
    Whiteout,
    /// A layer's `.wh..wh..opq`: `path` is the opaque directory.
    Opaque,
}

/// An error carried through `io::Error` from the limit readers.
#[derive(Debug)]
struct Broken(Rule);

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Broken {}

fn broken(rule: Rule) -> io::Error {
    io::Error::other(Broken(rule))
}

/// An `io::Error` from reading an archive as the rule it broke, if any.
fn to_confine(what: &str, e: io::Error) -> ConfineError {
    match e.get_ref().and_then(|i| i.downcast_ref::<Broken>()) {
        Some(Broken(rule)) => ConfineError::refused(what, rule.clone()),
        None if e.kind() == io::ErrorKind::InvalidData
            || e.kind() == io::ErrorKind::UnexpectedEof
            || e.kind() == io::ErrorKind::Other =>
        {
            ConfineError::refused(what, Rule::Malformed(super_chain(&e)))
        }
        None => ConfineError::io(what)(e),
    }
}

/// An error with its causes (tar's own messages hide them).
fn super_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

#[cfg(test)]
mod tests;
