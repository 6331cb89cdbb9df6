//! Runtimes: the one small trait the engine sees ([`Backend`]) and its
//! implementations. `wasm` runs WebAssembly instances inside ketchd;
//! `linux` runs OCI images in namespaces through a monitor process.

use crate::api::stream::StdStream;
pub use crate::model::net::NetOptions;
use crate::model::Digest;
pub use crate::model::{HttpOptions, PortMapping, Proto};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::oneshot;

#[cfg(all(feature = "linux", target_os = "linux"))]
pub mod linux;
pub mod logfile;
pub mod memory;
#[cfg(any(feature = "wasm", all(feature = "linux", target_os = "linux")))]
pub(crate) mod proxy;
pub mod stats;
#[cfg(feature = "wasm")]
pub mod wasm;

pub use stats::{HttpStats, RuntimeStats};

/// Exit code for an instance ended by `kill` (128 + SIGKILL, as Docker).
pub const EXIT_KILLED: i64 = 137;
/// Exit code for a Wasm trap (128 + SIGABRT, as the wasmtime CLI).
pub const EXIT_TRAP: i64 = 134;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{name} is not a valid WebAssembly module or component: {reason}")]
    InvalidModule { name: String, reason: String },
    #[error("cannot instantiate {name}: {reason}")]
    Instantiate { name: String, reason: String },
    #[error("cannot start container {name} of image {image}: {reason}")]
    Start {
        name: String,
        image: String,
        reason: String,
    },
    #[error("cannot grant volume {host} to the container: {reason}")]
    Grant { host: String, reason: String },
    #[error("runtime i/o on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is not supported by this runtime")]
    Unsupported(String),
    /// The process cannot hold another guest: its reason names the limit
    /// and how to raise it.
    #[error("cannot start {name}: {reason}")]
    Capacity { name: String, reason: String },
    /// The container's command is missing or cannot be run: `code` is
    /// Docker's exit status for it (127, 126).
    #[error(
        "failed to create task for container {name}: unable to start container process: {reason}"
    )]
    CannotExec {
        name: String,
        code: i64,
        reason: String,
    },
    #[error("cannot publish port {port} of container {name}: {reason}")]
    Publish {
        name: String,
        port: String,
        reason: String,
    },
}

/// Where a container's stdout and stderr go. Called from the instance as
/// output is produced; must not block for long.
pub trait OutputSink: Send + Sync {
    fn write(&self, stream: StdStream, data: &[u8]);
    /// Another process (a Linux container's monitor) appends to the log
    /// file from now on; what it wrote before this call is not news.
    fn relay_from_end(&self) {}
    /// Publish what that process appended since the last call. Returns
    /// whether there was anything.
    fn relay(&self) -> bool {
        false
    }
    /// The other process is done writing.
    fn relay_stop(&self) {}
}

/// A directory granted to the container.
#[derive(Clone, Debug)]
pub struct Grant {
    pub host: PathBuf,
    pub guest: String,
    pub read_only: bool,
}

/// What to run.
#[derive(Clone, Debug)]
pub enum Program {
    /// A Wasm module or component, already prepared under this digest.
    Wasm { module: Digest },
    /// An OCI image's root filesystem, run as a Linux container.
    #[cfg(all(feature = "linux", target_os = "linux"))]
    Linux(Box<linux::LinuxProgram>),
}

pub type Stdin = Pin<Box<dyn tokio::io::AsyncRead + Send + Sync>>;

/// Everything a backend needs to start one container.
pub struct RunSpec {
    /// For error messages and logs: the container's name and its image.
    pub name: String,
    pub image: String,
    pub program: Program,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: String,
    pub grants: Vec<Grant>,
    /// Cap on linear memory + tables, bytes (`--memory`). A Wasm guest
    /// without one gets the daemon's default cap.
    pub memory_limit: Option<u64>,
    pub stdin: Option<Stdin>,
    pub output: Arc<dyn OutputSink>,
    /// Ports asked for with `-p`/`-P`.
    pub ports: Vec<PortMapping>,
    /// Container ports the image exposes (`EXPOSE`), for a default binding.
    pub exposed: Vec<(u16, Proto)>,
    pub http: HttpOptions,
    /// What a Wasm guest's sockets may reach, and how many it may hold.
    pub net: NetOptions,
    /// A Wasm container's addresses on its user networks, which ketchd
    /// holds on the networks' bridges: its members reach the guest's
    /// published and exposed ports there.
    pub addresses: Vec<std::net::IpAddr>,
    /// Its peers on those networks, by name, kept current by the engine.
    pub peers: Peers,
}

