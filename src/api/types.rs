//! Engine API JSON shapes (moby `api/swagger.yaml`, API 1.50).
//!
//! Request types accept `null` and missing fields; response types always
//! serialise every documented field, with arrays as `[]`, never `null`.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

pub type Labels = BTreeMap<String, String>;
/// `{"80/tcp": {}}` style sets.
pub type PortSet = BTreeMap<String, serde_json::Value>;

/// Docker's `StrSlice`: a JSON string, an array of strings, or null.
pub fn de_strslice<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum S {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<S>::deserialize(d)? {
        None => None,
        Some(S::One(s)) => Some(vec![s]),
        Some(S::Many(v)) => Some(v),
    })
}

fn de_null_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A container's `Config` (create request body and inspect output).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerConfig {
    #[serde(deserialize_with = "de_null_default")]
    pub hostname: String,
    #[serde(deserialize_with = "de_null_default")]
    pub domainname: String,
    #[serde(deserialize_with = "de_null_default")]
    pub user: String,
    #[serde(deserialize_with = "de_null_default")]
    pub attach_stdin: bool,
    #[serde(deserialize_with = "de_null_default")]
    pub attach_stdout: bool,
    #[serde(deserialize_with = "de_null_default")]
    pub attach_stderr: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<PortSet>,
    #[serde(deserialize_with = "de_null_default")]
    pub tty: bool,
    #[serde(deserialize_with = "de_null_default")]
    pub open_stdin: bool,
    #[serde(deserialize_with = "de_null_default")]
    pub stdin_once: bool,
    pub env: Option<Vec<String>>,
    #[serde(deserialize_with = "de_strslice")]
    pub cmd: Option<Vec<String>>,
    #[serde(deserialize_with = "de_strslice")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(deserialize_with = "de_null_default")]
    pub image: String,
    pub volumes: Option<PortSet>,
    #[serde(deserialize_with = "de_null_default")]
    pub working_dir: String,
    pub labels: Option<Labels>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    /// Always `null`: a Dockerfile's `ONBUILD` is refused by ketch's
    /// builder, and so is a create that sets it (`daemon::fields`).
    pub on_build: Option<Vec<String>>,
}

/// A health check (`Config.Healthcheck`, and the image config's): `Test`
/// is `[]` (inherit the image's), `["NONE"]`, `["CMD", argv…]` or
/// `["CMD-SHELL", command]`; durations are nanoseconds, 0 for the default.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthConfig {
    #[serde(
        deserialize_with = "de_null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub test: Vec<String>,
    #[serde(deserialize_with = "de_null_default", skip_serializing_if = "is_zero")]
    pub interval: i64,
    #[serde(deserialize_with = "de_null_default", skip_serializing_if = "is_zero")]
    pub timeout: i64,
    #[serde(deserialize_with = "de_null_default", skip_serializing_if = "is_zero")]
    pub start_period: i64,
    #[serde(deserialize_with = "de_null_default", skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    #[serde(deserialize_with = "de_null_default", skip_serializing_if = "is_zero")]
    pub retries: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// `State.Health`: the status, the failures in a row, and the last five
/// probes.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Health {
    pub status: String,
    pub failing_streak: i64,
    pub log: Vec<HealthcheckResult>,
}

