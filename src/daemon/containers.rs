//! Container endpoints.

use super::error::RequestError;
use super::filters::{self, Filters};
use super::http::{checked_body, empty, error, json, refuse, stream, Query, Resp};
use crate::api::stream::{encode, encode_raw, StdStream, EXIT_STREAM};
use crate::api::types::{ContainerCreateRequest, IdResponse, WaitError, WaitResponse};
use crate::api::{MEDIA_MULTIPLEXED, MEDIA_RAW};
use crate::engine::logs::{read_entries, LogEvent, Mark};
use crate::engine::view;
use crate::engine::{Engine, EngineError, WaitCondition};
use crate::runtime::RuntimeStats;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::broadcast::error::RecvError;

/// Time between stats samples.
const STATS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

pub async fn create(engine: &Arc<Engine>, q: &Query, body: Incoming) -> Resp {
    let req = match create_request(body).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match engine.create(q.get("name"), req).await {
        Ok(rec) => json(
            StatusCode::CREATED,
            &IdResponse {
                id: rec.id.to_string(),
                warnings: vec![],
            },
        ),
        Err(e) => error(&e),
    }
}

/// A create body: read, its fields checked (see [`super::fields`]), then
/// typed.
async fn create_request(body: Incoming) -> Result<ContainerCreateRequest, Resp> {
    checked_body(body, super::fields::check).await
}

/// `POST /containers/run?name=`, ketch's own: create, attach, start and
/// wait in one request, for a client with neither a terminal nor stdin
/// (`ketch run`, which otherwise makes four). The body is a create's. The
/// answer is a 101 (`Upgrade: tcp`) carrying the id in
/// `Ketch-Container-Id`, then stdout and stderr framed as attach frames
/// them, then one frame of stream [`EXIT_STREAM`] holding the wait response:
/// after the exit, or with `AutoRemove` after the removal. A create or start
/// that fails is answered as those endpoints answer it.
pub async fn run(engine: &Arc<Engine>, q: &Query, mut req: Request<Incoming>) -> Resp {
    if req.headers().get(hyper::header::UPGRADE).is_none() {
        return error(&EngineError::InvalidArgument(
            "POST /containers/run streams the container's output: it needs `Upgrade: tcp`".into(),
        ));
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let body = match create_request(req.into_body()).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if body.config.tty || body.config.open_stdin {
        return error(&EngineError::InvalidArgument(
            "POST /containers/run takes no terminal and no stdin: create, attach and start such a container".into(),
        ));
    }
    let rec = match engine.create(q.get("name"), body).await {
        Ok(rec) => rec,
        Err(e) => return error(&e),
    };
    let id = rec.id.to_string();
    let with_id = |mut resp: Resp| {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&id) {
            resp.headers_mut().insert("ketch-container-id", v);
        }
        resp
    };
    // Output and the exit are subscribed to before the start.
    let mut rx = match engine.lookup(&id) {
        Ok(c) => c.log.snapshot_and_subscribe().1,
        Err(e) => return with_id(error(&e)),
    };
    let cond = if rec.host_config.auto_remove {
        WaitCondition::Removed
    } else {
        WaitCondition::NextExit
    };
    let waited = match engine.wait(&id, cond) {
        Ok(f) => f,
        Err(e) => return with_id(error(&e)),
    };
    if let Err(e) = engine.start(&id).await {
        return with_id(error(&e));
    }
    tokio::spawn(async move {
        let mut io = match on_upgrade.await {
            Ok(u) => TokioIo::new(u),
            Err(e) => {
                tracing::debug!("run upgrade failed: {e}");
                return;
            }
        };
        while let Some(b) = next_output(&mut rx, |_| true, false).await {
            if io.write_all(&b).await.is_err() {
                return;
            }
        }
        let exit = serde_json::to_vec(&wait_response(waited.await)).unwrap_or_default();
        let _ = io.write_all(&encode_raw(EXIT_STREAM, &exit)).await;
        let _ = io.shutdown().await;
    });
    with_id(super::http::switching_protocols(MEDIA_MULTIPLEXED))
}

