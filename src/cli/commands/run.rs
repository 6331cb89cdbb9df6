//! `run` and `create`.

use super::enc;
use crate::api::annotations as ann;
use crate::api::types::{
    ContainerConfig, ContainerCreateRequest, DeviceMapping, HealthConfig, HostConfig, IdResponse,
    LogConfig, PortBinding, RestartPolicyApi,
};
use crate::client::Client;
use crate::model::{ports, units, Digest, RestartPolicy};
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(clap::Args, Debug)]
#[command(trailing_var_arg = true)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short, long)]
    pub detach: bool,
    /// Automatically remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long)]
    pub env_file: Vec<String>,
    /// Bind mount a volume (host:container[:ro])
    #[arg(short, long = "volume")]
    pub volume: Vec<String>,
    /// Linux containers: add link to another container (NAME[:ALIAS])
    #[arg(long)]
    pub link: Vec<String>,
    /// Mount volumes from the specified container(s) (NAME[:ro|rw])
    #[arg(long)]
    pub volumes_from: Vec<String>,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Memory limit (e.g. 64m, 1g)
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Restart policy: no, on-failure[:max-retries], always, unless-stopped
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Set metadata on a container
    #[arg(short, long = "label")]
    pub label: Vec<String>,
    /// Seconds to wait when stopping the container
    #[arg(long)]
    pub stop_timeout: Option<i64>,
    /// Publish a container's port to the host ([ip:][hostPort:]containerPort[/proto])
    #[arg(short, long = "publish")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random host ports
    #[arg(short = 'P', long)]
    pub publish_all: bool,
    /// Add an annotation to the container (passed through to the runtime)
    #[arg(long = "annotation")]
    pub annotation: Vec<String>,
    /// Function containers: wall-time limit per request (e.g. 30s, 500ms; 0 = none)
    #[arg(long)]
    pub http_timeout: Option<String>,
    /// Function containers: requests served at once before answering 503
    #[arg(long)]
    pub http_concurrency: Option<usize>,
    /// Function containers: requests one instance serves, a WASI 0.3 one up to 16 at once (default 1: a fresh instance per request)
    #[arg(long, value_name = "N")]
    pub http_reuse: Option<usize>,
    /// Function containers: largest request body accepted (e.g. 16m)
    #[arg(long)]
    pub http_max_body: Option<String>,
    /// Function containers: let the guest send HTTP requests to HOST[:PORT] (or *)
    #[arg(long = "allow-http", value_name = "HOST[:PORT]")]
    pub allow_http: Vec<String>,
    /// Wasm containers: let the guest's sockets reach DEST ([tcp|udp://]HOST[:PORTS]; HOST is a name, *.suffix, IP, [IPv6] or CIDR; * for all but the host's loopback)
    #[arg(long = "allow-net", value_name = "DEST")]
    pub allow_net: Vec<String>,
    /// Wasm containers: sockets the guest may hold at once (default 1024)
    #[arg(long, value_name = "N")]
    pub net_connections: Option<usize>,
    /// Network to join (bridge, host, none, or a network's name; Wasm containers: a user network)
    #[arg(long, alias = "net")]
    pub network: Option<String>,
    /// A network-scoped alias for the container
    #[arg(long = "network-alias", alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// Linux containers: user name or uid, with an optional group (name|uid[:group|gid])
    #[arg(short, long)]
    pub user: Option<String>,
    /// Linux containers: the container's host name
    #[arg(long)]
    pub hostname: Option<String>,
    /// Linux containers: CPUs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Linux containers: memory nodes in which to allow execution (0-3, 0,1)
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Linux containers: tune container memory swappiness (0 to 100)
    #[arg(long)]
    pub memory_swappiness: Option<i64>,
    /// Linux containers: PID namespace to use (host or container:NAME)
    #[arg(long)]
    pub pid: Option<String>,
    /// Linux containers: IPC namespace to use (host, private or container:NAME)
    #[arg(long)]
    pub ipc: Option<String>,
    /// Linux containers: UTS namespace to use (host or container:NAME)
    #[arg(long)]
    pub uts: Option<String>,
    /// Linux containers: cgroup namespace to use (host or private)
    #[arg(long)]
    pub cgroupns: Option<String>,
    /// Linux containers: add additional groups to join (name or gid)
    #[arg(long)]
    pub group_add: Vec<String>,
    /// Linux containers: add a host device (HOST[:CONTAINER][:PERMISSIONS])
    #[arg(long)]
    pub device: Vec<String>,
    /// Linux containers: add a rule to the device cgroup ('c 1:3 rwm')
    #[arg(long = "device-cgroup-rule")]
    pub device_cgroup_rule: Vec<String>,
    /// Linux containers: run an init inside the container that forwards
    /// signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// The keys that detach from a terminal (default ctrl-p,ctrl-q)
    #[arg(long)]
    pub detach_keys: Option<String>,
    /// Linux containers: size of /dev/shm (64m if not given)
    #[arg(long)]
    pub shm_size: Option<String>,
    /// Linux containers: mount the root filesystem read-only
    #[arg(long)]
    pub read_only: bool,
    /// Linux containers: add a Linux capability (or ALL)
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Linux containers: drop a Linux capability (or ALL)
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// Linux containers: mount a tmpfs (DEST[:OPTIONS])
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Linux containers: memory plus swap limit (-1 for unlimited swap)
    #[arg(long)]
    pub memory_swap: Option<String>,
    /// Linux containers: number of CPUs (e.g. 1.5)
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Linux containers: most processes at once (-1 for unlimited)
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Logging driver for the container (json-file, local or none)
    #[arg(long, value_name = "DRIVER")]
    pub log_driver: Option<String>,
    /// Log driver options (max-size=SIZE, max-file=N)
    #[arg(long, value_name = "KEY=VALUE")]
    pub log_opt: Vec<String>,
    /// Command to run to check health (Wasm containers: the module's args, or an http:// URL it serves)
    #[arg(long, value_name = "CMD")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 30s)
    #[arg(long, value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 30s)
    #[arg(long, value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long, value_name = "N")]
    pub health_retries: Option<i64>,
    /// Start period for the container to initialize before starting health-retries countdown (ms|s|m|h) (default 0s)
    #[arg(long, value_name = "DURATION")]
    pub health_start_period: Option<String>,
    /// Time between running the check during the start period (ms|s|m|h) (default 5s)
    #[arg(long, value_name = "DURATION")]
    pub health_start_interval: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long)]
    pub no_healthcheck: bool,
    /// Image (or path to a local .wasm file), then the command and its args
    #[arg(required = true, allow_hyphen_values = true)]
    pub image_and_args: Vec<String>,
}

