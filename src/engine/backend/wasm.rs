//! Wasm containers as the engine drives them: an entry that is a Wasm
//! module or component (or any entry of a `wasi/wasm` image) is compiled
//! once per digest and remembered per (image, entry).

use super::{Backend, BoxFuture, Caps, Container, Engine, EngineError, Record};
use crate::engine::health::{Captured, KillOnDrop};
use crate::engine::networks::{Endpoint, Held, NetworkRecord};
use crate::image::Image;
use crate::model::ContainerId;
use crate::model::{Digest, Platform, RuntimeKind};
use crate::runtime::memory::WasmMemory;
use crate::runtime::wasm::WasmBackend;
use crate::runtime::{Backend as _, Peers, Program, Reattached, Started};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub(crate) struct WasmAdapter {
    runtime: Arc<WasmBackend>,
    /// (image id, in-image path) -> module digest, so a warm run does not
    /// read the image's layers again.
    modules: Mutex<HashMap<(Digest, String), Digest>>,
    /// Each running container: what it holds on user networks.
    joined: Mutex<HashMap<ContainerId, Joined>>,
}

/// A running Wasm container's part in its user networks.
struct Joined {
    /// Its addresses on the networks' bridges, given up at its exit.
    held: Held,
    /// Its peers, as its `/etc/hosts` would list them.
    peers: Peers,
}

impl WasmAdapter {
    pub fn open(cache: &Path, memory: WasmMemory) -> Result<Self, EngineError> {
        Ok(WasmAdapter {
            runtime: Arc::new(WasmBackend::new(cache, memory)?),
            modules: Mutex::new(HashMap::new()),
            joined: Mutex::new(HashMap::new()),
        })
    }

    /// The module digest prepared for (image, entrypoint path), if any.
    fn module(&self, image: &Digest, entry: &str) -> Option<Digest> {
        self.modules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(image.clone(), entry.to_string()))
            .cloned()
    }

    fn prepared(&self, image: &Digest, entry: &str) -> Option<Digest> {
        self.module(image, entry)
            .filter(|m| self.runtime.is_prepared(m))
    }
}

