//! `exec`: extra processes in a running Linux container. An exec is
//! created (its config kept), started once (a helper process joins the
//! container; see `runtime::linux::exec`), and inspected for its exit code.

use super::{linux, Engine, EngineError};
use crate::api::types::{ExecConfig, ExecInspect, ExecProcessConfig};
use crate::model::{ContainerId, Status};
use crate::runtime::linux::exec::ExecRequest;
use std::sync::{Arc, Mutex};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::watch;

pub struct Exec {
    pub id: String,
    pub container: ContainerId,
    pub config: ExecConfig,
    state: Mutex<ExecState>,
    /// Becomes true once the exit code is recorded.
    done: watch::Sender<bool>,
}

#[derive(Default)]
struct ExecState {
    started: bool,
    running: bool,
    exit_code: Option<i64>,
    pid: u32,
}

/// The started process's stdio, for the daemon to stream.
pub struct ExecIo {
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
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

impl Engine {
    /// `POST /containers/{id}/exec`.
    pub fn exec_create(&self, name: &str, cfg: ExecConfig) -> Result<String, EngineError> {
        let c = self.lookup(name)?;
        let rec = c.record();
        if !linux::is_linux(&rec) {
            return Err(EngineError::InvalidArgument(format!(
                "container {}: exec is not supported in a Wasm container (a Wasm guest is one instance, with nothing to run beside it)",
                rec.name
            )));
        }
        match rec.state.status {
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
        });
        self.execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), exec);
        Ok(id)
    }

    pub fn exec_lookup(&self, id: &str) -> Result<Arc<Exec>, EngineError> {
        self.execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::NotFound(format!("No such exec instance: {id}")))
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
        if rec.state.status != Status::Running {
            return Err(EngineError::Conflict(format!(
                "container {} is not running",
                rec.name
            )));
        }
        let backend = self.linux.backend(&rec.image)?;
        let cfg = &exec.config;
        let mut env = super::parse_env(rec.config.env.as_deref().unwrap_or_default());
        for (k, v) in super::parse_env(cfg.env.as_deref().unwrap_or_default()) {
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
                linux::resolve_user(&engine, &img, &user)
            })
            .await
            .expect("user task")?;
            (Some(u), Some(g))
        };
        let cwd = Some(cfg.working_dir.clone())
            .filter(|w| !w.is_empty())
            .or_else(|| Some(rec.config.working_dir.clone()).filter(|w| !w.is_empty()));
        let req = ExecRequest {
            id: rec.id.to_string(),
            state_root: backend.state_root().to_path_buf(),
            args: cfg.cmd.clone().unwrap_or_default(),
            env,
            cwd,
            uid,
            gid,
        };
        let mut cmd = backend.exec_command(&req);
        use std::process::Stdio;
        cmd.stdin(if cfg.attach_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            EngineError::Runtime(crate::runtime::RuntimeError::Io {
                path: "ketchd exec".into(),
                source: e,
            })
        })?;
        {
            let mut st = exec.state.lock().unwrap_or_else(|e| e.into_inner());
            st.running = true;
            st.pid = child.id().unwrap_or(0);
        }
        let io = ExecIo {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            done: exec.done.subscribe(),
        };
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
            ex.done.send_replace(true);
            if let Ok(c) = engine.lookup(ex.container.as_str()) {
                engine.event(&c.record(), "exec_die", &[("execID", &ex.id)]);
            }
        });
        self.event(&rec, "exec_start", &[("execID", &exec.id)]);
        Ok(io)
    }
}
