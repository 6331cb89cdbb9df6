//! ketchd's HTTP side: the Engine API over a Unix socket. Handlers are thin:
//! parse, call the engine, render. Errors become status codes in
//! [`error::status_of`] only.

mod archive;
mod conns;
mod containers;
pub mod error;
mod exec;
mod fields;
mod filters;
pub mod http;
mod images;
mod networks;
mod registry;
mod system;
mod volumes;

use crate::accept::Backoff;
use crate::engine::Engine;
use crate::lograte::warn_limited;
use error::RequestError;
use http::Resp;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use percent_encoding::percent_decode_str;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixListener;

/// JSON request bodies larger than this are refused.
pub const MAX_JSON_BODY: usize = 4 << 20;
/// An API connection that sends no request (or no complete request head)
/// for this long is closed: each idle one holds a descriptor. In hyper 1.x
/// the header read timeout also runs while a keep-alive connection waits
/// between requests (`proto/h1/conn.rs`: `State::idle` asks for a new read,
/// `poll_read_head` starts the timer), and never while a response is in
/// flight, so `logs -f`, `events`, `wait` and upgraded `attach`/`exec`
/// streams are not cut.
const API_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Bind the API socket: mode 0660 (never world-writable), stale socket
/// files from a dead daemon replaced.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another daemon is serving {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    // SAFETY: umask only changes this process's file-creation mask; it is
    // restored right after the bind.
    let old = unsafe { libc::umask(0o117) };
    let l = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let l = l?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

