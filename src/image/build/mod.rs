//! `build`: runs a Dockerfile against an extracted context directory and
//! writes the result into the image store.
//!
//! Layers are deterministic (sorted entries, zero mtimes and owners, fixed
//! gzip header) and the config's `created` time is `SOURCE_DATE_EPOCH` (or
//! the epoch), so the same context always builds the same image id.

pub mod dockerfile;
pub mod ignore;

use self::dockerfile::{key_values, words, CommandForm, Instruction, Step};
use super::layer::{Entry, LayerBuilder};
use super::store::{oci_digest, ImageStore};
use super::{canonical_json, ImageError};
use crate::confine::archive::{self, EntryKind, Kind, Limits, Policy};
use crate::confine::{Node, Root};
use crate::model::{Digest, ImageRef};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, HistoryBuilder, ImageConfigurationBuilder,
    ImageManifestBuilder, MediaType, Os, RootFsBuilder,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// A build failure, with the Dockerfile line when one is to blame.
#[derive(Debug, PartialEq, Eq)]
pub struct BuildError {
    pub line: Option<usize>,
    pub message: String,
}

impl BuildError {
    pub fn at(line: usize, message: impl Into<String>) -> Self {
        BuildError {
            line: Some(line),
            message: message.into(),
        }
    }
    pub fn new(message: impl Into<String>) -> Self {
        BuildError {
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "dockerfile line {l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for BuildError {}

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

/// Runs RUN steps; the engine provides one when it can run Linux
/// containers.
pub trait StepRunner: Sync {
    /// Run the step, sending its output to `out`; return its changes as an
    /// uncompressed OCI layer tar. A failure names the exit code.
    fn run(&self, step: &RunStep, out: &mut dyn FnMut(&str)) -> Result<Vec<u8>, String>;
}

/// A remembered RUN result: the layer it made.
#[derive(serde::Serialize, serde::Deserialize)]
struct CachedLayer {
    digest: Digest,
    diff_id: Digest,
    size: u64,
}

/// Refuse context archives with more entries than this.
pub const MAX_CONTEXT_ENTRIES: usize = 1_000_000;
/// A Dockerfile larger than this is refused (it is parsed in memory).
const MAX_DOCKERFILE: u64 = 4 << 20;

/// The state of one build stage.
#[derive(Clone, Default)]
struct Stage {
    name: Option<String>,
    os: String,
    arch: String,
    layers: Vec<Descriptor>,
    diff_ids: Vec<String>,
    env: Vec<(String, String)>,
    args: BTreeMap<String, String>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    cmd_set_here: bool,
    workdir: String,
    user: String,
    labels: BTreeMap<String, String>,
    exposed: BTreeSet<String>,
    volumes: BTreeSet<String>,
    stop_signal: Option<String>,
    history: Vec<(String, bool)>,
}

impl Stage {
    fn lookup(&self, k: &str) -> Option<String> {
        self.env
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .or_else(|| self.args.get(k).cloned())
    }

    fn set_env(&mut self, k: String, v: String) {
        self.env.retain(|(n, _)| *n != k);
        self.env.push((k, v));
    }
}

fn host_platform() -> (String, String) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    ("linux".into(), arch.into())
}

/// Run the build. `out` receives progress text. Returns the image id.
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
    let root = Root::open(ctx).map_err(|e| BuildError::new(format!("build context: {e}")))?;
    let src = root
        .read_file(df_rel.as_bytes(), MAX_DOCKERFILE)
        .map_err(|e| BuildError::new(format!("cannot read dockerfile: {e}")))?;
    let src = String::from_utf8_lossy(&src).into_owned();
    let steps = dockerfile::parse(&src)?;
    let total = steps.len();
    let mut global_args: BTreeMap<String, String> = BTreeMap::new();
    let mut used_args: BTreeSet<String> = BTreeSet::new();
    let mut stages: Vec<Stage> = Vec::new();
    let mut cur: Option<Stage> = None;

    for (i, step) in steps.iter().enumerate() {
        out(&format!("Step {}/{} : {}\n", i + 1, total, step.text));
        let line = step.line;
        let err = |m: String| ImageError::Build(BuildError::at(line, m));
        match &step.inst {
            Instruction::Arg(raw) => {
                let lookup = |k: &str| {
                    cur.as_ref()
                        .and_then(|s| s.lookup(k))
                        .or_else(|| global_args.get(k).cloned())
                };
                for (name, default) in parse_args(raw, &lookup).map_err(err)? {
                    let value = opts
                        .build_args
                        .get(&name)
                        .cloned()
                        .or(default)
                        .unwrap_or_default();
                    if opts.build_args.contains_key(&name) {
                        used_args.insert(name.clone());
                    }
                    match cur.as_mut() {
                        Some(s) => {
                            s.args.insert(name, value);
                        }
                        None => {
                            global_args.insert(name, value);
                        }
                    }
                }
            }
            Instruction::From(raw) => {
                if let Some(s) = cur.take() {
                    stages.push(s);
                }
                let w = words(raw, &|k| global_args.get(k).cloned()).map_err(err)?;
                let mut platform = opts.platform.clone();
                let mut rest: Vec<&str> = Vec::new();
                for x in &w {
                    if let Some(p) = x.strip_prefix("--platform=") {
                        platform = Some(p.to_string());
                    } else {
                        rest.push(x);
                    }
                }
                let (image, name) = match rest.as_slice() {
                    [img] => (*img, None),
                    [img, as_, n] if as_.eq_ignore_ascii_case("as") => {
                        (*img, Some(n.to_ascii_lowercase()))
                    }
                    _ => {
                        return Err(err(format!(
                            "FROM takes an image and an optional AS name, got {raw:?}"
                        )))
                    }
                };
                let mut stage = if image == "scratch" {
                    let (os, arch) = match &platform {
                        Some(p) => split_platform(p).map_err(err)?,
                        None => host_platform(),
                    };
                    Stage {
                        os,
                        arch,
                        ..Default::default()
                    }
                } else if let Some(prev) = stages
                    .iter()
                    .find(|s| s.name.as_deref() == Some(&image.to_ascii_lowercase()))
                {
                    let mut s = prev.clone();
                    s.history.clear();
                    s
                } else {
                    from_image(store, image).map_err(|e| err(e.to_string()))?
                };
                stage.name = name;
                stage.cmd_set_here = false;
                stage.args.clear();
                cur = Some(stage);
            }
            inst => {
                let stage = cur
                    .as_mut()
                    .ok_or_else(|| err("instruction before FROM".into()))?;
                if let Instruction::Run(form) = inst {
                    run_command(store, opts, runner, stage, form, out).map_err(err)?;
                } else {
                    run_step(store, &root, stage, &stages, inst, step).map_err(err)?;
                }
                let empty = !matches!(inst, Instruction::Copy { .. } | Instruction::Run(_));
                stage.history.push((step.text.clone(), empty));
            }
        }
    }
    let stage = cur.ok_or_else(|| BuildError::new("the Dockerfile has no FROM"))?;
    let unused: Vec<&String> = opts
        .build_args
        .keys()
        .filter(|k| !used_args.contains(*k) && !stage.args.contains_key(*k))
        .collect();
    if !unused.is_empty() {
        out(&format!(
            "[Warning] One or more build-args {unused:?} were not consumed\n"
        ));
    }
    let id = commit(store, &stage, &opts.tags)?;
    out(&format!("Successfully built {}\n", id.short()));
    for t in &opts.tags {
        out(&format!("Successfully tagged {}\n", t.familiar()));
    }
    Ok(id)
}

fn split_platform(p: &str) -> Result<(String, String), String> {
    let mut it = p.split('/');
    match (it.next(), it.next()) {
        (Some(os), Some(arch)) if !os.is_empty() && !arch.is_empty() => {
            Ok((os.to_string(), arch.to_string()))
        }
        _ => Err(format!("invalid platform {p:?}: expected os/arch")),
    }
}

fn parse_args(
    raw: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    for w in words(raw, lookup)? {
        match w.split_once('=') {
            Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
            None => out.push((w, None)),
        }
    }
    Ok(out)
}

fn from_image(store: &ImageStore, name: &str) -> Result<Stage, ImageError> {
    let img = store.resolve(name)?;
    let c = img.config.config().clone().unwrap_or_default();
    let env = c
        .env()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv, String::new()),
        })
        .collect();
    Ok(Stage {
        os: img.config.os().to_string(),
        arch: img.config.architecture().to_string(),
        layers: img.manifest.layers().clone(),
        diff_ids: img.config.rootfs().diff_ids().clone(),
        env,
        entrypoint: c.entrypoint().clone(),
        cmd: c.cmd().clone(),
        workdir: c.working_dir().clone().unwrap_or_default(),
        user: c.user().clone().unwrap_or_default(),
        labels: c.labels().clone().unwrap_or_default().into_iter().collect(),
        exposed: c
            .exposed_ports()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        volumes: c
            .volumes()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        stop_signal: c.stop_signal().clone(),
        ..Default::default()
    })
}

