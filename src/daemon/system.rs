//! `/_ping`, `/version`, `/info`.

use super::http::{full, json, Resp};
use crate::api::types::{ComponentVersion, VersionResponse};
use crate::api::{API_VERSION, ENGINE_VERSION, MIN_API_VERSION};
use crate::engine::Engine;
use crate::model::Status;
use hyper::{Method, Response, StatusCode};
use std::collections::BTreeMap;

pub fn ping(method: &Method) -> Resp {
    let body = if method == Method::HEAD {
        full("")
    } else {
        full("OK")
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        "content-type",
        "text/plain; charset=utf-8".parse().expect("header"),
    );
    h.insert(
        "cache-control",
        "no-cache, no-store, must-revalidate"
            .parse()
            .expect("header"),
    );
    h.insert("pragma", "no-cache".parse().expect("header"));
    r
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    }
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn version() -> Resp {
    let details = BTreeMap::from([
        ("ApiVersion".to_string(), API_VERSION.to_string()),
        ("MinAPIVersion".to_string(), MIN_API_VERSION.to_string()),
        ("Os".to_string(), std::env::consts::OS.to_string()),
        ("Arch".to_string(), arch().to_string()),
        ("KernelVersion".to_string(), kernel()),
    ]);
    json(
        StatusCode::OK,
        &VersionResponse {
            platform: BTreeMap::from([(
                "Name".to_string(),
                format!("Ketch Engine {ENGINE_VERSION}"),
            )]),
            components: vec![ComponentVersion {
                name: "Engine".into(),
                version: ENGINE_VERSION.into(),
                details,
            }],
            version: ENGINE_VERSION.into(),
            api_version: API_VERSION.into(),
            min_api_version: MIN_API_VERSION.into(),
            git_commit: String::new(),
            go_version: format!("rust (ketch {ENGINE_VERSION})"),
            os: std::env::consts::OS.into(),
            arch: arch().into(),
            kernel_version: kernel(),
            build_time: String::new(),
        },
    )
}

pub fn info(engine: &Engine) -> Resp {
    let cs = engine.list();
    let count = |s: Status| cs.iter().filter(|c| c.status() == s).count();
    let images = engine.images.list().map(|v| v.len()).unwrap_or(0);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<i64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    json(
        StatusCode::OK,
        &serde_json::json!({
            "ID": hostname.clone(),
            "Containers": cs.len(),
            "ContainersRunning": count(Status::Running),
            "ContainersPaused": count(Status::Paused),
            "ContainersStopped": cs.len() - count(Status::Running) - count(Status::Paused),
            "Images": images,
            "Driver": "ketch",
            "DriverStatus": [],
            "Plugins": {"Volume": [], "Network": [], "Authorization": null, "Log": ["json-file"]},
            "MemoryLimit": true, "SwapLimit": false, "CpuCfsPeriod": false, "CpuCfsQuota": false,
            "CPUShares": false, "CPUSet": false, "PidsLimit": false, "IPv4Forwarding": false,
            "Debug": false, "NFd": 0, "OomKillDisable": false, "NGoroutines": 0,
            "SystemTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            "LoggingDriver": "json-file", "CgroupDriver": "none", "CgroupVersion": "",
            "NEventsListener": 0,
            "KernelVersion": kernel(),
            "OperatingSystem": "ketch",
            "OSVersion": "", "OSType": "linux", "Architecture": std::env::consts::ARCH,
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["127.0.0.0/8"], "Mirrors": []},
            "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "MemTotal": mem_total,
            "GenericResources": null,
            "DockerRootDir": engine.root().display().to_string(),
            "HttpProxy": "", "HttpsProxy": "", "NoProxy": "",
            "Name": hostname,
            "Labels": [],
            "ExperimentalBuild": false,
            "ServerVersion": ENGINE_VERSION,
            "Runtimes": {"wasm": {"path": "wasmtime (in-process)"}},
            "DefaultRuntime": "wasm",
            "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false, "Error": "", "RemoteManagers": null},
            "LiveRestoreEnabled": false,
            "Isolation": "",
            "InitBinary": "",
            "ContainerdCommit": {"ID": ""}, "RuncCommit": {"ID": ""}, "InitCommit": {"ID": ""},
            "SecurityOptions": ["name=wasm-capabilities"],
            "Warnings": [],
        }),
    )
}

/// `GET /system/df`: images (with the containers using them), containers,
/// and the bytes the store's blobs take. No volumes or build cache yet.
pub fn df(engine: &Engine) -> Resp {
    let images = match engine.images.list() {
        Ok(i) => i,
        Err(e) => return super::http::error(&e.into()),
    };
    let containers = engine.list();
    let using: Vec<_> = containers.iter().map(|c| c.record().image_id).collect();
    let image_rows: Vec<_> = images
        .iter()
        .map(|img| {
            let n = using.iter().filter(|id| **id == img.id).count() as i64;
            let mut s = crate::engine::view::image_summary(img, n);
            s.shared_size = 0;
            s
        })
        .collect();
    let layers_size: u64 = std::fs::read_dir(engine.images.root().join("blobs/sha256"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    let container_rows: Vec<_> = containers
        .iter()
        .map(|c| crate::engine::view::summary(c))
        .collect();
    json(
        StatusCode::OK,
        &serde_json::json!({
            "LayersSize": layers_size,
            "Images": image_rows,
            "Containers": container_rows,
            "Volumes": [],
            "BuildCache": [],
        }),
    )
}
