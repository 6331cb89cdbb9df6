//! Directories of removed Wasm containers, emptied and kept under a spare
//! name for the next creates.
//!
//! On ext4 a new directory costs an inode, found past the thousands freed in
//! the last seconds, and a block; deleting it frees the block, which a
//! `discard` mount trims before `rmdir` returns. Every run of a short
//! container paid both. A spare is renamed into place instead (no
//! allocation), and back out at removal.
//!
//! A spare holds no record, so ketchd's start deletes whatever spares it
//! finds, as it deletes every directory without a record. Only a Wasm
//! container's directory is kept: ketchd alone writes in it (its record and
//! its log), while a Linux container's holds files made for its processes.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Spares kept at most; past that a removed directory is deleted.
const KEEP: usize = 64;
/// Spares' names: `.spare-<n>` beside the containers' directories.
const PREFIX: &str = ".spare-";

pub(super) struct SpareDirs {
    parent: PathBuf,
    free: Mutex<Vec<PathBuf>>,
    next: AtomicU64,
}

impl SpareDirs {
    pub(super) fn new(parent: &Path) -> Self {
        SpareDirs {
            parent: parent.to_path_buf(),
            free: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
        }
    }

    fn free(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Make the empty directory `dir`, which must not exist: a spare
    /// renamed into place, or a new one.
    pub(super) fn make(&self, dir: &Path) -> std::io::Result<()> {
        loop {
            let Some(spare) = self.free().pop() else {
                return std::fs::create_dir(dir);
            };
            match rename_noreplace(&spare, dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    self.free().push(spare);
                    return Err(e);
                }
                Err(e) => {
                    tracing::debug!("spare {} unusable: {e}", spare.display());
                    let _ = std::fs::remove_dir_all(&spare);
                }
            }
        }
    }

    /// Delete what `dir` holds and keep it as a spare, or delete it when
    /// enough are kept.
    pub(super) fn retire(&self, dir: &Path) -> std::io::Result<()> {
        if !cfg!(target_os = "linux") || self.free().len() >= KEEP {
            return std::fs::remove_dir_all(dir);
        }
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                std::fs::remove_dir_all(e.path())?;
            } else {
                std::fs::remove_file(e.path())?;
            }
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let spare = self.parent.join(format!("{PREFIX}{n}"));
        if let Err(e) = rename_noreplace(dir, &spare) {
            tracing::debug!("cannot keep {} as a spare: {e}", dir.display());
            return std::fs::remove_dir(dir);
        }
        let mut free = self.free();
        if free.len() < KEEP {
            free.push(spare);
            return Ok(());
        }
        drop(free);
        std::fs::remove_dir(&spare)
    }
}

/// Rename `from` to `to`, failing with `AlreadyExists` rather than
/// replacing an empty directory at `to`.
#[cfg(target_os = "linux")]
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE).map_err(std::io::Error::from)
}

/// Without `renameat2`, no spare is ever kept ([`SpareDirs::retire`]).
#[cfg(not(target_os = "linux"))]
fn rename_noreplace(_from: &Path, _to: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from(ErrorKind::Unsupported))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_directory_comes_back_empty_under_the_next_name() {
        let d = tempfile::tempdir().unwrap();
        let spares = SpareDirs::new(d.path());
        let a = d.path().join("a");
        spares.make(&a).unwrap();
        std::fs::write(a.join("container.jsonl"), b"secret").unwrap();
        std::fs::create_dir(a.join("sub")).unwrap();
        std::fs::write(a.join("sub/f"), b"x").unwrap();
        spares.retire(&a).unwrap();
        assert!(!a.exists());
        let b = d.path().join("b");
        spares.make(&b).unwrap();
        assert_eq!(std::fs::read_dir(&b).unwrap().count(), 0);
        // It was the spare: nothing else is left beside it.
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["b"]);
        // A name that exists is never replaced, spare or not.
        spares.retire(&b).unwrap();
        std::fs::create_dir(&a).unwrap();
        assert_eq!(
            spares.make(&a).unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
    }

    #[test]
    fn past_the_kept_number_a_removed_directory_is_deleted() {
        let d = tempfile::tempdir().unwrap();
        let spares = SpareDirs::new(d.path());
        for i in 0..KEEP + 3 {
            let dir = d.path().join(format!("c{i}"));
            spares.make(&dir).unwrap();
        }
        for i in 0..KEEP + 3 {
            spares.retire(&d.path().join(format!("c{i}"))).unwrap();
        }
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), KEEP);
    }
}
