//! The confined filesystem layer: every path that comes from an image, an
//! archive, a build context or a container is resolved beneath a root
//! directory by descriptor, never by joining strings and opening.
//!
//! Two ways to resolve a hostile path beneath a [`Root`]:
//! - **in root** ([`Root::open_in_root`], [`Root::read_file`],
//!   [`Root::open_node`]): symlinks are followed as if the root were `/`,
//!   so `..` and absolute targets can never climb out
//!   (`openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, or an fd-by-fd
//!   walk where the kernel lacks it). Reads of build contexts use this.
//! - **no symlinks** ([`Root::dir_nofollow`]): every component must be a
//!   real directory; a symlink anywhere on the way is refused. Writes use
//!   this: nothing is ever written through a symlink.
//!
//! Modes, owners, times and xattrs are set on descriptors opened with
//! `O_NOFOLLOW` (or with `AT_SYMLINK_NOFOLLOW` on the entry itself), never
//! by path. [`archive`] is the one tar extraction policy built on this.
//! This module depends on nothing else in the crate.

pub mod archive;
// Resolution beneath a root stands on Linux's descriptor calls (`openat2`,
// `O_PATH`, `/proc/self/fd`); names, rules and archive reading do not.
#[cfg(target_os = "linux")]
mod root;

#[cfg(target_os = "linux")]
pub(crate) use root::list_dir;
#[cfg(target_os = "linux")]
pub use root::{Node, Root, Stat, WalkFn};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Read};
use std::path::PathBuf;

/// Errors of the confined layer. Each names the path (relative to its
/// root, or the archive entry) and the rule it broke.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("{path}: {rule}")]
    Refused { path: String, rule: Rule },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl ConfineError {
    pub fn refused(path: impl fmt::Display, rule: Rule) -> Self {
        ConfineError::Refused {
            path: path.to_string(),
            rule,
        }
    }

    pub fn io(path: impl fmt::Display) -> impl FnOnce(io::Error) -> ConfineError {
        let path = path.to_string();
        move |source| ConfineError::Io { path, source }
    }

    /// The path was not there (a 404 where a client asked for it).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ConfineError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// The rule a hostile path or archive entry broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rule {
    #[error("names may not contain '..'")]
    ParentDir,
    #[error("absolute names are refused")]
    Absolute,
    #[error("the name is empty")]
    Empty,
    #[error("the name holds a NUL byte")]
    Nul,
    #[error("goes through {0:?}, which is a symlink or not a directory")]
    ThroughSymlink(String),
    #[error("too many levels of symbolic links")]
    SymlinkLoop,
    #[error("not a regular file")]
    NotRegular,
    #[error("not a directory")]
    NotDirectory,
    #[error("larger than the limit of {0} bytes")]
    FileTooLarge(u64),
    #[error("hard link to {0:?}, which is not an earlier file of the same archive")]
    HardLinkNotEarlier(String),
    #[error("whiteout {0:?} names nothing inside the layer")]
    BadWhiteout(String),
    #[error("device nodes are not allowed here")]
    DeviceRefused,
    #[error("device nodes and whiteouts can only be created by root")]
    NeedsRoot,
    #[error("entries of type {0} are not allowed")]
    UnsupportedType(String),
    #[error("symlink to {0:?} leads outside the layer")]
    SymlinkEscapes(String),
    #[error("the archive has more than {0} entries")]
    TooManyEntries(u64),
    #[error("an entry of {size} bytes is over the limit of {limit} bytes per entry")]
    EntryTooLarge { size: u64, limit: u64 },
    #[error("the archive unpacks to over {0} bytes")]
    TooLarge(u64),
    #[error("the archive inflates to over {0} times its compressed size: a decompression bomb")]
    Bomb(u64),
    #[error("a metadata record of {size} bytes is over the limit of {limit} bytes")]
    MetadataTooLarge { size: u64, limit: u64 },
    #[error("not a valid tar archive: {0}")]
    Malformed(String),
    #[error("names are limited to {MAX_NAME} bytes and {MAX_DEPTH} components")]
    NameTooLong,
    #[error("would replace the existing directory {0:?} by a non-directory")]
    ReplacesDirectory(String),
}