fn run_step(
    store: &ImageStore,
    ctx: &Root,
    stage: &mut Stage,
    stages: &[Stage],
    inst: &Instruction,
    step: &Step,
) -> Result<(), String> {
    let snapshot = stage.clone();
    let lookup = move |k: &str| snapshot.lookup(k);
    match inst {
        Instruction::Env(raw) => {
            for (k, v) in key_values(raw, &lookup, true)? {
                stage.set_env(k, v);
            }
        }
        Instruction::Label(raw) => {
            for (k, v) in key_values(raw, &lookup, false)? {
                stage.labels.insert(k, v);
            }
        }
        Instruction::Workdir(raw) => {
            let w = words(raw, &lookup)?.join(" ");
            stage.workdir = resolve_in_image(&stage.workdir, &w);
        }
        Instruction::User(raw) => stage.user = words(raw, &lookup)?.join(" "),
        Instruction::StopSignal(raw) => stage.stop_signal = Some(words(raw, &lookup)?.join(" ")),
        Instruction::Expose(raw) => {
            for p in words(raw, &lookup)? {
                let (port, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                let ok = port.parse::<u16>().is_ok()
                    || port
                        .split_once('-')
                        .is_some_and(|(a, b)| a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok());
                if !ok || !matches!(proto, "tcp" | "udp" | "sctp") {
                    return Err(format!("invalid port {p:?} in EXPOSE"));
                }
                stage.exposed.insert(format!("{port}/{proto}"));
            }
        }
        Instruction::Volume(raw) => {
            let v = if raw.starts_with('[') {
                dockerfile::json_array(step.line, raw).map_err(|e| e.message)?
            } else {
                words(raw, &lookup)?
            };
            stage.volumes.extend(v);
        }
        Instruction::Entrypoint(form) => {
            stage.entrypoint = Some(form.clone().into_argv());
            if !stage.cmd_set_here {
                stage.cmd = None;
            }
        }
        Instruction::Cmd(form) => {
            stage.cmd = Some(form.clone().into_argv());
            stage.cmd_set_here = true;
        }
        Instruction::Copy { args, add } => {
            copy_step(store, ctx, stage, stages, args, *add, &lookup)?
        }
        Instruction::From(_) | Instruction::Arg(_) | Instruction::Run(_) => {
            unreachable!("handled by the build loop")
        }
    }
    Ok(())
}

/// RUN: the command in a container of the stage; its changes become a
/// layer. A result is reused when the stage's layers, the command and its
/// environment are the same as before.
fn run_command(
    store: &ImageStore,
    opts: &BuildOptions,
    runner: Option<&dyn StepRunner>,
    stage: &mut Stage,
    form: &CommandForm,
    out: &mut dyn FnMut(&str),
) -> Result<(), String> {
    let argv = form.clone().into_argv();
    let shown = argv.join(" ");
    let Some(runner) = runner else {
        return Err(format!(
            "RUN {shown:?}: RUN needs the Linux container backend, which this ketchd does not provide"
        ));
    };
    let mut env = stage.env.clone();
    for (k, v) in &stage.args {
        if !env.iter().any(|(n, _)| n == k) {
            env.push((k.clone(), v.clone()));
        }
    }
    let layers = stage
        .layers
        .iter()
        .map(|d| super::store::digest_of(d.digest()).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let run = RunStep {
        layers,
        argv,
        env,
        workdir: stage.workdir.clone(),
        user: stage.user.clone(),
    };
    let key =
        Digest::of(&serde_json::to_vec(&(&run, &stage.diff_ids, &stage.os)).unwrap_or_default());
    let cache_file = opts
        .cache_dir
        .as_ref()
        .map(|d| d.join(format!("{}.json", key.hex())));
    let cached = cache_file
        .as_ref()
        .and_then(|f| fs::read(f).ok())
        .and_then(|d| serde_json::from_slice::<CachedLayer>(&d).ok())
        .filter(|c| store.has_blob(&c.digest));
    let layer = match cached {
        Some(c) => {
            out(" ---> Using cache\n");
            c
        }
        None => {
            let tar = runner.run(&run, out)?;
            let built = super::layer::write_tar(store, &tar).map_err(|e| e.to_string())?;
            let c = CachedLayer {
                digest: built.digest,
                diff_id: built.diff_id,
                size: built.size,
            };
            if let Some(f) = &cache_file {
                let _ = fs::create_dir_all(f.parent().unwrap_or(Path::new(".")));
                let _ = crate::fsutil::write_atomic(f, &serde_json::to_vec(&c).unwrap_or_default());
            }
            c
        }
    };
    stage.layers.push(Descriptor::new(
        MediaType::ImageLayerGzip,
        layer.size,
        oci_digest(&layer.digest),
    ));
    stage.diff_ids.push(layer.diff_id.to_string());
    Ok(())
}

fn resolve_in_image(base: &str, p: &str) -> String {
    if p.starts_with('/') {
        crate::fsutil::clean_abs(p)
    } else {
        crate::fsutil::clean_abs(&format!("{}/{p}", if base.is_empty() { "/" } else { base }))
    }
}

fn copy_step(
    store: &ImageStore,
    ctx: &Root,
    stage: &mut Stage,
    stages: &[Stage],
    raw: &str,
    add: bool,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), String> {
    let all = if raw.starts_with('[') {
        serde_json::from_str::<Vec<String>>(raw).map_err(|e| e.to_string())?
    } else {
        words(raw, lookup)?
    };
    let mut from = None;
    let mut chmod = None;
    let mut paths = Vec::new();
    for w in all {
        if let Some(v) = w.strip_prefix("--from=") {
            from = Some(v.to_string());
        } else if let Some(v) = w.strip_prefix("--chmod=") {
            chmod = Some(
                u32::from_str_radix(v, 8).map_err(|_| format!("invalid --chmod value {v:?}"))?,
            );
        } else if w.starts_with("--chown=") || w.starts_with("--link") {
            // Owners are always 0 in ketch layers; --link is the default behaviour.
        } else if w.starts_with("--") {
            return Err(format!("unknown flag {w}"));
        } else {
            paths.push(w);
        }
    }
    let (dest_raw, srcs) = paths
        .split_last()
        .ok_or("COPY needs a source and a destination")?;
    let dest_dir_form = dest_raw.ends_with('/') || srcs.len() > 1;
    let dest = resolve_in_image(&stage.workdir, dest_raw);
    let mut layer = LayerBuilder::default();
    match from {
        Some(f) => {
            let tree = match stages
                .iter()
                .find(|s| s.name.as_deref() == Some(&f.to_ascii_lowercase()))
            {
                Some(s) => merged_tree(store, &s.layers)?,
                None => {
                    let s = from_image(store, &f).map_err(|e| format!("COPY --from={f}: {e}"))?;
                    merged_tree(store, &s.layers)?
                }
            };
            for src in srcs {
                let src = crate::fsutil::clean_abs(src);
                let mut hit = false;
                for (path, entry) in tree.iter() {
                    let target = if *path == src {
                        match entry {
                            Entry::Dir { .. } => continue,
                            _ => file_dest(&dest, dest_dir_form, path),
                        }
                    } else if let Some(sub) =
                        path.strip_prefix(&format!("{}/", src.trim_end_matches('/')))
                    {
                        format!("{dest}/{sub}")
                    } else {
                        continue;
                    };
                    hit = true;
                    layer.add(&target, with_mode(entry.clone(), chmod));
                }
                if !hit {
                    return Err(format!("COPY --from={f}: {src} not found"));
                }
            }
        }
        None => {
            for src in srcs {
                let matches = context_matches(ctx, src)?;
                if matches.is_empty() {
                    return Err(format!(
                        "COPY failed: file not found in build context: {src}"
                    ));
                }
                for (rel, node) in matches {
                    match node {
                        Node::Dir(fd) => add_dir(&mut layer, fd, &dest, chmod)?,
                        Node::File(f) if add && is_archive(&f) => {
                            extract_archive(&mut layer, f, &dest)
                                .map_err(|e| format!("ADD {rel}: {e}"))?
                        }
                        Node::File(f) => {
                            let name = rel.rsplit('/').next().unwrap_or(&rel);
                            let target = file_dest(&dest, dest_dir_form, name);
                            let entry = file_entry(&layer, f, &rel)?;
                            layer.add(&target, with_mode(entry, chmod));
                        }
                        Node::Symlink(_) | Node::Other(_) => {
                            return Err(format!("{rel}: not a regular file or directory"))
                        }
                    }
                }
            }
        }
    }
    let built = layer.write(store).map_err(|e| e.to_string())?;
    stage.layers.push(Descriptor::new(
        MediaType::ImageLayerGzip,
        built.size,
        oci_digest(&built.digest),
    ));
    stage.diff_ids.push(built.diff_id.to_string());
    Ok(())
}

fn with_mode(e: Entry, chmod: Option<u32>) -> Entry {
    match (e, chmod) {
        (Entry::File { data, .. }, Some(m)) => Entry::File { mode: m, data },
        (Entry::Dir { .. }, Some(m)) => Entry::Dir { mode: m },
        (e, _) => e,
    }
}

fn file_dest(dest: &str, dir_form: bool, src_path: &str) -> String {
    if dir_form {
        let base = src_path.rsplit('/').next().unwrap_or(src_path);
        format!("{}/{base}", dest.trim_end_matches('/'))
    } else {
        dest.to_string()
    }
}

/// What a COPY source (possibly a glob) names in the context, as
/// (context-relative path, what is there). Paths and symlinks resolve
/// inside the context only.
fn context_matches(ctx: &Root, src: &str) -> Result<Vec<(String, Node)>, String> {
    let clean = crate::fsutil::clean_abs(src);
    let rel = clean.trim_start_matches('/');
    let open = |rel: &str| match ctx.open_node(rel.as_bytes()) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(format!("{src}: {e}")),
    };
    if !rel.contains(['*', '?', '[']) {
        return Ok(open(rel)?
            .map(|n| vec![(rel.to_string(), n)])
            .unwrap_or_default());
    }
    let pat: Vec<&str> = rel.split('/').collect();
    let mut names = Vec::new();
    Root::walk(ctx.fd(), &mut |r, _, _| {
        let r = r.to_string();
        let parts: Vec<&str> = r.split('/').collect();
        if parts.len() == pat.len()
            && parts
                .iter()
                .zip(&pat)
                .all(|(s, p)| ignore::glob(p.as_bytes(), s.as_bytes()))
        {
            names.push(r.clone());
        }
        // Deeper than the pattern cannot match.
        Ok(parts.len() < pat.len())
    })
    .map_err(|e| e.to_string())?;
    names.sort();
    let mut out = Vec::new();
    for n in names {
        if let Some(node) = open(&n)? {
            out.push((n, node));
        }
    }
    Ok(out)
}

/// Visit everything below `dir` in name order, as context-relative paths
/// (the CLI's side: the user's own directory, before it is sent).
/// `enter` decides whether a path is visited (and, for a directory, walked).
pub fn walk_filtered(
    dir: &Path,
    rel: &str,
    enter: &dyn Fn(&str) -> bool,
    f: &mut dyn FnMut(&str, &Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let r = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if !enter(&r) {
            continue;
        }
        f(&r, &e.path())?;
        if e.file_type()?.is_dir() {
            walk_filtered(&e.path(), &r, enter, f)?;
        }
    }
    Ok(())
}

/// A regular file of the context as a layer entry, if the layer has room.
fn file_entry(layer: &LayerBuilder, f: fs::File, rel: &str) -> Result<Entry, String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = f
        .metadata()
        .map_err(|e| format!("{rel}: {e}"))?
        .permissions()
        .mode()
        & 0o7777;
    let data = crate::confine::read_bounded(f, layer.room(), rel).map_err(|e| in_memory(&e))?;
    Ok(Entry::File { mode, data })
}

