//! Exec endpoints: create, start (upgraded to a raw stream, framed as
//! attach is unless `Tty`), inspect, resize.

use super::containers::{copy_input, frame, Input};
use super::http::{empty, error, json, read_json, stream, Resp};
use super::MAX_JSON_BODY;
use crate::api::stream::StdStream;
use crate::api::types::{ExecConfig, ExecStartConfig, IdResponse};
use crate::api::{MEDIA_MULTIPLEXED, MEDIA_RAW};
use crate::engine::exec::ExecIo;
use crate::engine::Engine;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

pub async fn create(engine: &Arc<Engine>, id: &str, body: Incoming) -> Resp {
    let cfg: ExecConfig = match read_json(body, MAX_JSON_BODY).await {
        Ok(c) => c,
        Err(e) => return error(&e),
    };
    match engine.exec_create(id, cfg) {
        Ok(id) => json(
            StatusCode::CREATED,
            &IdResponse {
                id,
                warnings: vec![],
            },
        ),
        Err(e) => error(&e),
    }
}

pub fn inspect(engine: &Engine, id: &str) -> Resp {
    match engine.exec_lookup(id) {
        Ok(e) => json(StatusCode::OK, &e.inspect()),
        Err(e) => error(&e),
    }
}

/// `POST /exec/{id}/resize?h=&w=`: a `-t` exec's terminal size.
pub fn resize(engine: &Engine, id: &str, q: &super::http::Query) -> Resp {
    let r = super::containers::dimensions(q)
        .and_then(|(h, w)| engine.exec_lookup(id).and_then(|e| e.resize(h, w)));
    match r {
        Ok(()) => empty(StatusCode::OK),
        Err(e) => error(&e),
    }
}

/// Read one output pipe into framed chunks.
fn pump(
    r: Option<impl AsyncRead + Unpin + Send + 'static>,
    s: StdStream,
    tty: bool,
    tx: mpsc::Sender<Bytes>,
) {
    let Some(mut r) = r else { return };
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(frame(tty, s, &buf[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
}

/// The exec's output as framed chunks, ending after the process has
/// exited and its pipes are drained (so its exit code is recorded by then).
fn output(io: &mut ExecIo, tty: bool, want_out: bool, want_err: bool) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(64);
    let (out, err) = (io.stdout.take(), io.stderr.take());
    if want_out {
        pump(out, StdStream::Stdout, tty, tx.clone());
    } else {
        drop(out);
    }
    if want_err {
        pump(err, StdStream::Stderr, tty, tx.clone());
    } else {
        drop(err);
    }
    let mut done = io.done.clone();
    tokio::spawn(async move {
        let _ = done.wait_for(|d| *d).await;
        drop(tx);
    });
    rx
}

pub async fn start(engine: &Arc<Engine>, id: &str, mut req: Request<Incoming>) -> Resp {
    let upgrade = req.headers().get("upgrade").is_some();
    let pause = super::http::upgrade_pause(req.headers());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let cfg: ExecStartConfig = match read_json(req.into_body(), MAX_JSON_BODY).await {
        Ok(c) => c,
        Err(e) => return error(&e),
    };
    let exec = match engine.exec_lookup(id) {
        Ok(e) => e,
        Err(e) => return error(&e),
    };
    let tty = cfg.tty || exec.config.tty;
    let (want_out, want_err) = (exec.config.attach_stdout, exec.config.attach_stderr);
    let mut io = match engine.exec_start(id).await {
        Ok(io) => io,
        Err(e) => return error(&e),
    };
    if cfg.detach {
        drop(io);
        return empty(StatusCode::OK);
    }
    let content_type = if tty { MEDIA_RAW } else { MEDIA_MULTIPLEXED };
    let mut rx = output(&mut io, tty, want_out, want_err);
    if !upgrade {
        let (tx, resp) = stream(content_type);
        tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if tx.send(b).await.is_err() {
                    return;
                }
            }
        });
        return resp;
    }
    let stdin = io.stdin.take();
    let escape = match super::containers::detach_keys(Some(&exec.config.detach_keys), tty) {
        Ok(e) => e,
        Err(e) => return error(&e),
    };
    tokio::spawn(async move {
        let up = match on_upgrade.await {
            Ok(u) => TokioIo::new(u),
            Err(e) => {
                tracing::debug!("exec upgrade failed: {e}");
                return;
            }
        };
        tokio::time::sleep(pause).await;
        let (mut rd, mut wr) = tokio::io::split(up);
        let input = async move {
            if let Some(mut w) = stdin {
                if copy_input(&mut rd, &mut w, escape).await == Input::Detached {
                    return Some(w);
                }
                let _ = w.shutdown().await;
            }
            std::future::pending::<Option<_>>().await
        };
        let out = async {
            while let Some(b) = rx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    return;
                }
            }
            let _ = wr.flush().await;
        };
        let detached = tokio::select! {
            w = input => w,
            _ = out => None,
        };
        let _ = wr.shutdown().await;
        if let Some(w) = detached {
            // Detached: the process runs on, its terminal held open and its
            // output drained, until it exits.
            tokio::spawn(async move {
                let _held = w;
                while rx.recv().await.is_some() {}
            });
        }
    });
    super::http::switching_protocols(content_type)
}
