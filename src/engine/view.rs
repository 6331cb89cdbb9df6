//! Engine records rendered as Engine API shapes (`ps`, `inspect`,
//! `images`).

use super::{networks, Container, Engine, Record};
use crate::api::types::*;
use crate::image::Image;
use crate::model::Status;
use crate::runtime::RuntimeStats;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Docker's `units.HumanDuration`.
pub fn human_duration(d: chrono::Duration) -> String {
    let s = d.num_seconds();
    match s {
        i64::MIN..=0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        172_800..=1_209_599 => format!("{} days", s / 86400),
        1_209_600..=5_183_999 => format!("{} weeks", s / 604_800),
        5_184_000..=63_071_999 => format!("{} months", s / 2_592_000),
        _ => format!("{} years", s / 31_536_000),
    }
}

fn ts(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
}

fn status_text(r: &Record, health: Option<&Health>) -> String {
    let now = Utc::now();
    let s = &r.state;
    match s.status() {
        Status::Created => "Created".into(),
        Status::Running => {
            let up = human_duration(now - s.started_at().unwrap_or(now));
            match health.map(|h| h.status.as_str()) {
                Some(super::health::STARTING) => format!("Up {up} (health: starting)"),
                Some(h) => format!("Up {up} ({h})"),
                None => format!("Up {up}"),
            }
        }
        Status::Paused => format!(
            "Up {} (Paused)",
            human_duration(now - s.started_at().unwrap_or(now))
        ),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            s.exit_code(),
            human_duration(now - s.finished_at().unwrap_or(now))
        ),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            s.exit_code(),
            human_duration(now - s.finished_at().unwrap_or(now))
        ),
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
    }
}

fn mounts(r: &Record) -> Vec<MountPoint> {
    let mut out = Vec::new();
    for b in r.host_config.binds.iter().flatten() {
        let parts: Vec<&str> = b.split(':').collect();
        if parts.len() >= 2 {
            let mode = parts.get(2).copied().unwrap_or("");
            out.push(MountPoint {
                kind: "bind".into(),
                source: parts[0].into(),
                destination: parts[1].into(),
                mode: mode.into(),
                rw: !mode.split(',').any(|m| m == "ro"),
                propagation: "rprivate".into(),
                ..Default::default()
            });
        }
    }
    for m in r.host_config.mounts.iter().flatten() {
        out.push(MountPoint {
            kind: m.kind.clone(),
            source: m.source.clone(),
            destination: m.target.clone(),
            rw: !m.read_only,
            propagation: "rprivate".into(),
            ..Default::default()
        });
    }
    out
}

/// `NetworkSettings.Networks`: one entry per network the container is
/// on, with its address while it runs.
fn endpoints(r: &Record) -> BTreeMap<String, serde_json::Value> {
    r.networks
        .iter()
        .map(|(name, e)| {
            let gateway = e.gateway.map(|g| g.to_string()).unwrap_or_default();
            let prefix = if e.ip.is_some() { e.prefix } else { 0 };
            let running = e.ip.is_some();
            let mut dns = Vec::new();
            if name != networks::DEFAULT && running {
                dns.push(r.name.clone());
                dns.extend(e.aliases.iter().cloned());
                dns.push(r.id.as_str()[..12].to_string());
            }
            let v = serde_json::json!({
                "IPAMConfig": null,
                "Links": if e.links.is_empty() { serde_json::Value::Null } else { serde_json::json!(e.links) },
                "Aliases": if e.aliases.is_empty() { serde_json::Value::Null } else { serde_json::json!(e.aliases) },
                "MacAddress": e.ip.map(networks::mac_for).unwrap_or_default(),
                "DriverOpts": null,
                "GwPriority": 0,
                "NetworkID": e.network_id,
                "EndpointID": if running { networks::endpoint_id(&r.id, &e.network_id) } else { String::new() },
                "Gateway": gateway,
                "IPAddress": e.ip.map(|ip| ip.to_string()).unwrap_or_default(),
                "IPPrefixLen": prefix,
                "IPv6Gateway": "",
                "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0,
                "DNSNames": if dns.is_empty() { serde_json::Value::Null } else { serde_json::json!(dns) },
            });
            (name.clone(), v)
        })
        .collect()
}

