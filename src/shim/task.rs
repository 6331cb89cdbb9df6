//! The task service: containerd's shim v2 Task API over the Wasm runtime.
//! Every task of this shim process is a wasmtime instance in it; a pod's
//! own container (the pause container) is a placeholder that only waits
//! to be killed.

use super::bundle;
use super::error::ShimError;
use super::stdio::{Input, Output};
use crate::model::Digest;
use crate::runtime::wasm::WasmBackend;
use crate::runtime::{Backend, Control, ExitStatus, Program, RunSpec, RuntimeStats, EXIT_KILLED};
use async_trait::async_trait;
use containerd_shim::api::Empty;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::event::Event;
use containerd_shim::protos::cgroups::metrics::{
    CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics, PidsStat,
};
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExit, TaskIO, TaskOOM, TaskPaused, TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::shim_async::Task;
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc::context::Context;
use containerd_shim::protos::types::task::{ProcessInfo, Status};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{api, TtrpcContext, TtrpcResult};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};
use tokio::sync::{mpsc, oneshot, watch};

/// What `ctr task metrics` decodes a Linux task's stats as.
const METRICS_TYPE: &str = "io.containerd.cgroups.v1.Metrics";
/// Signals whose default action is to do nothing: a Wasm guest has no
/// handlers, so for it they are no-ops (SIGCHLD, SIGURG, SIGWINCH).
const IGNORED_SIGNALS: [u32; 3] = [17, 23, 28];
/// SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU pause a guest; SIGCONT resumes it.
const STOP_SIGNALS: [u32; 4] = [19, 20, 21, 22];
const SIGCONT: u32 = 18;
/// The exit code of a task whose start failed (as a shell's for a command
/// it could not run).
const EXIT_START_FAILED: u32 = 127;
/// How long the process stays after its last task is deleted: a container
/// created meanwhile (`ctr run --rm` in a loop) finds it still serving.
const IDLE_EXIT: std::time::Duration = std::time::Duration::from_secs(1);
/// After it stops answering `start` (its socket removed), how long it
/// waits for a container whose `start` found it a moment before.
const IN_FLIGHT: std::time::Duration = std::time::Duration::from_secs(2);

/// A task's life.
enum Phase {
    /// Made, not started: what it will run.
    Created(Box<Option<RunSpec>>),
    Running {
        control: Arc<dyn Control>,
        paused: bool,
    },
    Exited(Exit),
}

#[derive(Clone, Copy)]
struct Exit {
    code: u32,
    at: SystemTime,
}

/// One container of this shim.
struct TaskEntry {
    id: String,
    bundle: String,
    io: TaskIO,
    phase: Mutex<Phase>,
    /// The exit, once there is one; `Wait` watches it.
    exited: watch::Sender<Option<Exit>>,
    /// The signal that ended it, for its exit code (128 + signal).
    signalled: AtomicI32,
    output: Arc<Output>,
    input: Option<Input>,
    /// The memory the guest may hold, bytes (what `metrics` shows as its
    /// limit).
    memory_cap: AtomicU64,
}

