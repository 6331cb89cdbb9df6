//! Build RUN steps run as Linux containers, for the image builder's
//! [`StepRunner`](crate::image::build::StepRunner).

use super::user::{parse_user, MAX_USER_DB};
use crate::engine::backend::Engine;
use crate::model::Digest;
use crate::runtime::linux::{LinuxProgram, NetworkMode};
use std::sync::Arc;

impl Engine {
    /// The RUN step runner for builds, if this host runs Linux containers.
    pub fn build_runner(self: &Arc<Self>) -> Option<BuildRunner> {
        self.backends.linux()?.backend.as_ref().ok()?;
        Some(BuildRunner {
            engine: self.clone(),
            handle: tokio::runtime::Handle::current(),
        })
    }
}

/// Runs a build's RUN steps as Linux containers: the stage's layers as the
/// overlay's lower dirs, the host's network (as `docker build` reaches
/// the network), and the upper dir's changes as the new layer.
pub struct BuildRunner {
    pub engine: Arc<Engine>,
    pub handle: tokio::runtime::Handle,
}

/// Output of a RUN step goes to its log file, read back when it ends.
struct NoSink;

impl crate::runtime::OutputSink for NoSink {
    fn write(&self, _: crate::api::stream::StdStream, _: &[u8]) {}
}

/// `--user` for a RUN step, from the stage's own `/etc/passwd` and
/// `/etc/group`: read out of its layer blobs (whiteouts and symlinks
/// resolved inside the image, never on the host), bounded in size.
fn user_in_layers(
    images: &crate::image::ImageStore,
    layers: &[Digest],
    user: &str,
) -> Result<(u32, u32), super::user::UserError> {
    let layers: Vec<_> = layers
        .iter()
        .map(|d| crate::image::layer::ImageLayer {
            digest: d.clone(),
            wasm_path: None,
        })
        .collect();
    let read = |file: &str| -> Result<String, crate::image::ImageError> {
        crate::image::layer::read_layers_file(images, &layers, &format!("/{file}"), MAX_USER_DB)
            .map(|b| {
                b.map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default()
            })
    };
    parse_user(user, &read)
}

impl crate::image::build::StepRunner for BuildRunner {
    fn run(
        &self,
        step: &crate::image::build::RunStep,
        out: &mut dyn FnMut(&str),
    ) -> Result<std::fs::File, crate::image::build::StepFailure> {
        let e = &self.engine;
        let linux = e
            .backends
            .linux()
            .ok_or("this ketchd has no Linux container backend to RUN with")?;
        let backend = linux.backend.clone()?;
        let layers = step
            .layers
            .iter()
            .map(|d| linux.snapshots.ensure(&e.images, d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| err.to_string())?;
        let (uid, gid) = user_in_layers(&e.images, &step.layers, &step.user)?;
        let id = crate::model::ContainerId::random();
        let dir = e.tmp_dir().join(format!("run-{}", &id.as_str()[..12]));
        let program = LinuxProgram {
            id: id.to_string(),
            run_dir: dir.join("run"),
            fs_dir: dir.join("fs"),
            layers,
            log_path: dir.join("log.json"),
            log_rotation: Default::default(),
            uid,
            gid,
            additional_gids: Vec::new(),
            hostname: id.as_str()[..12].to_string(),
            read_only: false,
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            tmpfs: Vec::new(),
            memory_swap: None,
            nano_cpus: 0,
            cpu_shares: None,
            cpuset_cpus: String::new(),
            cpuset_mems: String::new(),
            memory_swappiness: None,
            pid_ns: Default::default(),
            ipc_ns: Default::default(),
            uts_ns: Default::default(),
            private_cgroupns: false,
            pids_limit: None,
            network: NetworkMode::Host,
            attachments: Vec::new(),
            peer_hosts: Vec::new(),
            tty: false,
            devices: Vec::new(),
            device_rules: Vec::new(),
            init: None,
            shm_size: crate::api::types::DEFAULT_SHM_SIZE,
            stop_signal: libc::SIGTERM,
        };
        let log = program.log_path.clone();
        let upper = program.fs_dir.join("upper");
        let spec = crate::runtime::RunSpec {
            name: format!("build step {}", &id.as_str()[..12]),
            image: "being built".into(),
            program: crate::runtime::Program::Linux(Box::new(program)),
            argv: step.argv.clone(),
            env: step.env.clone(),
            workdir: step.workdir.clone(),
            grants: Vec::new(),
            memory_limit: None,
            stdin: None,
            output: Arc::new(NoSink),
            ports: Vec::new(),
            exposed: Vec::new(),
            addresses: Vec::new(),
            peers: Default::default(),
            http: Default::default(),
            net: Default::default(),
        };
        let result = (|| {
            use crate::runtime::Backend;
            let started = {
                let _rt = self.handle.enter();
                backend
                    .start(spec)
                    .map_err(|e| format!("RUN {:?} cannot run: {e}", step.argv.join(" ")))?
            };
            let status = self
                .handle
                .block_on(started.exit)
                .map_err(|e| e.to_string())?;
            for entry in crate::engine::logs::read_entries(&log, None).unwrap_or_default() {
                out(&String::from_utf8_lossy(&entry.data));
            }
            if status.code != 0 {
                return Err(format!(
                    "The command '{}' returned a non-zero code: {}",
                    step.argv.join(" "),
                    status.code
                ));
            }
            crate::image::unpack::diff_upper_file(&upper, &dir).map_err(|e| e.to_string())
        })();
        backend.cleanup(id.as_str());
        let _ = std::fs::remove_dir_all(&dir);
        result.map_err(Into::into)
    }
}