/// `--annotation k=v` and the function flags, which travel as annotations.
/// Values are checked here for a quick error, and again by ketchd.
fn annotations(a: &RunArgs) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for kv in &a.annotation {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("invalid annotation {kv:?}: expected key=value"))?;
        out.insert(k.to_string(), v.to_string());
    }
    if let Some(t) = &a.http_timeout {
        out.insert(ann::HTTP_TIMEOUT.into(), t.clone());
    }
    if let Some(n) = a.http_concurrency {
        out.insert(ann::HTTP_CONCURRENCY.into(), n.to_string());
    }
    if let Some(n) = a.http_reuse {
        out.insert(ann::HTTP_REUSE.into(), n.to_string());
    }
    if let Some(m) = &a.http_max_body {
        out.insert(ann::HTTP_MAX_BODY.into(), m.clone());
    }
    if !a.allow_http.is_empty() {
        out.insert(ann::HTTP_ALLOW.into(), a.allow_http.join(","));
    }
    if !a.allow_net.is_empty() {
        out.insert(ann::NET_ALLOW.into(), a.allow_net.join(","));
    }
    if let Some(n) = a.net_connections {
        out.insert(ann::NET_CONNECTIONS.into(), n.to_string());
    }
    ann::http_options(&out).map_err(anyhow::Error::msg)?;
    ann::net_options(&out).map_err(anyhow::Error::msg)?;
    Ok(out)
}

