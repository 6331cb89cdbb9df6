//! Image endpoints: list, inspect, tag, remove, save, load, build.

use super::http::{error, error_msg, json, stream, Query, Resp};
use crate::api::types::{DeleteItem, JsonMessage};
use crate::engine::view;
use crate::engine::{Engine, EngineError};
use crate::image::build::{ignore::Ignore, BuildOptions};
use crate::image::{ImageError, ImageStore};
use crate::model::ImageRef;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::StatusCode;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Uploaded build contexts and archives larger than this are refused.
pub const MAX_UPLOAD: u64 = 8 << 30;

pub async fn list(engine: &Arc<Engine>, q: &Query) -> Resp {
    let filters = match q
        .get("filters")
        .filter(|f| !f.is_empty())
        .map(super::containers::parse_filters)
        .transpose()
    {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => return error(&e),
    };
    let images = match engine.images().list() {
        Ok(i) => i,
        Err(e) => return error(&e.into()),
    };
    let user_images: Vec<_> = engine.list().iter().map(|c| c.record().image_id).collect();
    let mut out = Vec::new();
    for img in &images {
        let n = user_images.iter().filter(|id| **id == img.id).count() as i64;
        let mut s = view::image_summary(img, n);
        if let Some(refs) = filters.get("reference") {
            s.repo_tags.retain(|t| {
                refs.iter().any(|r| {
                    crate::image::build::ignore::glob(r.as_bytes(), t.as_bytes())
                        || crate::image::build::ignore::glob(
                            r.as_bytes(),
                            t.split(':').next().unwrap_or("").as_bytes(),
                        )
                })
            });
            if s.repo_tags.is_empty() {
                continue;
            }
        }
        if let Some(d) = filters.get("dangling") {
            let want = d.iter().any(|v| v == "true" || v == "1");
            if want != img.refs.is_empty() {
                continue;
            }
        }
        out.push(s);
    }
    json(StatusCode::OK, &out)
}

pub async fn inspect(engine: &Arc<Engine>, name: &str) -> Resp {
    match resolve(engine.images(), name).await {
        Ok(img) => json(StatusCode::OK, &view::image_inspect(&img)),
        Err(e) => error(&e.into()),
    }
}

async fn resolve(store: &Arc<ImageStore>, name: &str) -> Result<crate::image::Image, ImageError> {
    let s = store.clone();
    let n = name.to_string();
    tokio::task::spawn_blocking(move || s.resolve(&n))
        .await
        .expect("resolve task")
}

pub async fn tag(engine: &Arc<Engine>, name: &str, q: &Query) -> Resp {
    let repo = q.get("repo").unwrap_or("");
    let tag = q.get("tag").filter(|t| !t.is_empty()).unwrap_or("latest");
    let r = match ImageRef::parse_any(repo) {
        Ok(r) if r.digest.is_none() && r.tag.is_none() => r.with_tag(tag),
        Ok(_) => {
            return error_msg(
                StatusCode::BAD_REQUEST,
                format!("invalid repository name {repo:?}: give the tag separately"),
            )
        }
        Err(e) => return error(&ImageError::from(e).into()),
    };
    let r = match ImageRef::parse(&r.to_string()) {
        Ok(r) => r,
        Err(e) => return error(&ImageError::from(e).into()),
    };
    let img = match resolve(engine.images(), name).await {
        Ok(i) => i,
        Err(e) => return error(&e.into()),
    };
    match engine.images().tag(&img, &r) {
        Ok(()) => {
            engine
                .events()
                .emit("image", "tag", img.id.as_str(), &[("name", &r.familiar())]);
            super::http::empty(StatusCode::CREATED)
        }
        Err(e) => error(&e.into()),
    }
}

pub async fn remove(engine: &Arc<Engine>, name: &str, q: &Query) -> Resp {
    let force = q.flag("force");
    match remove_image(engine, name, force).await {
        Ok(items) => {
            for i in &items {
                match (&i.untagged, &i.deleted) {
                    (Some(u), _) => engine.events().emit("image", "untag", u, &[("name", u)]),
                    (None, Some(d)) => engine.events().emit("image", "delete", d, &[("name", d)]),
                    _ => {}
                }
            }
            json(StatusCode::OK, &items)
        }
        Err(e) => error(&e),
    }
}