pub fn list(engine: &Engine, q: &Query) -> Resp {
    let all = q.flag("all");
    let filters = match container_filters(engine, q.get("filters")) {
        Ok(f) => f,
        Err(e) => return error(&e),
    };
    let (f, before, since, ancestors) = filters;
    let limit = q.int("limit").ok().flatten().filter(|l| *l > 0);
    let mut out = Vec::new();
    for c in engine.list() {
        let s = view::summary(&c);
        let running = matches!(s.state.as_str(), "running" | "paused" | "restarting");
        if !all && !running && f.get("status").is_none() {
            continue;
        }
        let r = c.record();
        let ok = f.pass(|k, v| match k {
            "status" => s.state == v,
            "name" => s
                .names
                .iter()
                .any(|n| n.trim_start_matches('/').contains(v)),
            "id" => s.id.starts_with(v),
            "ancestor" => match ancestors.get(v) {
                Some(Some(a)) => a.holds(engine, &r.image_id),
                _ => s.image == v,
            },
            "label" => filters::label(|k| s.labels.get(k).map(String::as_str), v),
            "exited" => s.state == "exited" && r.state.exit_code().to_string() == v,
            "before" => before.get(v).is_some_and(|t| r.created < *t),
            "since" => since.get(v).is_some_and(|t| r.created > *t),
            "network" => s.network_settings.networks.iter().any(|(name, ep)| {
                name == v
                    || ep["NetworkID"]
                        .as_str()
                        .is_some_and(|id| !v.is_empty() && id.starts_with(v))
            }),
            "volume" => s
                .mounts
                .iter()
                .any(|m| m.name == v || m.source == v || m.destination == v),
            "publish" => s
                .ports
                .iter()
                .any(|p| p.public_port.is_some() && filters::port(v, p.private_port, &p.kind)),
            "expose" => r.config.exposed_ports.iter().flatten().any(|(key, _)| {
                let (n, proto) = key.split_once('/').unwrap_or((key, "tcp"));
                n.parse().is_ok_and(|n| filters::port(v, n, proto))
            }),
            "health" => c.health().map_or("none".to_string(), |h| h.status) == v,
            // No isolation but the default, no swarm tasks.
            "isolation" => v == "default",
            "is-task" => v == "false" || v == "0",
            _ => false,
        });
        if ok {
            out.push(s);
        }
        if limit.is_some_and(|l| out.len() as i64 >= l) {
            break;
        }
    }
    json(StatusCode::OK, &out)
}

/// When a container was created, by the name or id a filter gives.
type Created = HashMap<String, chrono::DateTime<chrono::Utc>>;

/// An `ancestor` filter's image: its id and its layers.
struct Ancestor {
    id: crate::model::Digest,
    layers: Vec<String>,
}

impl Ancestor {
    /// Is the image `image_id` this one, or built on it (its layers
    /// begin with this one's), as Docker's `ancestor` matches?
    fn holds(&self, engine: &Engine, image_id: &crate::model::Digest) -> bool {
        if *image_id == self.id {
            return true;
        }
        let Ok(img) = engine.images().resolve(image_id.as_str()) else {
            return false;
        };
        // Built on it: its layers and more (the same layers alone may be
        // a sibling's, or this image's own base).
        let layers = img.config.rootfs().diff_ids();
        !self.layers.is_empty()
            && layers.len() > self.layers.len()
            && layers.starts_with(&self.layers)
    }
}

/// Each `ancestor` value's image, `None` when no image has that name.
type Ancestors = HashMap<String, Option<Ancestor>>;

/// The filters of a container list, checked, with the containers that
/// `before` and `since` name (a 404 if one is not there) and the images
/// `ancestor` names.
fn container_filters(
    engine: &Engine,
    raw: Option<&str>,
) -> Result<(Filters, Created, Created, Ancestors), EngineError> {
    let f = Filters::parse(raw, filters::CONTAINERS)?;
    f.only(
        "status",
        &[
            "created",
            "restarting",
            "running",
            "removing",
            "paused",
            "exited",
            "dead",
        ],
    )?;
    f.only("health", &["starting", "healthy", "unhealthy", "none"])?;
    f.only("is-task", &["true", "false", "1", "0"])?;
    f.only("isolation", &["default", "process", "hyperv"])?;
    let created = |key: &str| -> Result<Created, EngineError> {
        let mut out = HashMap::new();
        for v in f.get(key).unwrap_or_default() {
            out.insert(v.clone(), engine.lookup(v)?.record().created);
        }
        Ok(out)
    };
    let (before, since) = (created("before")?, created("since")?);
    let ancestors = f
        .get("ancestor")
        .unwrap_or_default()
        .iter()
        .map(|v| {
            let a = engine.images().resolve(v).ok().map(|img| Ancestor {
                layers: img.config.rootfs().diff_ids().clone(),
                id: img.id,
            });
            (v.clone(), a)
        })
        .collect();
    Ok((f, before, since, ancestors))
}