/// A copy of `e` (a hard link's target), if the layer has room for it.
fn fits(
    e: &Entry,
    room: u64,
    path: &crate::confine::RelPath,
) -> Result<Entry, crate::confine::ConfineError> {
    match e {
        Entry::File { data, .. } if data.len() as u64 > room => Err(
            crate::confine::ConfineError::refused(path, crate::confine::Rule::FileTooLarge(room)),
        ),
        e => Ok(e.clone()),
    }
}

fn in_memory(e: &crate::confine::ConfineError) -> String {
    format!("{e} (a COPY or ADD layer is built in memory)")
}

/// A context directory and everything below it, symlinks kept as links.
fn add_dir(
    layer: &mut LayerBuilder,
    dir: std::os::fd::OwnedFd,
    dest: &str,
    chmod: Option<u32>,
) -> Result<(), String> {
    use std::os::fd::AsFd;
    Root::walk(dir.as_fd(), &mut |rel, node, st| {
        let target = format!("{}/{rel}", dest.trim_end_matches('/'));
        let entry = match node {
            Node::Dir(_) => Entry::Dir {
                mode: st.st_mode & 0o7777,
            },
            Node::Symlink(t) => Entry::Symlink {
                target: t.to_string_lossy().into_owned(),
            },
            Node::File(f) => Entry::File {
                mode: st.st_mode & 0o7777,
                data: crate::confine::read_bounded(f, layer.room(), &rel.to_string())?,
            },
            Node::Other(_) => {
                return Err(crate::confine::ConfineError::refused(
                    rel,
                    crate::confine::Rule::NotRegular,
                ))
            }
        };
        layer.add(&target, with_mode(entry, chmod));
        Ok(true)
    })
    .map_err(|e| in_memory(&e))?;
    layer.add(
        dest,
        Entry::Dir {
            mode: chmod.unwrap_or(0o755),
        },
    );
    Ok(())
}

