//! Image endpoints: list, inspect, tag, remove, save, load, build.

use super::http::{error, json, stream, Query, Resp};
use crate::api::types::JsonMessage;
use crate::engine::images::load_lines;
use crate::engine::view;
use crate::engine::{Engine, EngineError};
use crate::image::build::BuildOptions;
use crate::image::ImageError;
use crate::model::ImageRef;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::StatusCode;
use std::io::Write;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Uploaded build contexts and archives larger than this are refused.
pub const MAX_UPLOAD: u64 = 8 << 30;

pub async fn list(engine: &Arc<Engine>, q: &Query) -> Resp {
    let filters = match super::filters::Filters::parse(q.get("filters"), super::filters::IMAGES)
        .and_then(|f| {
            f.only("dangling", &["true", "false", "1", "0"])?;
            Ok(f)
        }) {
        Ok(f) => f,
        Err(e) => return error(&e),
    };
    let images = match engine.images().list() {
        Ok(i) => i,
        Err(e) => return error(&e.into()),
    };
    // `before` and `since` name images, ordered by when they were made
    // (see `ImageStore::made_at`), then by their place in the store;
    // `until` is a time.
    let place: std::collections::HashMap<&crate::model::Digest, usize> = images
        .iter()
        .enumerate()
        .map(|(i, img)| (&img.id, i))
        .collect();
    let order = |img: &crate::image::Image| {
        let added = place.get(&img.id).copied().unwrap_or(0);
        let made = engine.images().made_at(img);
        (
            made.and_then(|t| t.timestamp_nanos_opt()).unwrap_or(0),
            added,
        )
    };
    let created = |key: &str| -> Result<Vec<(i64, usize)>, EngineError> {
        let mut out = Vec::new();
        for v in filters.get(key).unwrap_or_default() {
            let img = engine.images().resolve(v).map_err(EngineError::from)?;
            out.push(order(&img));
        }
        Ok(out)
    };
    let (before, since) = match (created("before"), created("since")) {
        (Ok(b), Ok(s)) => (b, s),
        (Err(e), _) | (_, Err(e)) => return error(&e),
    };
    // A time, or a duration back from now (`24h`), as a prune's.
    let mut until = Vec::new();
    for v in filters.get("until").unwrap_or_default() {
        match super::filters::until(v) {
            Ok(t) => until.push(t.timestamp_nanos_opt().unwrap_or(i64::MAX)),
            Err(e) => return error(&e),
        }
    }
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
        let at = order(img);
        let ok = filters.pass(|k, v| match k {
            "label" => super::filters::label(|k| s.labels.get(k).map(String::as_str), v),
            "before" => before.iter().any(|t| at < *t),
            "since" => since.iter().any(|t| at > *t),
            "until" => until.iter().any(|t| at.0 < *t),
            // Decided above.
            "reference" | "dangling" => true,
            _ => false,
        });
        if !ok {
            continue;
        }
        out.push(s);
    }
    json(StatusCode::OK, &out)
}

pub async fn inspect(engine: &Arc<Engine>, name: &str) -> Resp {
    match engine.image(name).await {
        Ok(img) => json(StatusCode::OK, &view::image_inspect(engine, &img)),
        Err(e) => error(&e),
    }
}

/// `POST /images/create?fromSrc=-|URL&repo=&tag=&message=&changes=`: a
/// root filesystem tar (the body, or fetched from an http(s) URL, at most
/// the archive limit) as a one-layer image. Answers Docker's progress line
/// with the new image's id.
pub async fn import(engine: &Arc<Engine>, q: &Query, body: hyper::body::Incoming) -> Resp {
    let source = q.get("fromSrc").unwrap_or("-").to_string();
    let tag = match q.get("repo").filter(|r| !r.is_empty()) {
        None => None,
        Some(repo) => match ImageRef::parse(repo) {
            Ok(r) if r.digest.is_none() => Some(match q.get("tag").filter(|t| !t.is_empty()) {
                Some(t) => r.with_tag(t),
                None if r.tag.is_some() => r,
                None => r.with_tag("latest"),
            }),
            Ok(_) => {
                return error(&EngineError::InvalidArgument(format!(
                    "invalid repository name {repo:?}: a digest cannot be given"
                )))
            }
            Err(e) => return error(&ImageError::from(e).into()),
        },
    };
    let file = if source == "-" {
        match super::archive::spool(&engine.tmp_dir(), body).await {
            Ok(f) => f,
            Err(resp) => return resp,
        }
    } else {
        match fetch_source(engine, &source).await {
            Ok(f) => f,
            Err(resp) => return resp,
        }
    };
    let changes = changes(q);
    let message = q.get("message").unwrap_or("").to_string();
    match engine
        .image_import(file, changes, message, source, tag)
        .await
    {
        Ok(id) => json(
            StatusCode::OK,
            &serde_json::json!({"status": id.to_string()}),
        ),
        Err(e) => error(&e),
    }
}