/// The members of a container's user networks: their addresses and the
/// names they answer to (name, aliases, short id), as their `/etc/hosts`
/// lines say. Shared by the engine, which rewrites it as members come and
/// go, and the running container.
#[derive(Clone, Default)]
pub struct Peers(Arc<std::sync::RwLock<Vec<Peer>>>);

/// A peer's address and its names.
type Peer = (std::net::IpAddr, Vec<String>);

impl Peers {
    pub fn set<A: Into<std::net::IpAddr>>(&self, peers: Vec<(A, Vec<String>)>) {
        let peers = peers.into_iter().map(|(a, n)| (a.into(), n)).collect();
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = peers;
    }

    /// The address of the peer called `name` (case aside, and a trailing
    /// dot).
    pub fn lookup(&self, name: &str) -> Option<std::net::IpAddr> {
        let name = name.strip_suffix('.').unwrap_or(name);
        let peers = self.0.read().unwrap_or_else(|e| e.into_inner());
        peers
            .iter()
            .find(|(_, names)| names.iter().any(|n| n.eq_ignore_ascii_case(name)))
            .map(|(ip, _)| *ip)
    }

    /// Is `ip` a peer's?
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let peers = self.0.read().unwrap_or_else(|e| e.into_inner());
        peers.iter().any(|(p, _)| *p == ip)
    }
}

impl RunSpec {
    /// The guest ports served at a Wasm guest's network addresses, each
    /// at the same port number: its published and exposed TCP ports (or
    /// `default`, when there is none). A port published at the same number
    /// on every host address is left out: that listener already takes its
    /// connections at the network addresses (which are the host's), and a
    /// second one there could not be bound beside it.
    pub fn network_ports(&self, default: Option<u16>) -> Vec<u16> {
        let on_every_address = |p: u16| {
            self.ports.iter().any(|m| {
                m.proto == Proto::Tcp
                    && m.container_port == p
                    && m.host_port == p
                    && m.host_ip.is_unspecified()
            })
        };
        let mut ports: Vec<u16> = self
            .ports
            .iter()
            .filter(|m| m.proto == Proto::Tcp)
            .map(|m| m.container_port)
            .chain(
                self.exposed
                    .iter()
                    .filter(|(_, proto)| *proto == Proto::Tcp)
                    .map(|(p, _)| *p),
            )
            .collect();
        ports.sort_unstable();
        ports.dedup();
        if ports.is_empty() {
            ports.extend(default);
        }
        ports.retain(|p| !on_every_address(*p));
        ports
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: i64,
    /// A trap or runtime failure message, if the guest did not exit normally.
    pub error: Option<String>,
    /// The guest failed after being refused memory beyond its limit.
    pub oom_killed: bool,
}

/// Control of a started instance.
pub trait Control: Send + Sync {
    /// End the instance now. Its exit status will be [`EXIT_KILLED`].
    fn kill(&self);
    /// Ask the instance to finish on its own (a server stops accepting and
    /// drains). The engine kills it if it has not exited by the stop timeout.
    fn terminate(&self) {}
    /// Deliver a signal by number. `false` if this runtime has no signals.
    fn signal(&self, _sig: i32) -> bool {
        false
    }
    /// Suspend without losing state.
    fn pause(&self);
    fn resume(&self);
    fn stats(&self) -> RuntimeStats;
    /// Change the memory cap of the running instance (`update`). `Err`
    /// says why it cannot.
    fn set_memory_limit(&self, _bytes: u64) -> Result<(), String> {
        Err("this runtime cannot change a running container's memory limit".into())
    }
    /// Change the running container's resources (`update`): only those
    /// set in `r`. `Err` says why it cannot.
    fn update(&self, r: &Resources) -> Result<(), String> {
        match (
            r.memory,
            r.memory_swap,
            r.nano_cpus,
            r.cpu_shares,
            r.pids_limit,
        ) {
            (Some(m), None, None, None, None) => self.set_memory_limit(m),
            _ => Err("this runtime has only a memory limit to change".into()),
        }
    }
    /// Host pids of the container's processes (empty: it has none, as a
    /// Wasm instance runs inside ketchd).
    fn pids(&self) -> Vec<i32> {
        Vec::new()
    }
    /// Serve the instance's network ports at `ip` too: it joined a user
    /// network while running. `Err` says why it cannot.
    fn join_network(&self, _ip: std::net::IpAddr) -> Result<(), String> {
        Err("this runtime's containers join networks through interfaces of their own".into())
    }
    /// Stop serving them at `ip` (it left that network); resolves once
    /// they are closed.
    fn leave_network(
        &self,
        _ip: std::net::IpAddr,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(std::future::ready(()))
    }
}

/// What `update` changes in a running container (unset: unchanged).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub memory: Option<u64>,
    /// Memory plus swap, -1 for unlimited.
    pub memory_swap: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub pids_limit: Option<i64>,
}