fn is_archive(f: &fs::File) -> bool {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; 262];
    let n = f.read_at(&mut head, 0).unwrap_or(0);
    (n >= 2 && head[..2] == [0x1f, 0x8b]) || (n >= 262 && &head[257..262] == b"ustar")
}

/// ADD of a local tar: its entries land beneath `dest`, under the `cp`
/// policy (no `..`, no absolute names, bombs and oversized archives
/// refused); hard links become copies.
fn extract_archive(layer: &mut LayerBuilder, f: fs::File, dest: &str) -> Result<(), String> {
    let policy = Policy {
        kind: Kind::Copy,
        limits: Limits::daemon(),
    };
    let at = |p: &crate::confine::RelPath| format!("{}/{p}", dest.trim_end_matches('/'));
    archive::entries(f, &policy, &mut |e, data| {
        let target = at(&e.path);
        let entry = match &e.kind {
            EntryKind::Dir => Entry::Dir { mode: e.mode },
            EntryKind::File => Entry::File {
                mode: e.mode,
                data: crate::confine::read_bounded(data, layer.room(), &e.path.to_string())?,
            },
            EntryKind::Symlink(t) => Entry::Symlink {
                target: t.to_string_lossy().into_owned(),
            },
            EntryKind::HardLink(t) => match layer.get(&at(t)) {
                // A copy: it must fit like any other file.
                Some(linked) => fits(linked, layer.room(), &e.path)?,
                None => return Ok(()),
            },
            _ => {
                return Err(crate::confine::ConfineError::refused(
                    &e.path,
                    crate::confine::Rule::UnsupportedType("device or FIFO in ADD".into()),
                ))
            }
        };
        layer.add(&target, entry);
        Ok(())
    })
    .map_err(|e| in_memory(&e))
}