pub fn inspect(engine: &Engine, id: &str) -> Resp {
    match engine.lookup(id) {
        Ok(c) => json(StatusCode::OK, &view::inspect(engine, &c)),
        Err(e) => error(&e),
    }
}

/// `?h=ROWS&w=COLS` of a resize.
pub(super) fn dimensions(q: &Query) -> Result<(u16, u16), EngineError> {
    let dim = |k: &str| -> Result<u16, EngineError> {
        let v = q.int(k)?.unwrap_or(0);
        u16::try_from(v)
            .map_err(|_| EngineError::InvalidArgument(format!("invalid terminal size {k}={v}")))
    };
    Ok((dim("h")?, dim("w")?))
}

pub async fn action(engine: &Arc<Engine>, id: &str, action: &str, q: &Query) -> Resp {
    let t = match q.int("t").and_then(|a| Ok(a.or(q.int("timeout")?))) {
        Ok(t) => t,
        Err(e) => return error(&e),
    };
    let r = match action {
        "start" => engine.start(id).await,
        "stop" => engine.stop(id, t).await,
        "restart" => engine.restart(id, t).await,
        "kill" => engine.kill(id, q.get("signal")).await,
        "pause" => engine.pause(id).await,
        "unpause" => engine.unpause(id).await,
        "resize" => dimensions(q).and_then(|(h, w)| engine.resize(id, h, w)),
        "rename" => engine.rename(id, q.get("name").unwrap_or("")).await,
        _ => {
            return refuse(&RequestError::NoRoute {
                method: "POST".into(),
                path: format!("/containers/{id}/{action}"),
            })
        }
    };
    match r {
        Ok(()) => empty(StatusCode::NO_CONTENT),
        Err(e) => error(&e),
    }
}

/// `POST /containers/{id}/update`: `{"Warnings": []}`. A resource ketch
/// does not act on, set, is a 400 naming it (as at create).
pub async fn update(engine: &Arc<Engine>, id: &str, body: Incoming) -> Resp {
    let u = match checked_body(body, super::fields::check_update).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    match engine.update(id, u).await {
        Ok(()) => json(StatusCode::OK, &serde_json::json!({"Warnings": []})),
        Err(e) => error(&e),
    }
}

pub async fn remove(engine: &Arc<Engine>, id: &str, q: &Query) -> Resp {
    match engine.remove(id, q.flag("force")).await {
        Ok(()) => empty(StatusCode::NO_CONTENT),
        Err(e) => error(&e),
    }
}

pub fn wait(engine: &Arc<Engine>, id: &str, q: &Query) -> Resp {
    let cond = match q.get("condition").unwrap_or("not-running") {
        "" | "not-running" => WaitCondition::NotRunning,
        "next-exit" => WaitCondition::NextExit,
        "removed" => WaitCondition::Removed,
        other => {
            return error(&EngineError::InvalidArgument(format!(
                "invalid wait condition {other:?}"
            )))
        }
    };
    let fut = match engine.wait(id, cond) {
        Ok(f) => f,
        Err(e) => return error(&e),
    };
    // Headers go out now; the body when the condition is met. The caller
    // may start the container once it has the headers.
    let (tx, mut resp) = stream("application/json");
    *resp.status_mut() = StatusCode::OK;
    tokio::spawn(async move {
        let body = wait_response(fut.await);
        let _ = tx.send(super::http::json_line(&body)).await;
    });
    resp
}

