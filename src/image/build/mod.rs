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
use crate::model::{Digest, ImageRef};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, HistoryBuilder, ImageConfigurationBuilder,
    ImageManifestBuilder, MediaType, Os, RootFsBuilder,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs;
use std::io::Read;
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
    let df_path = crate::fsutil::join_beneath(ctx, df_rel).ok_or_else(|| {
        BuildError::new(format!(
            "dockerfile path {df_rel:?} escapes the build context"
        ))
    })?;
    let src = fs::read_to_string(&df_path)
        .map_err(|e| BuildError::new(format!("cannot read dockerfile {df_rel}: {e}")))?;
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
                    run_step(store, ctx, stage, &stages, inst, step).map_err(err)?;
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
    ctx: &Path,
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
    ctx: &Path,
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
                for (path, entry) in &tree {
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
                for (rel, host) in matches {
                    let meta = fs::symlink_metadata(&host).map_err(|e| format!("{rel}: {e}"))?;
                    if meta.is_dir() {
                        add_dir(&mut layer, &host, &dest, chmod)?;
                    } else if add && is_archive(&host) {
                        extract_archive(&mut layer, &host, &dest)?;
                    } else {
                        let name = rel.rsplit('/').next().unwrap_or(&rel);
                        let target = file_dest(&dest, dest_dir_form, name);
                        layer.add(&target, with_mode(host_entry(&host, &meta)?, chmod));
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

/// Files of the context that a COPY source (possibly a glob) names, as
/// (context-relative path, host path). Never leaves the context.
fn context_matches(ctx: &Path, src: &str) -> Result<Vec<(String, PathBuf)>, String> {
    let clean = crate::fsutil::clean_abs(src);
    let rel = clean.trim_start_matches('/');
    if !rel.contains(['*', '?', '[']) {
        let host = crate::fsutil::join_beneath(ctx, rel)
            .ok_or_else(|| format!("{src} is outside the build context"))?;
        return Ok(if fs::symlink_metadata(&host).is_ok() {
            vec![(rel.to_string(), host)]
        } else {
            vec![]
        });
    }
    let pat: Vec<&str> = rel.split('/').collect();
    let mut out = Vec::new();
    walk(ctx, "", &mut |r, p| {
        let parts: Vec<&str> = r.split('/').collect();
        if parts.len() == pat.len()
            && parts
                .iter()
                .zip(&pat)
                .all(|(s, p)| ignore::glob(p.as_bytes(), s.as_bytes()))
        {
            out.push((r.to_string(), p.to_path_buf()));
        }
    })
    .map_err(|e| e.to_string())?;
    out.sort();
    Ok(out)
}

/// Visit everything below `dir` in name order, as context-relative paths.
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

fn walk(dir: &Path, rel: &str, f: &mut dyn FnMut(&str, &Path)) -> std::io::Result<()> {
    walk_filtered(dir, rel, &|_| true, &mut |r, p| {
        f(r, p);
        Ok(())
    })
}

fn host_entry(host: &Path, meta: &fs::Metadata) -> Result<Entry, String> {
    use std::os::unix::fs::PermissionsExt;
    if meta.file_type().is_symlink() {
        let t = fs::read_link(host).map_err(|e| e.to_string())?;
        return Ok(Entry::Symlink {
            target: t.to_string_lossy().into_owned(),
        });
    }
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", host.display()));
    }
    let data = fs::read(host).map_err(|e| format!("{}: {e}", host.display()))?;
    Ok(Entry::File {
        mode: meta.permissions().mode() & 0o7777,
        data,
    })
}

fn add_dir(
    layer: &mut LayerBuilder,
    host: &Path,
    dest: &str,
    chmod: Option<u32>,
) -> Result<(), String> {
    let mut err = None;
    walk(host, "", &mut |rel, p| {
        if err.is_some() {
            return;
        }
        let target = format!("{}/{rel}", dest.trim_end_matches('/'));
        match fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => {
                use std::os::unix::fs::PermissionsExt;
                layer.add(
                    &target,
                    with_mode(
                        Entry::Dir {
                            mode: m.permissions().mode() & 0o7777,
                        },
                        chmod,
                    ),
                );
            }
            Ok(m) => match host_entry(p, &m) {
                Ok(e) => layer.add(&target, with_mode(e, chmod)),
                Err(e) => err = Some(e),
            },
            Err(e) => err = Some(e.to_string()),
        }
    })
    .map_err(|e| e.to_string())?;
    layer.add(
        dest,
        Entry::Dir {
            mode: chmod.unwrap_or(0o755),
        },
    );
    err.map_or(Ok(()), Err)
}

fn is_archive(p: &Path) -> bool {
    let mut head = [0u8; 262];
    let Ok(mut f) = fs::File::open(p) else {
        return false;
    };
    let n = f.read(&mut head).unwrap_or(0);
    (n >= 2 && head[..2] == [0x1f, 0x8b]) || (n >= 262 && &head[257..262] == b"ustar")
}

/// ADD of a local tar: entries land beneath `dest`; hostile paths are refused.
fn extract_archive(layer: &mut LayerBuilder, host: &Path, dest: &str) -> Result<(), String> {
    let f = fs::File::open(host).map_err(|e| e.to_string())?;
    let mut tar = tar::Archive::new(super::layer::decompress(f).map_err(|e| e.to_string())?);
    for e in tar.entries().map_err(|e| e.to_string())? {
        let mut e = e.map_err(|e| e.to_string())?;
        let raw = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        if raw.split('/').any(|c| c == "..") {
            return Err(format!(
                "hostile path {raw:?} in archive {}",
                host.display()
            ));
        }
        let target = format!(
            "{}/{}",
            dest.trim_end_matches('/'),
            crate::fsutil::clean_abs(&raw).trim_start_matches('/')
        );
        let mode = e.header().mode().unwrap_or(0o644) & 0o7777;
        match e.header().entry_type() {
            tar::EntryType::Directory => layer.add(&target, Entry::Dir { mode }),
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut data = Vec::new();
                e.read_to_end(&mut data).map_err(|e| e.to_string())?;
                layer.add(&target, Entry::File { mode, data });
            }
            tar::EntryType::Symlink => {
                let t = e
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                layer.add(&target, Entry::Symlink { target: t });
            }
            other => {
                return Err(format!(
                    "unsupported entry type {other:?} for {raw:?} in {}",
                    host.display()
                ))
            }
        }
    }
    Ok(())
}