impl TaskEntry {
    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(super) struct TaskService {
    backend: Arc<WasmBackend>,
    tasks: Arc<Mutex<HashMap<String, Arc<TaskEntry>>>>,
    /// Events, in order, to the one task that publishes them.
    events: Events,
    exit: Arc<ExitSignal>,
    /// Creates under way (not in the table yet).
    pending: Arc<AtomicUsize>,
    /// The last sign of a container on its way: a `start` probing this
    /// process, or a Create.
    activity: Arc<Mutex<Instant>>,
    /// This process's pid: the pid containerd sees for every task.
    pid: u32,
    /// The cap of a guest whose spec sets no memory limit.
    guest_default: u64,
    /// The socket `start` finds this process at.
    socket: Arc<super::Socket>,
}

impl TaskService {
    pub(super) fn new(
        backend: Arc<WasmBackend>,
        publisher: RemotePublisher,
        namespace: &str,
        exit: Arc<ExitSignal>,
        guest_default: u64,
        socket: Arc<super::Socket>,
    ) -> Self {
        let (events, mut queue) = mpsc::unbounded_channel::<(&'static str, Box<dyn Event>)>();
        let namespace = namespace.to_string();
        tokio::spawn(async move {
            while let Some((topic, event)) = queue.recv().await {
                if let Err(e) = publisher
                    .publish(Context::default(), topic, &namespace, event)
                    .await
                {
                    log::warn!("cannot publish {topic}: {e}");
                }
            }
        });
        TaskService {
            socket,
            guest_default,
            backend,
            tasks: Arc::default(),
            events: Events(events),
            exit,
            pending: Arc::default(),
            activity: Arc::new(Mutex::new(Instant::now())),
            pid: std::process::id(),
        }
    }

    fn touch(&self) {
        *self.activity.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// Ends the process if it stays without tasks: after [`IDLE_EXIT`] it
    /// removes its socket, so the next `start` of its group spawns a new
    /// process, and after [`IN_FLIGHT`] more it exits, unless a container
    /// whose `start` found it just before arrived; then it serves that one
    /// and ends after it.
    pub(super) fn retire_when_idle(&self) {
        let tasks = self.tasks.clone();
        let pending = self.pending.clone();
        let activity = self.activity.clone();
        let exit = self.exit.clone();
        let socket = self.socket.clone();
        tokio::spawn(async move {
            let idle = || {
                tasks.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
                    && pending.load(Ordering::SeqCst) == 0
            };
            loop {
                tokio::time::sleep(IDLE_EXIT).await;
                if !idle() {
                    // Its last task's Shutdown starts this again.
                    return;
                }
                let quiet = activity.lock().unwrap_or_else(|e| e.into_inner()).elapsed();
                if quiet >= IDLE_EXIT {
                    break;
                }
            }
            socket.retire();
            tokio::time::sleep(IN_FLIGHT).await;
            if idle() {
                exit.signal();
            }
        });
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<TaskEntry>>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn task(&self, id: &str, exec_id: &str) -> Result<Arc<TaskEntry>, ShimError> {
        if !exec_id.is_empty() {
            return Err(ShimError::NotFound(format!(
                "exec {exec_id} of task {id}: not found (a Wasm task has no exec processes)"
            )));
        }
        self.table()
            .get(id)
            .cloned()
            .ok_or_else(|| ShimError::NotFound(format!("task {id}: not found")))
    }

    fn publish(&self, topic: &'static str, event: impl Event) {
        self.events.send(topic, event);
    }

    async fn create_task(&self, req: api::CreateTaskRequest) -> Result<u32, ShimError> {
        self.touch();
        self.pending.fetch_add(1, Ordering::SeqCst);
        let made = self.create_task_inner(req).await;
        self.pending.fetch_sub(1, Ordering::SeqCst);
        self.touch();
        made
    }

    async fn create_task_inner(&self, req: api::CreateTaskRequest) -> Result<u32, ShimError> {
        let id = req.id.clone();
        if self.table().contains_key(&id) {
            return Err(ShimError::Exists(format!("task {id}: already exists")));
        }
        if !req.checkpoint.is_empty() {
            return Err(ShimError::Unimplemented(format!(
                "task {id}: a Wasm task cannot be restored from a checkpoint"
            )));
        }
        let bundle_path = PathBuf::from(&req.bundle);
        let spec = bundle::load_spec(&bundle_path)?;
        bundle::refuse_unsupported(&id, &spec)?;
        let output = Output::open(&id, &req.stdout, &req.stderr, req.terminal)?;
        let (input, stdin) = if req.stdin.is_empty() {
            (None, None)
        } else {
            match Input::open(&id, &req.stdin) {
                Ok((i, s)) => (Some(i), Some(s)),
                Err(e) => {
                    output.abort();
                    return Err(e);
                }
            }
        };
        let made = if bundle::is_pod_sandbox(&spec) {
            Ok(None)
        } else {
            self.prepare(&id, &bundle_path, &req.rootfs, &spec)
                .await
                .map(Some)
        };
        let module = match made {
            Ok(m) => m,
            Err(e) => {
                output.abort();
                return Err(e);
            }
        };
        let memory_cap = bundle::memory_limit(&spec).unwrap_or(self.guest_default);
        let run = module.map(|module| {
            let (argv, env, workdir) = bundle::process(&spec);
            RunSpec {
                name: id.clone(),
                image: req.bundle.clone(),
                program: Program::Wasm { module },
                argv,
                env,
                workdir,
                grants: bundle::grants(&spec),
                memory_limit: bundle::memory_limit(&spec),
                stdin,
                output: output.clone(),
                ports: Vec::new(),
                exposed: Vec::new(),
                addresses: Vec::new(),
                peers: Default::default(),
                http: Default::default(),
                net: Default::default(),
            }
        });
        let io = TaskIO {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
            ..Default::default()
        };
        let entry = Arc::new(TaskEntry {
            id: id.clone(),
            bundle: req.bundle.clone(),
            io: io.clone(),
            phase: Mutex::new(Phase::Created(Box::new(run))),
            exited: watch::channel(None).0,
            signalled: AtomicI32::new(0),
            output,
            input,
            memory_cap: AtomicU64::new(memory_cap),
        });
        {
            let mut table = self.table();
            if table.contains_key(&id) {
                entry.output.abort();
                return Err(ShimError::Exists(format!("task {id}: already exists")));
            }
            table.insert(id.clone(), entry);
        }
        self.publish(
            topics::TASK_CREATE_EVENT_TOPIC,
            TaskCreate {
                container_id: id,
                bundle: req.bundle,
                rootfs: req
                    .rootfs
                    .iter()
                    .map(|m| containerd_shim::protos::types::mount::Mount {
                        type_: m.type_.clone(),
                        source: m.source.clone(),
                        target: m.target.clone(),
                        options: m.options.clone(),
                        ..Default::default()
                    })
                    .collect(),
                io: MessageField::some(io),
                pid: self.pid,
                ..Default::default()
            },
        );
        Ok(self.pid)
    }

    /// Reads the task's module and compiles it (once per digest; the
    /// compile cache on disk is ketchd's).
    async fn prepare(
        &self,
        id: &str,
        bundle_path: &std::path::Path,
        rootfs: &[containerd_shim::protos::api::Mount],
        spec: &oci_spec::runtime::Spec,
    ) -> Result<Digest, ShimError> {
        let entry = bundle::read_entrypoint(id, bundle_path, rootfs, spec).await?;
        let digest = Digest::of(&entry.bytes);
        if crate::runtime::wasm::detect::exports_http_handler(&entry.bytes) {
            return Err(ShimError::Invalid(format!(
                "task {id}: {} is a wasi:http function; the containerd shim runs Wasm commands (run functions with ketchd)",
                entry.path
            )));
        }
        let backend = self.backend.clone();
        let (name, d) = (format!("{id} ({})", entry.path), digest.clone());
        tokio::task::spawn_blocking(move || {
            let prepared = backend.prepare(&name, &d, &entry.bytes);
            // A compile's scratch memory is freed but kept by the
            // allocator; this process lives long and serves many guests.
            #[cfg(target_env = "gnu")]
            // SAFETY: malloc_trim has no preconditions.
            unsafe {
                libc::malloc_trim(0);
            }
            prepared
        })
        .await
        .map_err(|e| ShimError::Internal(format!("task {id}: compiling stopped: {e}")))?
        .map_err(|e| ShimError::Invalid(format!("task {id}: {e}")))?;
        Ok(digest)
    }

    fn start_task(&self, task: &Arc<TaskEntry>) -> Result<u32, ShimError> {
        let mut phase = task.phase();
        let run = match &mut *phase {
            Phase::Created(run) => run.take(),
            Phase::Running { .. } => {
                return Err(ShimError::Precondition(format!(
                    "task {}: already running",
                    task.id
                )))
            }
            Phase::Exited(_) => {
                return Err(ShimError::Precondition(format!(
                    "task {}: already exited; delete it and create it again",
                    task.id
                )))
            }
        };
        let (control, exit): (Arc<dyn Control>, oneshot::Receiver<ExitStatus>) = match run {
            Some(spec) => match self.backend.start(spec) {
                Ok(started) => (started.control, started.exit),
                Err(e) => {
                    // It cannot be started again: what to run is spent.
                    let exit = Exit {
                        code: EXIT_START_FAILED,
                        at: SystemTime::now(),
                    };
                    *phase = Phase::Exited(exit);
                    drop(phase);
                    task.output.abort();
                    self.exited(task, exit, false);
                    return Err(ShimError::Invalid(format!("task {}: {e}", task.id)));
                }
            },
            None => Placeholder::start(),
        };
        *phase = Phase::Running {
            control,
            paused: false,
        };
        drop(phase);
        self.watch_exit(task.clone(), exit);
        self.publish(
            topics::TASK_START_EVENT_TOPIC,
            TaskStart {
                container_id: task.id.clone(),
                pid: self.pid,
                ..Default::default()
            },
        );
        Ok(self.pid)
    }

    /// Records the exit once the guest's output is drained, then tells
    /// containerd.
    fn watch_exit(&self, task: Arc<TaskEntry>, exit: oneshot::Receiver<ExitStatus>) {
        let events = self.events.clone();
        let pid = self.pid;
        tokio::spawn(async move {
            let status = exit.await.unwrap_or(ExitStatus {
                code: EXIT_KILLED,
                error: Some("the instance was lost".into()),
                oom_killed: false,
            });
            if let Some(msg) = &status.error {
                use crate::runtime::OutputSink;
                task.output.write(
                    crate::api::stream::StdStream::Stderr,
                    format!("{msg}\n").as_bytes(),
                );
            }
            task.output.finish().await;
            let signal = task.signalled.load(Ordering::Relaxed);
            let code = if signal > 0 && status.code == EXIT_KILLED {
                128 + signal as u32
            } else {
                u32::try_from(status.code).unwrap_or(255)
            };
            let exit = Exit {
                code,
                at: SystemTime::now(),
            };
            *task.phase() = Phase::Exited(exit);
            record_exit(&events, pid, &task, exit, status.oom_killed);
        });
    }

    /// An exit that did not come from a guest (a kill before the start, a
    /// failed start): recorded and told at once.
    fn exited(&self, task: &TaskEntry, exit: Exit, oom: bool) {
        record_exit(&self.events, self.pid, task, exit, oom);
    }

    fn kill_task(&self, task: &TaskEntry, signal: u32) -> Result<(), ShimError> {
        if signal == 0 || signal > 64 {
            return Err(ShimError::Invalid(format!(
                "task {}: invalid signal {signal}",
                task.id
            )));
        }
        if IGNORED_SIGNALS.contains(&signal) {
            return match &*task.phase() {
                Phase::Exited(_) => Err(ShimError::NotFound(format!(
                    "task {}: process already finished",
                    task.id
                ))),
                _ => Ok(()),
            };
        }
        if STOP_SIGNALS.contains(&signal) || signal == SIGCONT {
            let pause = signal != SIGCONT;
            return match self.set_paused(task, pause) {
                // Stopping a stopped task, or continuing a running one.
                Err(ShimError::Precondition(_))
                    if matches!(&*task.phase(), Phase::Running { .. }) =>
                {
                    Ok(())
                }
                other => other,
            };
        }
        let mut phase = task.phase();
        match &mut *phase {
            Phase::Exited(_) => Err(ShimError::NotFound(format!(
                "task {}: process already finished",
                task.id
            ))),
            Phase::Created(_) => {
                // It never ran: it ends here, killed.
                let exit = Exit {
                    code: 128 + signal,
                    at: SystemTime::now(),
                };
                *phase = Phase::Exited(exit);
                drop(phase);
                task.output.abort();
                self.exited(task, exit, false);
                Ok(())
            }
            Phase::Running { control, .. } => {
                // A guest has no signal handlers: every other signal ends
                // it, with 128 + the signal as its exit code.
                task.signalled.store(signal as i32, Ordering::Relaxed);
                control.kill();
                Ok(())
            }
        }
    }

    fn delete_task(&self, task: &TaskEntry) -> Result<Exit, ShimError> {
        let mut phase = task.phase();
        let exit = match &*phase {
            Phase::Running { .. } => {
                return Err(ShimError::Precondition(format!(
                    "task {}: cannot delete a running task; kill it first",
                    task.id
                )))
            }
            Phase::Created(_) => Exit {
                code: 0,
                at: SystemTime::now(),
            },
            Phase::Exited(e) => *e,
        };
        // Under the same lock: a Start that holds the entry finds it
        // exited, and nothing runs unseen.
        *phase = Phase::Exited(exit);
        self.table().remove(&task.id);
        drop(phase);
        task.output.abort();
        if let Some(i) = &task.input {
            i.abort();
        }
        self.publish(
            topics::TASK_DELETE_EVENT_TOPIC,
            TaskDelete {
                container_id: task.id.clone(),
                pid: self.pid,
                exit_status: exit.code,
                exited_at: MessageField::some(timestamp(exit.at)),
                ..Default::default()
            },
        );
        Ok(exit)
    }

    fn set_paused(&self, task: &TaskEntry, pause: bool) -> Result<(), ShimError> {
        let mut phase = task.phase();
        let Phase::Running { control, paused } = &mut *phase else {
            return Err(ShimError::Precondition(format!(
                "task {}: not running",
                task.id
            )));
        };
        if *paused == pause {
            return Err(ShimError::Precondition(format!(
                "task {}: already {}",
                task.id,
                if pause { "paused" } else { "running" }
            )));
        }
        if pause {
            control.pause();
        } else {
            control.resume();
        }
        *paused = pause;
        drop(phase);
        if pause {
            self.publish(
                topics::TASK_PAUSED_EVENT_TOPIC,
                TaskPaused {
                    container_id: task.id.clone(),
                    ..Default::default()
                },
            );
        } else {
            self.publish(
                topics::TASK_RESUMED_EVENT_TOPIC,
                TaskResumed {
                    container_id: task.id.clone(),
                    ..Default::default()
                },
            );
        }
        Ok(())
    }

    fn update_task(&self, task: &TaskEntry, resources: Option<&Any>) -> Result<(), ShimError> {
        let Some(any) = resources else {
            return Ok(());
        };
        // containerd sends the OCI `LinuxResources` as JSON.
        let res: oci_spec::runtime::LinuxResources =
            serde_json::from_slice(&any.value).map_err(|e| {
                ShimError::Invalid(format!(
                    "task {}: resources ({}) are not OCI LinuxResources: {e}",
                    task.id, any.type_url
                ))
            })?;
        let Some(limit) = res.memory().as_ref().and_then(|m| m.limit()) else {
            return Ok(());
        };
        let limit = u64::try_from(limit)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                ShimError::Invalid(format!(
                    "task {}: memory limit {limit} is not a positive number of bytes",
                    task.id
                ))
            })?;
        match &mut *task.phase() {
            Phase::Created(run) => {
                if let Some(spec) = run.as_mut() {
                    spec.memory_limit = Some(limit);
                }
            }
            Phase::Running { control, .. } => control
                .set_memory_limit(limit)
                .map_err(|e| ShimError::Precondition(format!("task {}: {e}", task.id)))?,
            Phase::Exited(_) => {
                return Err(ShimError::Precondition(format!(
                    "task {}: already exited",
                    task.id
                )))
            }
        }
        task.memory_cap.store(limit, Ordering::Relaxed);
        Ok(())
    }

    fn stats_of(&self, task: &TaskEntry) -> Result<Any, ShimError> {
        let stats = match &*task.phase() {
            Phase::Running { control, .. } => control.stats(),
            _ => RuntimeStats::default(),
        };
        let limit = task.memory_cap.load(Ordering::Relaxed);
        let metrics = Metrics {
            pids: MessageField::some(PidsStat {
                current: u64::from(matches!(&*task.phase(), Phase::Running { .. })),
                ..Default::default()
            }),
            cpu: MessageField::some(CPUStat {
                usage: MessageField::some(CPUUsage {
                    total: stats.cpu_ns,
                    user: stats.cpu_ns,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            memory: MessageField::some(MemoryStat {
                rss: stats.memory_bytes,
                usage: MessageField::some(MemoryEntry {
                    usage: stats.memory_bytes,
                    max: stats.memory_peak,
                    limit,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let value = metrics
            .write_to_bytes()
            .map_err(|e| ShimError::Internal(format!("task {}: stats: {e}", task.id)))?;
        Ok(Any {
            type_url: METRICS_TYPE.into(),
            value,
            ..Default::default()
        })
    }

    fn state_of(&self, task: &TaskEntry) -> api::StateResponse {
        let (status, exit) = match &*task.phase() {
            Phase::Created(_) => (Status::CREATED, None),
            Phase::Running { paused: true, .. } => (Status::PAUSED, None),
            Phase::Running { .. } => (Status::RUNNING, None),
            Phase::Exited(e) => (Status::STOPPED, Some(*e)),
        };
        api::StateResponse {
            id: task.id.clone(),
            bundle: task.bundle.clone(),
            pid: self.pid,
            status: status.into(),
            stdin: task.io.stdin.clone(),
            stdout: task.io.stdout.clone(),
            stderr: task.io.stderr.clone(),
            terminal: task.io.terminal,
            exit_status: exit.map_or(0, |e| e.code),
            exited_at: exit.map_or(MessageField::none(), |e| {
                MessageField::some(timestamp(e.at))
            }),
            ..Default::default()
        }
    }
}

/// The events of this process, queued in order for the one task that
/// publishes them.
#[derive(Clone)]
struct Events(mpsc::UnboundedSender<(&'static str, Box<dyn Event>)>);

impl Events {
    fn send(&self, topic: &'static str, event: impl Event) {
        // Only fails once the process is ending.
        let _ = self.0.send((topic, Box::new(event)));
    }
}

/// Tells containerd of an exit (after `TaskOOM` if the limiter refused the
/// guest), then lets `Wait` return: a waiter never sees an exit containerd
/// has not been told of.
fn record_exit(events: &Events, pid: u32, task: &TaskEntry, exit: Exit, oom: bool) {
    if oom {
        events.send(
            topics::TASK_OOM_EVENT_TOPIC,
            TaskOOM {
                container_id: task.id.clone(),
                ..Default::default()
            },
        );
    }
    events.send(
        topics::TASK_EXIT_EVENT_TOPIC,
        TaskExit {
            container_id: task.id.clone(),
            id: task.id.clone(),
            pid,
            exit_status: exit.code,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        },
    );
    task.exited.send_replace(Some(exit));
}

pub(super) fn timestamp(at: SystemTime) -> Timestamp {
    let d = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
        ..Default::default()
    }
}

/// A pod's own container: nothing runs; it ends when killed.
struct Placeholder {
    kill: Mutex<Option<oneshot::Sender<ExitStatus>>>,
}

impl Placeholder {
    fn start() -> (Arc<dyn Control>, oneshot::Receiver<ExitStatus>) {
        let (tx, rx) = oneshot::channel();
        let this = Placeholder {
            kill: Mutex::new(Some(tx)),
        };
        (Arc::new(this), rx)
    }
}

impl Control for Placeholder {
    fn kill(&self) {
        if let Some(tx) = self.kill.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(ExitStatus {
                code: EXIT_KILLED,
                error: None,
                oom_killed: false,
            });
        }
    }
    fn pause(&self) {}
    fn resume(&self) {}
    fn stats(&self) -> RuntimeStats {
        RuntimeStats::default()
    }
}

#[async_trait]
impl Task for TaskService {
    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        // `start` probes with a Connect of no task: a container is coming.
        self.touch();
        self.task(&req.id, "")?;
        Ok(api::ConnectResponse {
            shim_pid: self.pid,
            task_pid: self.pid,
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        })
    }

    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        let id = req.id.clone();
        let pid = self.create_task(req).await.inspect_err(|e| {
            log::warn!("create {id}: {e}");
        })?;
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        let task = self.task(&req.id, &req.exec_id)?;
        let pid = self.start_task(&task)?;
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        let task = self.task(&req.id, &req.exec_id)?;
        Ok(self.state_of(&task))
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<Empty> {
        let task = self.task(&req.id, &req.exec_id)?;
        self.kill_task(&task, req.signal)?;
        Ok(Empty::new())
    }

    async fn wait(
        &self,
        _ctx: &TtrpcContext,
        req: api::WaitRequest,
    ) -> TtrpcResult<api::WaitResponse> {
        let task = self.task(&req.id, &req.exec_id)?;
        let mut rx = task.exited.subscribe();
        drop(task);
        // No exit was recorded before the task went (deleted unstarted).
        let exit = rx
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|e| *e)
            .unwrap_or(Exit {
                code: EXIT_KILLED as u32,
                at: SystemTime::now(),
            });
        Ok(api::WaitResponse {
            exit_status: exit.code,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        let task = self.task(&req.id, &req.exec_id)?;
        let exit = self.delete_task(&task)?;
        Ok(api::DeleteResponse {
            pid: self.pid,
            exit_status: exit.code,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        })
    }

    async fn pids(
        &self,
        _ctx: &TtrpcContext,
        req: api::PidsRequest,
    ) -> TtrpcResult<api::PidsResponse> {
        let task = self.task(&req.id, "")?;
        let running = matches!(&*task.phase(), Phase::Running { .. });
        Ok(api::PidsResponse {
            processes: running
                .then(|| ProcessInfo {
                    pid: self.pid,
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        })
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<Empty> {
        let task = self.task(&req.id, "")?;
        self.set_paused(&task, true)?;
        Ok(Empty::new())
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<Empty> {
        let task = self.task(&req.id, "")?;
        self.set_paused(&task, false)?;
        Ok(Empty::new())
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<Empty> {
        let task = self.task(&req.id, "")?;
        Err(ShimError::Unimplemented(format!(
            "task {}: exec is not supported: a Wasm task is one instance, with no processes to join",
            task.id
        ))
        .into())
    }

    async fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<Empty> {
        // A guest writes to its stdout whatever the terminal's size: there
        // is nothing to tell it.
        self.task(&req.id, &req.exec_id)?;
        Ok(Empty::new())
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<Empty> {
        let task = self.task(&req.id, &req.exec_id)?;
        if req.stdin {
            if let Some(i) = &task.input {
                i.close();
            }
        }
        Ok(Empty::new())
    }

    async fn update(&self, _ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<Empty> {
        let task = self.task(&req.id, "")?;
        self.update_task(&task, req.resources.as_ref())?;
        Ok(Empty::new())
    }

    async fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        let task = self.task(&req.id, "")?;
        Ok(api::StatsResponse {
            stats: MessageField::some(self.stats_of(&task)?),
            ..Default::default()
        })
    }

    async fn shutdown(
        &self,
        _ctx: &TtrpcContext,
        _req: api::ShutdownRequest,
    ) -> TtrpcResult<Empty> {
        // containerd asks after every delete; the process serves every
        // task of its group, so it ends with the last one.
        if self.table().is_empty() {
            self.retire_when_idle();
        }
        Ok(Empty::new())
    }
}