/// What a wait answers: the exit code and, if any, the error.
fn wait_response((code, err): (i64, Option<String>)) -> WaitResponse {
    WaitResponse {
        status_code: code,
        error: err.map(|message| WaitError { message }),
    }
}

pub(super) fn frame(tty: bool, stream: StdStream, data: &[u8]) -> Bytes {
    if tty {
        Bytes::copy_from_slice(data)
    } else {
        encode(stream, data)
    }
}

pub async fn logs(engine: &Arc<Engine>, id: &str, q: &Query) -> Resp {
    let c = match engine.lookup(id) {
        Ok(c) => c,
        Err(e) => return error(&e),
    };
    let (want_out, want_err) = (q.flag("stdout"), q.flag("stderr"));
    if !want_out && !want_err {
        return error(&EngineError::InvalidArgument(
            "Bad parameters: you must choose at least one stream".into(),
        ));
    }
    let since = match parse_time(q.get("since")) {
        Ok(t) => t,
        Err(e) => return error(&e),
    };
    let until = match parse_time(q.get("until")) {
        Ok(t) => t,
        Err(e) => return error(&e),
    };
    let tail: Option<usize> = match q.get("tail") {
        None | Some("") | Some("all") => None,
        Some(n) => match n.parse() {
            Ok(n) => Some(n),
            Err(_) => {
                return error(&EngineError::InvalidArgument(format!(
                    "invalid tail value {n:?}"
                )))
            }
        },
    };
    let follow = q.flag("follow") && c.status().is_alive();
    let timestamps = q.flag("timestamps");
    let tty = c.record().config.tty;
    if !c.log.is_stored() {
        return error(&EngineError::NotImplemented(
            "configured logging driver does not support reading".into(),
        ));
    }
    let (end, rx) = if follow {
        let (end, rx) = c.log.snapshot_and_subscribe();
        (end, Some(rx))
    } else {
        (Mark::now(c.log.path()), None)
    };
    let path = c.log.path().to_path_buf();
    let (tx, resp) = stream(if tty { MEDIA_RAW } else { MEDIA_MULTIPLEXED });
    let keep = move |s: StdStream, t: chrono::DateTime<chrono::Utc>| {
        ((s == StdStream::Stdout && want_out) || (s == StdStream::Stderr && want_err))
            && since.is_none_or(|x| t >= x)
            && until.is_none_or(|x| t <= x)
    };
    let render = move |s: StdStream, data: &[u8], t: chrono::DateTime<chrono::Utc>| {
        if timestamps {
            let mut v = t
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                .into_bytes();
            v.push(b' ');
            v.extend_from_slice(data);
            frame(tty, s, &v)
        } else {
            frame(tty, s, data)
        }
    };
    tokio::spawn(async move {
        let entries = tokio::task::spawn_blocking(move || read_entries(&path, Some(end)))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let mut entries: Vec<_> = entries
            .into_iter()
            .filter(|e| keep(e.stream, e.time))
            .collect();
        if let Some(n) = tail {
            let skip = entries.len().saturating_sub(n);
            entries.drain(..skip);
        }
        for e in entries {
            if tx.send(render(e.stream, &e.data, e.time)).await.is_err() {
                return;
            }
        }
        let Some(mut rx) = rx else { return };
        loop {
            match rx.recv().await {
                Ok(LogEvent::Output { stream, data, time }) if keep(stream, time) => {
                    if tx.send(render(stream, &data, time)).await.is_err() {
                        return;
                    }
                }
                Ok(LogEvent::Output { .. }) | Err(RecvError::Lagged(_)) => {}
                Ok(LogEvent::Exit) | Err(RecvError::Closed) => return,
            }
        }
    });
    resp
}

fn parse_time(v: Option<&str>) -> Result<Option<chrono::DateTime<chrono::Utc>>, EngineError> {
    let Some(v) = v.filter(|v| !v.is_empty() && *v != "0") else {
        return Ok(None);
    };
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(Some(t.with_timezone(&chrono::Utc)));
    }
    let (secs, nanos) = v.split_once('.').unwrap_or((v, "0"));
    let s: i64 = secs
        .parse()
        .map_err(|_| EngineError::InvalidArgument(format!("invalid time value {v:?}")))?;
    let n: u32 = format!("{nanos:0<9}")[..9]
        .parse()
        .map_err(|_| EngineError::InvalidArgument(format!("invalid time value {v:?}")))?;
    Ok(chrono::DateTime::from_timestamp(s, n))
}

