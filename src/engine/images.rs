//! The image service: what the daemon's image endpoints ask of the engine.
//! The rules that involve containers (an image in use cannot be removed,
//! prune spares what containers use) and the events live here, so the
//! daemon only parses requests and renders answers.

use super::{Engine, EngineError};
use crate::api::types::{DeleteItem, JsonMessage};
use crate::image::build::BuildOptions;
use crate::image::registry::{self, Credentials, Platform};
use crate::image::{Image, ImageError};
use crate::model::ImageRef;
use std::path::Path;
use std::sync::Arc;

/// `commit`'s options.
#[derive(Clone, Debug, Default)]
pub struct CommitOptions {
    pub tag: Option<ImageRef>,
    /// Dockerfile instructions applied over the config (`--change`).
    pub changes: Vec<String>,
    pub comment: String,
    pub author: String,
    pub pause: bool,
}

impl Engine {
    /// Resolve a name, id or id prefix to an image.
    pub async fn image(&self, name: &str) -> Result<Image, EngineError> {
        let store = self.images.clone();
        let n = name.to_string();
        Ok(tokio::task::spawn_blocking(move || store.resolve(&n))
            .await
            .map_err(EngineError::task("image resolution"))??)
    }

    /// `POST /images/{name}/tag`.
    pub async fn image_tag(self: &Arc<Self>, name: &str, r: &ImageRef) -> Result<(), EngineError> {
        let img = self.image(name).await?;
        let (i, tag) = (img.clone(), r.clone());
        // The store's index is rewritten and synced.
        self.off_runtime("tagging an image", move |e| Ok(e.images.tag(&i, &tag)?))
            .await?;
        self.events
            .emit("image", "tag", img.id.as_str(), &[("name", &r.familiar())]);
        Ok(())
    }

    /// `DELETE /images/{name}`: untag, and delete the image once no name
    /// is left, refusing while a container uses it (a stopped one yields
    /// to `force`, a running one never), as Docker does.
    pub async fn image_remove(
        self: &Arc<Self>,
        name: &str,
        force: bool,
    ) -> Result<Vec<DeleteItem>, EngineError> {
        let img = self.image(name).await?;
        let name = name.to_string();
        let items = self
            .off_runtime("removing an image", move |e| {
                e.image_remove_now(&img, &name, force)
            })
            .await?;
        for i in &items {
            match (&i.untagged, &i.deleted) {
                (Some(u), _) => self.events.emit("image", "untag", u, &[("name", u)]),
                (None, Some(d)) => self.events.emit("image", "delete", d, &[("name", d)]),
                _ => {}
            }
        }
        Ok(items)
    }

    fn image_remove_now(
        &self,
        img: &Image,
        name: &str,
        force: bool,
    ) -> Result<Vec<DeleteItem>, EngineError> {
        let by_ref = ImageRef::parse(name).ok().filter(|r| img.refs.contains(r));
        let users = self.containers_using(&img.id);
        let untag_all = match &by_ref {
            Some(r) if img.refs.len() > 1 => {
                self.images.untag(r)?;
                return Ok(vec![untagged(r)]);
            }
            Some(_) => false,
            None if img.refs.len() > 1 && !force => {
                return Err(EngineError::Conflict(format!("conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories", img.id.short())));
            }
            None => true,
        };
        if let Some(c) = users.first() {
            let running = c.status().is_alive();
            if running || !force {
                let what = by_ref
                    .as_ref()
                    .map(|r| format!("repository reference {:?}", r.familiar()))
                    .unwrap_or_else(|| img.id.short().to_string());
                let why = if running {
                    "(cannot be forced) - image is being used by running container"
                } else {
                    "(must force) - container is using its referenced image"
                };
                return Err(EngineError::Conflict(format!(
                    "conflict: unable to remove {what} {why} {}",
                    c.id.short()
                )));
            }
        }
        let refs = if untag_all {
            img.refs.clone()
        } else {
            by_ref.into_iter().collect()
        };
        let mut items = Vec::new();
        for r in &refs {
            self.images.untag(r)?;
            items.push(untagged(r));
        }
        self.images.remove_manifest(&img.manifest_digest)?;
        // Blobs shared with other images stay; GC removes only unreachable ones.
        let deleted = self.images.gc()?;
        items.push(deleted_item(img.id.to_string()));
        items.extend(
            deleted
                .into_iter()
                .filter(|(d, _)| *d != img.id)
                .map(|(d, _)| deleted_item(d.to_string())),
        );
        Ok(items)
    }

