//! The build context: what a COPY source names in it (the daemon's side,
//! confined beneath the context root), and the walk of the user's own
//! directory before it is sent (the CLI's side).

use super::{ignore, StepError};
#[cfg(target_os = "linux")]
use crate::confine::{Node, Root};
use std::fs;
use std::path::Path;

/// What a COPY source (possibly a glob) names in the context, as
/// (context-relative path, what is there). Paths and symlinks resolve
/// inside the context only.
#[cfg(target_os = "linux")]
pub(super) fn context_matches(ctx: &Root, src: &str) -> Result<Vec<(String, Node)>, StepError> {
    let clean = crate::fsutil::clean_abs(src);
    let rel = clean.trim_start_matches('/');
    let open = |rel: &str| match ctx.open_node(rel.as_bytes()) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(source) => Err(StepError::ContextPath {
            path: src.to_string(),
            source,
        }),
    };
    if !rel.contains(['*', '?', '[']) {
        return Ok(open(rel)?
            .map(|n| vec![(rel.to_string(), n)])
            .unwrap_or_default());
    }
    let pat: Vec<&str> = rel.split('/').collect();
    let mut names = Vec::new();
    Root::walk(ctx.fd(), &mut |r, _, _| {
        let r = r.to_string();
        let parts: Vec<&str> = r.split('/').collect();
        if parts.len() == pat.len()
            && parts
                .iter()
                .zip(&pat)
                .all(|(s, p)| ignore::glob(p.as_bytes(), s.as_bytes()))
        {
            names.push(r.clone());
        }
        // Deeper than the pattern cannot match.
        Ok(parts.len() < pat.len())
    })?;
    names.sort();
    let mut out = Vec::new();
    for n in names {
        if let Some(node) = open(&n)? {
            out.push((n, node));
        }
    }
    Ok(out)
}

/// Visit everything below `dir` in name order, as context-relative paths
/// (the CLI's side: the user's own directory, before it is sent).
/// `enter` decides whether a path is visited (and, for a directory, walked).
pub fn walk_filtered(
    dir: &Path,
    rel: &str,
    enter: &dyn Fn(&str) -> bool,
    f: &mut dyn FnMut(&str, &Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let r = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if !enter(&r) {
            continue;
        }
        f(&r, &e.path())?;
        if e.file_type()?.is_dir() {
            walk_filtered(&e.path(), &r, enter, f)?;
        }
    }
    Ok(())
}