/// The next output frame of the current run, or `None` when it ends.
async fn next_output(
    rx: &mut tokio::sync::broadcast::Receiver<LogEvent>,
    keep: impl Fn(StdStream) -> bool,
    tty: bool,
) -> Option<Bytes> {
    loop {
        match rx.recv().await {
            Ok(LogEvent::Output { stream, data, .. }) if keep(stream) => {
                return Some(frame(tty, stream, &data))
            }
            Ok(LogEvent::Output { .. }) | Err(RecvError::Lagged(_)) => {}
            Ok(LogEvent::Exit) | Err(RecvError::Closed) => return None,
        }
    }
}

/// The detach keys of an attach or exec with a terminal (`None` without
/// one): Docker's default unless `keys` names others.
pub(super) fn detach_keys(
    keys: Option<&str>,
    tty: bool,
) -> Result<Option<crate::api::detach::Escape>, EngineError> {
    if !tty {
        return Ok(None);
    }
    let keys = keys
        .filter(|k| !k.is_empty())
        .unwrap_or(crate::api::detach::DEFAULT);
    crate::api::detach::parse(keys)
        .map(|k| Some(crate::api::detach::Escape::new(k)))
        .map_err(EngineError::InvalidArgument)
}

/// How the copy of a client's input ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Input {
    /// The client closed it (or the process's side went away).
    Ended,
    /// The client typed the detach keys.
    Detached,
}

/// Copy an attached client's input to the process until it ends or the
/// detach keys come.
pub(super) async fn copy_input(
    rd: &mut (impl AsyncRead + Unpin),
    w: &mut (impl AsyncWrite + Unpin),
    mut escape: Option<crate::api::detach::Escape>,
) -> Input {
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::with_capacity(buf.len());
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => return Input::Ended,
            Ok(n) => n,
        };
        out.clear();
        let detached = match escape.as_mut() {
            Some(e) => e.feed(&buf[..n], &mut out),
            None => {
                out.extend_from_slice(&buf[..n]);
                false
            }
        };
        if !out.is_empty() && w.write_all(&out).await.is_err() {
            return Input::Ended;
        }
        if detached {
            return Input::Detached;
        }
    }
}

