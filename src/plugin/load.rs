//! Loading a plugin: from a file, from bytes, or from an OCI reference
//! pulled into the host's content store. Compiled once per digest (and
//! per engine), through the compile cache.

use super::grants::{Declared, GRANTS_ANNOTATION};
use super::{block_on, Host, PluginError, SandboxBuilder};
use crate::image::layer::{read_image_file, wasm_layer_path};
use crate::image::registry::{self, MEDIA_WASM_LAYER};
use crate::image::Image;
use crate::model::{Digest, ImageRef};
use crate::runtime::wasm::detect::{wasm_kind, Kind};
use crate::runtime::wasm::module::{component_cached, module_cached};
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// What a plugin compiles to.
#[derive(Clone)]
pub(super) enum Code {
    /// A WASI preview 1 command module: runs with [`Sandbox::run`](super::Sandbox::run).
    Module(wasmtime::Module),
    /// A component: its exports are called by name, and a `wasi:cli/run`
    /// export runs as a command.
    Component(wasmtime::component::Component),
}

/// A loaded, compiled plugin. Cheap to clone; `Send` and `Sync`.
#[derive(Clone)]
pub struct Plugin {
    pub(super) inner: Arc<PluginInner>,
}

pub(super) struct PluginInner {
    pub(super) host: Host,
    pub(super) name: String,
    digest: Digest,
    kind: Kind,
    bytes: Arc<[u8]>,
    code: Code,
    /// The same, compiled for the fuel engine, on first use.
    fuel_code: OnceLock<Result<Code, String>>,
    declared: Option<Declared>,
}

impl Plugin {
    /// The name errors use: the file, the reference, or the given name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The digest of the Wasm binary (`sha256:…`).
    pub fn digest(&self) -> String {
        self.inner.digest.to_string()
    }

    /// The grants the plugin's image declares, if it declares any.
    pub fn declared(&self) -> Option<&Declared> {
        self.inner.declared.as_ref()
    }

    /// Whether this is a component (exports called by name) rather than a
    /// preview 1 command module.
    pub fn is_component(&self) -> bool {
        matches!(self.inner.code, Code::Component(_))
    }

    /// Start describing a sandbox for this plugin.
    pub fn sandbox(&self) -> SandboxBuilder {
        SandboxBuilder::new(self.clone())
    }

    /// The code for the plain or the fuel engine.
    pub(super) fn code(&self, fuel: bool) -> Result<Code, PluginError> {
        if !fuel {
            return Ok(self.inner.code.clone());
        }
        let i = &self.inner;
        i.fuel_code
            .get_or_init(|| {
                let engines = i.host.engines(true)?;
                compile(
                    &i.host,
                    &engines.engine,
                    &i.digest,
                    i.kind,
                    &i.bytes,
                    ".plugin.fuel",
                )
            })
            .clone()
            .map_err(|e| PluginError::invalid(&i.name, e))
    }
}

/// Compile for `engine` through the host's compile cache (by default
/// ketchd's). A host's files are named apart from ketchd's (`variant` is
/// `.plugin`, or `.plugin.fuel` for the fuel engine): a host's engine keeps its
/// memories in an instance pool behind guard pages, ketchd's dense command
/// engine bounds-checks them, and code compiled for one cannot run on the
/// other.
fn compile(
    host: &Host,
    engine: &wasmtime::Engine,
    digest: &Digest,
    kind: Kind,
    bytes: &[u8],
    variant: &str,
) -> Result<Code, String> {
    let cached =
        host.compile_cache()
            .join(format!("{}{variant}.{}.cwasm", digest.hex(), kind.ext()));
    match kind {
        Kind::Module => module_cached(engine, &cached, bytes).map(Code::Module),
        Kind::Component | Kind::Function | Kind::Command3 | Kind::Function3 => {
            component_cached(engine, &cached, bytes).map(Code::Component)
        }
    }
    .map_err(|e| format!("does not compile: {e:#}"))
}

