//! The build's state between steps (global ARGs, finished stages, the
//! current one) and the instructions that only change the image config:
//! ARG, FROM scratch, ENV, LABEL, WORKDIR, USER, EXPOSE, VOLUME,
//! ENTRYPOINT, CMD, STOPSIGNAL. Nothing here touches the store or the
//! context, so it is tested on its own.

use super::dockerfile::{self, key_values, words, Instruction};
use super::{BuildError, StepError};
use crate::image::{Image, ImageError, ImageStore};
use oci_spec::image::Descriptor;
use oci_spec::image::{
    Arch, ConfigBuilder, HistoryBuilder, ImageConfiguration, ImageConfigurationBuilder, Os,
    RootFsBuilder,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The state of one build stage.
#[derive(Clone, Debug, Default)]
pub(super) struct Stage {
    pub name: Option<String>,
    pub os: String,
    pub arch: String,
    pub layers: Vec<Descriptor>,
    pub diff_ids: Vec<String>,
    pub env: Vec<(String, String)>,
    pub args: BTreeMap<String, String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub cmd_set_here: bool,
    pub workdir: String,
    pub user: String,
    pub labels: BTreeMap<String, String>,
    pub exposed: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
    pub stop_signal: Option<String>,
    pub healthcheck: Option<crate::api::types::HealthConfig>,
    /// FROM scratch with no platform asked for: the host's was assumed, and
    /// a Wasm entrypoint makes it `wasi/wasm`.
    pub platform_assumed: bool,
    /// Each step's text, and whether it made no layer.
    pub history: Vec<(String, bool)>,
}

impl Stage {
    /// A variable as the stage's instructions see it: ENV first, then ARG.
    pub fn lookup(&self, k: &str) -> Option<String> {
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

    /// A stage that starts from `img`: its layers and its config.
    pub fn of_image(img: &Image) -> Stage {
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
        Stage {
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
            healthcheck: img.healthcheck.clone(),
            ..Default::default()
        }
    }

    /// Apply an instruction that only changes the config. Variables expand
    /// to their values before this instruction (`ENV A=1 B=$A` sees the
    /// old `A`, as in Docker). FROM, ARG, RUN, COPY and ADD are the
    /// builder's, and leave the stage as it is here.
    pub fn apply(&mut self, inst: &Instruction) -> Result<(), StepError> {
        let snapshot = Stage {
            env: self.env.clone(),
            args: self.args.clone(),
            ..Default::default()
        };
        let lookup = move |k: &str| snapshot.lookup(k);
        match inst {
            Instruction::Env(raw) => {
                for (k, v) in key_values(raw, &lookup, true)? {
                    self.set_env(k, v);
                }
            }
            Instruction::Label(raw) => {
                for (k, v) in key_values(raw, &lookup, false)? {
                    self.labels.insert(k, v);
                }
            }
            Instruction::Workdir(raw) => {
                let w = words(raw, &lookup)?.join(" ");
                self.workdir = resolve_in_image(&self.workdir, &w);
            }
            Instruction::User(raw) => self.user = words(raw, &lookup)?.join(" "),
            Instruction::StopSignal(raw) => self.stop_signal = Some(words(raw, &lookup)?.join(" ")),
            Instruction::Healthcheck(hc) => self.healthcheck = Some(hc.clone()),
            Instruction::Expose(raw) => {
                for p in words(raw, &lookup)? {
                    self.exposed.insert(exposed_port(&p)?);
                }
            }
            Instruction::Volume(raw) => {
                let v = if raw.starts_with('[') {
                    dockerfile::json_array(raw)?
                } else {
                    words(raw, &lookup)?
                };
                self.volumes.extend(v);
            }
            Instruction::Entrypoint(form) => {
                self.entrypoint = Some(form.clone().into_argv());
                if !self.cmd_set_here {
                    self.cmd = None;
                }
            }
            Instruction::Cmd(form) => {
                self.cmd = Some(form.clone().into_argv());
                self.cmd_set_here = true;
            }
            Instruction::From(_)
            | Instruction::Arg(_)
            | Instruction::Run(_)
            | Instruction::Copy { .. } => {}
        }
        Ok(())
    }

    /// The image config this stage describes, made at `created`.
    pub fn config(&self, created: &str) -> Result<ImageConfiguration, BuildError> {
        let mut cb = ConfigBuilder::default()
            .env(
                self.env
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>(),
            )
            .labels(self.labels.clone().into_iter().collect::<HashMap<_, _>>());
        if let Some(e) = &self.entrypoint {
            cb = cb.entrypoint(e.clone());
        }
        if let Some(c) = &self.cmd {
            cb = cb.cmd(c.clone());
        }
        if !self.workdir.is_empty() {
            cb = cb.working_dir(self.workdir.clone());
        }
        if !self.user.is_empty() {
            cb = cb.user(self.user.clone());
        }
        if !self.exposed.is_empty() {
            cb = cb.exposed_ports(self.exposed.iter().cloned().collect::<Vec<_>>());
        }
        if !self.volumes.is_empty() {
            cb = cb.volumes(self.volumes.iter().cloned().collect::<Vec<_>>());
        }
        if let Some(s) = &self.stop_signal {
            cb = cb.stop_signal(s.clone());
        }
        let history = self
            .history
            .iter()
            .map(|(text, empty)| {
                HistoryBuilder::default()
                    .created(created.to_string())
                    .created_by(text.clone())
                    .empty_layer(*empty)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(BuildError::Config)?;
        ImageConfigurationBuilder::default()
            .created(created.to_string())
            .architecture(Arch::from(self.arch.as_str()))
            .os(Os::from(self.os.as_str()))
            .config(cb.build().map_err(BuildError::Config)?)
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(self.diff_ids.clone())
                    .build()
                    .map_err(BuildError::Config)?,
            )
            .history(history)
            .build()
            .map_err(BuildError::Config)
    }
}

/// An EXPOSE operand as the config keys it: `80/tcp`, `53/udp`,
/// `8000-8010/tcp`.
fn exposed_port(p: &str) -> Result<String, StepError> {
    let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let ok = port.parse::<u16>().is_ok()
        || port
            .split_once('-')
            .is_some_and(|(a, b)| a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok());
    if !ok || !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err(StepError::Expose(p.to_string()));
    }
    Ok(format!("{port}/{proto}"))
}

/// `p` against the stage's working directory, as an absolute clean path.
pub(super) fn resolve_in_image(base: &str, p: &str) -> String {
    if p.starts_with('/') {
        crate::fsutil::clean_abs(p)
    } else {
        crate::fsutil::clean_abs(&format!("{}/{p}", if base.is_empty() { "/" } else { base }))
    }
}

/// The stage a `FROM image` starts from, out of the store.
pub(super) fn from_store(store: &ImageStore, name: &str) -> Result<Stage, ImageError> {
    Ok(Stage::of_image(&store.resolve(name)?))
}

fn host_platform() -> (String, String) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    ("linux".into(), arch.into())
}

fn split_platform(p: &str) -> Result<(String, String), StepError> {
    let mut it = p.split('/');
    match (it.next(), it.next()) {
        (Some(os), Some(arch)) if !os.is_empty() && !arch.is_empty() => {
            Ok((os.to_string(), arch.to_string()))
        }
        _ => Err(StepError::Platform(p.to_string())),
    }
}

/// The stages of a build as its steps run.
pub(super) struct Builder<'a> {
    build_args: &'a BTreeMap<String, String>,
    platform: Option<&'a str>,
    /// ARGs declared before the first FROM.
    global_args: BTreeMap<String, String>,
    /// `--build-arg`s some ARG declared.
    used_args: BTreeSet<String>,
    /// Finished stages, for `FROM <stage>` and `COPY --from=<stage>`.
    stages: Vec<Stage>,
    cur: Option<Stage>,
}

