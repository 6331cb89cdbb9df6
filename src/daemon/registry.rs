//! Registry endpoints: pull (`POST /images/create`), push, `POST /auth`,
//! and the prunes (`/images/prune`, `/containers/prune`).

use super::http::{error, json, read_json, stream, Query, Resp};
use super::MAX_JSON_BODY;
use crate::api::types::JsonMessage;
use crate::engine::{Engine, EngineError};
use crate::image::registry::{Credentials, Platform};
use crate::image::ImageError;
use crate::model::ImageRef;
use hyper::body::Incoming;
use hyper::{HeaderMap, StatusCode};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::mpsc;

enum Event {
    Msg(JsonMessage),
    Done(Result<(), EngineError>),
}

/// Run a registry operation that reports progress. Until its first message
/// a failure is a plain HTTP error (so a missing image is a 404); after
/// that, the answer is a stream of JSON lines ending in `{"error": ...}`.
async fn progress_stream<F, Fut>(op: F) -> Resp
where
    F: FnOnce(Arc<dyn Fn(JsonMessage) + Send + Sync>) -> Fut,
    Fut: Future<Output = Result<(), EngineError>> + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let msgs = tx.clone();
    let report: Arc<dyn Fn(JsonMessage) + Send + Sync> = Arc::new(move |m| {
        let _ = msgs.send(Event::Msg(m));
    });
    let fut = op(report);
    tokio::spawn(async move {
        let r = fut.await;
        let _ = tx.send(Event::Done(r));
    });
    let first = match rx.recv().await {
        Some(Event::Msg(m)) => m,
        Some(Event::Done(Err(e))) => return error(&e),
        Some(Event::Done(Ok(()))) | None => return json(StatusCode::OK, &serde_json::json!({})),
    };
    let (out, resp) = stream("application/json");
    tokio::spawn(async move {
        if out.send(first.to_line()).await.is_err() {
            return;
        }
        while let Some(ev) = rx.recv().await {
            let line = match ev {
                Event::Msg(m) => m.to_line(),
                Event::Done(Ok(())) => return,
                Event::Done(Err(e)) => JsonMessage::error(e.to_string()).to_line(),
            };
            if out.send(line).await.is_err() {
                return;
            }
        }
    });
    resp
}

fn credentials(headers: &HeaderMap) -> Result<Option<Credentials>, EngineError> {
    match headers.get("x-registry-auth").map(|v| v.to_str()) {
        None => Ok(None),
        Some(Ok(v)) => {
            Credentials::from_header(v).map_err(|e| EngineError::InvalidArgument(e.to_string()))
        }
        Some(Err(_)) => Err(EngineError::InvalidArgument(
            "invalid X-Registry-Auth header: not ASCII".into(),
        )),
    }
}

/// `POST /images/create?fromImage=&tag=&platform=`: pull.
/// `GET /distribution/{name}/json`.
pub async fn distribution(engine: &Arc<Engine>, name: &str, headers: &HeaderMap) -> Resp {
    let creds = match credentials(headers) {
        Ok(c) => c,
        Err(e) => return error(&e),
    };
    let r = match ImageRef::parse(name) {
        Ok(r) => r,
        Err(e) => return error(&ImageError::from(e).into()),
    };
    match engine.distribution_inspect(&r, creds.as_ref()).await {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => error(&e),
    }
}

