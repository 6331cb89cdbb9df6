//! `exec`: extra processes in a running container. An exec is created (its
//! config kept), started once by the container's backend, and inspected
//! for its exit code. Only backends whose [`Caps::exec`] is set run them;
//! a Wasm guest is one instance, with nothing to run beside it.
//!
//! [`Caps::exec`]: super::backend::Caps

use super::lock;
use super::{Engine, EngineError};
use crate::api::types::{ExecConfig, ExecInspect, ExecProcessConfig};
use crate::model::{ContainerId, Status};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

/// Sizes the terminal of a `-t` exec.
pub type Resizer = Box<dyn Fn(u16, u16) -> std::io::Result<()> + Send + Sync>;

pub struct Exec {
    pub id: String,
    pub container: ContainerId,
    pub config: ExecConfig,
    state: Mutex<ExecState>,
    /// Becomes true once the exit code is recorded.
    done: watch::Sender<bool>,
    /// `-t`: sizes its terminal while it runs.
    resizer: Mutex<Option<Resizer>>,
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

/// What a backend hands back for a started exec.
pub struct Spawned {
    pub stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    pub stdout: Option<Box<dyn AsyncRead + Send + Unpin>>,
    pub stderr: Option<Box<dyn AsyncRead + Send + Unpin>>,
    pub pid: u32,
    /// Resolves to the exit code.
    pub exit: Pin<Box<dyn Future<Output = i64> + Send>>,
    pub resizer: Option<Resizer>,
}

impl Exec {
    /// An exec of `config` in `container`, not yet started.
    pub(super) fn new(container: ContainerId, config: ExecConfig) -> Exec {
        let (done, _) = watch::channel(false);
        Exec {
            id: ContainerId::random().to_string(),
            container,
            config,
            state: Mutex::new(ExecState::default()),
            done,
            resizer: Mutex::new(None),
        }
    }

    pub fn inspect(&self) -> ExecInspect {
        let st = lock(&self.state);
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
            pid: i64::from(st.pid),
            can_remove: !st.running,
            detach_keys: self.config.detach_keys.clone(),
        }
    }

    /// `POST /exec/{id}/resize`: a `-t` exec's terminal size.
    pub fn resize(&self, rows: u16, cols: u16) -> Result<(), EngineError> {
        if let Some(r) = lock(&self.resizer).as_ref() {
            r(rows, cols)
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
        let backend = rec.kind().and_then(|k| self.backends.get(k));
        if !backend.is_some_and(|b| b.caps().exec) {
            return Err(no_exec(
                &rec,
                "exec",
                "a Wasm guest is one instance, with nothing to run beside it",
            ));
        }
        match rec.state.status() {
            Status::Running => {}
            Status::Paused => {
                return Err(EngineError::transition(
                    "exec",
                    &rec.id,
                    &rec.name,
                    crate::model::TransitionError::Paused,
                ))
            }
            _ => return Err(EngineError::not_running("exec", &rec.id)),
        }
        if cfg
            .cmd
            .as_ref()
            .is_none_or(|c| c.first().is_none_or(|a| a.is_empty()))
        {
            return Err(EngineError::InvalidArgument(
                "no exec command specified".into(),
            ));
        }
        if !cfg.detach_keys.is_empty() {
            crate::api::detach::parse(&cfg.detach_keys).map_err(EngineError::InvalidArgument)?;
        }
        let exec = Arc::new(Exec::new(rec.id.clone(), cfg));
        let id = exec.id.clone();
        lock(&self.execs).insert(id.clone(), exec);
        Ok(id)
    }

    pub fn exec_lookup(&self, id: &str) -> Result<Arc<Exec>, EngineError> {
        lock(&self.execs)
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::NoSuchExec(id.to_string()))
    }

    /// `POST /exec/{id}/start`: run it once.
    pub async fn exec_start(self: &Arc<Self>, id: &str) -> Result<ExecIo, EngineError> {
        let exec = self.exec_lookup(id)?;
        {
            let mut st = lock(&exec.state);
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
            return Err(EngineError::not_running("exec", &rec.id));
        }
        let backend = self.backends.for_platform(&rec.platform, &rec.image)?;
        let spawned = backend.exec(self, &exec, &c, &rec).await?;
        {
            let mut st = lock(&exec.state);
            st.running = true;
            st.pid = spawned.pid;
        }
        *lock(&exec.resizer) = spawned.resizer;
        let io = ExecIo {
            stdin: spawned.stdin,
            stdout: spawned.stdout,
            stderr: spawned.stderr,
            done: exec.done.subscribe(),
        };
        let engine = self.clone();
        let ex = exec.clone();
        let exit = spawned.exit;
        tokio::spawn(async move {
            let code = exit.await;
            {
                let mut st = lock(&ex.state);
                st.running = false;
                st.exit_code = Some(code);
            }
            lock(&ex.resizer).take();
            ex.done.send_replace(true);
            if let Ok(c) = engine.lookup(ex.container.as_str()) {
                engine.event(&c.record(), "exec_die", &[("execID", &ex.id)]);
            }
        });
        self.event(&rec, "exec_start", &[("execID", &exec.id)]);
        Ok(io)
    }

    /// Forget the execs of a removed container.
    pub(super) fn forget_execs(&self, container: &ContainerId) {
        lock(&self.execs).retain(|_, e| e.container != *container);
    }

    /// `diff`: what the container changed in its root filesystem, sorted
    /// by path.
    pub async fn changes(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<Vec<crate::api::types::ContainerChange>, EngineError> {
        let c = self.lookup(name)?;
        let rec = c.record();
        let backend = self.backends.for_platform(&rec.platform, &rec.image)?;
        backend.changes(self, &c, &rec).await
    }

    /// `cp` and `export`: the helper command that reads or writes a
    /// container's files (`mode` is `stat`, `get`, `put` or `export`).
    pub async fn copy_command(
        self: &Arc<Self>,
        name: &str,
        mode: &str,
        path: &str,
    ) -> Result<tokio::process::Command, EngineError> {
        let c = self.lookup(name)?;
        let rec = c.record();
        let backend = rec.kind().and_then(|k| self.backends.get(k));
        let Some(backend) = backend.filter(|b| b.caps().exec) else {
            return Err(match mode {
                "export" => no_exec(
                    &rec,
                    "export",
                    "its files are the directories it is granted",
                ),
                _ => no_exec(&rec, "cp", "grant a volume instead"),
            });
        };
        if !path.starts_with('/') {
            return Err(EngineError::InvalidArgument(format!(
                "path {path:?} in container {} must be absolute",
                rec.name
            )));
        }
        backend.copy(self, &c, &rec, mode, path).await
    }
}

/// Why `verb` cannot reach into this container: a Wasm guest has nothing
/// beside its instance; a Linux container needs the Linux runtime.
fn no_exec(rec: &super::Record, verb: &str, wasm_hint: &str) -> EngineError {
    if rec.is(crate::model::RuntimeKind::Linux) {
        return EngineError::InvalidArgument(format!(
            "container {}: {verb} needs the Linux container runtime, which this ketchd cannot run",
            rec.name
        ));
    }
    let what = match verb {
        "cp" => "cp is not supported for Wasm containers",
        "export" => "export is not supported for Wasm containers",
        _ => "exec is not supported in a Wasm container",
    };
    EngineError::InvalidArgument(format!("container {}: {what} ({wasm_hint})", rec.name))
}
