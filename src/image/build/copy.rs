//! COPY and ADD: a layer assembled in memory from the context, an earlier
//! stage or an image (`--from`), or a local tar (ADD), and written to the
//! store. What is copied is bounded by the layer's room.

use super::context::context_matches;
use super::dockerfile::words;
use super::stage::{find_stage, from_store, resolve_in_image, Stage};
use super::StepError;
use crate::confine::archive::{self, EntryKind, Kind, Limits, Policy};
use crate::confine::{ConfineError, Node, RelPath, Root, Rule};
use crate::image::layer::{Entry, LayerBuilder};
use crate::image::store::{digest_of, oci_digest};
use crate::image::ImageStore;
use oci_spec::image::{Descriptor, MediaType};
use std::fs;

/// Run a COPY (or, with `add`, an ADD) whose operands are `raw`, adding
/// its layer to the stage.
pub(super) fn copy_step(
    store: &ImageStore,
    ctx: &Root,
    stage: &mut Stage,
    stages: &[Stage],
    raw: &str,
    add: bool,
) -> Result<(), StepError> {
    let all = if raw.starts_with('[') {
        super::dockerfile::json_array(raw)?
    } else {
        words(raw, &|k| stage.lookup(k))?
    };
    let mut from = None;
    let mut chmod = None;
    let mut paths = Vec::new();
    for w in all {
        if let Some(v) = w.strip_prefix("--from=") {
            from = Some(v.to_string());
        } else if let Some(v) = w.strip_prefix("--chmod=") {
            chmod = Some(u32::from_str_radix(v, 8).map_err(|_| StepError::Chmod(v.to_string()))?);
        } else if w.starts_with("--chown=") || w.starts_with("--link") {
            // Owners are always 0 in ketch layers; --link is the default behaviour.
        } else if w.starts_with("--") {
            return Err(StepError::UnknownFlag(w));
        } else {
            paths.push(w);
        }
    }
    let (dest_raw, srcs) = paths.split_last().ok_or(StepError::CopyOperands)?;
    let dest_dir_form = dest_raw.ends_with('/') || srcs.len() > 1;
    let dest = resolve_in_image(&stage.workdir, dest_raw);
    let mut layer = LayerBuilder::default();
    match from {
        Some(f) => {
            let tree = match find_stage(stages, &f) {
                Some(s) => merged_tree(store, &s.layers)?,
                None => {
                    let s = from_store(store, &f).map_err(|e| StepError::CopyFromImage {
                        from: f.clone(),
                        source: Box::new(e),
                    })?;
                    merged_tree(store, &s.layers)?
                }
            };
            for src in srcs {
                let src = crate::fsutil::clean_abs(src);
                let mut hit = false;
                for (path, entry) in tree.iter() {
                    let target = if *path == src {
                        match entry {
                            Entry::Dir { .. } => continue,
                            _ => file_dest(&dest, dest_dir_form, path),
                        }
                    } else if let Some(sub) =
                        path.strip_prefix(&format!("{}/", src.trim_end_matches('/')))
                    {
                        format!("{dest}/{sub}")
                    } else {
                        continue;
                    };
                    hit = true;
                    layer.add(&target, with_mode(entry.clone(), chmod));
                }
                if !hit {
                    return Err(StepError::CopyFromMissing { from: f, path: src });
                }
            }
        }
        None => {
            for src in srcs {
                let matches = context_matches(ctx, src)?;
                if matches.is_empty() {
                    return Err(StepError::NotInContext(src.clone()));
                }
                for (rel, node) in matches {
                    match node {
                        Node::Dir(fd) => add_dir(&mut layer, fd, &dest, chmod)?,
                        Node::File(f) if add && is_archive(&f) => {
                            extract_archive(&mut layer, f, &dest).map_err(|e| StepError::Add {
                                path: rel.clone(),
                                source: Box::new(e),
                            })?
                        }
                        Node::File(f) => {
                            let name = rel.rsplit('/').next().unwrap_or(&rel);
                            let target = file_dest(&dest, dest_dir_form, name);
                            let entry = file_entry(&layer, f, &rel)?;
                            layer.add(&target, with_mode(entry, chmod));
                        }
                        Node::Symlink(_) | Node::Other(_) => {
                            return Err(StepError::NotRegular(rel))
                        }
                    }
                }
            }
        }
    }
    let built = layer.write(store)?;
    stage.layers.push(Descriptor::new(
        MediaType::ImageLayerGzip,
        built.size,
        oci_digest(&built.digest)?,
    ));
    stage.diff_ids.push(built.diff_id.to_string());
    Ok(())
}

fn with_mode(e: Entry, chmod: Option<u32>) -> Entry {
    match (e, chmod) {
        (Entry::File { data, .. }, Some(m)) => Entry::File { mode: m, data },
        (Entry::Dir { .. }, Some(m)) => Entry::Dir { mode: m },
        (e, _) => e,
    }
}

fn file_dest(dest: &str, dir_form: bool, src_path: &str) -> String {
    if dir_form {
        let base = src_path.rsplit('/').next().unwrap_or(src_path);
        format!("{}/{base}", dest.trim_end_matches('/'))
    } else {
        dest.to_string()
    }
}

/// A regular file of the context as a layer entry, if the layer has room.
fn file_entry(layer: &LayerBuilder, f: fs::File, rel: &str) -> Result<Entry, StepError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = f
        .metadata()
        .map_err(|source| StepError::ContextFile {
            path: rel.to_string(),
            source,
        })?
        .permissions()
        .mode()
        & 0o7777;
    let data = crate::confine::read_bounded(f, layer.room(), rel).map_err(StepError::InMemory)?;
    Ok(Entry::File { mode, data })
}