/// `POST /containers/{id}/attach`: upgraded to a raw byte stream when the
/// client asks (`Upgrade: tcp`), else a streamed response of output only.
pub async fn attach(engine: &Arc<Engine>, id: &str, q: &Query, mut req: Request<Incoming>) -> Resp {
    let c = match engine.lookup(id) {
        Ok(c) => c,
        Err(e) => return error(&e),
    };
    let rec = c.record();
    let tty = rec.config.tty;
    let (want_out, want_err, want_in) = (q.flag("stdout"), q.flag("stderr"), q.flag("stdin"));
    let stream_mode = q.flag("stream");
    // Subscribe before answering, so output of a start that follows is never missed.
    let (end, mut rx) = c.log.snapshot_and_subscribe();
    let replay = if q.flag("logs") {
        read_entries(c.log.path(), Some(end)).unwrap_or_default()
    } else {
        vec![]
    };
    let content_type = if tty { MEDIA_RAW } else { MEDIA_MULTIPLEXED };
    let keep = move |s: StdStream| {
        (s == StdStream::Stdout && want_out) || (s == StdStream::Stderr && want_err)
    };
    let upgrade = req.headers().get("upgrade").is_some();
    let stdin = if want_in && rec.config.open_stdin {
        c.take_stdin()
    } else {
        None
    };
    let stdin_once = rec.config.stdin_once;
    // As Docker: the detach keys work on a terminal's input.
    let escape = match detach_keys(q.get("detachKeys"), tty) {
        Ok(e) => e,
        Err(e) => return error(&e),
    };
    if !upgrade {
        let (tx, resp) = stream(content_type);
        tokio::spawn(async move {
            for e in replay.into_iter().filter(|e| keep(e.stream)) {
                let _ = tx.send(frame(tty, e.stream, &e.data)).await;
            }
            if stream_mode {
                while let Some(b) = next_output(&mut rx, keep, tty).await {
                    if tx.send(b).await.is_err() {
                        return;
                    }
                }
            }
        });
        return resp;
    }
    let pause = super::http::upgrade_pause(req.headers());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let events = engine.clone();
    tokio::spawn(async move {
        let io = match on_upgrade.await {
            Ok(u) => TokioIo::new(u),
            Err(e) => {
                tracing::debug!("attach upgrade failed: {e}");
                return;
            }
        };
        tokio::time::sleep(pause).await;
        let (mut rd, mut wr) = tokio::io::split(io);
        let input = async move {
            if let Some(mut w) = stdin {
                if copy_input(&mut rd, &mut w, escape).await == Input::Detached {
                    // The container keeps running, and its stdin, for the
                    // next attach.
                    c.stdin_return(w);
                    events.event(&c.record(), "detach", &[]);
                    return;
                }
                if stdin_once {
                    let _ = w.shutdown().await;
                    drop(w);
                } else {
                    c.stdin_return(w);
                }
            }
            std::future::pending::<()>().await;
        };
        let output = async move {
            for e in replay.into_iter().filter(|e| keep(e.stream)) {
                if wr.write_all(&frame(tty, e.stream, &e.data)).await.is_err() {
                    return;
                }
            }
            if stream_mode {
                while let Some(b) = next_output(&mut rx, keep, tty).await {
                    if wr.write_all(&b).await.is_err() {
                        return;
                    }
                }
            }
            let _ = wr.flush().await;
            let _ = wr.shutdown().await;
        };
        tokio::select! {
            _ = input => {}
            _ = output => {}
        }
    });
    super::http::switching_protocols(content_type)
}

/// `GET /containers/{id}/stats`: `stream=false` answers once (after a
/// second, so CPU % has two samples, unless `one-shot`); streaming sends a
/// sample a second until the container stops or the client goes.
pub async fn stats(engine: &Arc<Engine>, id: &str, q: &Query) -> Resp {
    let sample = |engine: &Engine| {
        engine
            .stats(id)
            .map(|(rec, s)| (rec, s, view::system_cpu_ns(), chrono::Utc::now()))
    };
    let (rec, first, sys, at) = match sample(engine) {
        Ok(s) => s,
        Err(e) => return error(&e),
    };
    let streaming = q.get("stream").is_none_or(|v| v != "0" && v != "false");
    if !streaming {
        let Some(first) = first else {
            return json(
                StatusCode::OK,
                &view::stats(&rec, Default::default(), sys, None),
            );
        };
        if q.flag("one-shot") {
            return json(StatusCode::OK, &view::stats(&rec, first, sys, None));
        }
        tokio::time::sleep(STATS_INTERVAL).await;
        return match sample(engine) {
            Ok((rec, now, sys2, _)) => json(
                StatusCode::OK,
                &view::stats(&rec, now.unwrap_or_default(), sys2, Some((at, first, sys))),
            ),
            Err(e) => error(&e),
        };
    }
    let engine = engine.clone();
    let id = id.to_string();
    let (tx, resp) = stream("application/json");
    tokio::spawn(async move {
        let mut before: Option<(chrono::DateTime<chrono::Utc>, RuntimeStats, Option<u64>)> = None;
        loop {
            let Ok((rec, now, sys, at)) = engine
                .stats(&id)
                .map(|(rec, s)| (rec, s, view::system_cpu_ns(), chrono::Utc::now()))
            else {
                return;
            };
            let Some(now) = now else {
                let _ = tx
                    .send(line(&view::stats(&rec, Default::default(), sys, None)))
                    .await;
                return;
            };
            let out = view::stats(&rec, now.clone(), sys, before.take());
            if tx.send(line(&out)).await.is_err() {
                return;
            }
            before = Some((at, now, sys));
            tokio::time::sleep(STATS_INTERVAL).await;
        }
    });
    resp
}

/// One JSON document and a newline, as Docker streams them.
fn line<T: serde::Serialize>(v: &T) -> Bytes {
    super::http::json_line(v)
}
