//! `exec` in a running Linux container: a `ketch-monitor exec` helper joins
//! the container's namespaces and cgroup (see `runtime::linux::exec`); with
//! `-t` its init sends the pty master back over a Unix socket.

use super::{resolve_user, LinuxAdapter};
use crate::engine::container::Container;
use crate::engine::exec::{Exec, Resizer, Spawned};
use crate::engine::{Engine, EngineError, Record};
use crate::runtime::linux::exec::ExecRequest;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// How long a `-t` exec's helper has to send back its pty master.
const CONSOLE_WAIT: Duration = Duration::from_secs(10);

impl LinuxAdapter {
    pub(super) async fn exec(
        &self,
        engine: &Arc<Engine>,
        exec: &Exec,
        c: &Container,
        rec: &Record,
    ) -> Result<Spawned, EngineError> {
        let backend = self.backend(&rec.image)?;
        let cfg = &exec.config;
        let mut env =
            crate::engine::config::parse_env(rec.config.env.as_deref().unwrap_or_default());
        for (k, v) in crate::engine::config::parse_env(cfg.env.as_deref().unwrap_or_default()) {
            env.retain(|(ek, _)| *ek != k);
            env.push((k, v));
        }
        let user = if cfg.user.is_empty() {
            rec.config.user.clone()
        } else {
            cfg.user.clone()
        };
        let (uid, gid) = if user.is_empty() {
            (None, None)
        } else {
            let engine = engine.clone();
            let image_id = rec.image_id.to_string();
            let (u, g, _) = tokio::task::spawn_blocking(move || {
                let img = engine.images().resolve(&image_id)?;
                resolve_user(&engine, &img, &user, &[])
            })
            .await
            .map_err(EngineError::task("resolving the exec user"))??;
            (Some(u), Some(g))
        };
        let cwd = Some(cfg.working_dir.clone())
            .filter(|w| !w.is_empty())
            .or_else(|| Some(rec.config.working_dir.clone()).filter(|w| !w.is_empty()));
        // `-t`: the process's init sends its pty master to this socket.
        let console = if cfg.tty {
            let path = c
                .dir()
                .join("run")
                .join(format!("exec-{}.sock", &exec.id[..12]));
            let _ = std::fs::remove_file(&path);
            let l = crate::runtime::linux::sys::bind_unix(&path)
                .and_then(|l| {
                    l.set_nonblocking(true)?;
                    tokio::net::UnixListener::from_std(l)
                })
                .map_err(EngineError::io(&path))?;
            Some((l, path))
        } else {
            None
        };
        let req = ExecRequest {
            id: rec.id.to_string(),
            state_root: backend.state_root().to_path_buf(),
            args: cfg.cmd.clone().unwrap_or_default(),
            env,
            cwd,
            uid,
            gid,
            console_socket: console.as_ref().map(|(_, p)| p.clone()),
            privileged: cfg.privileged,
        };
        let mut cmd = backend.exec_command(&req)?;
        use std::process::Stdio;
        cmd.stdin(if cfg.attach_stdin && !cfg.tty {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let spawned = cmd.spawn().map_err(|e| {
            EngineError::Runtime(crate::runtime::RuntimeError::Io {
                path: "ketch-monitor exec".into(),
                source: e,
            })
        });
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                if let Some((_, p)) = &console {
                    let _ = std::fs::remove_file(p);
                }
                return Err(e);
            }
        };
        let pid = child.id().unwrap_or(0);
        let mut spawned = Spawned {
            stdin: child
                .stdin
                .take()
                .map(|s| Box::new(s) as Box<dyn AsyncWrite + Send + Unpin>),
            stdout: child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn AsyncRead + Send + Unpin>),
            stderr: child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn AsyncRead + Send + Unpin>),
            pid,
            exit: Box::pin(async move {
                match child.wait().await {
                    Ok(s) => s.code().map(i64::from).unwrap_or(255),
                    Err(_) => 255,
                }
            }),
            resizer: None,
        };
        if let Some((listener, path)) = console {
            // The helper's own output is its errors; the process's is the pty.
            let master = tokio::time::timeout(CONSOLE_WAIT, listener.accept()).await;
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(path.with_extension("json"));
            let master = match master {
                Ok(Ok((s, _))) => receive_master(s).await,
                _ => None,
            };
            if let Some(m) = master {
                let w = m.try_clone().ok().map(|w| {
                    Box::new(tokio::fs::File::from_std(std::fs::File::from(w)))
                        as Box<dyn AsyncWrite + Send + Unpin>
                });
                if cfg.attach_stdin {
                    spawned.stdin = w;
                }
                if let Ok(dup) = m.try_clone() {
                    spawned.resizer = Some(resizer(dup));
                }
                spawned.stdout = Some(Box::new(tokio::fs::File::from_std(std::fs::File::from(m))));
            }
        }
        Ok(spawned)
    }
}

/// Take the pty master the helper's init passes over `s` (fd passing
/// blocks: off the async runtime).
async fn receive_master(s: tokio::net::UnixStream) -> Option<OwnedFd> {
    let s = s.into_std().ok()?;
    tokio::task::spawn_blocking(move || {
        s.set_nonblocking(false)?;
        crate::runtime::linux::sys::recv_fd(s.as_raw_fd())
    })
    .await
    .ok()?
    .ok()
}

fn resizer(master: OwnedFd) -> Resizer {
    Box::new(move |rows, cols| {
        crate::runtime::linux::sys::set_winsize(master.as_raw_fd(), rows, cols)
    })
}