fn env_from_files(files: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| format!("reading env file {f}"))?;
        for (i, line) in text.lines().enumerate() {
            let l = line.trim_start();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            if l.contains(char::is_whitespace) && !l.contains('=') {
                bail!(
                    "env file {f} line {}: variable {l:?} contains whitespace",
                    i + 1
                );
            }
            out.push(expand_env(l));
        }
    }
    Ok(out)
}

/// The `--health-*` flags as a `Healthcheck`, as Docker's CLI makes it:
/// none when no flag is given; durations in nanoseconds.
fn healthcheck(a: &RunArgs) -> anyhow::Result<Option<HealthConfig>> {
    let set = a.health_cmd.is_some()
        || a.health_interval.is_some()
        || a.health_timeout.is_some()
        || a.health_retries.is_some()
        || a.health_start_period.is_some()
        || a.health_start_interval.is_some();
    if a.no_healthcheck {
        if set {
            bail!("--no-healthcheck conflicts with --health-* options");
        }
        return Ok(Some(HealthConfig {
            test: vec!["NONE".into()],
            ..Default::default()
        }));
    }
    if !set {
        return Ok(None);
    }
    let nanos = |flag: &str, v: &Option<String>| -> anyhow::Result<i64> {
        let Some(v) = v else { return Ok(0) };
        let d = units::parse_duration(v).with_context(|| format!("invalid --{flag} {v:?}"))?;
        Ok(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    };
    let retries = a.health_retries.unwrap_or(0);
    if retries < 0 {
        bail!("--health-retries cannot be negative");
    }
    Ok(Some(HealthConfig {
        test: a
            .health_cmd
            .iter()
            .flat_map(|c| ["CMD-SHELL".to_string(), c.clone()])
            .collect(),
        interval: nanos("health-interval", &a.health_interval)?,
        timeout: nanos("health-timeout", &a.health_timeout)?,
        start_period: nanos("health-start-period", &a.health_start_period)?,
        start_interval: nanos("health-start-interval", &a.health_start_interval)?,
        retries,
    }))
}

/// `-e NAME` (no `=`) takes NAME's value from the CLI's own environment,
/// as Docker does; unset names are dropped.
fn expand_env(kv: &str) -> String {
    if kv.contains('=') {
        return kv.to_string();
    }
    match std::env::var(kv) {
        Ok(v) => format!("{kv}={v}"),
        Err(_) => String::new(),
    }
}

pub async fn run(c: &Client, a: RunArgs, create_only: bool) -> anyhow::Result<i32> {
    let mut image = a.image_and_args[0].clone();
    // The image takes hyphen values so that its command's flags pass
    // through; a flag in its place is one `run` does not know (no
    // reference starts with `-`).
    if image.starts_with('-') {
        let verb = if create_only { "create" } else { "run" };
        bail!("unknown flag: {image}\nSee 'ketch {verb} --help'.");
    }
    let args: Vec<String> = a.image_and_args[1..].to_vec();
    if looks_like_local_wasm(&image) {
        image = load_local_wasm(c, Path::new(&image)).await?;
    }
    let policy: RestartPolicy = a.restart.parse().map_err(anyhow::Error::msg)?;
    let mut env = env_from_files(&a.env_file)?;
    env.extend(a.env.iter().map(|e| expand_env(e)));
    env.retain(|e| !e.is_empty());
    let labels = a
        .label
        .iter()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .unwrap_or((l.clone(), String::new()))
        })
        .collect();
    let attach = !a.detach && !create_only;
    let mut port_bindings: BTreeMap<String, Option<Vec<PortBinding>>> = BTreeMap::new();
    let mut exposed = BTreeMap::new();
    for p in &a.publish {
        let (key, (host_ip, host_port)) = ports::parse_publish(p).map_err(anyhow::Error::msg)?;
        exposed.insert(key.clone(), serde_json::json!({}));
        port_bindings
            .entry(key)
            .or_default()
            .get_or_insert_with(Vec::new)
            .push(PortBinding { host_ip, host_port });
    }
    let annotations = annotations(&a)?;
    let healthcheck = healthcheck(&a)?;
    let mut log_opts = BTreeMap::new();
    for o in &a.log_opt {
        let (k, v) = o
            .split_once('=')
            .with_context(|| format!("invalid --log-opt {o:?}: expected KEY=VALUE"))?;
        log_opts.insert(k.to_string(), v.to_string());
    }
    let config = ContainerConfig {
        image: image.clone(),
        cmd: if args.is_empty() { None } else { Some(args) },
        entrypoint: a.entrypoint.map(|e| vec![e]),
        env: Some(env),
        working_dir: a.workdir.unwrap_or_default(),
        user: a.user.clone().unwrap_or_default(),
        hostname: a.hostname.clone().unwrap_or_default(),
        labels: Some(labels),
        open_stdin: a.interactive,
        stdin_once: a.interactive && attach,
        attach_stdin: a.interactive && attach,
        attach_stdout: attach,
        attach_stderr: attach,
        tty: a.tty,
        stop_timeout: a.stop_timeout,
        healthcheck,
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        ..Default::default()
    };
    let host_config = HostConfig {
        binds: Some(a.volume.clone()),
        memory: a
            .memory
            .as_deref()
            .map(units::parse_size)
            .transpose()
            .map_err(anyhow::Error::msg)?
            .map_or(0, |m| m.min(i64::MAX as u64) as i64),
        restart_policy: RestartPolicyApi {
            name: policy.name().into(),
            maximum_retry_count: policy.max_retries() as i64,
        },
        auto_remove: a.rm,
        port_bindings: Some(port_bindings),
        publish_all_ports: a.publish_all,
        annotations: (!annotations.is_empty()).then_some(annotations),
        network_mode: a.network.clone().unwrap_or_else(|| "default".into()),
        readonly_rootfs: a.read_only,
        log_config: LogConfig {
            kind: a.log_driver.clone().unwrap_or_default(),
            config: log_opts,
        },
        cap_add: (!a.cap_add.is_empty()).then(|| a.cap_add.clone()),
        group_add: (!a.group_add.is_empty()).then(|| a.group_add.clone()),
        devices: (!a.device.is_empty())
            .then(|| {
                a.device
                    .iter()
                    .map(|d| {
                        let (host, dest, perms) = crate::model::device::parse_device_flag(d)?;
                        Ok(DeviceMapping {
                            path_on_host: host,
                            path_in_container: dest,
                            cgroup_permissions: perms,
                        })
                    })
                    .collect::<Result<Vec<_>, String>>()
            })
            .transpose()
            .map_err(anyhow::Error::msg)?,
        device_cgroup_rules: (!a.device_cgroup_rule.is_empty())
            .then(|| a.device_cgroup_rule.clone()),
        init: a.init.then_some(true),
        shm_size: a
            .shm_size
            .as_deref()
            .map(units::parse_size)
            .transpose()
            .map_err(anyhow::Error::msg)?
            .map_or(0, |m| m.min(i64::MAX as u64) as i64),
        volumes_from: (!a.volumes_from.is_empty()).then(|| a.volumes_from.clone()),
        links: (!a.link.is_empty()).then(|| a.link.clone()),
        pid_mode: a.pid.clone().unwrap_or_default(),
        cpuset_cpus: a.cpuset_cpus.clone().unwrap_or_default(),
        cpuset_mems: a.cpuset_mems.clone().unwrap_or_default(),
        memory_swappiness: a.memory_swappiness,
        ipc_mode: a.ipc.clone().unwrap_or_default(),
        uts_mode: a.uts.clone().unwrap_or_default(),
        cgroupns_mode: a.cgroupns.clone().unwrap_or_default(),
        cap_drop: (!a.cap_drop.is_empty()).then(|| a.cap_drop.clone()),
        tmpfs: (!a.tmpfs.is_empty()).then(|| {
            a.tmpfs
                .iter()
                .map(|t| match t.split_once(':') {
                    Some((d, o)) => (d.to_string(), o.to_string()),
                    None => (t.clone(), String::new()),
                })
                .collect()
        }),
        memory_swap: match a.memory_swap.as_deref() {
            None => 0,
            Some("-1") => -1,
            Some(s) => units::parse_size(s)
                .map_err(anyhow::Error::msg)?
                .min(i64::MAX as u64) as i64,
        },
        nano_cpus: match a.cpus {
            None => 0,
            Some(c) if c > 0.0 && c.is_finite() => (c * 1e9) as i64,
            Some(c) => bail!("invalid --cpus {c}: must be a positive number"),
        },
        pids_limit: a.pids_limit,
        ..Default::default()
    };
    let name = a
        .name
        .as_deref()
        .map(|n| format!("?name={}", enc(n)))
        .unwrap_or_default();
    let req = ContainerCreateRequest {
        config,
        host_config: Some(host_config),
        networking_config: (!a.network_alias.is_empty()).then(|| {
            let net = a.network.clone().unwrap_or_else(|| "bridge".into());
            serde_json::json!({"EndpointsConfig": {net: {"Aliases": a.network_alias}}})
        }),
    };
    if !create_only && !a.detach && !a.interactive && !a.tty {
        let body = serde_json::to_vec(&req)?.into();
        if let Some(code) = super::start::run_in_one_request(c, &name, body).await? {
            return Ok(code);
        }
    }
    let created: IdResponse = c
        .post_json(&format!("/containers/create{name}"), &req)
        .await?;
    for w in &created.warnings {
        eprintln!("WARNING: {w}");
    }
    if create_only {
        println!("{}", created.id);
        return Ok(0);
    }
    if a.detach {
        c.post(&format!("/containers/{}/start", created.id)).await?;
        println!("{}", created.id);
        return Ok(0);
    }
    let cond = if a.rm { "removed" } else { "next-exit" };
    let attach = super::start::Attach {
        stdin: a.interactive,
        tty: a.tty,
        detach_keys: a.detach_keys.clone(),
    };
    super::start::attach_and_start(c, &created.id, attach, true, cond).await
}

fn looks_like_local_wasm(s: &str) -> bool {
    (s.ends_with(".wasm") || s.starts_with("./") || s.starts_with('/')) && Path::new(s).is_file()
}

/// Make a local module runnable through the daemon: wrap it as a one-layer
/// `wasi/wasm` image named by its digest, loaded once.
async fn load_local_wasm(c: &Client, path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() < 4 || &bytes[..4] != b"\0asm" {
        bail!(
            "{} is not a WebAssembly module or component",
            path.display()
        );
    }
    let digest = Digest::of(&bytes);
    let stem: String = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let stem = stem.trim_matches('-');
    let stem = if stem.is_empty() { "module" } else { stem };
    let reference = format!("localhost/wasm-file/{stem}:{}", &digest.hex()[..16]);
    if c.get_json::<serde_json::Value>(&format!("/images/{reference}/json"))
        .await
        .is_ok()
    {
        return Ok(reference);
    }
    let r = crate::model::ImageRef::parse(&reference).map_err(anyhow::Error::msg)?;
    let archive =
        crate::image::archive::single_module_archive(&r, &format!("/{stem}.wasm"), &bytes)?;
    super::archive::load_archive(c, std::io::Cursor::new(archive)).await?;
    Ok(reference)
}