pub struct Started {
    pub control: Arc<dyn Control>,
    pub exit: oneshot::Receiver<ExitStatus>,
    /// The ports actually bound (host port 0 resolved).
    pub ports: Vec<PortMapping>,
}

/// A container found again after ketchd restarted: still running (and
/// now under control again), exited meanwhile, or lost.
pub enum Reattached {
    Running(Started),
    Exited(ExitStatus, chrono::DateTime<chrono::Utc>),
    /// Neither running nor a recorded exit: its monitor was killed.
    Lost,
}

/// A container runtime.
pub trait Backend: Send + Sync {
    fn name(&self) -> &'static str;
    fn start(&self, spec: RunSpec) -> Result<Started, RuntimeError>;
}

#[cfg(any(feature = "wasm", all(feature = "linux", target_os = "linux")))]
/// Queued connections per published port.
const BACKLOG: u32 = 1024;

/// Listen on every published port (host port 0 picks one); the mappings
/// come back with their actual ports. A port in use fails with the
/// address named. Only TCP: `udp` is refused with `no_udp`.
#[cfg(any(feature = "wasm", all(feature = "linux", target_os = "linux")))]
pub(crate) fn bind_ports(
    name: &str,
    wanted: Vec<PortMapping>,
    no_udp: &str,
) -> Result<Vec<(PortMapping, tokio::net::TcpListener)>, RuntimeError> {
    let mut out = Vec::with_capacity(wanted.len());
    for m in wanted {
        let fail = |reason: String| RuntimeError::Publish {
            name: name.to_string(),
            port: format!("{}/{}", m.container_port, m.proto.as_str()),
            reason,
        };
        if m.proto != Proto::Tcp {
            return Err(fail(no_udp.into()));
        }
        let addr = std::net::SocketAddr::new(m.host_ip, m.host_port);
        let listener = listen(addr).map_err(|e| publish_failed(name, &m, &e))?;
        let local = listener
            .local_addr()
            .map_err(|e| fail(format!("{addr}: {e}")))?;
        out.push((
            PortMapping {
                host_port: local.port(),
                ..m
            },
            listener,
        ));
    }
    Ok(out)
}

/// The start error for a published port whose host address cannot be
/// bound, worded as Docker's for a port in use, for every runtime.
pub(crate) fn publish_failed(name: &str, m: &PortMapping, e: &std::io::Error) -> RuntimeError {
    let addr = std::net::SocketAddr::new(m.host_ip, m.host_port);
    RuntimeError::Publish {
        name: name.to_string(),
        port: m.key(),
        reason: if e.kind() == std::io::ErrorKind::AddrInUse {
            format!("Bind for {addr} failed: port is already allocated")
        } else {
            format!("cannot bind {addr}: {e}")
        },
    }
}

#[cfg(any(feature = "wasm", all(feature = "linux", target_os = "linux")))]
fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // Rebinding right after a stop must not trip over TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}