/// Download an import's source into a spool file: http(s) only, no proxy,
/// a 404 or the like named.
async fn fetch_source(engine: &Arc<Engine>, url: &str) -> Result<std::fs::File, Resp> {
    let bad = |m: String| {
        error(&EngineError::InvalidArgument(format!(
            "import from {url}: {m}"
        )))
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("only http and https sources are fetched".into()));
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let resp = client
        .get(parsed)
        .send()
        .await
        .map_err(|e| bad(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(bad(format!("the server answered {}", resp.status())));
    }
    super::archive::spool(&engine.tmp_dir(), reqwest::Body::from(resp)).await
}

/// The `changes` of an import or a commit: repeated, or several lines
/// in one.
fn changes(q: &Query) -> Vec<String> {
    q.all("changes")
        .iter()
        .flat_map(|c| c.lines())
        .filter(|c| !c.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=`:
/// 201 `{"Id"}`. `changes` may repeat, or hold several lines.
pub async fn commit(engine: &Arc<Engine>, q: &Query) -> Resp {
    let Some(container) = q.get("container").filter(|c| !c.is_empty()) else {
        return error(&EngineError::InvalidArgument(
            "commit needs a container (container=)".into(),
        ));
    };
    let tag = match q.get("repo").filter(|r| !r.is_empty()) {
        None => None,
        Some(repo) => {
            let tag = q.get("tag").filter(|t| !t.is_empty()).unwrap_or("latest");
            match ImageRef::parse_any(repo) {
                Ok(r) if r.digest.is_none() && r.tag.is_none() => Some(r.with_tag(tag)),
                Ok(_) => {
                    return error(&EngineError::InvalidArgument(format!(
                        "invalid repository name {repo:?}: give the tag separately"
                    )))
                }
                Err(e) => return error(&ImageError::from(e).into()),
            }
        }
    };
    let o = crate::engine::images::CommitOptions {
        tag,
        changes: changes(q),
        comment: q.get("comment").unwrap_or("").to_string(),
        author: q.get("author").unwrap_or("").to_string(),
        // Docker pauses unless told not to.
        pause: q.get("pause").is_none_or(|_| q.flag("pause")),
    };
    match engine.commit(container, o).await {
        Ok(id) => json(
            StatusCode::CREATED,
            &serde_json::json!({"Id": id.to_string()}),
        ),
        Err(e) => error(&e),
    }
}

pub async fn history(engine: &Arc<Engine>, name: &str) -> Resp {
    match engine.image(name).await {
        Ok(img) => json(StatusCode::OK, &view::image_history(&img)),
        Err(e) => error(&e),
    }
}

pub async fn tag(engine: &Arc<Engine>, name: &str, q: &Query) -> Resp {
    let repo = q.get("repo").unwrap_or("");
    let tag = q.get("tag").filter(|t| !t.is_empty()).unwrap_or("latest");
    let r = match ImageRef::parse_any(repo) {
        Ok(r) if r.digest.is_none() && r.tag.is_none() => r.with_tag(tag),
        Ok(_) => {
            return error(&EngineError::InvalidArgument(format!(
                "invalid repository name {repo:?}: give the tag separately"
            )))
        }
        Err(e) => return error(&ImageError::from(e).into()),
    };
    let r = match ImageRef::parse(&r.to_string()) {
        Ok(r) => r,
        Err(e) => return error(&ImageError::from(e).into()),
    };
    match engine.image_tag(name, &r).await {
        Ok(()) => super::http::empty(StatusCode::CREATED),
        Err(e) => error(&e),
    }
}

pub async fn remove(engine: &Arc<Engine>, name: &str, q: &Query) -> Resp {
    match engine.image_remove(name, q.flag("force")).await {
        Ok(items) => json(StatusCode::OK, &items),
        Err(e) => error(&e),
    }
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
        return error(&EngineError::InvalidArgument(
            "no image names given to save".into(),
        ));
    }
    let mut images = Vec::new();
    for n in &names {
        match engine.image(n).await {
            Ok(img) => {
                let refs = match ImageRef::parse(n) {
                    Ok(r) if img.refs.contains(&r) => vec![r],
                    _ => img.refs.clone(),
                };
                images.push((img, refs));
            }
            Err(e) => return error(&e),
        }
    }
    let (tx, resp) = stream("application/x-tar");
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = engine.image_save(
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
    match engine.image_load(&file.0).await {
        Ok(lines) => super::http::raw_json(StatusCode::OK, load_lines(&lines)),
        Err(e) => error(&e),
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
                return error(&EngineError::InvalidArgument(format!(
                    "invalid buildargs {args:?}: {e}"
                )))
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
    opts.cache_dir = Some(engine.root().join("build-cache"));
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || {
        let send = |m: JsonMessage| {
            let _ = tx.blocking_send(m.to_line());
        };
        let result = engine.image_build(&upload.0, &ctx_dir.0, &opts, &mut |s| {
            send(JsonMessage::stream(s))
        });
        drop(upload);
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