impl Host {
    /// Load a plugin from a `.wasm` file (a component or a WASI command
    /// module). Compiles it, or finds it in the compile cache.
    pub fn load_file(&self, path: impl AsRef<Path>) -> Result<Plugin, PluginError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| PluginError::Io {
            plugin: name.clone(),
            what: "cannot read it".into(),
            source: e,
        })?;
        self.load_bytes(name, bytes)
    }

    /// Load a plugin from its bytes; `name` is what errors call it.
    pub fn load_bytes(
        &self,
        name: impl Into<String>,
        bytes: impl Into<Arc<[u8]>>,
    ) -> Result<Plugin, PluginError> {
        self.load(name.into(), bytes.into(), None)
    }

    fn load(
        &self,
        name: String,
        bytes: Arc<[u8]>,
        declared: Option<Declared>,
    ) -> Result<Plugin, PluginError> {
        let kind = wasm_kind(&bytes).ok_or_else(|| {
            PluginError::invalid(&name, "is not WebAssembly (no Wasm magic number)")
        })?;
        let digest = Digest::of(&bytes);
        let code = compile(
            self,
            &self.inner.engines.engine,
            &digest,
            kind,
            &bytes,
            ".plugin",
        )
        .map_err(|e| PluginError::invalid(&name, e))?;
        Ok(Plugin {
            inner: Arc::new(PluginInner {
                host: self.clone(),
                name,
                digest,
                kind,
                bytes,
                code,
                fuel_code: OnceLock::new(),
                declared,
            }),
        })
    }

    /// Pull a plugin image by reference (`registry/name:tag` or
    /// `registry/name@sha256:…`, which pins it) into the host's content
    /// store, check every blob's digest, and load its Wasm entrypoint.
    /// Registries on loopback are spoken to over plain HTTP.
    pub async fn pull(&self, reference: &str) -> Result<Plugin, PluginError> {
        let fail = |reason: String| PluginError::Pull {
            plugin: reference.to_string(),
            reason,
        };
        let r = ImageRef::parse(reference).map_err(|e| fail(e.to_string()))?;
        let (reg, store) = self.registry().map_err(|e| fail(e.to_string()))?;
        let id = registry::pull(reg, store, &r, None, None, &|_| {})
            .await
            .map_err(|e| fail(e.to_string()))?;
        let (host, store, name) = (self.clone(), store.clone(), reference.to_string());
        tokio::task::spawn_blocking(move || {
            let img = store
                .resolve(&id.to_string())
                .map_err(|e| fail_of(&name, e.to_string()))?;
            let declared = declared_grants(&img)
                .map(|json| Declared::parse(&name, &json))
                .transpose()?;
            let path = entrypoint(&img).ok_or_else(|| {
                PluginError::invalid(&name, "its image has no entrypoint and no Wasm layer")
            })?;
            let bytes = read_image_file(&store, &img.manifest, &path)
                .map_err(|e| fail_of(&name, e.to_string()))?
                .ok_or_else(|| {
                    PluginError::invalid(
                        &name,
                        format!("its entrypoint {path} is not in the image"),
                    )
                })?;
            host.load(name, bytes.into(), declared)
        })
        .await
        .map_err(|e| fail(format!("loading was cancelled: {e}")))?
    }

    /// [`Host::pull`] for blocking code.
    pub fn pull_blocking(&self, reference: &str) -> Result<Plugin, PluginError> {
        block_on(self.pull(reference))
    }
}

/// Does `plugin`, as a user gives it, name a file rather than an OCI
/// reference? A file that exists, or anything that looks like a path (a
/// `.wasm` name, or one starting with `/` or `.`), so a missing file is
/// said to be missing rather than a malformed reference.
pub fn is_file_name(plugin: &str) -> bool {
    Path::new(plugin).exists()
        || plugin.ends_with(".wasm")
        || plugin.starts_with('/')
        || plugin.starts_with('.')
}

fn fail_of(name: &str, reason: String) -> PluginError {
    PluginError::Pull {
        plugin: name.to_string(),
        reason,
    }
}

/// The declared grants: a manifest annotation, or a label of the config
/// (as `LABEL` in a Dockerfile makes it).
fn declared_grants(img: &Image) -> Option<String> {
    if let Some(v) = img
        .manifest
        .annotations()
        .as_ref()
        .and_then(|a| a.get(GRANTS_ANNOTATION))
    {
        return Some(v.clone());
    }
    img.config
        .config()
        .as_ref()
        .and_then(|c| c.labels().as_ref())
        .and_then(|l| l.get(GRANTS_ANNOTATION))
        .cloned()
}

/// The module of an image: its entrypoint (or first command word), else
/// the first raw Wasm layer of an artifact.
fn entrypoint(img: &Image) -> Option<String> {
    let cfg = img.config.config().as_ref();
    let first = cfg
        .and_then(|c| c.entrypoint().as_ref())
        .and_then(|e| e.first())
        .or_else(|| cfg.and_then(|c| c.cmd().as_ref()).and_then(|c| c.first()));
    if let Some(p) = first {
        let dir = cfg
            .and_then(|c| c.working_dir().as_ref())
            .map_or("/", |s| s.as_str());
        return Some(crate::fsutil::entry_path(p, dir));
    }
    img.manifest
        .layers()
        .iter()
        .find(|l| l.media_type().to_string() == MEDIA_WASM_LAYER)
        .map(wasm_layer_path)
}