fn network_settings(r: &Record, sandbox: Option<PathBuf>) -> NetworkSettings {
    let networks = endpoints(r);
    let mut s = NetworkSettings {
        ports: inspect_ports(r),
        sandbox_key: sandbox.map(|p| p.display().to_string()).unwrap_or_default(),
        ..Default::default()
    };
    if let Some(b) = networks.get(networks::DEFAULT) {
        let text = |k: &str| b[k].as_str().unwrap_or_default().to_string();
        s.endpoint_id = text("EndpointID");
        s.gateway = text("Gateway");
        s.ip_address = text("IPAddress");
        s.mac_address = text("MacAddress");
        s.ip_prefix_len = b["IPPrefixLen"].as_i64().unwrap_or(0);
    }
    s.networks = networks;
    s
}

fn network_mode(r: &Record) -> String {
    if r.host_config.network_mode.is_empty() {
        "none".into()
    } else {
        r.host_config.network_mode.clone()
    }
}

pub fn summary(c: &Container) -> ContainerSummary {
    let r = c.record();
    let command = r
        .argv()
        .iter()
        .map(|a| {
            if a.contains(' ') {
                format!("{a:?}")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    ContainerSummary {
        id: r.id.to_string(),
        names: vec![format!("/{}", r.name)],
        image: r.image.clone(),
        image_id: r.image_id.to_string(),
        command,
        created: r.created.timestamp(),
        ports: summary_ports(&r),
        labels: r.config.labels.clone().unwrap_or_default(),
        state: r.state.status().as_str().into(),
        status: status_text(&r, c.health().as_ref()),
        host_config: SummaryHostConfig {
            network_mode: network_mode(&r),
        },
        network_settings: SummaryNetworkSettings {
            networks: endpoints(&r),
        },
        mounts: mounts(&r),
    }
}

/// `sandbox` is the container's network namespace, if it runs in one.
/// The container's `HostConfig`, with Docker's other fields at the value
/// ketch gives them, and `Runtime` naming the kind of container.
fn with_unset(config: HostConfig, r: &Record) -> InspectHostConfig {
    let shown = serde_json::to_value(&config).unwrap_or_default();
    let mut unset: BTreeMap<String, serde_json::Value> = HOST_CONFIG_UNSET
        .iter()
        .filter(|(k, _)| shown.get(k).is_none())
        .filter_map(|(k, v)| Some((k.to_string(), serde_json::from_str(v).ok()?)))
        .collect();
    let runtime = r.kind().map_or("", |k| match k {
        crate::model::RuntimeKind::Wasm => "wasm",
        crate::model::RuntimeKind::Linux => "linux",
    });
    unset.insert("Runtime".into(), serde_json::json!(runtime));
    if r.kind() == Some(crate::model::RuntimeKind::Linux) {
        unset.insert("MaskedPaths".into(), serde_json::json!(LINUX_MASKED_PATHS));
        unset.insert(
            "ReadonlyPaths".into(),
            serde_json::json!(LINUX_READONLY_PATHS),
        );
    }
    InspectHostConfig { config, unset }
}

pub fn inspect(engine: &Engine, c: &Container) -> ContainerInspect {
    let (sandbox, graph_driver) = (engine.sandbox_key(c), engine.graph_driver(c));
    let r = c.record();
    let s = &r.state;
    let mut config = r.config.clone();
    config.env.get_or_insert_with(Vec::new);
    config.cmd.get_or_insert_with(Vec::new);
    let mut host_config = r.host_config.clone();
    // Binds as given: without those VolumesFrom copied in (`Mounts`
    // lists them all).
    let binds = host_config.binds.get_or_insert_with(Vec::new);
    for b in &r.inherited_binds {
        if let Some(i) = binds.iter().rposition(|x| x == b) {
            binds.remove(i);
        }
    }
    host_config.network_mode = network_mode(&r);
    if r.kind() == Some(crate::model::RuntimeKind::Linux) {
        if host_config.shm_size == 0 {
            host_config.shm_size = crate::api::types::DEFAULT_SHM_SIZE;
        }
        // A container created before ketchd recorded the default got the
        // host's.
        if host_config.cgroupns_mode.is_empty() {
            host_config.cgroupns_mode = "host".into();
        }
        // Docker's default; `shareable` and `private` are one here: any
        // running container's namespace can be joined.
        if host_config.ipc_mode.is_empty() {
            host_config.ipc_mode = "private".into();
        }
    }
    let host_config = with_unset(host_config, &r);
    ContainerInspect {
        id: r.id.to_string(),
        created: ts(Some(r.created)),
        path: r.path.clone(),
        args: r.args.clone(),
        state: ContainerState {
            status: s.status().as_str().into(),
            running: s.status().is_alive(),
            paused: s.status() == Status::Paused,
            restarting: s.status() == Status::Restarting,
            oom_killed: s.oom_killed(),
            dead: s.status() == Status::Dead,
            // A Linux container's init as the host sees it; Wasm instances
            // live inside ketchd, so the daemon's pid is honest for them.
            pid: if s.status().is_alive() {
                c.control()
                    .and_then(|ctl| ctl.pids().first().copied())
                    .map_or(std::process::id() as i64, i64::from)
            } else {
                0
            },
            exit_code: s.exit_code(),
            error: s.error().to_string(),
            started_at: ts(s.started_at()),
            finished_at: ts(s.finished_at()),
            health: c.health(),
        },
        image: r.image_id.to_string(),
        log_path: c.log.path().display().to_string(),
        name: format!("/{}", r.name),
        restart_count: s.restart_count() as i64,
        driver: graph_driver.name.clone(),
        platform: r.platform.to_string(),
        exec_ids: vec![],
        host_config,
        graph_driver,
        mounts: mounts(&r),
        config,
        network_settings: network_settings(&r, sandbox),
        ..Default::default()
    }
}

/// `NetworkSettings.Ports` as Docker shows it: while running, every exposed
/// port, with its host bindings or `null`; nothing once stopped.
fn inspect_ports(r: &Record) -> BTreeMap<String, Option<Vec<PortBinding>>> {
    if !r.state.status().is_alive() {
        return BTreeMap::new();
    }
    let mut out: BTreeMap<String, Option<Vec<PortBinding>>> = r
        .config
        .exposed_ports
        .iter()
        .flatten()
        .map(|(k, _)| (k.clone(), None))
        .collect();
    for (k, v) in r.state.ports() {
        out.insert(k.clone(), Some(v.clone()));
    }
    out
}

/// The `Ports` of a `ps` entry: one per binding, and one per exposed port
/// left unpublished.
fn summary_ports(r: &Record) -> Vec<Port> {
    inspect_ports(r)
        .into_iter()
        .flat_map(|(key, bindings)| {
            let (port, proto) = key.split_once('/').unwrap_or((&key, "tcp"));
            let private_port = port.parse().unwrap_or(0);
            let kind = proto.to_string();
            match bindings {
                None => vec![Port {
                    private_port,
                    kind,
                    ..Default::default()
                }],
                Some(list) => list
                    .into_iter()
                    .map(|b| Port {
                        ip: Some(b.host_ip),
                        private_port,
                        public_port: b.host_port.parse().ok(),
                        kind: kind.clone(),
                    })
                    .collect(),
            }
        })
        .collect()
}

fn created_of(img: &Image) -> Option<DateTime<Utc>> {
    img.config
        .created()
        .as_ref()
        .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
        .map(|d| d.with_timezone(&Utc))
}

/// `GET /images/{name}/history`: the config's history, newest first, each
/// step that made a layer with that layer's size; the newest names the
/// image and its tags, the others are `<missing>` (as Docker shows steps
/// of a pulled image).
pub fn image_history(img: &Image) -> Vec<HistoryItem> {
    let mut layers = img.manifest.layers().iter().map(|l| l.size() as i64);
    let parse = |t: &Option<String>| {
        t.as_deref()
            .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
            .map_or(0, |d| d.timestamp())
    };
    let mut out: Vec<HistoryItem> = img
        .config
        .history()
        .iter()
        .flatten()
        .map(|h| HistoryItem {
            id: "<missing>".into(),
            created: parse(h.created()),
            created_by: h.created_by().clone().unwrap_or_default(),
            tags: None,
            size: if h.empty_layer().unwrap_or(false) {
                0
            } else {
                layers.next().unwrap_or(0)
            },
            comment: h.comment().clone().unwrap_or_default(),
        })
        .collect();
    // Layers the history does not account for (an image without one).
    let created = created_of(img).map_or(0, |d| d.timestamp());
    out.extend(layers.map(|size| HistoryItem {
        id: "<missing>".into(),
        created,
        size,
        ..Default::default()
    }));
    out.reverse();
    if out.is_empty() {
        out.push(HistoryItem {
            created,
            ..Default::default()
        });
    }
    out[0].id = img.id.to_string();
    let tags: Vec<String> = img
        .refs
        .iter()
        .filter(|r| r.tag.is_some())
        .map(|r| r.familiar())
        .collect();
    out[0].tags = (!tags.is_empty()).then_some(tags);
    out
}

pub fn image_summary(img: &Image, containers: i64) -> ImageSummary {
    let c = img.config.config().clone().unwrap_or_default();
    ImageSummary {
        id: img.id.to_string(),
        parent_id: String::new(),
        repo_tags: img
            .refs
            .iter()
            .filter(|r| r.tag.is_some())
            .map(|r| r.familiar())
            .collect(),
        repo_digests: img
            .refs
            .iter()
            .map(|r| format!("{}@{}", r.familiar_repository(), img.manifest_digest))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
        created: created_of(img).map(|d| d.timestamp()).unwrap_or(0),
        size: img.size(),
        shared_size: -1,
        labels: c.labels().clone().unwrap_or_default().into_iter().collect(),
        containers,
    }
}

pub fn image_inspect(engine: &Engine, img: &Image) -> ImageInspect {
    let graph_driver = engine.image_graph_driver(img);
    let c = img.config.config().clone().unwrap_or_default();
    let config = ContainerConfig {
        user: c.user().clone().unwrap_or_default(),
        env: Some(c.env().clone().unwrap_or_default()),
        cmd: c.cmd().clone(),
        entrypoint: c.entrypoint().clone(),
        working_dir: c.working_dir().clone().unwrap_or_default(),
        labels: Some(c.labels().clone().unwrap_or_default().into_iter().collect()),
        exposed_ports: c.exposed_ports().as_ref().map(|p| {
            p.iter()
                .map(|k| (k.clone(), serde_json::json!({})))
                .collect()
        }),
        volumes: c.volumes().as_ref().map(|p| {
            p.iter()
                .map(|k| (k.clone(), serde_json::json!({})))
                .collect()
        }),
        stop_signal: c.stop_signal().clone(),
        healthcheck: img.healthcheck.clone(),
        ..Default::default()
    };
    let s = image_summary(img, -1);
    ImageInspect {
        id: img.id.to_string(),
        repo_tags: s.repo_tags,
        repo_digests: s.repo_digests,
        created: ts(created_of(img)),
        author: img.config.author().clone().unwrap_or_default(),
        config,
        architecture: img.config.architecture().to_string(),
        os: img.config.os().to_string(),
        variant: img.config.variant().clone().unwrap_or_default(),
        size: img.size(),
        root_fs: RootFs {
            kind: "layers".into(),
            layers: img.config.rootfs().diff_ids().clone(),
        },
        graph_driver,
        ..Default::default()
    }
}

/// One `stats` sample. `system_ns` is the host's total CPU time, as
/// Docker reports it, for the client's CPU % arithmetic.
pub fn stats(
    r: &Record,
    now: RuntimeStats,
    system_ns: Option<u64>,
    before: Option<(DateTime<Utc>, RuntimeStats, Option<u64>)>,
) -> StatsResponse {
    let online_cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .ok();
    let cpu = |s: &RuntimeStats, system: Option<u64>| CpuStats {
        cpu_usage: CpuUsage {
            total_usage: s.cpu_ns,
            usage_in_usermode: s.cpu_ns,
            usage_in_kernelmode: 0,
        },
        system_cpu_usage: system,
        online_cpus,
        throttling_data: ThrottlingData::default(),
    };
    let limit = (r.host_config.memory > 0)
        .then_some(r.host_config.memory as u64)
        .or_else(host_memory);
    StatsResponse {
        name: format!("/{}", r.name),
        id: r.id.to_string(),
        read: ts(Some(Utc::now())),
        preread: ts(before.as_ref().map(|b| b.0)),
        // A Wasm container is one "process": the instance (or, for a
        // function, the server). A Linux container reports its cgroup's.
        pids_stats: PidsStats {
            current: now.pids.unwrap_or(1),
            limit: (r.host_config.pids_limit.unwrap_or(0) > 0)
                .then(|| r.host_config.pids_limit.unwrap_or(0) as u64),
        },
        cpu_stats: cpu(&now, system_ns),
        precpu_stats: before
            .as_ref()
            .map(|(_, s, sys)| cpu(s, *sys))
            .unwrap_or_default(),
        memory_stats: MemoryStats {
            usage: Some(now.memory_bytes),
            max_usage: Some(now.memory_peak),
            stats: BTreeMap::new(),
            limit,
        },
        function_stats: now.http.as_ref().map(|h| FunctionStats {
            requests: h.requests,
            errors: h.errors,
            rejected: h.rejected,
            in_flight: h.in_flight,
            latency_p50_us: h.p50.as_micros() as u64,
            latency_p99_us: h.p99.as_micros() as u64,
        }),
        storage_stats: serde_json::json!({}),
        ..Default::default()
    }
}

/// Total RAM of the host, the limit of a container without `--memory`.
fn host_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// `top`: the processes of a container as `ps -ef` shows them (Docker's
/// default titles), read from `/proc`.
pub fn top(pids: &[i32]) -> serde_json::Value {
    let hz = clock_ticks().max(1);
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<i64>().ok())
        })
        .unwrap_or(0);
    let mut rows = Vec::new();
    for &pid in pids {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let comm = stat[stat.find('(').map_or(0, |i| i + 1)..close].to_string();
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let ppid = num(1);
        let cpu_secs = (num(11) + num(12)) / hz;
        let start = boot + (num(19) / hz) as i64;
        let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("Uid:")?
                        .split_whitespace()
                        .next()
                        .map(String::from)
                })
            })
            .unwrap_or_default();
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| {
                c.split(|&b| b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let stime = chrono::DateTime::from_timestamp(start, 0)
            .map(|t| t.format("%H:%M").to_string())
            .unwrap_or_default();
        rows.push(vec![
            if uid == "0" { "root".to_string() } else { uid },
            pid.to_string(),
            ppid.to_string(),
            "0".to_string(),
            stime,
            "?".to_string(),
            format!(
                "{:02}:{:02}:{:02}",
                cpu_secs / 3600,
                cpu_secs / 60 % 60,
                cpu_secs % 60
            ),
            if cmd.is_empty() {
                format!("[{comm}]")
            } else {
                cmd
            },
        ]);
    }
    serde_json::json!({
        "Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
        "Processes": rows,
    })
}

/// The host's total CPU time in nanoseconds (`/proc/stat`, all cpus).
pub fn system_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: u64 = line
        .split_whitespace()
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    let hz = clock_ticks();
    (hz > 0).then(|| ticks * (1_000_000_000 / hz))
}

/// Clock ticks per second, the unit of `/proc`'s times; 0 when unknown (a
/// host without `sysconf` has no `/proc` to read either).
fn clock_ticks() -> u64 {
    #[cfg(unix)]
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    #[cfg(not(unix))]
    let hz = 0;
    u64::try_from(hz).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_durations() {
        use super::human_duration as h;
        use chrono::Duration as D;
        assert_eq!(h(D::seconds(0)), "Less than a second");
        assert_eq!(h(D::seconds(5)), "5 seconds");
        assert_eq!(h(D::seconds(90)), "About a minute");
        assert_eq!(h(D::seconds(600)), "10 minutes");
        assert_eq!(h(D::hours(5)), "5 hours");
    }
}