/// The merged file tree of a layer stack (whiteouts applied), for `COPY --from`.
fn merged_tree(store: &ImageStore, layers: &[Descriptor]) -> Result<LayerBuilder, String> {
    let mut tree = LayerBuilder::default();
    let policy = Policy {
        kind: Kind::Layer,
        limits: Limits::daemon(),
    };
    for l in layers {
        let d = crate::image::store::digest_of(l.digest()).map_err(|e| e.to_string())?;
        let f = store.open_blob(&d).map_err(|e| e.to_string())?;
        archive::entries(f, &policy, &mut |e, data| {
            let p = format!("/{}", e.path);
            let entry = match &e.kind {
                EntryKind::Opaque => {
                    tree.remove_below(&p);
                    return Ok(());
                }
                EntryKind::Whiteout => {
                    tree.remove(&p);
                    return Ok(());
                }
                EntryKind::Dir => Entry::Dir { mode: e.mode },
                EntryKind::Symlink(t) => Entry::Symlink {
                    target: t.to_string_lossy().into_owned(),
                },
                EntryKind::File => Entry::File {
                    mode: e.mode,
                    data: crate::confine::read_bounded(data, tree.room(), &e.path.to_string())?,
                },
                EntryKind::HardLink(t) => match tree.get(&format!("/{t}")) {
                    // A copy: it must fit like any other file.
                    Some(linked) => fits(linked, tree.room(), &e.path)?,
                    None => return Ok(()),
                },
                // Devices and FIFOs are not copied between stages.
                _ => return Ok(()),
            };
            tree.add(&p, entry);
            Ok(())
        })
        .map_err(|e| format!("layer {d}: {}", in_memory(&e)))?;
    }
    Ok(tree)
}