impl Backend for WasmAdapter {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Wasm
    }

    fn caps(&self) -> Caps {
        Caps::default()
    }

    /// The Linux knobs a Wasm guest has nothing for are refused, not
    /// dropped: it has no capabilities, processes, swap, CPU quota or
    /// mount table (its memory cap is `--memory`).
    fn validate(&self, hc: &crate::api::types::HostConfig) -> Result<(), EngineError> {
        let set = [
            (
                "CapAdd (--cap-add)",
                hc.cap_add.as_ref().is_some_and(|v| !v.is_empty()),
            ),
            (
                "CapDrop (--cap-drop)",
                hc.cap_drop.as_ref().is_some_and(|v| !v.is_empty()),
            ),
            (
                "Tmpfs (--tmpfs)",
                hc.tmpfs.as_ref().is_some_and(|v| !v.is_empty()),
            ),
            (
                "GroupAdd (--group-add)",
                hc.group_add.as_ref().is_some_and(|v| !v.is_empty()),
            ),
            ("PidMode (--pid)", !hc.pid_mode.is_empty()),
            ("CpusetCpus (--cpuset-cpus)", !hc.cpuset_cpus.is_empty()),
            ("CpusetMems (--cpuset-mems)", !hc.cpuset_mems.is_empty()),
            (
                "MemorySwappiness (--memory-swappiness)",
                hc.memory_swappiness.is_some_and(|s| s != -1),
            ),
            ("IpcMode (--ipc)", !hc.ipc_mode.is_empty()),
            (
                "Devices (--device)",
                hc.devices.as_ref().is_some_and(|v| !v.is_empty()),
            ),
            (
                "DeviceCgroupRules (--device-cgroup-rule)",
                hc.device_cgroup_rules
                    .as_ref()
                    .is_some_and(|v| !v.is_empty()),
            ),
            ("Init (--init)", hc.init == Some(true)),
            ("ShmSize (--shm-size)", hc.shm_size != 0),
            ("UTSMode (--uts)", !hc.uts_mode.is_empty()),
            ("CgroupnsMode (--cgroupns)", !hc.cgroupns_mode.is_empty()),
            ("MemorySwap (--memory-swap)", hc.memory_swap != 0),
            ("NanoCpus (--cpus)", hc.nano_cpus != 0),
            ("CpuShares (--cpu-shares)", hc.cpu_shares != 0),
            (
                "PidsLimit (--pids-limit)",
                hc.pids_limit.is_some_and(|n| n > 0),
            ),
        ];
        match set.iter().find(|(_, on)| *on) {
            Some((field, _)) => Err(EngineError::InvalidArgument(format!(
                "HostConfig.{field} applies to Linux containers: a Wasm guest has no capabilities, groups, processes, namespaces, swap, CPU quota or mounts (its limit is --memory)"
            ))),
            None => Ok(()),
        }
    }

    fn known(&self, image: &Digest, entry: &str) -> Option<Platform> {
        self.prepared(image, entry).map(|_| Platform::Wasm)
    }

    fn prepare<'a>(
        &'a self,
        img: &'a Image,
        image_name: &'a str,
        entry: &'a str,
        bytes: Option<Arc<[u8]>>,
    ) -> BoxFuture<'a, Result<Option<Platform>, EngineError>> {
        Box::pin(async move {
            let Some(bytes) = bytes else {
                return Ok(None);
            };
            if !img.is_wasi_platform() && !crate::runtime::wasm::is_wasm(&bytes) {
                return Ok(None);
            }
            let digest = Digest::of(&bytes);
            let runtime = self.runtime.clone();
            let (d, name) = (digest.clone(), format!("{entry} in image {image_name}"));
            tokio::task::spawn_blocking(move || runtime.prepare(&name, &d, &bytes))
                .await
                .map_err(EngineError::task("compiling the module"))?
                .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
            self.modules
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((img.id.clone(), entry.to_string()), digest);
            Ok(Some(Platform::Wasm))
        })
    }

    /// Wasm commands have no sockets; functions (wasi:http components) do.
    fn serves_ports(&self, image: &Digest, entry: &str, workdir: &str) -> bool {
        match self.module(image, &crate::fsutil::entry_path(entry, workdir)) {
            Some(m) => self.runtime.serves_ports(&m),
            None => true,
        }
    }

    fn start<'a>(
        &'a self,
        engine: &'a Arc<Engine>,
        c: &'a Arc<Container>,
        rec: &'a Record,
    ) -> BoxFuture<'a, Result<Started, EngineError>> {
        Box::pin(async move {
            let entry = crate::fsutil::entry_path(&rec.path, &rec.config.working_dir);
            // Warm path: the module is hot. After a daemon restart it is
            // not: prepare it again from the image (or the compile cache).
            let module = match self.prepared(&rec.image_id, &entry) {
                Some(m) => m,
                None => {
                    let img = engine.image_of(rec).await?;
                    engine
                        .prepare_program(&img, &rec.path, &rec.config.working_dir)
                        .await?;
                    self.prepared(&rec.image_id, &entry).ok_or_else(|| {
                        EngineError::InvalidArgument(format!(
                            "container {}: its module is not prepared",
                            rec.name
                        ))
                    })?
                }
            };
            let mut spec = engine.run_spec(c, rec, Program::Wasm { module })?;
            let (addresses, held) = engine.hold_guest_addresses(c).await?;
            spec.addresses = addresses;
            if !held.is_empty() {
                spec.peers.set(engine.peer_hosts(rec));
            }
            let peers = spec.peers.clone();
            match self.runtime.start(spec) {
                Ok(started) => {
                    self.joined().insert(rec.id.clone(), Joined { held, peers });
                    Ok(started)
                }
                Err(e) => {
                    engine.release_guest_addresses(held);
                    engine.release_endpoints(c).await;
                    Err(e.into())
                }
            }
        })
    }

    /// The guest is served at its new address, and its peers there learn
    /// it.
    fn join_network<'a>(
        &'a self,
        engine: &'a Arc<Engine>,
        c: &'a Arc<Container>,
        n: &'a NetworkRecord,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move {
            let id = c.record().id;
            let ctl = c
                .control()
                .ok_or_else(|| EngineError::not_running("connect", &id))?;
            let held = engine.join_guest(c, n, &*ctl).await?;
            // It exited meanwhile: what it left behind was given up
            // without this address.
            let kept = self
                .joined()
                .get_mut(&id)
                .map(|j| j.held.push(held.clone()));
            if kept.is_none() {
                engine.release_guest_addresses(vec![held]);
                return Err(EngineError::not_running("connect", &id));
            }
            engine.refresh_hosts(&c.record(), Some(c));
            Ok(())
        })
    }

    /// The guest is no longer served at its address there, and gives it
    /// up.
    fn leave_network<'a>(
        &'a self,
        engine: &'a Arc<Engine>,
        c: &'a Arc<Container>,
        n: &'a NetworkRecord,
        ep: &'a Endpoint,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move {
            let Some(ip) = ep.ip else {
                return Ok(());
            };
            if let Some(ctl) = c.control() {
                ctl.leave_network(ip.into()).await;
            }
            let gone: Held = match self.joined().get_mut(&c.record().id) {
                Some(j) => {
                    let (gone, kept) = std::mem::take(&mut j.held)
                        .into_iter()
                        .partition(|(bridge, held)| *held == ip && *bridge == n.bridge);
                    j.held = kept;
                    gone
                }
                None => Vec::new(),
            };
            engine.release_guest_addresses(gone);
            Ok(())
        })
    }

    /// Its peers on user networks learn its address, and it theirs.
    fn after_start(&self, engine: &Arc<Engine>, c: &Arc<Container>) {
        let rec = c.record();
        if !rec.networks.is_empty() {
            engine.refresh_hosts(&rec, Some(c));
        }
    }

    /// Its addresses are given up, and its peers forget them.
    fn after_exit(&self, engine: &Arc<Engine>, rec: &Record) {
        if let Some(j) = self.joined().remove(&rec.id) {
            engine.release_guest_addresses(j.held);
        }
        if !rec.networks.is_empty() {
            engine.refresh_peers(rec);
        }
    }

    /// Its peers changed: its name lookups follow.
    fn write_hosts(&self, engine: &Engine, _c: &Container, rec: &Record) {
        if let Some(j) = self.joined().get(&rec.id) {
            j.peers.set(engine.peer_hosts(rec));
        }
    }

    /// A fresh instance of the container's module, with its grants,
    /// environment and peers but none of its ports or stdin.
    fn probe<'a>(
        &'a self,
        engine: &'a Arc<Engine>,
        c: &'a Arc<Container>,
        rec: &'a Record,
        argv: Vec<String>,
        out: Arc<Captured>,
    ) -> BoxFuture<'a, Result<i64, EngineError>> {
        Box::pin(async move {
            let entry = crate::fsutil::entry_path(&rec.path, &rec.config.working_dir);
            let module = self.prepared(&rec.image_id, &entry).ok_or_else(|| {
                EngineError::Conflict(format!(
                    "container {}: its module is not prepared",
                    rec.name
                ))
            })?;
            if self.runtime.is_function(&module) {
                return Err(EngineError::InvalidArgument(format!(
                    "container {} is a function: its health check is an HTTP probe (http://localhost[:PORT]/PATH), not a command",
                    rec.name
                )));
            }
            let mut spec = engine.instance_spec(c, rec, Program::Wasm { module })?;
            spec.name = format!("{} (health check)", rec.name);
            spec.argv = argv;
            spec.output = out;
            spec.ports.clear();
            spec.exposed.clear();
            if let Some(j) = self.joined().get(&rec.id) {
                spec.peers = j.peers.clone();
            }
            let started = self.runtime.start(spec)?;
            // Dropped at the probe's timeout: the instance ends with it.
            let mut guard = KillOnDrop(Some(started.control.clone()));
            let status = started.exit.await;
            guard.0 = None;
            Ok(status.map_or(crate::runtime::EXIT_KILLED, |s| s.code))
        })
    }

    /// A Wasm guest never outlives ketchd: what it held is given up.
    fn reattach(&self, engine: &Engine, _c: &Container, rec: &Record) -> Reattached {
        engine.release_guest_addresses(engine.held_by_record(rec));
        Reattached::Lost
    }
}

impl WasmAdapter {
    fn joined(&self) -> std::sync::MutexGuard<'_, HashMap<ContainerId, Joined>> {
        self.joined.lock().unwrap_or_else(|e| e.into_inner())
    }
}