pub async fn pull(engine: &Arc<Engine>, q: &Query, headers: &HeaderMap) -> Resp {
    let creds = match credentials(headers) {
        Ok(c) => c,
        Err(e) => return error(&e),
    };
    let Some(from) = q.get("fromImage").filter(|f| !f.is_empty()) else {
        return error(&EngineError::InvalidArgument(
            "pull needs fromImage (or fromSrc, to import a root filesystem)".into(),
        ));
    };
    let name = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) if t.starts_with("sha256:") => format!("{from}@{t}"),
        Some(t) => format!("{from}:{t}"),
        None => from.to_string(),
    };
    let r = match ImageRef::parse(&name) {
        Ok(r) => r,
        Err(e) => return error(&ImageError::from(e).into()),
    };
    let platform = match q
        .get("platform")
        .filter(|p| !p.is_empty())
        .map(Platform::parse)
    {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => return error(&EngineError::InvalidArgument(e.to_string())),
    };
    let engine = engine.clone();
    progress_stream(move |report| async move {
        engine
            .image_pull(&r, platform.as_ref(), creds.as_ref(), &*report)
            .await
    })
    .await
}

/// `POST /images/{name}/push?tag=`; `wasm-artifact=1` pushes a Wasm image
/// in the CNCF artifact form.
pub async fn push(engine: &Arc<Engine>, name: &str, q: &Query, headers: &HeaderMap) -> Resp {
    let creds = match credentials(headers) {
        Ok(c) => c,
        Err(e) => return error(&e),
    };
    let full = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{name}:{t}"),
        None => name.to_string(),
    };
    let target = match ImageRef::parse(&full) {
        Ok(r) => r,
        Err(e) => return error(&ImageError::from(e).into()),
    };
    let img = match engine.image(&full).await {
        Ok(i) => i,
        Err(EngineError::Image(ImageError::NotFound(_))) => {
            return error(&EngineError::NotFound(format!(
                "An image does not exist locally with the tag: {}",
                target.familiar()
            )))
        }
        Err(e) => return error(&e),
    };
    let artifact = q.flag("wasm-artifact");
    let engine = engine.clone();
    progress_stream(move |report| async move {
        engine
            .image_push(&img, &target, creds.as_ref(), artifact, &*report)
            .await
    })
    .await
}

/// `POST /auth`: check credentials with the registry.
pub async fn auth(engine: &Arc<Engine>, body: Incoming) -> Resp {
    let creds: Credentials = match read_json(body, MAX_JSON_BODY).await {
        Ok(c) => c,
        Err(e) => return error(&e),
    };
    match engine.registry().login(&creds.server_address, &creds).await {
        Ok(()) => json(
            StatusCode::OK,
            &serde_json::json!({"Status": "Login Succeeded", "IdentityToken": ""}),
        ),
        Err(e) => error(&e.into()),
    }
}

/// `POST /images/prune?filters={"dangling":["false"]}`: remove images no
/// container uses (untagged ones only, unless `dangling=false`), then
/// unreachable blobs and unfinished downloads.
pub async fn prune_images(engine: &Arc<Engine>, q: &Query) -> Resp {
    let (f, keep) = match super::filters::prune(q.get("filters"), super::filters::PRUNE_IMAGES) {
        Ok(f) => f,
        Err(e) => return error(&e),
    };
    if let Err(e) = f.only("dangling", &["true", "false", "1", "0"]) {
        return error(&e);
    }
    let all = f
        .get("dangling")
        .is_some_and(|d| d.iter().any(|x| x == "false" || x == "0"));
    let result = engine.image_prune(all, keep).await;
    match result {
        Ok((items, freed)) => json(
            StatusCode::OK,
            &serde_json::json!({"ImagesDeleted": items, "SpaceReclaimed": freed}),
        ),
        Err(e) => error(&e),
    }
}

/// `POST /containers/prune`: remove every stopped container the filters
/// admit.
pub async fn prune_containers(engine: &Arc<Engine>, q: &Query) -> Resp {
    let keep = match super::filters::prune(q.get("filters"), super::filters::PRUNE_CONTAINERS) {
        Ok((_, keep)) => keep,
        Err(e) => return error(&e),
    };
    match engine.container_prune(&keep).await {
        Ok(deleted) => json(
            StatusCode::OK,
            &serde_json::json!({"ContainersDeleted": deleted, "SpaceReclaimed": 0}),
        ),
        Err(e) => error(&e),
    }
}
