//! Command instances (preview 1 modules and preview 2 components): the WASI
//! context a spec grants, the store each runs in, and its exit status.

use super::control::{configure_store, Ctl, Guest};
use super::limits::{Cap, Limits, Refusal};
use super::net::{self, HasNet, Net};
use super::served::NetworkPorts;
use super::{admission, io, Compiled, WasmBackend};
use crate::api::stream::StdStream;
use crate::runtime::memory::WASM_PAGE;
use crate::runtime::{
    ExitStatus, PortMapping, RunSpec, RuntimeError, Started, EXIT_KILLED, EXIT_TRAP,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::oneshot;
use wasmtime::component::ResourceTable;
use wasmtime::Store;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The store data of a preview 1 module.
pub(super) struct P1State {
    pub(super) wasi: WasiP1Ctx,
    limits: Limits,
    ctl: Arc<Ctl>,
}

/// The store data of a preview 2 command component.
pub(super) struct P2State {
    ctx: WasiCtx,
    table: ResourceTable,
    limits: Limits,
    ctl: Arc<Ctl>,
    net: Arc<Net>,
}

impl HasNet for P2State {
    fn net(&self) -> &Arc<Net> {
        &self.net
    }
}

impl WasiView for P2State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

impl WasmBackend {
    /// The memory cap of a guest of this spec.
    pub(super) fn cap(&self, spec: &RunSpec) -> Cap {
        match spec.memory_limit {
            Some(n) => Cap::Flag(n),
            None => Cap::Default(self.memory.guest_default),
        }
    }

    /// The WASI context a spec grants, stdin aside.
    pub(super) fn wasi_ctx(spec: &RunSpec) -> Result<WasiCtxBuilder, RuntimeError> {
        let mut b = WasiCtxBuilder::new();
        b.args(&spec.argv);
        for (k, v) in &spec.env {
            b.env(k, v);
        }
        for g in &spec.grants {
            let perms = if g.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            b.preopened_dir(&g.host, &g.guest, perms)
                .map_err(|e| RuntimeError::Grant {
                    host: g.host.display().to_string(),
                    reason: format!("{e:#}"),
                })?;
        }
        // Deny by default: no sockets at all.
        b.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        b.stdout(io::SinkStream {
            sink: spec.output.clone(),
            stream: StdStream::Stdout,
        });
        b.stderr(io::SinkStream {
            sink: spec.output.clone(),
            stream: StdStream::Stderr,
        });
        Ok(b)
    }

    /// Runs a prepared command as a task on the daemon's runtime.
    pub(super) fn start_command(
        &self,
        mut spec: RunSpec,
        compiled: &Arc<Compiled>,
    ) -> Result<Started, RuntimeError> {
        if let (Some(p), Compiled::Module(_)) = (spec.ports.first(), &**compiled) {
            return Err(RuntimeError::Publish {
                name: spec.name.clone(),
                port: format!("{}/{}", p.container_port, p.proto.as_str()),
                reason:
                    "a WASI preview 1 module has no sockets to publish; build it for wasm32-wasip2"
                        .into(),
            });
        }
        // Before anything is made: a port in use fails the start alone. A
        // preview 1 module has no sockets to serve on its networks.
        let published = net::bind(&spec.name, spec.ports.clone())?;
        let network_ports = match &**compiled {
            Compiled::Module(_) => Vec::new(),
            _ => spec.network_ports(None),
        };
        let on_networks = NetworkPorts::bind_all(&spec.name, &network_ports, &spec.addresses)?;
        // What `port` and inspect show: the host's, not the networks'.
        let ports: Vec<PortMapping> = published.mappings();
        let pages = match &**compiled {
            Compiled::Module(pre) => pre.module().resources_required().max_initial_memory_size,
            Compiled::Component(pre) => pre
                .instance_pre()
                .component()
                .resources_required()
                .and_then(|r| r.max_initial_memory_size),
            Compiled::P3Component(pre) => pre
                .instance_pre()
                .component()
                .resources_required()
                .and_then(|r| r.max_initial_memory_size),
            Compiled::Http(_) => None,
        };
        // Held by the task until the guest is gone.
        let ticket = admission::admit(
            &spec.name,
            admission::Needs {
                fds: spec.grants.len(),
                memory: pages.unwrap_or(0).saturating_mul(WASM_PAGE),
                budget: &self.budget,
            },
        )?;
        let ctl = Ctl::new(None);
        let cap = self.cap(&spec);
        let log_name: Arc<str> = spec.name.as_str().into();
        let mut wasi = Self::wasi_ctx(&spec)?;
        if let Some(stdin) = spec.stdin.take() {
            wasi.stdin(wasmtime_wasi::cli::AsyncStdinStream::new(stdin));
        }
        let (tx, rx) = oneshot::channel();
        let name = spec.name.clone();
        let mut publishers = net::Publishers::default();
        let mut guest_net = None;
        let run: Pin<Box<dyn Future<Output = ExitStatus> + Send>> = match &**compiled {
            Compiled::Module(pre) => {
                let state = P1State {
                    wasi: wasi.build_p1(),
                    limits: Limits::new(cap, &self.budget, &ctl.memory, &log_name),
                    ctl: ctl.clone(),
                };
                let mut store = Store::new(&self.engine, state);
                configure_store(&mut store);
                let pre = pre.clone();
                Box::pin(async move {
                    let result = async {
                        let instance = pre.instantiate_async(&mut store).await?;
                        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                        start.call_async(&mut store, ()).await
                    }
                    .await;
                    exit_status(result.map(|()| 0), store.data().limits.refused)
                })
            }
            Compiled::Component(_) | Compiled::P3Component(_) => {
                let net = Net::new(
                    &spec.name,
                    &spec.net,
                    spec.output.clone(),
                    &published,
                    spec.peers.clone(),
                );
                net.configure(&mut wasi);
                publishers = net::publish(&net, published);
                let relay = net.clone();
                let served =
                    NetworkPorts::new(&spec.name, network_ports, on_networks, move |m, l| {
                        relay.relay(m.container_port);
                        tokio::spawn(net::serve(relay.clone(), m, l))
                    });
                let _ = ctl.served.set(Arc::new(served));
                guest_net = Some(net.clone());
                let state = P2State {
                    ctx: wasi.build(),
                    table: ResourceTable::new(),
                    limits: Limits::new(cap, &self.budget, &ctl.memory, &log_name),
                    ctl: ctl.clone(),
                    net,
                };
                let mut store = Store::new(&self.engine, state);
                configure_store(&mut store);
                let compiled = Arc::clone(compiled);
                Box::pin(async move {
                    let result = async {
                        match &*compiled {
                            Compiled::P3Component(pre) => {
                                let cmd = pre.instantiate_async(&mut store).await?;
                                store
                                    .run_concurrent(async move |a| {
                                        cmd.wasi_cli_run().call_run(a).await
                                    })
                                    .await?
                            }
                            Compiled::Component(pre) => {
                                let cmd = pre.instantiate_async(&mut store).await?;
                                cmd.wasi_cli_run().call_run(&mut store).await
                            }
                            _ => unreachable!("a component"),
                        }
                    }
                    .await;
                    exit_status(
                        result.map(|r| if r.is_ok() { 0 } else { 1 }),
                        store.data().limits.refused,
                    )
                })
            }
            Compiled::Http(_) => unreachable!("functions are served above"),
        };
        let task_ctl = ctl.clone();
        tokio::spawn(async move {
            let mut terminating = task_ctl.terminating.subscribe();
            let mut run = task_ctl.pausable(run);
            let status = loop {
                tokio::select! {
                    s = &mut run => break s,
                    () = task_ctl.killed() => break ExitStatus { code: EXIT_KILLED, error: None, oom_killed: false },
                    // A guest has no signal to hear a stop by: it takes no
                    // new connection from now on, and the kill at the stop
                    // timeout ends it.
                    () = async { let _ = terminating.wait_for(|t| *t).await; }, if guest_net.is_some() => {
                        if let Some(net) = guest_net.take() {
                            net.close();
                        }
                        publishers = net::Publishers::default();
                        task_ctl.close_served().await;
                    }
                }
            };
            drop(publishers);
            task_ctl.close_served().await;
            let status = if task_ctl.is_killed() {
                ExitStatus {
                    code: EXIT_KILLED,
                    error: None,
                    oom_killed: false,
                }
            } else {
                status
            };
            tracing::debug!("wasm container {name} exited with {}", status.code);
            drop(ticket);
            let _ = tx.send(status);
        });
        Ok(Started {
            control: ctl,
            exit: rx,
            ports,
        })
    }
}

impl Guest for P1State {
    fn limits(&mut self) -> &mut Limits {
        &mut self.limits
    }
    fn ctl(&self) -> &Ctl {
        &self.ctl
    }
}

impl Guest for P2State {
    fn limits(&mut self) -> &mut Limits {
        &mut self.limits
    }
    fn ctl(&self) -> &Ctl {
        &self.ctl
    }
}

/// A guest that dies after the limiter refused it memory is reported
/// OOM-killed, with the limit it hit after the trap message.
fn exit_status(result: wasmtime::Result<i64>, refused: Option<Refusal>) -> ExitStatus {
    match result {
        Ok(code) => ExitStatus {
            code,
            error: None,
            oom_killed: false,
        },
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                return ExitStatus {
                    code: exit.0 as i64,
                    error: None,
                    oom_killed: false,
                };
            }
            let mut msg = format!("{e:#}");
            if let Some(why) = refused {
                msg.push_str(&format!(" ({why})"));
            }
            ExitStatus {
                code: EXIT_TRAP,
                error: Some(msg),
                oom_killed: refused.is_some(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Digest;
    use crate::runtime::memory::{WasmMemory, DEFAULT_GUEST_CAP};
    use crate::runtime::{Backend, Program};
    use std::time::Duration;

    const MIB: u64 = 1 << 20;

    /// Grows memory 1 MiB at a time until refused, then aborts (as an
    /// allocator failure would).
    const GROW_WAT: &str = r#"(module (memory 1)
      (func (export "_start")
        (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
        unreachable))"#;
    /// Spins forever with 64 MiB of memory from its instantiation on.
    const HOG_WAT: &str = r#"(module (memory 1024) (func (export "_start") (loop $l (br $l))))"#;
    /// Spins forever with one page.
    const SPIN_WAT: &str = r#"(module (memory 1) (func (export "_start") (loop $l (br $l))))"#;

    struct Discard;

    impl crate::runtime::OutputSink for Discard {
        fn write(&self, _: StdStream, _: &[u8]) {}
    }

    fn backend(guest_default: u64, budget: u64) -> (tempfile::TempDir, WasmBackend) {
        let dir = tempfile::tempdir().unwrap();
        let memory = WasmMemory {
            guest_default,
            budget,
        };
        let b = WasmBackend::new(dir.path(), memory).unwrap();
        (dir, b)
    }

    fn prepared(b: &WasmBackend, wat: &str) -> Digest {
        let wasm = wat::parse_str(wat).unwrap();
        let digest = Digest::of(&wasm);
        b.prepare("test", &digest, &wasm).unwrap();
        digest
    }

    fn spec(name: &str, module: &Digest, memory_limit: Option<u64>) -> RunSpec {
        RunSpec {
            name: name.into(),
            image: "test".into(),
            program: Program::Wasm {
                module: module.clone(),
            },
            argv: vec![name.into()],
            env: Vec::new(),
            workdir: "/".into(),
            grants: Vec::new(),
            memory_limit,
            stdin: None,
            output: Arc::new(Discard),
            ports: Vec::new(),
            exposed: Vec::new(),
            addresses: Vec::new(),
            peers: Default::default(),
            http: Default::default(),
            net: Default::default(),
        }
    }

    async fn exit(started: Started) -> ExitStatus {
        tokio::time::timeout(Duration::from_secs(30), started.exit)
            .await
            .expect("the guest exits")
            .expect("an exit status")
    }

    /// Waits until the budget has `used` bytes taken.
    async fn budget_reaches(b: &WasmBackend, used: u64) {
        for _ in 0..3000 {
            if b.budget.used() == used {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("budget stuck at {} bytes, not {used}", b.budget.used());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn guest_without_memory_flag_stops_at_the_default_cap_alone() {
        let (_dir, b) = backend(DEFAULT_GUEST_CAP, 64 << 30);
        let grow = prepared(&b, GROW_WAT);
        let spin = prepared(&b, SPIN_WAT);
        let mut spinner = b.start(spec("spinner", &spin, None)).unwrap();
        let grower = b.start(spec("grower", &grow, None)).unwrap();
        let control = grower.control.clone();
        let status = exit(grower).await;
        assert_eq!(status.code, EXIT_TRAP, "{status:?}");
        assert!(status.oom_killed, "{status:?}");
        let error = status.error.unwrap_or_default();
        assert!(error.contains("--wasm-memory-default"), "{error}");
        // It got within a grow (1 MiB) of the cap, and not past it.
        let peak = control.stats().memory_peak;
        assert!(peak <= DEFAULT_GUEST_CAP, "{peak}");
        assert!(peak > DEFAULT_GUEST_CAP - MIB, "{peak}");
        // The other guest runs on.
        assert!(spinner.exit.try_recv().is_err());
        spinner.control.kill();
        let status = exit(spinner).await;
        assert_eq!((status.code, status.oom_killed), (EXIT_KILLED, false));
        budget_reaches(&b, 0).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn second_guest_is_refused_while_the_first_holds_the_budget() {
        let (_dir, b) = backend(DEFAULT_GUEST_CAP, 100 * MIB);
        let hog = prepared(&b, HOG_WAT);
        let grow = prepared(&b, GROW_WAT);
        let mut first = b.start(spec("first", &hog, None)).unwrap();
        budget_reaches(&b, 64 * MIB).await;
        // Its initial memory does not fit in what is left: refused at start.
        let error = b
            .start(spec("second", &hog, None))
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("cannot start second") && error.contains("--wasm-memory-budget"),
            "{error}"
        );
        // One that fits at start and then grows is stopped by the budget.
        let status = exit(b.start(spec("grower", &grow, Some(80 * MIB))).unwrap()).await;
        assert_eq!(status.code, EXIT_TRAP, "{status:?}");
        assert!(status.oom_killed, "{status:?}");
        let error = status.error.unwrap_or_default();
        assert!(error.contains("--wasm-memory-budget"), "{error}");
        assert!(first.exit.try_recv().is_err(), "the first runs on");
        assert_eq!(b.budget.used(), 64 * MIB, "the refused ones hold nothing");
        // A kill gives the first one's share back; now the second fits.
        first.control.kill();
        assert_eq!(exit(first).await.code, EXIT_KILLED);
        assert_eq!(b.budget.used(), 0);
        let mut second = b.start(spec("second", &hog, None)).unwrap();
        budget_reaches(&b, 64 * MIB).await;
        assert!(second.exit.try_recv().is_err());
        second.control.kill();
        assert_eq!(exit(second).await.code, EXIT_KILLED);
        assert_eq!(b.budget.used(), 0);
    }
}