/// A copy of `e` (a hard link's target), if the layer has room for it.
fn fits(e: &Entry, room: u64, path: &RelPath) -> Result<Entry, ConfineError> {
    match e {
        Entry::File { data, .. } if data.len() as u64 > room => {
            Err(ConfineError::refused(path, Rule::FileTooLarge(room)))
        }
        e => Ok(e.clone()),
    }
}

/// A context directory and everything below it, symlinks kept as links.
fn add_dir(
    layer: &mut LayerBuilder,
    dir: std::os::fd::OwnedFd,
    dest: &str,
    chmod: Option<u32>,
) -> Result<(), StepError> {
    use std::os::fd::AsFd;
    Root::walk(dir.as_fd(), &mut |rel, node, st| {
        let target = format!("{}/{rel}", dest.trim_end_matches('/'));
        let entry = match node {
            Node::Dir(_) => Entry::Dir {
                mode: st.st_mode & 0o7777,
            },
            Node::Symlink(t) => Entry::Symlink {
                target: t.to_string_lossy().into_owned(),
            },
            Node::File(f) => Entry::File {
                mode: st.st_mode & 0o7777,
                data: crate::confine::read_bounded(f, layer.room(), &rel.to_string())?,
            },
            Node::Other(_) => return Err(ConfineError::refused(rel, Rule::NotRegular)),
        };
        layer.add(&target, with_mode(entry, chmod));
        Ok(true)
    })
    .map_err(StepError::InMemory)?;
    layer.add(
        dest,
        Entry::Dir {
            mode: chmod.unwrap_or(0o755),
        },
    );
    Ok(())
}

fn is_archive(f: &fs::File) -> bool {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; 262];
    let n = f.read_at(&mut head, 0).unwrap_or(0);
    (n >= 2 && head[..2] == [0x1f, 0x8b]) || (n >= 262 && &head[257..262] == b"ustar")
}

/// ADD of a local tar: its entries land beneath `dest`, under the `cp`
/// policy (no `..`, no absolute names, bombs and oversized archives
/// refused); hard links become copies.
fn extract_archive(layer: &mut LayerBuilder, f: fs::File, dest: &str) -> Result<(), StepError> {
    let policy = Policy {
        kind: Kind::Copy,
        limits: Limits::daemon(),
    };
    let at = |p: &RelPath| format!("{}/{p}", dest.trim_end_matches('/'));
    archive::entries(f, &policy, &mut |e, data| {
        let target = at(&e.path);
        let entry = match &e.kind {
            EntryKind::Dir => Entry::Dir { mode: e.mode },
            EntryKind::File => Entry::File {
                mode: e.mode,
                data: crate::confine::read_bounded(data, layer.room(), &e.path.to_string())?,
            },
            EntryKind::Symlink(t) => Entry::Symlink {
                target: t.to_string_lossy().into_owned(),
            },
            EntryKind::HardLink(t) => match layer.get(&at(t)) {
                // A copy: it must fit like any other file.
                Some(linked) => fits(linked, layer.room(), &e.path)?,
                None => return Ok(()),
            },
            _ => {
                return Err(ConfineError::refused(
                    &e.path,
                    Rule::UnsupportedType("device or FIFO in ADD".into()),
                ))
            }
        };
        layer.add(&target, entry);
        Ok(())
    })
    .map_err(StepError::InMemory)
}

/// The merged file tree of a layer stack (whiteouts applied), for `COPY --from`.
fn merged_tree(store: &ImageStore, layers: &[Descriptor]) -> Result<LayerBuilder, StepError> {
    let mut tree = LayerBuilder::default();
    let policy = Policy {
        kind: Kind::Layer,
        limits: Limits::daemon(),
    };
    for l in layers {
        let d = digest_of(l.digest())?;
        let f = store.open_blob(&d)?;
        archive::entries(f, &policy, &mut |e, data| {
            let p = format!("/{}", e.path);
            let entry = match &e.kind {
                EntryKind::Opaque => {
                    tree.remove_below(&p);
                    return Ok(());
                }
                EntryKind::Whiteout => {
                    tree.remove(&p);
                    return Ok(());
                }
                EntryKind::Dir => Entry::Dir { mode: e.mode },
                EntryKind::Symlink(t) => Entry::Symlink {
                    target: t.to_string_lossy().into_owned(),
                },
                EntryKind::File => Entry::File {
                    mode: e.mode,
                    data: crate::confine::read_bounded(data, tree.room(), &e.path.to_string())?,
                },
                EntryKind::HardLink(t) => match tree.get(&format!("/{t}")) {
                    // A copy: it must fit like any other file.
                    Some(linked) => fits(linked, tree.room(), &e.path)?,
                    None => return Ok(()),
                },
                // Devices and FIFOs are not copied between stages.
                _ => return Ok(()),
            };
            tree.add(&p, entry);
            Ok(())
        })
        .map_err(|source| StepError::StageLayer { digest: d, source })?;
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hard_link_copy_must_fit_the_layer_like_its_target() {
        // ADD of one big file and thousands of hard links to it once
        // cloned the file per link without counting it.
        let f = Entry::File {
            mode: 0o644,
            data: vec![0; 10],
        };
        let p = RelPath::parse(b"link").unwrap();
        assert!(fits(&f, 10, &p).is_ok());
        let e = fits(&f, 9, &p).unwrap_err().to_string();
        assert!(e.contains("limit of 9 bytes"), "{e}");
        let d = Entry::Dir { mode: 0o755 };
        assert!(fits(&d, 0, &p).is_ok());
    }
}