fn commit(store: &ImageStore, stage: &Stage, tags: &[ImageRef]) -> Result<Digest, ImageError> {
    let created = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let bad = |e: oci_spec::OciSpecError| {
        ImageError::Build(BuildError::new(format!("invalid image config: {e}")))
    };
    let mut cb = ConfigBuilder::default()
        .env(
            stage
                .env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
        )
        .labels(stage.labels.clone().into_iter().collect::<HashMap<_, _>>());
    if let Some(e) = &stage.entrypoint {
        cb = cb.entrypoint(e.clone());
    }
    if let Some(c) = &stage.cmd {
        cb = cb.cmd(c.clone());
    }
    if !stage.workdir.is_empty() {
        cb = cb.working_dir(stage.workdir.clone());
    }
    if !stage.user.is_empty() {
        cb = cb.user(stage.user.clone());
    }
    if !stage.exposed.is_empty() {
        cb = cb.exposed_ports(stage.exposed.iter().cloned().collect::<Vec<_>>());
    }
    if !stage.volumes.is_empty() {
        cb = cb.volumes(stage.volumes.iter().cloned().collect::<Vec<_>>());
    }
    if let Some(s) = &stage.stop_signal {
        cb = cb.stop_signal(s.clone());
    }
    let history = stage
        .history
        .iter()
        .map(|(text, empty)| {
            HistoryBuilder::default()
                .created(created.clone())
                .created_by(text.clone())
                .empty_layer(*empty)
                .build()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    let config = ImageConfigurationBuilder::default()
        .created(created)
        .architecture(Arch::from(stage.arch.as_str()))
        .os(Os::from(stage.os.as_str()))
        .config(cb.build().map_err(bad)?)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(stage.diff_ids.clone())
                .build()
                .map_err(bad)?,
        )
        .history(history)
        .build()
        .map_err(bad)?;
    let config_bytes = canonical_json(&config);
    let config_digest = store.put_blob(&config_bytes)?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(
            MediaType::ImageConfig,
            config_bytes.len() as u64,
            oci_digest(&config_digest),
        ))
        .layers(stage.layers.clone())
        .build()
        .map_err(bad)?;
    let manifest_bytes = canonical_json(&manifest);
    let manifest_digest = store.put_blob(&manifest_bytes)?;
    if tags.is_empty() {
        store.add_manifest(
            &manifest_digest,
            manifest_bytes.len() as u64,
            MediaType::ImageManifest,
            None,
        )?;
    }
    for t in tags {
        store.add_manifest(
            &manifest_digest,
            manifest_bytes.len() as u64,
            MediaType::ImageManifest,
            Some(t),
        )?;
    }
    Ok(config_digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hard_link_copy_must_fit_the_layer_like_its_target() {
        // ADD of one big file and thousands of hard links to it once
        // cloned the file per link without counting it.
        let f = Entry::File {
            mode: 0o644,
            data: vec![0; 10],
        };
        let p = crate::confine::RelPath::parse(b"link").unwrap();
        assert!(fits(&f, 10, &p).is_ok());
        let e = fits(&f, 9, &p).unwrap_err().to_string();
        assert!(e.contains("limit of 9 bytes"), "{e}");
        let d = Entry::Dir { mode: 0o755 };
        assert!(fits(&d, 0, &p).is_ok());
    }
}
