//! `/containers/{id}/archive`: `docker cp` for running Linux containers.
//! The work happens in a `ketchd cp` helper inside the container's mount
//! namespace (see `runtime::linux::copy`).

use super::error::RequestError;
use super::http::{empty, error, refuse, stream, Query, Resp};
use crate::confine::archive::{Limits, LIMITS_ENV};
use crate::engine::{Engine, EngineError};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, StatusCode};
use std::process::Stdio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STAT_HEADER: &str = "x-docker-container-path-stat";

/// A helper that failed: exit 2 is a missing path (404), else its message.
fn failed(code: Option<i32>, stderr: &[u8]) -> Resp {
    let msg = String::from_utf8_lossy(stderr).trim().to_string();
    refuse(&if code == Some(2) {
        RequestError::NoSuchPath(msg)
    } else {
        RequestError::Invalid(msg)
    })
}

fn path_of(q: &Query) -> Result<String, EngineError> {
    q.get("path")
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .ok_or_else(|| EngineError::InvalidArgument("missing path".into()))
}

pub async fn get(engine: &std::sync::Arc<Engine>, id: &str, q: &Query, method: &Method) -> Resp {
    let path = match path_of(q) {
        Ok(p) => p,
        Err(e) => return error(&e),
    };
    let out = match engine.copy_command(id, "stat", &path).await {
        Ok(mut cmd) => cmd.output().await,
        Err(e) => return error(&e),
    };
    let out = match out {
        Ok(o) => o,
        Err(e) => return refuse(&RequestError::io("running the cp helper")(e)),
    };
    if !out.status.success() {
        return failed(out.status.code(), &out.stderr);
    }
    let stat = base64::engine::general_purpose::STANDARD.encode(out.stdout.trim_ascii_end());
    // Base64 is always a valid header value.
    let stat = hyper::header::HeaderValue::from_str(&stat)
        .unwrap_or_else(|_| hyper::header::HeaderValue::from_static(""));
    if method == Method::HEAD {
        let mut r = empty(StatusCode::OK);
        r.headers_mut().insert(STAT_HEADER, stat);
        return r;
    }
    let mut resp = match stream_tar(engine, id, "get", &path).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    resp.headers_mut().insert(STAT_HEADER, stat);
    resp
}

/// `GET /containers/{id}/export`: the container's root filesystem as a
/// tar, streamed from the cp helper.
pub async fn export(engine: &std::sync::Arc<Engine>, id: &str) -> Resp {
    stream_tar(engine, id, "export", "/")
        .await
        .unwrap_or_else(|r| r)
}

/// Run the cp helper in `mode` and answer with the tar it writes, sent
/// as it comes (the helper is killed if the client goes).
async fn stream_tar(
    engine: &std::sync::Arc<Engine>,
    id: &str,
    mode: &str,
    path: &str,
) -> Result<Resp, Resp> {
    let mut child = match engine.copy_command(id, mode, path).await.map(|mut c| {
        c.stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
    }) {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(refuse(&RequestError::io("running the cp helper")(e))),
        Err(e) => return Err(error(&e)),
    };
    let Some(stdout) = child.stdout.take() else {
        return Err(refuse(&RequestError::io("running the cp helper")(
            std::io::Error::other("its stdout is not a pipe"),
        )));
    };
    let (tx, resp) = stream("application/x-tar");
    tokio::spawn(relay_tar(stdout, child, tx));
    Ok(resp)
}

/// Send the helper's tar as it comes; kill it if the client goes.
async fn relay_tar(
    mut stdout: tokio::process::ChildStdout,
    mut child: tokio::process::Child,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stdout.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                    let _ = child.kill().await;
                    break;
                }
            }
        }
    }
    let _ = child.wait().await;
}

pub async fn put(engine: &std::sync::Arc<Engine>, id: &str, q: &Query, body: Incoming) -> Resp {
    let path = match path_of(q) {
        Ok(p) => p,
        Err(e) => return error(&e),
    };
    // The upload is spooled to an anonymous file (gone when closed) so
    // the helper can check the whole archive before writing anything.
    let upload = match spool(&engine.tmp_dir(), body).await {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let child = match engine.copy_command(id, "put", &path).await.map(|mut c| {
        c.stdin(Stdio::from(upload))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env(LIMITS_ENV, Limits::daemon().to_env())
            .spawn()
    }) {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return refuse(&RequestError::io("running the cp helper")(e)),
        Err(e) => return error(&e),
    };
    match child.wait_with_output().await {
        Ok(o) if o.status.success() => empty(StatusCode::OK),
        Ok(o) => failed(o.status.code(), &o.stderr),
        Err(e) => refuse(&RequestError::io("waiting for the cp helper")(e)),
    }
}

/// Write a request body to a file in `dir` that is unlinked at once (so
/// it is gone when closed, even after a crash), at most the archive
/// limit's bytes. A broken upload is an error, never a partial archive.
pub(super) async fn spool<B>(dir: &std::path::Path, mut body: B) -> Result<std::fs::File, Resp>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    use std::os::unix::fs::OpenOptionsExt;
    let internal = |e: std::io::Error| refuse(&RequestError::io("spooling the archive")(e));
    let path = dir.join(format!("upload-{:016x}", rand::random::<u64>()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(internal)?;
    let _ = std::fs::remove_file(&path);
    let mut out = tokio::fs::File::from_std(file.try_clone().map_err(internal)?);
    let max = Limits::daemon().max_bytes;
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| refuse(&RequestError::Invalid(format!("reading the archive: {e}"))))?;
        if let Some(data) = frame.data_ref() {
            n += data.len() as u64;
            if n > max {
                return Err(refuse(&RequestError::TooLarge {
                    what: "the archive",
                    max,
                }));
            }
            out.write_all(data).await.map_err(internal)?;
        }
    }
    out.flush().await.map_err(internal)?;
    Ok(file)
}
