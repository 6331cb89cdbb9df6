//! `/_ping`, `/version`, `/info`, `/events`, `/system/df`.

use super::http::{error, full, json, stream, Query, Resp};
use crate::api::types::{ComponentVersion, VersionResponse};
use crate::api::{API_VERSION, ENGINE_VERSION, MIN_API_VERSION};
use crate::engine::Engine;
use crate::engine::EngineError;
use crate::model::Status;
use hyper::{Method, Response, StatusCode};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn ping(method: &Method) -> Resp {
    let body = if method == Method::HEAD {
        full("")
    } else {
        full("OK")
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    use hyper::header::HeaderValue;
    h.insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        "cache-control",
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert("pragma", HeaderValue::from_static("no-cache"));
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
    let images = engine.images().list().map(|v| v.len()).unwrap_or(0);
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
pub async fn df(engine: &std::sync::Arc<Engine>) -> Resp {
    let volumes = match engine.volume_usage().await {
        Ok(v) => v,
        Err(e) => return super::http::error(&e),
    };
    let images = match engine.images().list() {
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
    let layers_size: u64 = std::fs::read_dir(engine.images().root().join("blobs/sha256"))
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
            "Volumes": volumes
                .into_iter()
                .map(|(v, size, users)| {
                    let mut j = serde_json::to_value(&v).unwrap_or_default();
                    j["UsageData"] = serde_json::json!({"Size": size, "RefCount": users});
                    j
                })
                .collect::<Vec<_>>(),
            "BuildCache": [],
        }),
    )
}

/// `GET /events?since=&until=&filters=`: past events from `since`, then
/// live ones until `until` (or the client goes).
pub async fn events(engine: &Arc<Engine>, q: &Query) -> Resp {
    let parse_time = |k: &str| -> Result<Option<i64>, EngineError> {
        match q.get(k).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => parse_event_time(v)
                .map(Some)
                .ok_or_else(|| EngineError::InvalidArgument(format!("invalid {k} time {v:?}"))),
        }
    };
    let (since, until) = match (parse_time("since"), parse_time("until")) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => return error(&e),
    };
    let filters = match super::filters::Filters::parse(q.get("filters"), super::filters::EVENTS) {
        Ok(f) => f.into_map(),
        Err(e) => return error(&e),
    };
    let (past, mut rx) = engine.events().subscribe(since);
    let (out, resp) = stream("application/json");
    let line = |e: &crate::api::types::EventMessage| super::http::json_line(e);
    tokio::spawn(async move {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        for e in past
            .iter()
            .filter(|e| until.is_none_or(|u| e.time_nano <= u))
        {
            if crate::engine::events::matches(e, &filters) && out.send(line(e)).await.is_err() {
                return;
            }
        }
        if until.is_some_and(|u| u <= now) {
            return;
        }
        let deadline = until.map(|u| {
            tokio::time::Instant::now() + std::time::Duration::from_nanos((u - now).max(0) as u64)
        });
        loop {
            let next = async {
                loop {
                    match rx.recv().await {
                        Ok(e) => return Some(e),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => return None,
                    }
                }
            };
            let e = match deadline {
                Some(d) => match tokio::time::timeout_at(d, next).await {
                    Ok(e) => e,
                    Err(_) => return,
                },
                None => {
                    tokio::select! {
                        e = next => e,
                        () = out.closed() => return,
                    }
                }
            };
            let Some(e) = e else { return };
            if crate::engine::events::matches(&e, &filters) && out.send(line(&e)).await.is_err() {
                return;
            }
        }
    });
    resp
}

/// Docker's event times: Unix seconds (with an optional fraction), or
/// RFC 3339. Returns nanoseconds.
pub(super) fn parse_event_time(v: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return t.timestamp_nanos_opt();
    }
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs: i64 = secs.parse().ok()?;
    let frac = format!("{frac:0<9}");
    let nanos: i64 = frac.get(..9)?.parse().ok()?;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}
