//! `containerd-shim-ketch-v1`: ketch's Wasm runtime behind containerd's
//! shim v2 task API (runtime `io.containerd.ketch.v1`), so that `ctr`,
//! nerdctl and Kubernetes (through a RuntimeClass) run Wasm images with it.
//!
//! - **One process for many containers.** containerd runs the binary with
//!   `start` for every new container; it answers with the address of the
//!   process already serving the container's group, and spawns one only if
//!   there is none. A group is a pod (CRI's sandbox id annotation), or
//!   every other ketch container of a containerd namespace. Each task is a
//!   wasmtime instance inside that process ([`crate::runtime::wasm`], the
//!   same runtime ketchd uses, with its limits and compile cache), so a
//!   container costs an instance, not a process.
//! - **The bundle** ([`bundle`]): the entrypoint is read from the rootfs
//!   containerd's snapshotter prepared, beneath it by descriptor; args and
//!   env come from the OCI spec, directory bind mounts become preopened
//!   directories (read-only ones stay read-only), the memory limit is
//!   `linux.resources.memory.limit`, and nothing else is granted.
//! - **The process ends with its last task:** containerd asks it to shut
//!   down after every delete; once it has had no task (and no `start`
//!   probing it) for a second, it removes its socket, waits for a
//!   container already on its way, and exits. containerd runs the binary
//!   with `delete` whenever a task's connection closes (after every
//!   delete, and for each task of a process that died): it unmounts the
//!   bundle's rootfs if a crash left it mounted, removes a dead process's
//!   socket, and reports the task killed. A dead process's guests died
//!   with it: nothing runs unseen.

mod bundle;
mod error;
mod stdio;
mod task;

use crate::runtime::memory::WasmMemory;
use crate::runtime::wasm::WasmBackend;
use async_trait::async_trait;
use containerd_shim::asynchronous::{run, spawn, ExitSignal, Shim};
use containerd_shim::protos::shim_async::Client;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{api, Config, Error, Flags, StartOpts};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// The runtime name containerd knows this shim by.
pub const RUNTIME_ID: &str = "io.containerd.ketch.v1";
/// Where compiled modules are cached; by default ketchd's own cache.
pub const CACHE_ENV: &str = "KETCH_SHIM_CACHE";

/// The binary's entry point.
pub fn main() {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{RUNTIME_ID}: cannot start a runtime: {e}");
            std::process::exit(1);
        }
    };
    let config = Config {
        // Guests are instances, not child processes: there is nothing to reap.
        no_reaper: true,
        no_sub_reaper: true,
        ..Default::default()
    };
    rt.block_on(run::<KetchShim>(RUNTIME_ID, Some(config)));
}

/// The socket a shim process serves its group on. It is removed once, when
/// the process stops answering `start`: after that the path may be a newer
/// process's.
pub(super) struct Socket {
    path: PathBuf,
    retired: std::sync::atomic::AtomicBool,
}

impl Socket {
    fn new(address: &str) -> Arc<Self> {
        Arc::new(Socket {
            path: socket_path(address).to_path_buf(),
            retired: Default::default(),
        })
    }

    pub(super) fn retire(&self) {
        if !self.retired.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

struct KetchShim {
    exit: Arc<ExitSignal>,
    namespace: String,
    id: String,
    /// containerd's socket, which the group sockets' names hash in.
    address: String,
    /// The socket this process serves, removed when it ends.
    socket: Arc<Socket>,
}

/// The compile cache: `$KETCH_SHIM_CACHE`, or ketchd's.
fn cache_dir() -> PathBuf {
    std::env::var_os(CACHE_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::paths::default_data_root().join("wasm-cache"))
}

/// Whether a shim process serves at `address`. The question is an RPC (a
/// `Connect` of no task), which also tells an idle process that a
/// container is on its way, so it does not retire under it.
async fn answers(address: &str) -> bool {
    let Ok(client) = Client::connect(address).await else {
        return false;
    };
    let tasks = containerd_shim::protos::shim_async::TaskClient::new(client);
    let ctx =
        containerd_shim::protos::ttrpc::context::with_timeout(PROBE_TIMEOUT.as_nanos() as i64);
    match tasks.connect(ctx, &api::ConnectRequest::default()).await {
        Ok(_) => true,
        // NotFound (no such task) is an answer; a closed connection is not.
        Err(containerd_shim::protos::ttrpc::Error::RpcStatus(_)) => true,
        Err(_) => false,
    }
}

/// How long `start` waits for a process to answer.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

fn socket_path(address: &str) -> &Path {
    Path::new(address.strip_prefix("unix://").unwrap_or(address))
}

#[async_trait]
impl Shim for KetchShim {
    type T = task::TaskService;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        KetchShim {
            exit: Arc::new(ExitSignal::default()),
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            address: args.address.clone(),
            socket: Socket::new(&args.socket),
        }
    }

    /// Run with the bundle as the working directory: answers the address
    /// of the process serving this container's group, starting it if none
    /// answers there.
    async fn start_shim(&mut self, opts: StartOpts) -> Result<String, Error> {
        let spec =
            bundle::load_spec(Path::new(".")).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let grouping = bundle::grouping(&spec);
        let address = containerd_shim::socket_address(&opts.address, &opts.namespace, &grouping);
        let address = if answers(&address).await {
            address
        } else {
            spawn(opts, &grouping, Vec::new()).await?
        };
        // containerd finds the shim again through it after a restart.
        std::fs::write("address", &address).map_err(|e| Error::IoError {
            context: format!("cannot write the address of task {}", self.id),
            err: e,
        })?;
        Ok(address)
    }

    /// Run by containerd when the process serving this task died without
    /// deleting it: its guests died with it, so the task was killed.
    async fn delete_shim(&mut self) -> Result<api::DeleteResponse, Error> {
        // Where Create mounted the snapshot, if it was left mounted (a
        // crash mid-create); never the spec's own root.
        bundle::unmount(Path::new("rootfs"));
        if let Ok(spec) = bundle::load_spec(Path::new(".")) {
            // A dead process leaves its socket behind.
            let address = containerd_shim::socket_address(
                &self.address,
                &self.namespace,
                &bundle::grouping(&spec),
            );
            if !answers(&address).await {
                let _ = std::fs::remove_file(socket_path(&address));
            }
        }
        Ok(api::DeleteResponse {
            exit_status: crate::runtime::EXIT_KILLED as u32,
            exited_at: containerd_shim::protos::protobuf::MessageField::some(task::timestamp(
                SystemTime::now(),
            )),
            ..Default::default()
        })
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
        // The first task's bundle (where the library looks for the
        // address) is long gone: remove the socket here.
        self.socket.retire();
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        let memory = WasmMemory::default();
        let backend = match WasmBackend::new(&cache_dir(), memory) {
            Ok(b) => b,
            Err(e) => {
                // The socket is not bound yet: nothing of this process to
                // remove.
                log::error!("{RUNTIME_ID}: cannot start the Wasm runtime: {e}");
                std::process::exit(1);
            }
        };
        let service = task::TaskService::new(
            Arc::new(backend),
            publisher,
            &self.namespace,
            self.exit.clone(),
            memory.guest_default,
            self.socket.clone(),
        );
        // A process whose first container never comes (containerd gone
        // between `start` and Create) ends as an idle one does.
        service.retire_when_idle();
        service
    }
}