async fn remove_image(
    engine: &Arc<Engine>,
    name: &str,
    force: bool,
) -> Result<Vec<DeleteItem>, EngineError> {
    let img = resolve(engine.images(), name).await?;
    let by_ref = ImageRef::parse(name).ok().filter(|r| img.refs.contains(r));
    let users = engine.containers_using(&img.id);
    let mut items = Vec::new();
    let untag_all = match &by_ref {
        Some(r) if img.refs.len() > 1 => {
            engine.images().untag(r)?;
            return Ok(vec![DeleteItem {
                untagged: Some(r.familiar()),
                deleted: None,
            }]);
        }
        Some(_) => false,
        None => {
            if img.refs.len() > 1 && !force {
                return Err(EngineError::Conflict(format!("conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories", img.id.short())));
            }
            true
        }
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
    for r in &refs {
        engine.images().untag(r)?;
        items.push(DeleteItem {
            untagged: Some(r.familiar()),
            deleted: None,
        });
    }
    engine.images().remove_manifest(&img.manifest_digest)?;
    // Blobs shared with other images stay; GC removes only unreachable ones.
    let s = engine.images().clone();
    let deleted = tokio::task::spawn_blocking(move || s.gc())
        .await
        .expect("gc task")?;
    items.push(DeleteItem {
        untagged: None,
        deleted: Some(img.id.to_string()),
    });
    for (d, _) in deleted.into_iter().filter(|(d, _)| *d != img.id) {
        items.push(DeleteItem {
            untagged: None,
            deleted: Some(d.to_string()),
        });
    }
    Ok(items)
}

/// A `Write` that feeds an HTTP body from a blocking thread.
struct ChannelWriter(mpsc::Sender<Bytes>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub async fn save(engine: &Arc<Engine>, q: &Query) -> Resp {
    save_names(engine, q.all("names")).await
}

pub async fn save_one(engine: &Arc<Engine>, name: &str) -> Resp {
    save_names(engine, vec![name.to_string()]).await
}

async fn save_names(engine: &Arc<Engine>, names: Vec<String>) -> Resp {
    if names.is_empty() {
        return error_msg(StatusCode::BAD_REQUEST, "no image names given to save");
    }
    let mut images = Vec::new();
    for n in &names {
        match resolve(engine.images(), n).await {
            Ok(img) => {
                let refs = match ImageRef::parse(n) {
                    Ok(r) if img.refs.contains(&r) => vec![r],
                    _ => img.refs.clone(),
                };
                images.push((img, refs));
            }
            Err(e) => return error(&e.into()),
        }
    }
    let (tx, resp) = stream("application/x-tar");
    let store = engine.images().clone();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = crate::image::archive::save(
            &store,
            &images,
            std::io::BufWriter::with_capacity(1 << 16, ChannelWriter(tx)),
        ) {
            tracing::warn!("save failed: {e}");
        }
    });
    resp
}

/// Spool a request body to a file under the daemon's tmp dir.
async fn spool(
    engine: &Engine,
    body: Incoming,
    what: &str,
) -> Result<tempfile_path::TempPath, EngineError> {
    let path = engine
        .tmp_dir()
        .join(format!("{what}-{}", rand::random::<u64>()));
    let guard = tempfile_path::TempPath(path.clone());
    let mut f = tokio::fs::File::create(&path)
        .await
        .map_err(EngineError::io(&path))?;
    let mut body = body;
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| EngineError::InvalidArgument(format!("cannot read {what} upload: {e}")))?;
        if let Ok(data) = frame.into_data() {
            n += data.len() as u64;
            if n > MAX_UPLOAD {
                return Err(EngineError::InvalidArgument(format!(
                    "{what} upload is larger than {MAX_UPLOAD} bytes"
                )));
            }
            tokio::io::AsyncWriteExt::write_all(&mut f, &data)
                .await
                .map_err(EngineError::io(&path))?;
        }
    }
    // tokio's File finishes its last write in the background: wait for it,
    // or the reader that opens the path next may see a truncated file.
    tokio::io::AsyncWriteExt::flush(&mut f)
        .await
        .map_err(EngineError::io(&path))?;
    Ok(guard)
}