    /// `POST /images/prune`: remove images no container uses (untagged
    /// ones only, unless `all`), then unreachable blobs and unfinished
    /// downloads. Returns what went, and the bytes freed.
    pub async fn image_prune(
        self: &Arc<Self>,
        all: bool,
        keep: super::PruneFilter,
    ) -> Result<(Vec<DeleteItem>, u64), EngineError> {
        let engine = self.clone();
        let (items, freed) = tokio::task::spawn_blocking(move || -> Result<_, EngineError> {
            let mut items = Vec::new();
            for img in engine.images.list()? {
                if (!all && !img.refs.is_empty()) || !engine.containers_using(&img.id).is_empty() {
                    continue;
                }
                let c = img.config.config().clone().unwrap_or_default();
                let labels = c.labels().clone().unwrap_or_default().into_iter().collect();
                if !keep(&labels, engine.images.made_at(&img)) {
                    continue;
                }
                for r in &img.refs {
                    engine.images.untag(r)?;
                    items.push(untagged(r));
                }
                engine.images.remove_manifest(&img.manifest_digest)?;
            }
            let mut freed = engine.images.remove_partials();
            for (d, size) in engine.images.gc()? {
                freed += size;
                items.push(deleted_item(d.to_string()));
            }
            Ok((items, freed))
        })
        .await
        .map_err(EngineError::task("image prune"))??;
        Ok((items, freed))
    }

    /// `POST /commit`: a Linux container's changes as a new image over its
    /// own, its config (with `changes` applied) as the image's. A running
    /// container is paused while its changes are read, unless `pause` is
    /// off.
    pub async fn commit(
        self: &Arc<Self>,
        name: &str,
        o: CommitOptions,
    ) -> Result<crate::model::Digest, EngineError> {
        let c = self.lookup(name)?;
        let rec = c.record();
        let backend = self.backends.for_platform(&rec.platform, &rec.image)?;
        let pause = (o.pause && rec.state.status() == crate::model::Status::Running)
            .then(|| c.control())
            .flatten();
        // As Docker's: paused and resumed, with their events.
        if let Some(ctl) = &pause {
            ctl.pause();
            self.event(&rec, "pause", &[]);
        }
        let layer = backend.changes_tar(&c, &rec).await;
        if let Some(ctl) = &pause {
            ctl.resume();
            self.event(&rec, "unpause", &[]);
        }
        let layer = layer?;
        let img = self.image_of(&rec).await?;
        let engine = self.clone();
        let created_by = rec.argv().join(" ");
        let id = tokio::task::spawn_blocking(move || {
            crate::image::build::commit_container(
                &engine.images,
                crate::image::build::CommitRequest {
                    image: &img,
                    config: &rec.config,
                    layer,
                    changes: &o.changes,
                    comment: &o.comment,
                    author: &o.author,
                    created_by,
                    tag: o.tag.as_ref(),
                },
            )
        })
        .await
        .map_err(EngineError::task("commit"))??;
        let rec = c.record();
        self.event(&rec, "commit", &[("imageID", &id.to_string())]);
        Ok(id)
    }

    /// `POST /images/create?fromSrc=`: a root filesystem tar as an image.
    pub async fn image_import(
        self: &Arc<Self>,
        mut src: std::fs::File,
        changes: Vec<String>,
        comment: String,
        source: String,
        tag: Option<ImageRef>,
    ) -> Result<crate::model::Digest, EngineError> {
        let engine = self.clone();
        let name = tag.as_ref().map(|t| t.familiar());
        let id = tokio::task::spawn_blocking(move || {
            // A spool file is handed over at its end.
            std::io::Seek::seek(&mut src, std::io::SeekFrom::Start(0))
                .map_err(ImageError::io("the import"))?;
            crate::image::build::import_rootfs(
                &engine.images,
                std::io::BufReader::new(src),
                &changes,
                &comment,
                &source,
                tag.as_ref(),
            )
        })
        .await
        .map_err(EngineError::task("import"))??;
        let name = name.unwrap_or_else(|| id.to_string());
        self.events
            .emit("image", "import", &id.to_string(), &[("name", &name)]);
        Ok(id)
    }

    /// `GET /distribution/{name}/json`: the registry's descriptor and
    /// platforms for `r`, nothing pulled.
    pub async fn distribution_inspect(
        &self,
        r: &ImageRef,
        creds: Option<&Credentials>,
    ) -> Result<serde_json::Value, EngineError> {
        Ok(registry::inspect(&self.registry, r, creds).await?)
    }

    /// `POST /images/create?fromImage=`: pull, reporting progress.
    pub async fn image_pull(
        &self,
        r: &ImageRef,
        platform: Option<&Platform>,
        creds: Option<&Credentials>,
        report: registry::ProgressFn<'_>,
    ) -> Result<(), EngineError> {
        registry::pull(&self.registry, &self.images, r, platform, creds, report).await?;
        let name = r.familiar();
        self.events.emit("image", "pull", &name, &[("name", &name)]);
        Ok(())
    }

    /// `POST /images/{name}/push`, as a CNCF Wasm artifact if `artifact`.
    pub async fn image_push(
        &self,
        img: &Image,
        target: &ImageRef,
        creds: Option<&Credentials>,
        artifact: bool,
        report: registry::ProgressFn<'_>,
    ) -> Result<(), EngineError> {
        registry::push(
            &self.registry,
            &self.images,
            img,
            target,
            creds,
            artifact,
            report,
        )
        .await?;
        let name = target.familiar();
        self.events.emit("image", "push", &name, &[("name", &name)]);
        Ok(())
    }

