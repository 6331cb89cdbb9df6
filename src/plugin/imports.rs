//! Host functions: imports of a WIT interface that the embedder implements
//! with closures over dynamic values.

use super::error::HostFuncError;
use super::sandbox::{type_kind, val_kind};
use std::sync::Arc;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker, Val};

/// A host function: the guest's arguments in, its results out. An `Err`
/// fails the guest's call (it traps) with the message, which the caller
/// sees as [`PluginError::HostFunction`](super::PluginError::HostFunction);
/// the host and the sandbox carry on.
pub type HostFn = Arc<dyn Fn(&[Val]) -> Result<Vec<Val>, String> + Send + Sync>;

/// The host functions a sandbox offers its plugin, by interface and name.
#[derive(Clone, Default)]
pub struct Imports {
    funcs: Vec<(String, String, HostFn)>,
}

impl Imports {
    pub fn new() -> Self {
        Imports::default()
    }

    /// Implement `name` of the WIT interface `interface` (as the plugin
    /// imports it: `pkg:name/iface` or `pkg:name/iface@version`).
    pub fn func(
        mut self,
        interface: impl Into<String>,
        name: impl Into<String>,
        f: impl Fn(&[Val]) -> Result<Vec<Val>, String> + Send + Sync + 'static,
    ) -> Self {
        self.funcs
            .push((interface.into(), name.into(), Arc::new(f)));
        self
    }

    pub(super) fn is_empty(&self) -> bool {
        self.funcs.is_empty()
    }

    /// Define the functions `component` imports from outside WASI that
    /// these imports do not provide as functions that fail when called.
    /// (wasmtime's own `define_unknown_imports_as_traps` also shadows WASI
    /// interfaces the linker provides at another minor version.)
    pub(super) fn define_missing_as_traps<T: 'static>(
        &self,
        linker: &mut Linker<T>,
        component: &Component,
    ) -> wasmtime::Result<()> {
        let engine = component.engine().clone();
        for (iface, item) in component.component_type().imports(&engine) {
            if iface.starts_with("wasi:") {
                continue;
            }
            let ComponentItem::ComponentInstance(inst) = item.ty else {
                continue;
            };
            let mut def = linker.instance(iface)?;
            for (name, item) in inst.exports(&engine) {
                let provided = self.funcs.iter().any(|(i, n, _)| i == iface && n == name);
                if provided || !matches!(item.ty, ComponentItem::ComponentFunc(_)) {
                    continue;
                }
                let func = format!("{iface}#{name}");
                def.func_new(name, move |_store, _ty, _params, _results| {
                    Err(wasmtime::Error::new(HostFuncError {
                        func: func.clone(),
                        message: "not provided by this host".into(),
                    }))
                })?;
            }
        }
        Ok(())
    }

    /// Define every function in `linker`.
    pub(super) fn define<T: 'static>(&self, linker: &mut Linker<T>) -> wasmtime::Result<()> {
        let mut by_iface: Vec<(&str, Vec<(&str, &HostFn)>)> = Vec::new();
        for (iface, name, f) in &self.funcs {
            match by_iface.iter_mut().find(|(i, _)| i == iface) {
                Some((_, fs)) => fs.push((name, f)),
                None => by_iface.push((iface, vec![(name, f)])),
            }
        }
        for (iface, fs) in by_iface {
            let mut inst = linker.instance(iface)?;
            for (name, f) in fs {
                let f = f.clone();
                let what = format!("{iface}#{name}");
                inst.func_new(name, move |_store, ty, params, results| {
                    let fail = |message: String| {
                        wasmtime::Error::new(HostFuncError {
                            func: what.clone(),
                            message,
                        })
                    };
                    // A panicking host function fails the call, not the host.
                    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(params)))
                        .map_err(|p| {
                            let msg = p
                                .downcast_ref::<&str>()
                                .map(|s| s.to_string())
                                .or_else(|| p.downcast_ref::<String>().cloned());
                            fail(
                                msg.map_or_else(|| "panicked".into(), |m| format!("panicked: {m}")),
                            )
                        })?
                        .map_err(fail)?;
                    if out.len() != results.len() {
                        return Err(fail(format!(
                            "returned {} values where the interface has {}",
                            out.len(),
                            results.len()
                        )));
                    }
                    for (i, (want, v)) in ty.results().zip(&out).enumerate() {
                        let (want, got) = (type_kind(&want), val_kind(v));
                        if want != got {
                            return Err(fail(format!(
                                "returned a {got} as result {} where the interface has a {want}",
                                i + 1
                            )));
                        }
                    }
                    for (slot, v) in results.iter_mut().zip(out) {
                        *slot = v;
                    }
                    Ok(())
                })?;
            }
        }
        Ok(())
    }
}
