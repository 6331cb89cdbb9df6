//! `build`: runs a Dockerfile against an extracted context directory and
//! writes the result into the image store.
//!
//! Layers are deterministic (sorted entries, zero mtimes and owners, fixed
//! gzip header) and the config's `created` time is `SOURCE_DATE_EPOCH` (or
//! the epoch), so the same context always builds the same image id.
//!
//! [`stage`] holds the build state and the instructions that only change
//! the image config; [`run`] runs RUN steps, [`copy`] makes COPY and ADD
//! layers from [`context`], and [`commit`] writes the config and manifest.
//!
//! Error messages include their cause: the daemon sends a build error's
//! text, not its source chain, to the client.
//!
//! The build reads its context through [`crate::confine::Root`], so it runs
//! on Linux only; elsewhere the options, errors, Dockerfile parser and
//! ignore rules are here, and the rest stands unused.
#![cfg_attr(not(target_os = "linux"), allow(dead_code, unused_imports))]

mod commit;
mod context;
#[cfg(target_os = "linux")]
mod copy;
pub mod dockerfile;
pub mod ignore;
mod run;
mod stage;
#[cfg(test)]
mod tests;

pub use self::commit::{commit_container, import_rootfs, CommitRequest};
pub use self::context::walk_filtered;
pub use self::dockerfile::{ParseError, SyntaxError};

use self::dockerfile::{Instruction, Step};
use self::stage::Builder;
use super::{ImageError, ImageStore};
use crate::confine::ConfineError;
#[cfg(target_os = "linux")]
use crate::confine::Root;
use crate::model::{Digest, DigestError, ImageRef};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A build failure, with the Dockerfile line when one is to blame.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile's text does not parse.
    #[error("dockerfile line {line}: {source}")]
    Parse {
        line: usize,
        #[source]
        source: ParseError,
    },
    /// An instruction failed.
    #[error("dockerfile line {line}: {source}")]
    Step {
        line: usize,
        #[source]
        source: StepError,
    },
    #[error("build context: {0}")]
    Context(#[source] ConfineError),
    #[error("cannot read dockerfile: {0}")]
    ReadDockerfile(#[source] ConfineError),
    #[error("the Dockerfile has no FROM")]
    NoFrom,
    #[error("invalid image config: {0}")]
    Config(#[source] oci_spec::OciSpecError),
}

impl BuildError {
    /// The Dockerfile line to blame, if one is.
    pub fn line(&self) -> Option<usize> {
        match self {
            BuildError::Parse { line, .. } | BuildError::Step { line, .. } => Some(*line),
            _ => None,
        }
    }
}

/// Why one instruction failed (the line is added by [`BuildError::Step`]).
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("instruction before FROM")]
    BeforeFrom,
    #[error("FROM takes an image and an optional AS name, got {0:?}")]
    FromOperands(String),
    #[error("invalid platform {0:?}: expected os/arch")]
    Platform(String),
    #[error("invalid port {0:?} in EXPOSE")]
    Expose(String),
    #[error(
        "RUN {0:?}: RUN needs the Linux container backend, which this ketchd does not provide"
    )]
    RunUnsupported(String),
    /// The step runner's own report (a non-zero exit names the code).
    #[error("{0}")]
    Run(#[source] StepFailure),
    #[error("invalid --chmod value {0:?}")]
    Chmod(String),
    #[error("unknown flag {0}")]
    UnknownFlag(String),
    #[error("COPY needs a source and a destination")]
    CopyOperands,
    #[error("COPY --from={from}: {source}")]
    CopyFromImage {
        from: String,
        #[source]
        source: Box<ImageError>,
    },
    #[error("COPY --from={from}: {path} not found")]
    CopyFromMissing { from: String, path: String },
    #[error("COPY failed: file not found in build context: {0}")]
    NotInContext(String),
    #[error("{0}: not a regular file or directory")]
    NotRegular(String),
    #[error("ADD {path}: {source}")]
    Add {
        path: String,
        #[source]
        source: Box<StepError>,
    },
    /// A context path that cannot be opened or read.
    #[error("{path}: {source}")]
    ContextPath {
        path: String,
        #[source]
        source: ConfineError,
    },
    #[error("{path}: {source}")]
    ContextFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Confine(#[from] ConfineError),
    /// A file refused while a layer is assembled in memory.
    #[error("{0} (a COPY or ADD layer is built in memory)")]
    InMemory(#[source] ConfineError),
    /// A layer of an earlier stage, read for `COPY --from`.
    #[error("layer {digest}: {source} (a COPY or ADD layer is built in memory)")]
    StageLayer {
        digest: Digest,
        #[source]
        source: ConfineError,
    },
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error(transparent)]
    Image(Box<ImageError>),
}

impl From<ImageError> for StepError {
    fn from(e: ImageError) -> Self {
        StepError::Image(Box::new(e))
    }
}

#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Dockerfile path inside the context.
    pub dockerfile: String,
    pub tags: Vec<ImageRef>,
    pub build_args: BTreeMap<String, String>,
    /// `os/arch`, e.g. `wasi/wasm`.
    pub platform: Option<String>,
    /// Where RUN results are remembered (none: no build cache).
    pub cache_dir: Option<PathBuf>,
}