/// One probe of a health check.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthcheckResult {
    pub start: String,
    pub end: String,
    pub exit_code: i64,
    pub output: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicyApi {
    #[serde(deserialize_with = "de_null_default")]
    pub name: String,
    #[serde(deserialize_with = "de_null_default")]
    pub maximum_retry_count: i64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBinding {
    #[serde(rename = "HostIp", deserialize_with = "de_null_default")]
    pub host_ip: String,
    #[serde(rename = "HostPort", deserialize_with = "de_null_default")]
    pub host_port: String,
}

/// `HostConfig.Mounts[]` entries.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountApi {
    #[serde(deserialize_with = "de_null_default")]
    pub target: String,
    #[serde(deserialize_with = "de_null_default")]
    pub source: String,
    #[serde(rename = "Type", deserialize_with = "de_null_default")]
    pub kind: String,
    #[serde(deserialize_with = "de_null_default")]
    pub read_only: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    pub binds: Option<Vec<String>>,
    #[serde(deserialize_with = "de_null_default")]
    pub memory: i64,
    #[serde(deserialize_with = "de_null_default")]
    pub memory_swap: i64,
    #[serde(deserialize_with = "de_null_default")]
    pub nano_cpus: i64,
    #[serde(deserialize_with = "de_null_default")]
    pub cpu_shares: i64,
    #[serde(deserialize_with = "de_null_default")]
    pub restart_policy: RestartPolicyApi,
    #[serde(deserialize_with = "de_null_default")]
    pub auto_remove: bool,
    pub port_bindings: Option<BTreeMap<String, Option<Vec<PortBinding>>>>,
    #[serde(deserialize_with = "de_null_default")]
    pub network_mode: String,
    pub mounts: Option<Vec<MountApi>>,
    #[serde(deserialize_with = "de_null_default")]
    pub publish_all_ports: bool,
    #[serde(deserialize_with = "de_null_default")]
    pub readonly_rootfs: bool,
    #[serde(deserialize_with = "de_null_default")]
    pub log_config: LogConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    pub pids_limit: Option<i64>,
    pub cap_add: Option<Vec<String>>,
    pub cap_drop: Option<Vec<String>>,
    /// `--tmpfs`: destination -> mount options.
    pub tmpfs: Option<BTreeMap<String, String>>,
    /// `--cpuset-cpus`, `--cpuset-mems`: the CPUs and memory nodes a Linux
    /// container may use (`0-3`, `0,1`).
    #[serde(
        deserialize_with = "de_null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub cpuset_cpus: String,
    #[serde(
        deserialize_with = "de_null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub cpuset_mems: String,
    /// `--memory-swappiness` (0-100; -1 or unset: the host's).
    pub memory_swappiness: Option<i64>,
    /// `--link NAME[:ALIAS]`: an `/etc/hosts` line for another container.
    pub links: Option<Vec<String>>,
    /// `--volumes-from NAME[:ro|rw]`: another container's binds and
    /// mounts, copied at create.
    pub volumes_from: Option<Vec<String>>,
    /// `--pid`, `--ipc`, `--uts`: `""` (its own), `host`, or
    /// `container:NAME` (another running container's).
    #[serde(
        deserialize_with = "de_null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub pid_mode: String,
    #[serde(
        deserialize_with = "de_null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipc_mode: String,
    #[serde(
        rename = "UTSMode",
        deserialize_with = "de_null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub uts_mode: String,
    /// `--cgroupns`: `host` (its cgroup paths as the host sees them) or
    /// `private` (its own cgroup is its root); empty is `host`.
    #[serde(
        deserialize_with = "de_null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub cgroupns_mode: String,
    /// `--group-add`: supplementary groups, by name or number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_add: Option<Vec<String>>,
    /// `--device`: host devices made in the container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<DeviceMapping>>,
    /// `--device-cgroup-rule`: more devices the container's cgroup allows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_cgroup_rules: Option<Vec<String>>,
    /// `--init`: an init as pid 1 that reaps orphans and forwards signals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    /// `--shm-size`: the size of a Linux container's `/dev/shm` in bytes
    /// (0: [`DEFAULT_SHM_SIZE`]).
    #[serde(deserialize_with = "de_null_default")]
    pub shm_size: i64,
}

/// One `--device` mapping.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeviceMapping {
    pub path_on_host: String,
    pub path_in_container: String,
    pub cgroup_permissions: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogConfig {
    #[serde(rename = "Type")]
    pub kind: String,
    pub config: BTreeMap<String, String>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            kind: "json-file".into(),
            config: BTreeMap::new(),
        }
    }
}

/// `POST /containers/{id}/update` body: the resources and restart policy
/// a container may change (0 or unset leaves one as it is).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateConfig {
    #[serde(deserialize_with = "de_null_default")]
    pub memory: i64,
    #[serde(deserialize_with = "de_null_default")]
    pub memory_swap: i64,
    #[serde(deserialize_with = "de_null_default")]
    pub nano_cpus: i64,
    #[serde(deserialize_with = "de_null_default")]
    pub cpu_shares: i64,
    pub pids_limit: Option<i64>,
    pub restart_policy: Option<RestartPolicyApi>,
}

/// One entry of `GET /containers/{id}/changes`: `Kind` 0 modified, 1
/// added, 2 deleted.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerChange {
    pub path: String,
    pub kind: u8,
}

/// One entry of `GET /images/{name}/history`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct HistoryItem {
    pub id: String,
    pub created: i64,
    pub created_by: String,
    pub tags: Option<Vec<String>>,
    pub size: i64,
    pub comment: String,
}

