//! The store data of a plugin instance: its WASI context (what the grants
//! allow), its outgoing-HTTP hooks, its memory limiter, and its deadline.

use super::grants::{Grants, Output};
use crate::api::stream::StdStream;
use crate::runtime::memory::MemoryBudget;
use crate::runtime::wasm::control::{Ctl, Guest};
use crate::runtime::wasm::http::OutgoingGrants;
use crate::runtime::wasm::io::SinkStream;
use crate::runtime::wasm::limits::{Cap, Limits};
use crate::runtime::OutputSink;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::WasiHttpCtx;
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

/// Captured stdout and stderr of the current call, each bounded.
pub(super) struct Captured {
    max: usize,
    out: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl Captured {
    pub(super) fn new(max: usize) -> Arc<Self> {
        Arc::new(Captured {
            max,
            out: Mutex::new((Vec::new(), Vec::new())),
        })
    }

    /// What the call wrote, leaving the buffers empty for the next one.
    pub(super) fn take(&self) -> (Vec<u8>, Vec<u8>) {
        std::mem::take(&mut *self.out.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl OutputSink for Captured {
    /// Past the limit the rest of a write is dropped: a chatty plugin
    /// cannot grow the host.
    fn write(&self, stream: StdStream, data: &[u8]) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let buf = match stream {
            StdStream::Stderr => &mut out.1,
            _ => &mut out.0,
        };
        let room = self.max.saturating_sub(buf.len());
        buf.extend_from_slice(&data[..data.len().min(room)]);
    }
}

/// What every instance of one sandbox shares.
pub(super) struct Shared {
    pub(super) grants: Grants,
    pub(super) allow_http: Arc<[String]>,
    pub(super) memory: u64,
    pub(super) budget: Arc<MemoryBudget>,
    pub(super) ctl: Arc<Ctl>,
    pub(super) name: Arc<str>,
}

impl Shared {
    /// The WASI context the grants allow; `args` for a command.
    pub(super) fn wasi(
        &self,
        args: &[String],
        captured: &Arc<Captured>,
    ) -> Result<WasiCtxBuilder, String> {
        let mut b = WasiCtxBuilder::new();
        b.args(args);
        for (k, v) in &self.grants.env {
            b.env(k, v);
        }
        for d in &self.grants.dirs {
            let perms = if d.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            b.preopened_dir(&d.host, &d.guest, perms)
                .map_err(|e| format!("cannot grant directory {}: {e:#}", d.host.display()))?;
        }
        // Deny by default: no sockets. HTTP goes through wasi:http's hooks.
        b.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let sink = |stream| SinkStream {
            sink: captured.clone() as Arc<dyn OutputSink>,
            stream,
        };
        match self.grants.stdout {
            Output::Discard => {}
            Output::Capture => {
                b.stdout(sink(StdStream::Stdout));
            }
            Output::Inherit => {
                b.inherit_stdout();
            }
        }
        match self.grants.stderr {
            Output::Discard => {}
            Output::Capture => {
                b.stderr(sink(StdStream::Stderr));
            }
            Output::Inherit => {
                b.inherit_stderr();
            }
        }
        Ok(b)
    }

    pub(super) fn limits(&self) -> Limits {
        Limits::new(
            Cap::Plugin(self.memory),
            &self.budget,
            &self.ctl.memory,
            &self.name,
        )
    }
}

/// The store data of a component plugin.
pub(super) struct State {
    ctx: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    hooks: OutgoingGrants,
    pub(super) limits: Limits,
    ctl: Arc<Ctl>,
    pub(super) deadline: Option<Instant>,
    pub(super) captured: Arc<Captured>,
}

impl State {
    pub(super) fn new(shared: &Shared, args: &[String], max_output: usize) -> Result<Self, String> {
        let captured = Captured::new(max_output);
        Ok(State {
            ctx: shared.wasi(args, &captured)?.build(),
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            hooks: OutgoingGrants {
                allow: shared.allow_http.clone(),
            },
            limits: shared.limits(),
            ctl: shared.ctl.clone(),
            deadline: None,
            captured,
        })
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// The store data of a preview 1 command module.
pub(super) struct P1State {
    pub(super) wasi: WasiP1Ctx,
    pub(super) limits: Limits,
    ctl: Arc<Ctl>,
    pub(super) deadline: Option<Instant>,
    pub(super) captured: Arc<Captured>,
}

impl P1State {
    pub(super) fn new(shared: &Shared, args: &[String], max_output: usize) -> Result<Self, String> {
        let captured = Captured::new(max_output);
        Ok(P1State {
            wasi: shared.wasi(args, &captured)?.build_p1(),
            limits: shared.limits(),
            ctl: shared.ctl.clone(),
            deadline: None,
            captured,
        })
    }
}

macro_rules! guest {
    ($t:ty) => {
        impl Guest for $t {
            fn limits(&mut self) -> &mut Limits {
                &mut self.limits
            }
            fn ctl(&self) -> &Ctl {
                &self.ctl
            }
            fn deadline(&self) -> Option<Instant> {
                self.deadline
            }
        }
    };
}
guest!(State);
guest!(P1State);