/// A temp path removed (file or directory) when dropped.
mod tempfile_path {
    pub struct TempPath(pub std::path::PathBuf);
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0).or_else(|_| std::fs::remove_file(&self.0));
        }
    }
}

pub async fn load(engine: &Arc<Engine>, body: Incoming) -> Resp {
    let file = match spool(engine, body, "load").await {
        Ok(f) => f,
        Err(e) => return error(&e),
    };
    let store = engine.images().clone();
    let result = tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&file.0).map_err(ImageError::io(&file.0))?;
        crate::image::archive::load(&store, std::io::BufReader::new(f))
    })
    .await
    .expect("load task");
    match result {
        Ok(lines) => {
            let body: Vec<u8> = lines
                .iter()
                .flat_map(|l| JsonMessage::stream(format!("{l}\n")).to_line())
                .collect();
            let mut r = hyper::Response::new(super::http::full(body));
            r.headers_mut()
                .insert("content-type", "application/json".parse().expect("header"));
            r
        }
        Err(e) => error(&e.into()),
    }
}

pub async fn build(engine: &Arc<Engine>, q: &Query, body: Incoming) -> Resp {
    let mut opts = BuildOptions {
        dockerfile: q.get("dockerfile").unwrap_or("Dockerfile").to_string(),
        platform: q
            .get("platform")
            .filter(|p| !p.is_empty())
            .map(str::to_string),
        ..Default::default()
    };
    for t in q.all("t") {
        match ImageRef::parse(&t) {
            Ok(r) => opts.tags.push(r),
            Err(e) => return error(&ImageError::from(e).into()),
        }
    }
    if let Some(args) = q.get("buildargs").filter(|a| !a.is_empty()) {
        match serde_json::from_str::<std::collections::BTreeMap<String, Option<String>>>(args) {
            Ok(m) => {
                opts.build_args = m
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| (k, v)))
                    .collect()
            }
            Err(e) => {
                return error_msg(
                    StatusCode::BAD_REQUEST,
                    format!("invalid buildargs {args:?}: {e}"),
                )
            }
        }
    }
    let upload = match spool(engine, body, "context").await {
        Ok(f) => f,
        Err(e) => return error(&e),
    };
    let ctx_dir = tempfile_path::TempPath(
        engine
            .tmp_dir()
            .join(format!("build-{}", rand::random::<u64>())),
    );
    let (tx, resp) = stream("application/json");
    let store = engine.images().clone();
    opts.cache_dir = Some(engine.root().join("build-cache"));
    #[cfg(all(feature = "linux", target_os = "linux"))]
    let runner_impl = engine.build_runner();
    tokio::task::spawn_blocking(move || {
        #[cfg(all(feature = "linux", target_os = "linux"))]
        let runner = runner_impl
            .as_ref()
            .map(|r| r as &dyn crate::image::build::StepRunner);
        #[cfg(not(all(feature = "linux", target_os = "linux")))]
        let runner = None;
        let send = |m: JsonMessage| {
            let _ = tx.blocking_send(m.to_line());
        };
        let result = extract_context(&upload.0, &ctx_dir.0, &opts.dockerfile).and_then(|()| {
            drop(upload);
            crate::image::build::build(&store, &ctx_dir.0, &opts, runner, &mut |s| {
                send(JsonMessage::stream(s))
            })
        });
        match result {
            Ok(id) => send(JsonMessage {
                aux: Some(serde_json::json!({ "ID": id.to_string() })),
                ..Default::default()
            }),
            Err(e) => send(JsonMessage::error(e.to_string())),
        }
    });
    resp
}

/// Unpack an uploaded context tar into the fresh directory `dest`,
/// dropping what `.dockerignore` excludes, under the build-context policy
/// of [`crate::confine::archive`] (no devices, nothing written through a
/// symlink, bounded in entries and bytes, bombs refused).
fn extract_context(tar_path: &Path, dest: &Path, dockerfile: &str) -> Result<(), ImageError> {
    use crate::confine::archive::{self, EntryKind, Kind, Limits, Policy, Target};
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