/// The merged file tree of a layer stack (whiteouts applied), for `COPY --from`.
fn merged_tree(
    store: &ImageStore,
    layers: &[Descriptor],
) -> Result<BTreeMap<String, Entry>, String> {
    let mut tree: BTreeMap<String, Entry> = BTreeMap::new();
    for l in layers {
        let d = crate::image::store::digest_of(l.digest()).map_err(|e| e.to_string())?;
        let f = store.open_blob(&d).map_err(|e| e.to_string())?;
        let mut tar = tar::Archive::new(super::layer::decompress(f).map_err(|e| e.to_string())?);
        for e in tar.entries().map_err(|e| e.to_string())? {
            let mut e = e.map_err(|e| e.to_string())?;
            let p = super::layer::entry_path(&e.path_bytes());
            let (dir, base) = p.rsplit_once('/').unwrap_or(("", &p));
            if base == ".wh..wh..opq" {
                tree.retain(|k, _| !k.starts_with(&format!("{dir}/")));
                continue;
            }
            if let Some(hidden) = base.strip_prefix(".wh.") {
                let gone = format!("{dir}/{hidden}");
                tree.retain(|k, _| *k != gone && !k.starts_with(&format!("{gone}/")));
                continue;
            }
            let mode = e.header().mode().unwrap_or(0o644) & 0o7777;
            let entry = match e.header().entry_type() {
                tar::EntryType::Directory => Entry::Dir { mode },
                tar::EntryType::Symlink => Entry::Symlink {
                    target: e
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default(),
                },
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let mut data = Vec::new();
                    e.read_to_end(&mut data).map_err(|e| e.to_string())?;
                    Entry::File { mode, data }
                }
                _ => continue,
            };
            tree.insert(p, entry);
        }
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