/// Names longer than this (the kernel's `PATH_MAX`) are refused: they
/// could not be made anyway, and checks walk every ancestor.
pub const MAX_NAME: usize = 4096;
/// Components one name may have: each entry's checks cost its depth
/// squared, so a hostile archive of endless `a/a/a/...` stays cheap.
pub const MAX_DEPTH: usize = 256;

/// A hostile name split into plain components: no `..`, no `/` at the
/// start, no empty or `.` components, no NUL byte.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(Vec<OsString>);

impl RelPath {
    /// Parse an archive entry name. `./a//b/` becomes `a/b`; `..` and
    /// absolute names are refused.
    pub fn parse(raw: &[u8]) -> Result<RelPath, Rule> {
        if raw.contains(&0) {
            return Err(Rule::Nul);
        }
        if raw.first() == Some(&b'/') {
            return Err(Rule::Absolute);
        }
        if raw.len() > MAX_NAME {
            return Err(Rule::NameTooLong);
        }
        let mut parts = Vec::new();
        for c in raw.split(|b| *b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => return Err(Rule::ParentDir),
                c => parts.push(os_name(c)),
            }
            if parts.len() > MAX_DEPTH {
                return Err(Rule::NameTooLong);
            }
        }
        Ok(RelPath(parts))
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn components(&self) -> &[OsString] {
        &self.0
    }

    /// The parent and the last component; `None` for the root.
    pub fn split_last(&self) -> Option<(RelPath, &OsStr)> {
        let (last, parent) = self.0.split_last()?;
        Some((RelPath(parent.to_vec()), last.as_os_str()))
    }

    pub fn join(&self, name: &OsStr) -> RelPath {
        let mut p = self.0.clone();
        p.push(name.to_os_string());
        RelPath(p)
    }

    /// Every proper ancestor, shortest first (`a`, `a/b` for `a/b/c`).
    pub fn ancestors(&self) -> impl Iterator<Item = RelPath> + '_ {
        (1..self.0.len()).map(|n| RelPath(self.0[..n].to_vec()))
    }

    pub fn to_path_buf(&self) -> PathBuf {
        self.0.iter().collect()
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str(".");
        }
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            write!(f, "{}", c.to_string_lossy())?;
        }
        Ok(())
    }
}

/// Read at most `max` bytes of `f`; more is an error naming the limit.
pub(crate) fn read_bounded(f: impl Read, max: u64, shown: &str) -> Result<Vec<u8>, ConfineError> {
    let mut data = Vec::new();
    f.take(max.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(ConfineError::io(shown))?;
    if data.len() as u64 > max {
        return Err(ConfineError::refused(shown, Rule::FileTooLarge(max)));
    }
    Ok(data)
}

/// An entry name's bytes as an `OsString`: exact on Unix; elsewhere, where
/// names are not bytes, a name that is not UTF-8 is read lossily.
pub(crate) fn os_name(b: &[u8]) -> OsString {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        OsStr::from_bytes(b).to_os_string()
    }
    #[cfg(not(unix))]
    {
        OsString::from(String::from_utf8_lossy(b).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert_eq!(RelPath::parse(b"../x"), Err(Rule::ParentDir));
        assert_eq!(RelPath::parse(b"a/../../x"), Err(Rule::ParentDir));
        assert_eq!(RelPath::parse(b"/etc"), Err(Rule::Absolute));
        assert_eq!(RelPath::parse(b"a\0b"), Err(Rule::Nul));
        assert_eq!(
            RelPath::parse("a/".repeat(300).as_bytes()),
            Err(Rule::NameTooLong)
        );
        assert_eq!(RelPath::parse(&[b'a'; 5000]), Err(Rule::NameTooLong));
        assert_eq!(RelPath::parse(b"./a//b/").unwrap().to_string(), "a/b");
        assert!(RelPath::parse(b"./").unwrap().is_root());
    }
}