impl<'a> Builder<'a> {
    pub fn new(build_args: &'a BTreeMap<String, String>, platform: Option<&'a str>) -> Self {
        Builder {
            build_args,
            platform,
            global_args: BTreeMap::new(),
            used_args: BTreeSet::new(),
            stages: Vec::new(),
            cur: None,
        }
    }

    /// ARG: declares names, with a `--build-arg` value, else the default
    /// given, else empty. Before the first FROM they are global.
    pub fn arg(&mut self, raw: &str) -> Result<(), StepError> {
        let lookup = |k: &str| {
            self.cur
                .as_ref()
                .and_then(|s| s.lookup(k))
                .or_else(|| self.global_args.get(k).cloned())
        };
        let declared = words(raw, &lookup)?;
        for w in declared {
            let (name, default) = match w.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (w, None),
            };
            let given = self.build_args.get(&name).cloned();
            if given.is_some() {
                self.used_args.insert(name.clone());
            }
            // In a stage, `ARG NAME` without a default takes the global
            // ARG's value, as Docker does.
            let global = || match self.cur {
                Some(_) => self.global_args.get(&name).cloned(),
                None => None,
            };
            let value = given.or(default).or_else(global).unwrap_or_default();
            match self.cur.as_mut() {
                Some(s) => s.args.insert(name, value),
                None => self.global_args.insert(name, value),
            };
        }
        Ok(())
    }

    /// FROM: finishes the current stage and starts the next from scratch,
    /// an earlier stage, or an image `base` finds.
    pub fn from(
        &mut self,
        raw: &str,
        base: &dyn Fn(&str) -> Result<Stage, ImageError>,
    ) -> Result<(), StepError> {
        if let Some(s) = self.cur.take() {
            self.stages.push(s);
        }
        let w = words(raw, &|k| self.global_args.get(k).cloned())?;
        let mut platform = self.platform.map(str::to_string);
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
            [img, as_, n] if as_.eq_ignore_ascii_case("as") => (*img, Some(n.to_ascii_lowercase())),
            _ => return Err(StepError::FromOperands(raw.to_string())),
        };
        let mut stage = if image == "scratch" {
            let (os, arch) = match &platform {
                Some(p) => split_platform(p)?,
                None => host_platform(),
            };
            Stage {
                os,
                arch,
                platform_assumed: platform.is_none(),
                ..Default::default()
            }
        } else if let Some(prev) = self.stage(image) {
            let mut s = prev.clone();
            s.history.clear();
            s
        } else {
            base(image)?
        };
        stage.name = name;
        stage.cmd_set_here = false;
        stage.args.clear();
        self.cur = Some(stage);
        Ok(())
    }

    /// The current stage, and the finished ones before it.
    pub fn current(&mut self) -> Result<(&mut Stage, &[Stage]), StepError> {
        match self.cur.as_mut() {
            Some(s) => Ok((s, &self.stages)),
            None => Err(StepError::BeforeFrom),
        }
    }

    /// A finished stage by its `AS` name.
    fn stage(&self, name: &str) -> Option<&Stage> {
        find_stage(&self.stages, name)
    }

    /// The last stage, which becomes the image, and the `--build-arg`s no
    /// ARG declared.
    pub fn finish(self) -> Result<(Stage, Vec<String>), BuildError> {
        let stage = self.cur.ok_or(BuildError::NoFrom)?;
        let unused = self
            .build_args
            .keys()
            .filter(|k| !self.used_args.contains(*k) && !stage.args.contains_key(*k))
            .cloned()
            .collect();
        Ok((stage, unused))
    }
}

/// A stage by its `AS` name (names are case-insensitive).
pub(super) fn find_stage<'s>(stages: &'s [Stage], name: &str) -> Option<&'s Stage> {
    let name = name.to_ascii_lowercase();
    stages.iter().find(|s| s.name.as_deref() == Some(&name))
}