/// `POST /containers/create` body.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerCreateRequest {
    #[serde(flatten)]
    pub config: ContainerConfig,
    pub host_config: Option<HostConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub networking_config: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IdResponse {
    pub id: String,
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub message: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WaitError {
    pub message: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WaitResponse {
    pub status_code: i64,
    #[serde(default)]
    pub error: Option<WaitError>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Port {
    #[serde(rename = "IP", skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    pub private_port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_port: Option<u16>,
    #[serde(rename = "Type")]
    pub kind: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountPoint {
    #[serde(rename = "Type")]
    pub kind: String,
    pub name: String,
    pub source: String,
    pub destination: String,
    pub driver: String,
    pub mode: String,
    #[serde(rename = "RW")]
    pub rw: bool,
    pub propagation: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SummaryHostConfig {
    pub network_mode: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SummaryNetworkSettings {
    pub networks: BTreeMap<String, serde_json::Value>,
}

/// `GET /containers/json` entries.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerSummary {
    pub id: String,
    pub names: Vec<String>,
    pub image: String,
    #[serde(rename = "ImageID")]
    pub image_id: String,
    pub command: String,
    pub created: i64,
    pub ports: Vec<Port>,
    pub labels: Labels,
    pub state: String,
    pub status: String,
    pub host_config: SummaryHostConfig,
    pub network_settings: SummaryNetworkSettings,
    pub mounts: Vec<MountPoint>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerState {
    pub status: String,
    pub running: bool,
    pub paused: bool,
    pub restarting: bool,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub dead: bool,
    pub pid: i64,
    pub exit_code: i64,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
}

/// How a container's root or an image's layers are stored: `overlay2`
/// for Linux ones, `ketch` (nothing of its own to show) for Wasm ones.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct GraphDriver {
    pub name: String,
    pub data: BTreeMap<String, String>,
}

impl Default for GraphDriver {
    fn default() -> Self {
        GraphDriver {
            name: "ketch".into(),
            data: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkSettings {
    pub bridge: String,
    #[serde(rename = "SandboxID")]
    pub sandbox_id: String,
    pub sandbox_key: String,
    pub ports: BTreeMap<String, Option<Vec<PortBinding>>>,
    /// The default bridge's endpoint, at the top level as Docker still
    /// shows it.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub gateway: String,
    #[serde(rename = "GlobalIPv6Address")]
    pub global_ipv6_address: String,
    #[serde(rename = "GlobalIPv6PrefixLen")]
    pub global_ipv6_prefix_len: i64,
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: i64,
    #[serde(rename = "IPv6Gateway")]
    pub ipv6_gateway: String,
    pub mac_address: String,
    pub networks: BTreeMap<String, serde_json::Value>,
}

/// `GET /containers/{id}/json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerInspect {
    pub id: String,
    pub created: String,
    pub path: String,
    pub args: Vec<String>,
    pub state: ContainerState,
    pub image: String,
    pub resolv_conf_path: String,
    pub hostname_path: String,
    pub hosts_path: String,
    pub log_path: String,
    pub name: String,
    pub restart_count: i64,
    pub driver: String,
    pub platform: String,
    pub mount_label: String,
    pub process_label: String,
    pub app_armor_profile: String,
    #[serde(rename = "ExecIDs")]
    pub exec_ids: Vec<String>,
    pub host_config: InspectHostConfig,
    pub graph_driver: GraphDriver,
    pub mounts: Vec<MountPoint>,
    pub config: ContainerConfig,
    pub network_settings: NetworkSettings,
}

/// `HostConfig` as inspect shows it: the container's own, and beside it
/// each field Docker shows that ketch does not keep, at the only value
/// ketch lets it have (the zero value: a set one is refused at create),
/// so clients that read them find them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct InspectHostConfig {
    #[serde(flatten)]
    pub config: HostConfig,
    #[serde(flatten)]
    pub unset: BTreeMap<String, serde_json::Value>,
}

/// runc's masked paths in a Linux container, as inspect shows them:
/// kernel information a container has no business reading.
pub const LINUX_MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// The paths runc mounts read-only in a Linux container.
pub const LINUX_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// `/dev/shm`'s size in a Linux container without `--shm-size`: 64 MiB,
/// as Docker's.
pub const DEFAULT_SHM_SIZE: i64 = 64 << 20;

/// The fields of [`InspectHostConfig::unset`] and their values.
pub const HOST_CONFIG_UNSET: &[(&str, &str)] = &[
    ("ContainerIDFile", "\"\""),
    ("VolumeDriver", "\"\""),
    ("VolumesFrom", "null"),
    ("CgroupnsMode", "\"\""),
    ("Dns", "null"),
    ("DnsOptions", "null"),
    ("DnsSearch", "null"),
    ("ExtraHosts", "null"),
    ("GroupAdd", "null"),
    ("IpcMode", "\"\""),
    ("Cgroup", "\"\""),
    ("Links", "null"),
    ("OomScoreAdj", "0"),
    ("PidMode", "\"\""),
    ("Privileged", "false"),
    ("SecurityOpt", "null"),
    ("UTSMode", "\"\""),
    ("UsernsMode", "\"\""),
    ("ConsoleSize", "[0, 0]"),
    ("Isolation", "\"\""),
    ("CgroupParent", "\"\""),
    ("BlkioWeight", "0"),
    ("BlkioWeightDevice", "null"),
    ("BlkioDeviceReadBps", "null"),
    ("BlkioDeviceWriteBps", "null"),
    ("BlkioDeviceReadIOps", "null"),
    ("BlkioDeviceWriteIOps", "null"),
    ("CpuPeriod", "0"),
    ("CpuQuota", "0"),
    ("CpuRealtimePeriod", "0"),
    ("CpuRealtimeRuntime", "0"),
    ("CpusetCpus", "\"\""),
    ("CpusetMems", "\"\""),
    ("Devices", "null"),
    ("DeviceCgroupRules", "null"),
    ("DeviceRequests", "null"),
    ("MemoryReservation", "0"),
    ("MemorySwappiness", "null"),
    ("OomKillDisable", "false"),
    ("Ulimits", "null"),
    ("CpuCount", "0"),
    ("CpuPercent", "0"),
    ("IOMaximumIOps", "0"),
    ("IOMaximumBandwidth", "0"),
];

/// `GET /images/json` entries.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageSummary {
    pub id: String,
    pub parent_id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub created: i64,
    pub size: i64,
    pub shared_size: i64,
    pub labels: Labels,
    pub containers: i64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RootFs {
    #[serde(rename = "Type")]
    pub kind: String,
    pub layers: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageMetadata {
    pub last_tag_time: String,
}

/// `GET /images/{name}/json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageInspect {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub parent: String,
    pub comment: String,
    pub created: String,
    pub docker_version: String,
    pub author: String,
    pub config: ContainerConfig,
    pub architecture: String,
    pub os: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub variant: String,
    pub size: i64,
    #[serde(rename = "RootFS")]
    pub root_fs: RootFs,
    pub graph_driver: GraphDriver,
    pub metadata: ImageMetadata,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeleteItem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub untagged: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ComponentVersion {
    pub name: String,
    pub version: String,
    pub details: BTreeMap<String, String>,
}

/// `GET /version`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VersionResponse {
    pub platform: BTreeMap<String, String>,
    pub components: Vec<ComponentVersion>,
    pub version: String,
    pub api_version: String,
    #[serde(rename = "MinAPIVersion")]
    pub min_api_version: String,
    pub git_commit: String,
    pub go_version: String,
    pub os: String,
    pub arch: String,
    pub kernel_version: String,
    pub build_time: String,
}

/// One line of a streamed JSON progress response (build, load, pull).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct JsonMessage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(rename = "errorDetail", skip_serializing_if = "Option::is_none")]
    pub error_detail: Option<ErrorResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aux: Option<serde_json::Value>,
    #[serde(rename = "progressDetail", skip_serializing_if = "Option::is_none")]
    pub progress_detail: Option<ProgressDetail>,
}

/// `{"current": n, "total": m}` of a download or upload.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ProgressDetail {
    #[serde(default)]
    pub current: u64,
    #[serde(default)]
    pub total: u64,
}

impl JsonMessage {
    pub fn stream(s: impl Into<String>) -> Self {
        JsonMessage {
            stream: Some(s.into()),
            ..Default::default()
        }
    }
    pub fn error(msg: impl Into<String>) -> Self {
        let m = msg.into();
        JsonMessage {
            error: Some(m.clone()),
            error_detail: Some(ErrorResponse { message: m }),
            ..Default::default()
        }
    }
    pub fn to_line(&self) -> bytes::Bytes {
        let mut v = serde_json::to_vec(self).unwrap_or_default();
        v.push(b'\n');
        v.into()
    }
}

/// `GET /containers/{id}/stats` (`ContainerStatsResponse`), snake_case as
/// Docker sends it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StatsResponse {
    pub name: String,
    pub id: String,
    pub read: String,
    pub preread: String,
    pub pids_stats: PidsStats,
    pub blkio_stats: BlkioStats,
    pub num_procs: u32,
    pub storage_stats: serde_json::Value,
    pub cpu_stats: CpuStats,
    pub precpu_stats: CpuStats,
    pub memory_stats: MemoryStats,
    pub networks: BTreeMap<String, serde_json::Value>,
    /// Function containers only: the requests served. Not in Docker's
    /// schema; Docker clients ignore it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_stats: Option<FunctionStats>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PidsStats {
    pub current: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BlkioStats {
    pub io_service_bytes_recursive: Option<Vec<serde_json::Value>>,
    pub io_serviced_recursive: Option<Vec<serde_json::Value>>,
    pub io_queue_recursive: Option<Vec<serde_json::Value>>,
    pub io_service_time_recursive: Option<Vec<serde_json::Value>>,
    pub io_wait_time_recursive: Option<Vec<serde_json::Value>>,
    pub io_merged_recursive: Option<Vec<serde_json::Value>>,
    pub io_time_recursive: Option<Vec<serde_json::Value>>,
    pub sectors_recursive: Option<Vec<serde_json::Value>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuUsage {
    pub total_usage: u64,
    pub usage_in_kernelmode: u64,
    pub usage_in_usermode: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuStats {
    pub cpu_usage: CpuUsage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_cpu_usage: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online_cpus: Option<u32>,
    pub throttling_data: ThrottlingData,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ThrottlingData {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_time: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_usage: Option<u64>,
    pub stats: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct FunctionStats {
    pub requests: u64,
    pub errors: u64,
    pub rejected: u64,
    pub in_flight: u64,
    pub latency_p50_us: u64,
    pub latency_p99_us: u64,
}

/// One `GET /events` line (`EventMessage`), with Docker's legacy
/// `status`/`id`/`from` fields, which its CLI still reads.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EventMessage {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: EventActor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EventActor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_request_accepts_docker_shapes() {
        let body = r#"{"Image":"hello","Cmd":"echo hi","Entrypoint":null,"Env":null,"Tty":null,
            "HostConfig":{"Memory":1048576,"RestartPolicy":{"Name":"on-failure","MaximumRetryCount":2},"Binds":null}}"#;
        let r: ContainerCreateRequest = serde_json::from_str(body).unwrap();
        assert_eq!(r.config.image, "hello");
        assert_eq!(r.config.cmd, Some(vec!["echo hi".to_string()]));
        let hc = r.host_config.unwrap();
        assert_eq!(hc.memory, 1048576);
        assert_eq!(hc.restart_policy.name, "on-failure");
    }

    #[test]
    fn summaries_never_serialise_null_arrays() {
        let s = serde_json::to_value(ContainerSummary::default()).unwrap();
        assert_eq!(s["Names"], serde_json::json!([]));
        assert_eq!(s["Ports"], serde_json::json!([]));
        let i = serde_json::to_value(ContainerInspect::default()).unwrap();
        assert_eq!(i["ExecIDs"], serde_json::json!([]));
    }
}

/// `POST /containers/{id}/exec` body.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecConfig {
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub tty: bool,
    pub env: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub working_dir: String,
    pub user: String,
    pub privileged: bool,
    /// With `Tty`: the keys that detach from it (Docker's default if empty).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detach_keys: String,
}

/// `POST /exec/{id}/start` body.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecStartConfig {
    pub detach: bool,
    pub tty: bool,
}

/// `GET /exec/{id}/json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecInspect {
    #[serde(rename = "ID")]
    pub id: String,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub process_config: ExecProcessConfig,
    pub open_stdin: bool,
    pub open_stderr: bool,
    pub open_stdout: bool,
    #[serde(rename = "ContainerID")]
    pub container_id: String,
    pub pid: i64,
    pub can_remove: bool,
    pub detach_keys: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExecProcessConfig {
    pub tty: bool,
    pub entrypoint: String,
    pub arguments: Vec<String>,
    pub privileged: bool,
    pub user: String,
}
