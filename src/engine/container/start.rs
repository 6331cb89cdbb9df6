//! `POST /containers/{id}/start`: the backend for the container's kind
//! starts an instance; the engine records it running and watches for its
//! exit.

use super::super::config::{
    exposed_ports, grants, http_options, net_options, parse_env, port_mappings,
};
use super::super::record::Published;
use super::super::{Engine, EngineError, Record};
use super::Container;
use crate::api::types::PortBinding;
use crate::runtime::{ExitStatus, Program, RunSpec, Started};
use chrono::Utc;
use std::future::Future;
use std::sync::Arc;

impl Engine {
    /// `POST /containers/{id}/start`.
    pub async fn start(self: &Arc<Self>, name: &str) -> Result<(), EngineError> {
        let c = self.lookup(name)?;
        let _op = c.op.lock().await;
        c.check("start", |s| s.can_start())?;
        let started = self.start_container(&c).await;
        if let Err(EngineError::Runtime(crate::runtime::RuntimeError::CannotExec {
            code,
            reason,
            ..
        })) = &started
        {
            // As Docker: the container keeps the exit code the command
            // would have had, and why.
            let (code, reason) = (*code, reason.clone());
            if let Err(e) = c.update(|r| r.state.start_failed(code, reason)).await {
                tracing::warn!("cannot record the failed start of {}: {e}", c.name());
            }
        }
        if started.is_err() && c.record().host_config.auto_remove {
            // As Docker: an --rm container that cannot start is removed, so
            // `run --rm` waiting for its removal returns.
            if let Err(e) = self.remove_now(&c).await {
                tracing::warn!(
                    "cannot remove container {} after its failed start: {e}",
                    c.name()
                );
            }
        }
        started
    }

    #[allow(clippy::manual_async_fn)] // the explicit `+ Send` breaks the future cycle
    pub(super) fn start_container_owned(
        self: Arc<Self>,
        c: Arc<Container>,
    ) -> impl Future<Output = Result<(), EngineError>> + Send {
        async move { self.start_container(&c).await }
    }

    /// Start without the op lock (callers hold it, or are the restart loop).
    pub(in crate::engine) async fn start_container(
        self: &Arc<Self>,
        c: &Arc<Container>,
    ) -> Result<(), EngineError> {
        let rec = c.record();
        let backend = self.backends.for_platform(&rec.platform, &rec.image)?;
        let started = backend.start(self, c, &rec).await?;
        self.started(c, started).await?;
        backend.after_start(self, c);
        Ok(())
    }

    /// What a backend needs to start this container, but its program.
    pub(in crate::engine) fn run_spec(
        &self,
        c: &Container,
        rec: &Record,
        program: Program,
    ) -> Result<RunSpec, EngineError> {
        let mut spec = self.instance_spec(c, rec, program)?;
        spec.stdin = c.guest_stdin();
        Ok(spec)
    }

    /// [`run_spec`](Self::run_spec) without the container's stdin: for an
    /// instance beside its own (a health probe).
    pub(in crate::engine) fn instance_spec(
        &self,
        c: &Container,
        rec: &Record,
        program: Program,
    ) -> Result<RunSpec, EngineError> {
        Ok(RunSpec {
            name: rec.name.clone(),
            image: rec.image.clone(),
            program,
            argv: rec.argv(),
            env: parse_env(rec.config.env.as_deref().unwrap_or_default()),
            workdir: rec.config.working_dir.clone(),
            grants: grants(&rec.host_config, &self.volumes)?,
            memory_limit: u64::try_from(rec.host_config.memory)
                .ok()
                .filter(|m| *m > 0),
            stdin: None,
            output: c.log.clone(),
            ports: port_mappings(&rec.config, &rec.host_config)?,
            exposed: exposed_ports(&rec.config)?,
            http: http_options(&rec.host_config)?,
            net: net_options(&rec.host_config)?,
            addresses: Vec::new(),
            peers: Default::default(),
        })
    }

    /// Record a container as running and watch for its exit.
    async fn started(
        self: &Arc<Self>,
        c: &Arc<Container>,
        started: Started,
    ) -> Result<(), EngineError> {
        let started_at = Utc::now();
        let mut published = Published::new();
        for m in &started.ports {
            published.entry(m.key()).or_default().push(PortBinding {
                host_ip: m.host_ip.to_string(),
                host_port: m.host_port.to_string(),
            });
        }
        if let Err(e) = c
            .transition("start", |s| s.running(started_at, published))
            .await
        {
            // It runs, but cannot be recorded: it must not run unseen. It is
            // adopted and killed, so its exit releases what it holds
            // (addresses, ports) as any exit does.
            let control = started.control.clone();
            self.adopt(c, started, started_at);
            control.kill();
            return Err(e);
        }
        self.event(&c.record(), "start", &[]);
        self.adopt(c, started, started_at);
        Ok(())
    }

    /// Take control of a started instance and handle its exit.
    pub(in crate::engine) fn adopt(
        self: &Arc<Self>,
        c: &Arc<Container>,
        started: Started,
        started_at: chrono::DateTime<Utc>,
    ) {
        c.set_control(Some(started.control.clone()));
        let engine = self.clone();
        let c2 = c.clone();
        tokio::spawn(async move {
            // Its health check runs as long as this run does.
            let mut exit = started.exit;
            let status = tokio::select! {
                biased;
                s = &mut exit => s,
                () = engine.watch_health(&c2, started_at) => exit.await,
            };
            let status = status.unwrap_or(ExitStatus {
                code: crate::runtime::EXIT_KILLED,
                error: Some("instance task vanished".into()),
                oom_killed: false,
            });
            engine.on_exit(&c2, status, started_at).await;
        });
    }
}
