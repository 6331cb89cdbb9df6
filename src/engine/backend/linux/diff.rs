//! `diff` (`GET /containers/{id}/changes`): what a Linux container changed
//! in its root, read from its overlay's upper directory as Docker's
//! overlay driver reads it: a whiteout (a 0/0 character device) is a
//! deletion, anything else a change of a path the image's layers have or
//! an addition. Every path is walked and looked up by descriptor beneath
//! its directory.

use super::{Container, Engine, EngineError, LinuxAdapter, Record};
use crate::api::types::ContainerChange;
use crate::confine::{Node, RelPath, Root};
use rustix::fs::{FileType, OFlags};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Docker's kinds of change.
const MODIFIED: u8 = 0;
const ADDED: u8 = 1;
const DELETED: u8 = 2;

/// Changes listed at most: a container may make millions of files.
const MAX_CHANGES: usize = 1_000_000;

impl LinuxAdapter {
    pub(super) async fn changes(
        &self,
        engine: &Arc<Engine>,
        c: &Container,
        rec: &Record,
    ) -> Result<Vec<ContainerChange>, EngineError> {
        let upper = c.dir().join("fs").join("upper");
        if !upper.exists() {
            return Ok(Vec::new());
        }
        let lower = self.lower_dirs(engine, rec).await?;
        let name = rec.name.clone();
        tokio::task::spawn_blocking(move || walk(&upper, &lower))
            .await
            .map_err(EngineError::task("listing the changes"))?
            .map_err(|e| {
                EngineError::InvalidArgument(format!("container {name}: listing its changes: {e}"))
            })
    }
}

fn is_whiteout(ft: FileType, st: &rustix::fs::Stat) -> bool {
    ft == FileType::CharacterDevice && st.st_rdev == 0
}

/// The changes in `upper` over the `lower` layers (the topmost first).
fn walk(
    upper: &Path,
    lower: &[PathBuf],
) -> Result<Vec<ContainerChange>, crate::confine::ConfineError> {
    let up = Root::open(upper)?;
    let lowers: Vec<Root> = lower.iter().filter_map(|l| Root::open(l).ok()).collect();
    // Did the image have `rel`? The topmost layer that names it decides
    // (a whiteout there says it was deleted below).
    let in_image = |rel: &RelPath| {
        for l in &lowers {
            let Ok(fd) =
                l.open_in_root(rel.to_string().as_bytes(), OFlags::PATH | OFlags::NOFOLLOW)
            else {
                continue;
            };
            return match rustix::fs::fstat(&fd) {
                Ok(st) => !is_whiteout(FileType::from_raw_mode(st.st_mode), &st),
                Err(_) => false,
            };
        }
        false
    };
    let mut out = Vec::new();
    Root::walk(up.fd(), &mut |rel, node, st| {
        let ft = FileType::from_raw_mode(st.st_mode);
        let kind = if is_whiteout(ft, st) {
            DELETED
        } else if in_image(rel) {
            MODIFIED
        } else {
            ADDED
        };
        if out.len() < MAX_CHANGES {
            out.push(ContainerChange {
                path: format!("/{rel}"),
                kind,
            });
        }
        // An added directory's contents are additions too: walk on.
        Ok(matches!(node, Node::Dir(_)))
    })?;
    Ok(out)
}
