//! `exec`: extra processes in a running Linux container. An exec is
//! created (its config kept), started once (a helper process joins the
//! container; see `runtime::linux::exec`), and inspected for its exit code.

use super::resolve_user;
use crate::api::types::{ExecConfig, ExecInspect, ExecProcessConfig};
use crate::engine::{Engine, EngineError};
use crate::model::RuntimeKind;
use crate::model::{ContainerId, Status};
use crate::runtime::linux::exec::ExecRequest;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

pub struct Exec {
    pub id: String,
    pub container: ContainerId,
    pub config: ExecConfig,
    state: Mutex<ExecState>,
    /// Becomes true once the exit code is recorded.
    done: watch::Sender<bool>,
    /// `-t`: the pty master, for resizes.
    master: Mutex<Option<std::os::fd::OwnedFd>>,
}

#[derive(Default)]
struct ExecState {
    started: bool,
    running: bool,
    exit_code: Option<i64>,
    pid: u32,
}

/// The started process's stdio (its pipes, or with `-t` its pty), for
/// the daemon to stream.
pub struct ExecIo {
    pub stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    pub stdout: Option<Box<dyn AsyncRead + Send + Unpin>>,
    pub stderr: Option<Box<dyn AsyncRead + Send + Unpin>>,
    pub done: watch::Receiver<bool>,
}

impl Exec {
    pub fn inspect(&self) -> ExecInspect {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let cmd = self.config.cmd.clone().unwrap_or_default();
        ExecInspect {
            id: self.id.clone(),
            running: st.running,
            exit_code: st.exit_code,
            process_config: ExecProcessConfig {
                tty: self.config.tty,
                entrypoint: cmd.first().cloned().unwrap_or_default(),
                arguments: cmd.iter().skip(1).cloned().collect(),
                privileged: self.config.privileged,
                user: self.config.user.clone(),
            },
            open_stdin: self.config.attach_stdin,
            open_stderr: self.config.attach_stderr,
            open_stdout: self.config.attach_stdout,
            container_id: self.container.to_string(),
            pid: st.pid as i64,
            can_remove: !st.running,
            detach_keys: String::new(),
        }
    }
}

impl Exec {
    /// `POST /exec/{id}/resize`: a `-t` exec's terminal size.
    pub fn resize(&self, rows: u16, cols: u16) -> Result<(), EngineError> {
        if let Some(m) = self
            .master
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            crate::runtime::linux::sys::set_winsize(m.as_raw_fd(), rows, cols)
                .map_err(|e| EngineError::Conflict(format!("resizing exec {}: {e}", self.id)))?;
        }
        Ok(())
    }
}