/// Serve until `shutdown` resolves, with at most `--max-api-connections`
/// connections at once (`conns.rs`: the longest-idle one makes room).
pub async fn serve(
    engine: Arc<Engine>,
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let conns = conns::Conns::new(crate::accept::config().limits.max_api_connections);
    let mut backoff = Backoff::new();
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => {
                    backoff.succeeded();
                    s
                }
                // Out of descriptors (EMFILE, ENFILE) or memory (ENOBUFS):
                // the listener stays readable, so retrying at once would
                // spin and flood the log.
                Err(e) => {
                    warn_limited!("api accept", "accepting an API connection: {e}");
                    tokio::select! {
                        () = tokio::time::sleep(backoff.failed()) => {}
                        _ = &mut shutdown => return,
                    }
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let Some(slot) = conns.admit() else {
            warn_limited!(
                "api full",
                "refusing an API connection: all {} are serving requests",
                conns.max()
            );
            drop(stream);
            continue;
        };
        let engine = engine.clone();
        tokio::spawn(async move {
            let this = slot.conn.clone();
            let svc = hyper::service::service_fn(move |req| {
                let engine = engine.clone();
                let busy = this.start_request();
                async move {
                    let resp = route(engine, req).await;
                    Ok::<_, std::convert::Infallible>(conns::until_sent(resp, busy))
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(API_IDLE_TIMEOUT);
            let conn = builder
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::pin!(conn);
            let done = tokio::select! {
                r = conn.as_mut() => r,
                // Evicted to make room: finish what is in flight, then close.
                () = slot.conn.asked_to_close() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = done {
                tracing::debug!("connection: {e}");
            }
            drop(slot);
        });
    }
}

/// The `Server` header of every answer.
const SERVER: &str = concat!("Ketch/", env!("CARGO_PKG_VERSION"), " (linux)");

async fn route(engine: Arc<Engine>, req: Request<Incoming>) -> Resp {
    // A client that hangs up must not cancel a verb half-way (a container
    // started but not recorded, a name reserved but not registered): the
    // request runs in a task of its own, which finishes whatever happens
    // to the connection.
    let mut resp = match tokio::spawn(dispatch(engine, req)).await {
        Ok(resp) => resp,
        Err(e) => http::refuse(&RequestError::Engine(crate::engine::EngineError::Task {
            what: "the request",
            source: e,
        })),
    };
    let h = resp.headers_mut();
    use hyper::header::HeaderValue;
    h.insert(
        "api-version",
        HeaderValue::from_static(crate::api::API_VERSION),
    );
    h.insert("server", HeaderValue::from_static(SERVER));
    h.insert("ostype", HeaderValue::from_static("linux"));
    h.insert("docker-experimental", HeaderValue::from_static("false"));
    resp
}

async fn dispatch(engine: Arc<Engine>, req: Request<Incoming>) -> Resp {
    let raw_path = req.uri().path().to_string();
    let Some((path, _version)) = crate::api::strip_version(&raw_path) else {
        return http::refuse(&RequestError::Invalid(format!(
            "malformed API version in {raw_path}"
        )));
    };
    let path = percent_decode_str(path).decode_utf8_lossy().into_owned();
    let q = http::Query::parse(req.uri().query());
    let method = req.method().clone();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    tracing::debug!("{method} {path}");

    if let Some(name) = path
        .strip_prefix("/distribution/")
        .and_then(|r| r.strip_suffix("/json"))
        .filter(|_| method == Method::GET)
    {
        return registry::distribution(&engine, name, req.headers()).await;
    }
    // Image names contain slashes: match these by prefix/suffix.
    if let Some(rest) = path.strip_prefix("/images/") {
        match (&method, rest) {
            (&Method::GET, "json") => return images::list(&engine, &q).await,
            (&Method::GET, "get") => return images::save(&engine, &q).await,
            (&Method::POST, "load") => return images::load(&engine, req.into_body()).await,
            (&Method::POST, "create") if q.get("fromSrc").is_some() => {
                return images::import(&engine, &q, req.into_body()).await
            }
            (&Method::POST, "create") => return registry::pull(&engine, &q, req.headers()).await,
            (&Method::POST, "prune") => return registry::prune_images(&engine, &q).await,
            (&Method::POST, r) if r.ends_with("/push") => {
                return registry::push(&engine, &r[..r.len() - 5], &q, req.headers()).await
            }
            (&Method::GET, r) if r.ends_with("/json") => {
                return images::inspect(&engine, &r[..r.len() - 5]).await
            }
            (&Method::GET, r) if r.ends_with("/history") => {
                return images::history(&engine, &r[..r.len() - 8]).await
            }
            (&Method::GET, r) if r.ends_with("/get") => {
                return images::save_one(&engine, &r[..r.len() - 4]).await
            }
            (&Method::POST, r) if r.ends_with("/tag") => {
                return images::tag(&engine, &r[..r.len() - 4], &q).await
            }
            (&Method::DELETE, r) => return images::remove(&engine, r, &q).await,
            _ => {}
        }
    }
    if method == Method::DELETE && q.flag("link") {
        if let Some(link) = path.strip_prefix("/containers/") {
            return match engine.unlink(link).await {
                Ok(()) => http::empty(hyper::StatusCode::NO_CONTENT),
                Err(e) => http::error(&e),
            };
        }
    }
    match (&method, segs.as_slice()) {
        (&Method::GET | &Method::HEAD, ["_ping"]) => system::ping(&method),
        (&Method::GET, ["version"]) => system::version(),
        (&Method::GET, ["info"]) => system::info(&engine),
        (&Method::POST, ["commit"]) => images::commit(&engine, &q).await,
        (&Method::POST, ["build"]) => images::build(&engine, &q, req.into_body()).await,
        (&Method::POST, ["auth"]) => registry::auth(&engine, req.into_body()).await,
        (&Method::GET, ["events"]) => system::events(&engine, &q).await,
        (&Method::GET, ["system", "df"]) => system::df(&engine).await,
        (&Method::POST, ["containers", "prune"]) => registry::prune_containers(&engine, &q).await,
        (&Method::POST, ["networks", "create"]) => networks::create(&engine, req.into_body()).await,
        (&Method::POST, ["networks", "prune"]) => networks::prune(&engine, &q).await,
        (&Method::GET, ["networks"]) => networks::list(&engine, &q),
        (&Method::GET, ["networks", id]) => networks::inspect(&engine, id),
        (&Method::DELETE, ["networks", id]) => networks::remove(&engine, id).await,
        (&Method::POST, ["networks", id, "connect"]) => {
            networks::connect(&engine, id, req.into_body()).await
        }
        (&Method::POST, ["networks", id, "disconnect"]) => {
            networks::disconnect(&engine, id, req.into_body()).await
        }
        // `docker system prune` asks this too. Build steps' cache is kept
        // by the image store's own prune.
        (&Method::POST, ["build", "prune"]) => http::json(
            StatusCode::OK,
            &serde_json::json!({"CachesDeleted": [], "SpaceReclaimed": 0}),
        ),
        (&Method::POST, ["volumes", "create"]) => volumes::create(&engine, req.into_body()).await,
        (&Method::POST, ["volumes", "prune"]) => volumes::prune(&engine, &q).await,
        (&Method::GET, ["volumes"]) => volumes::list(&engine, &q),
        (&Method::GET, ["volumes", name]) => volumes::inspect(&engine, name),
        (&Method::DELETE, ["volumes", name]) => volumes::remove(&engine, name, &q).await,
        (&Method::POST, ["containers", "create"]) => {
            containers::create(&engine, &q, req.into_body()).await
        }
        (&Method::POST, ["containers", "run"]) => containers::run(&engine, &q, req).await,
        (&Method::GET, ["containers", "json"]) => containers::list(&engine, &q),
        (&Method::GET, ["containers", id, "json"]) => containers::inspect(&engine, id),
        (&Method::GET, ["containers", id, "logs"]) => containers::logs(&engine, id, &q).await,
        (&Method::POST, ["containers", id, "attach"]) => {
            containers::attach(&engine, id, &q, req).await
        }
        (&Method::POST, ["containers", id, "exec"]) => {
            exec::create(&engine, id, req.into_body()).await
        }
        (&Method::POST, ["exec", id, "start"]) => exec::start(&engine, id, req).await,
        (&Method::GET, ["exec", id, "json"]) => exec::inspect(&engine, id),
        (&Method::POST, ["exec", id, "resize"]) => exec::resize(&engine, id, &q),
        (&Method::GET | &Method::HEAD, ["containers", id, "archive"]) => {
            archive::get(&engine, id, &q, &method).await
        }
        (&Method::PUT, ["containers", id, "archive"]) => {
            archive::put(&engine, id, &q, req.into_body()).await
        }
        (&Method::GET, ["containers", id, "top"]) => match engine.top(id) {
            Ok(pids) => http::json(StatusCode::OK, &crate::engine::view::top(&pids)),
            Err(e) => http::error(&e),
        },
        (&Method::GET, ["containers", id, "export"]) => archive::export(&engine, id).await,
        (&Method::GET, ["containers", id, "changes"]) => match engine.changes(id).await {
            Ok(c) => http::json(hyper::StatusCode::OK, &c),
            Err(e) => http::error(&e),
        },
        (&Method::GET, ["containers", id, "stats"]) => containers::stats(&engine, id, &q).await,
        (&Method::POST, ["containers", id, "update"]) => {
            containers::update(&engine, id, req.into_body()).await
        }
        (&Method::POST, ["containers", id, "wait"]) => containers::wait(&engine, id, &q),
        (&Method::POST, ["containers", id, action]) => {
            containers::action(&engine, id, action, &q).await
        }
        (&Method::DELETE, ["containers", id]) => containers::remove(&engine, id, &q).await,
        _ => http::refuse(&RequestError::NoRoute {
            method: method.to_string(),
            path: path.to_string(),
        }),
    }
}