    /// `POST /images/load` of an archive spooled to `archive`. Returns the
    /// lines Docker reports (`Loaded image: …`).
    pub async fn image_load(&self, archive: &Path) -> Result<Vec<String>, EngineError> {
        let store = self.images.clone();
        let path = archive.to_path_buf();
        let lines = tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(&path).map_err(ImageError::io(&path))?;
            crate::image::archive::load(&store, std::io::BufReader::new(f))
        })
        .await
        .map_err(EngineError::task("image load"))??;
        Ok(lines)
    }

    /// `GET /images/get`: write the images as one archive. Blocking.
    pub fn image_save(
        &self,
        images: &[(Image, Vec<ImageRef>)],
        out: impl std::io::Write,
    ) -> Result<(), EngineError> {
        Ok(crate::image::archive::save(&self.images, images, out)?)
    }

    /// `POST /build` of a context spooled to `context`: unpack it under
    /// the build-context policy into `dir`, then build, sending output to
    /// `out`. RUN steps run as Linux containers where this host has them.
    /// Blocking. Linux only: the context is unpacked and read through
    /// [`crate::confine::Root`].
    #[cfg(target_os = "linux")]
    pub fn image_build(
        self: &Arc<Self>,
        context: &Path,
        dir: &Path,
        opts: &BuildOptions,
        out: &mut dyn FnMut(&str),
    ) -> Result<crate::model::Digest, EngineError> {
        extract_context(context, dir, &opts.dockerfile)?;
        // The upload is in `dir` now: free its space for the build.
        let _ = std::fs::remove_file(context);
        let runner = self.backends.step_runner(self);
        Ok(crate::image::build::build(
            &self.images,
            dir,
            opts,
            runner.as_deref(),
            out,
        )?)
    }

    /// `POST /build` where there is no [`crate::confine::Root`] to unpack
    /// and read the context through: refused.
    #[cfg(not(target_os = "linux"))]
    pub fn image_build(
        self: &Arc<Self>,
        _context: &Path,
        _dir: &Path,
        _opts: &BuildOptions,
        _out: &mut dyn FnMut(&str),
    ) -> Result<crate::model::Digest, EngineError> {
        Err(EngineError::InvalidArgument(
            "building images needs a Linux host".into(),
        ))
    }
}

fn untagged(r: &ImageRef) -> DeleteItem {
    DeleteItem {
        untagged: Some(r.familiar()),
        deleted: None,
    }
}

fn deleted_item(id: String) -> DeleteItem {
    DeleteItem {
        untagged: None,
        deleted: Some(id),
    }
}

/// Progress lines of a `load`, as the Engine API streams them.
pub fn load_lines(lines: &[String]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| JsonMessage::stream(format!("{l}\n")).to_line())
        .collect()
}

/// Unpack an uploaded context tar into the fresh directory `dest`,
/// dropping what `.dockerignore` excludes, under the build-context policy
/// of [`crate::confine::archive`] (no devices, nothing written through a
/// symlink, bounded in entries and bytes, bombs refused).
#[cfg(target_os = "linux")]
fn extract_context(tar_path: &Path, dest: &Path, dockerfile: &str) -> Result<(), ImageError> {
    use crate::confine::archive::{self, EntryKind, Kind, Limits, Policy, Target};
    use crate::image::build::ignore::Ignore;
    let policy = Policy {
        kind: Kind::Context,
        limits: Limits {
            max_entries: crate::image::build::MAX_CONTEXT_ENTRIES as u64,
            ..Limits::daemon()
        },
    };
    let bad = |e: crate::confine::ConfineError| ImageError::Archive(format!("build context: {e}"));
    let open = || std::fs::File::open(tar_path).map_err(ImageError::io(tar_path));
    let mut ignore_src = Vec::new();
    archive::entries(open()?, &policy, &mut |e, data| {
        if e.kind == EntryKind::File && e.path.to_string() == ".dockerignore" {
            ignore_src = crate::confine::read_bounded(data, 1 << 20, ".dockerignore")?;
        }
        Ok(())
    })
    .map_err(bad)?;
    let ignore = Ignore::parse(&String::from_utf8_lossy(&ignore_src));
    let keep_always = [
        "/.dockerignore".to_string(),
        crate::fsutil::clean_abs(dockerfile),
    ];
    std::fs::create_dir_all(dest).map_err(ImageError::io(dest))?;
    let root = crate::confine::Root::open(dest).map_err(bad)?;
    let mut file = Some(open()?);
    archive::extract_filtered(
        &root,
        &mut || {
            file.take()
                .map(|f| Box::new(f) as Box<dyn std::io::Read>)
                .ok_or_else(|| std::io::Error::other("a context is read once"))
        },
        &policy,
        Target::Fresh,
        &|e| {
            let clean = format!("/{}", e.path);
            keep_always.contains(&clean) || !ignore.excluded(clean.trim_start_matches('/'))
        },
    )
    .map_err(bad)?;
    Ok(())
}