impl Engine {
    /// `POST /containers/{id}/exec`.
    pub fn exec_create(&self, name: &str, cfg: ExecConfig) -> Result<String, EngineError> {
        let c = self.lookup(name)?;
        let rec = c.record();
        if !rec.is(RuntimeKind::Linux) {
            return Err(EngineError::InvalidArgument(format!(
                "container {}: exec is not supported in a Wasm container (a Wasm guest is one instance, with nothing to run beside it)",
                rec.name
            )));
        }
        match rec.state.status() {
            Status::Running => {}
            Status::Paused => {
                return Err(EngineError::Conflict(format!(
                    "container {} is paused, unpause the container before exec",
                    rec.name
                )))
            }
            _ => {
                return Err(EngineError::Conflict(format!(
                    "container {} is not running",
                    rec.name
                )))
            }
        }
        if cfg
            .cmd
            .as_ref()
            .is_none_or(|c| c.is_empty() || c[0].is_empty())
        {
            return Err(EngineError::InvalidArgument(
                "no exec command specified".into(),
            ));
        }
        if cfg.privileged {
            return Err(EngineError::InvalidArgument(
                "privileged exec is not supported".into(),
            ));
        }
        let id = ContainerId::random().to_string();
        let (done, _) = watch::channel(false);
        let exec = Arc::new(Exec {
            id: id.clone(),
            container: rec.id.clone(),
            config: cfg,
            state: Mutex::new(ExecState::default()),
            done,
            master: Mutex::new(None),
        });
        self.linux_adapter(&rec.image)?
            .execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), exec);
        Ok(id)
    }

    pub fn exec_lookup(&self, id: &str) -> Result<Arc<Exec>, EngineError> {
        let no_such = || EngineError::NotFound(format!("No such exec instance: {id}"));
        self.backends
            .linux()
            .ok_or_else(no_such)?
            .execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(no_such)
    }

    /// `POST /exec/{id}/start`: run it once.
    pub async fn exec_start(self: &Arc<Self>, id: &str) -> Result<ExecIo, EngineError> {
        let exec = self.exec_lookup(id)?;
        {
            let mut st = exec.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.started {
                return Err(EngineError::Conflict(format!(
                    "exec instance {id} has already been started"
                )));
            }
            st.started = true;
        }
        let c = self.lookup(exec.container.as_str())?;
        let rec = c.record();
        if rec.state.status() != Status::Running {
            return Err(EngineError::Conflict(format!(
                "container {} is not running",
                rec.name
            )));
        }
        let backend = self.linux_adapter(&rec.image)?.backend(&rec.image)?;
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
            let engine = self.clone();
            let image_id = rec.image_id.to_string();
            let (u, g, _) = tokio::task::spawn_blocking(move || {
                let img = engine.images.resolve(&image_id)?;
                resolve_user(&engine, &img, &user)
            })
            .await
            .expect("user task")?;
            (Some(u), Some(g))
        };
        let cwd = Some(cfg.working_dir.clone())
            .filter(|w| !w.is_empty())
            .or_else(|| Some(rec.config.working_dir.clone()).filter(|w| !w.is_empty()));
        // `-t`: the process's init sends its pty master to this socket.
        let console = if cfg.tty {
            let path = c
                .dir
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
        };
        let mut cmd = backend.exec_command(&req);
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
        {
            let mut st = exec.state.lock().unwrap_or_else(|e| e.into_inner());
            st.running = true;
            st.pid = child.id().unwrap_or(0);
        }
        let mut io = ExecIo {
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
            done: exec.done.subscribe(),
        };
        if let Some((listener, path)) = console {
            // The helper's own output is its errors; the process's is the pty.
            let master = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await;
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(path.with_extension("json"));
            let master = match master {
                Ok(Ok((s, _))) => {
                    let s = s.into_std().and_then(|s| {
                        s.set_nonblocking(false)?;
                        Ok(s)
                    });
                    s.and_then(|s| crate::runtime::linux::sys::recv_fd(s.as_raw_fd()))
                        .ok()
                }
                _ => None,
            };
            if let Some(m) = master {
                let w = m.try_clone().ok().map(|w| {
                    Box::new(tokio::fs::File::from_std(std::fs::File::from(w)))
                        as Box<dyn AsyncWrite + Send + Unpin>
                });
                if cfg.attach_stdin {
                    io.stdin = w;
                }
                let dup = m.try_clone().ok();
                io.stdout = Some(Box::new(tokio::fs::File::from_std(std::fs::File::from(m))));
                *exec.master.lock().unwrap_or_else(|e| e.into_inner()) = dup;
            }
        }
        let engine = self.clone();
        let ex = exec.clone();
        tokio::spawn(async move {
            let code = match child.wait().await {
                Ok(s) => s.code().map(i64::from).unwrap_or(255),
                Err(_) => 255,
            };
            {
                let mut st = ex.state.lock().unwrap_or_else(|e| e.into_inner());
                st.running = false;
                st.exit_code = Some(code);
            }
            ex.master.lock().unwrap_or_else(|e| e.into_inner()).take();
            ex.done.send_replace(true);
            if let Ok(c) = engine.lookup(ex.container.as_str()) {
                engine.event(&c.record(), "exec_die", &[("execID", &ex.id)]);
            }
        });
        self.event(&rec, "exec_start", &[("execID", &exec.id)]);
        Ok(io)
    }
}