/// What a RUN step runs: its command in a container of the stage's root
/// filesystem (these layers, lowest first).
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunStep {
    pub layers: Vec<Digest>,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: String,
    pub user: String,
}

/// Why a step runner could not run a step, in the runner's own terms.
pub type StepFailure = Box<dyn std::error::Error + Send + Sync>;

/// Runs RUN steps; the engine provides one when it can run Linux
/// containers.
pub trait StepRunner: Sync {
    /// Run the step, sending its output to `out`; return its changes as an
    /// uncompressed OCI layer tar, in a file read from its start (a step
    /// may write more than ketchd's memory). A failure names the exit code.
    fn run(&self, step: &RunStep, out: &mut dyn FnMut(&str)) -> Result<std::fs::File, StepFailure>;
}

/// Refuse context archives with more entries than this.
pub const MAX_CONTEXT_ENTRIES: usize = 1_000_000;
/// A Dockerfile larger than this is refused (it is parsed in memory).
const MAX_DOCKERFILE: u64 = 4 << 20;

/// Run the build. `out` receives progress text. Returns the image id.
#[cfg(target_os = "linux")]
pub fn build(
    store: &ImageStore,
    ctx: &Path,
    opts: &BuildOptions,
    runner: Option<&dyn StepRunner>,
    out: &mut dyn FnMut(&str),
) -> Result<Digest, ImageError> {
    let df_rel = if opts.dockerfile.is_empty() {
        "Dockerfile"
    } else {
        &opts.dockerfile
    };
    // The Dockerfile is resolved inside the context: a symlink to a host
    // file reads the context's own file of that name, or nothing.
    let root = Root::open(ctx).map_err(BuildError::Context)?;
    let src = root
        .read_file(df_rel.as_bytes(), MAX_DOCKERFILE)
        .map_err(BuildError::ReadDockerfile)?;
    let src = String::from_utf8_lossy(&src).into_owned();
    let steps = dockerfile::parse(&src)?;
    let total = steps.len();
    let mut builder = Builder::new(&opts.build_args, opts.platform.as_deref());
    for (i, step) in steps.iter().enumerate() {
        out(&format!("Step {}/{} : {}\n", i + 1, total, step.text));
        run_step(store, &root, opts, runner, &mut builder, step, out).map_err(|source| {
            BuildError::Step {
                line: step.line,
                source,
            }
        })?;
    }
    let (mut stage, unused) = builder.finish()?;
    if stage.platform_assumed {
        if let Some(entry) = wasm_entrypoint(store, &stage) {
            stage.os = "wasi".into();
            stage.arch = "wasm".into();
            out(&format!(
                "Wasm entrypoint {entry}: the image's platform is wasi/wasm\n"
            ));
        }
    }
    if !unused.is_empty() {
        out(&format!(
            "[Warning] One or more build-args {unused:?} were not consumed\n"
        ));
    }
    let id = commit::commit(store, &stage, &opts.tags)?;
    out(&format!("Successfully built {}\n", id.short()));
    for t in &opts.tags {
        out(&format!("Successfully tagged {}\n", t.familiar()));
    }
    Ok(id)
}

/// The program of a stage (its entrypoint, else its command), if it is a
/// Wasm module or component in the stage's layers. A program that cannot
/// be read (absent, too large, a link loop) is not Wasm: this only decides
/// the platform, never fails the build.
#[cfg(target_os = "linux")]
fn wasm_entrypoint(store: &ImageStore, stage: &stage::Stage) -> Option<String> {
    let program = stage
        .entrypoint
        .as_ref()
        .filter(|e| !e.is_empty())
        .or(stage.cmd.as_ref())
        .and_then(|c| c.first())?;
    // Where ketchd will look for it: relative to the working directory.
    let path = crate::fsutil::entry_path(program, &stage.workdir);
    let layers = stage
        .layers
        .iter()
        .map(|l| {
            Some(crate::image::layer::ImageLayer {
                digest: crate::image::store::digest_of(l.digest()).ok()?,
                wasm_path: None,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let found = crate::image::layer::read_layers_file(
        store,
        &layers,
        &path,
        crate::image::layer::MAX_EXTRACTED_FILE,
    )
    .ok()??;
    found.starts_with(b"\0asm").then_some(path)
}

/// One instruction: ARG and FROM move the builder, RUN and COPY/ADD add a
/// layer, the rest change the current stage's config.
#[cfg(target_os = "linux")]
fn run_step(
    store: &ImageStore,
    root: &Root,
    opts: &BuildOptions,
    runner: Option<&dyn StepRunner>,
    builder: &mut Builder<'_>,
    step: &Step,
    out: &mut dyn FnMut(&str),
) -> Result<(), StepError> {
    match &step.inst {
        Instruction::Arg(raw) => builder.arg(raw),
        Instruction::From(raw) => builder.from(raw, &|name| stage::from_store(store, name)),
        inst => {
            let (stage, stages) = builder.current()?;
            match inst {
                Instruction::Run(form) => run::run_command(store, opts, runner, stage, form, out)?,
                Instruction::Copy { args, add } => {
                    copy::copy_step(store, root, stage, stages, args, *add)?
                }
                config => stage.apply(config)?,
            }
            let empty = !matches!(inst, Instruction::Copy { .. } | Instruction::Run(_));
            stage.history.push((step.text.clone(), empty));
            Ok(())
        }
    }
}
