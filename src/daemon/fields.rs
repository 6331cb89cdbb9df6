//! A create request's fields that ketch does not act on. Docker's clients
//! send every field of `Config` and `HostConfig`, most at their zero
//! value; a field set to anything else that ketch would not honour is a
//! 400 naming it, before anything is made, rather than dropped.

use crate::engine::EngineError;
use serde_json::Value;

/// `HostConfig` fields ketch acts on (see `api::types::HostConfig`), and
/// those that need no action (`ConsoleSize`, advisory; `ContainerIDFile`,
/// the client's own).
const HOST_CONFIG_TAKEN: &[&str] = &[
    "Binds",
    "Memory",
    "MemorySwap",
    "NanoCpus",
    "CpuShares",
    "RestartPolicy",
    "AutoRemove",
    "PortBindings",
    "NetworkMode",
    "Mounts",
    "PublishAllPorts",
    "ReadonlyRootfs",
    "LogConfig",
    "Annotations",
    "PidsLimit",
    "CapAdd",
    "CapDrop",
    "Tmpfs",
    "GroupAdd",
    "Devices",
    "DeviceCgroupRules",
    "Init",
    "ShmSize",
    "VolumesFrom",
    "Links",
    "CpusetCpus",
    "CpusetMems",
    "MemorySwappiness",
    "PidMode",
    "IpcMode",
    "UTSMode",
    "CgroupnsMode",
    "ConsoleSize",
    "ContainerIDFile",
];

/// `Config` fields ketch acts on.
const CONFIG_TAKEN: &[&str] = &[
    "Hostname",
    "User",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "ExposedPorts",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "Env",
    "Cmd",
    "Healthcheck",
    "Image",
    "Volumes",
    "WorkingDir",
    "Entrypoint",
    "Labels",
    "StopSignal",
    "StopTimeout",
    "HostConfig",
    "NetworkingConfig",
];

/// `EndpointSettings` fields ketch acts on (`Aliases`, `Links`), and
/// those Docker shows in inspect, which a client may send back and which
/// Docker ignores in a request too.
const ENDPOINT_TAKEN: &[&str] = &[
    "Aliases",
    "Links",
    "NetworkID",
    "EndpointID",
    "Gateway",
    "IPAddress",
    "IPPrefixLen",
    "IPv6Gateway",
    "GlobalIPv6Address",
    "GlobalIPv6PrefixLen",
    "DNSNames",
];

/// `Mount` fields ketch acts on; `Consistency` is advisory, as on any
/// Linux host.
const MOUNT_TAKEN: &[&str] = &["Target", "Source", "Type", "ReadOnly", "Consistency"];

/// Is `v` the value a client sends for a field it leaves unset? An
/// object is when all its fields are.
fn unset(key: &str, v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => {
            n.as_i64() == Some(0)
                || n.as_f64() == Some(0.0)
                // The docker CLI's "unset" swappiness.
                || (key == "MemorySwappiness" && n.as_i64() == Some(-1))
        }
        Value::String(s) => s.is_empty() || (key == "Isolation" && s == "default"),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.iter().all(|(k, v)| unset(k, v)),
    }
}

/// `update` fields ketch acts on.
const UPDATE_TAKEN: &[&str] = &[
    "Memory",
    "MemorySwap",
    "NanoCpus",
    "CpuShares",
    "PidsLimit",
    "RestartPolicy",
];

/// The first field of an update body set to something ketch does not
/// honour.
pub fn check_update(body: &Value) -> Result<(), EngineError> {
    for (k, v) in body.as_object().into_iter().flatten() {
        if !UPDATE_TAKEN.contains(&k.as_str()) && !unset(k, v) {
            return Err(EngineError::InvalidArgument(format!(
                "{k} ({v}) cannot be updated by ketch: nothing was changed"
            )));
        }
    }
    Ok(())
}

/// The first field of `v` (an object at `at`) that is set to something
/// ketch does not honour: not in `taken` and not at its zero value.
fn first_unhonoured(v: &Value, taken: &[&str], at: &str) -> Option<(String, Value)> {
    v.as_object()?
        .iter()
        .find(|(k, v)| !taken.contains(&k.as_str()) && !unset(k, v))
        .map(|(k, v)| (format!("{at}.{k}"), v.clone()))
}

/// The first field of a create body set to something ketch does not honour.
pub fn check(body: &Value) -> Result<(), EngineError> {
    let hc = &body["HostConfig"];
    let mounts = hc["Mounts"].as_array().into_iter().flatten().enumerate();
    let endpoints = body["NetworkingConfig"]["EndpointsConfig"].as_object();
    let found = first_unhonoured(body, CONFIG_TAKEN, "Config")
        .or_else(|| first_unhonoured(hc, HOST_CONFIG_TAKEN, "HostConfig"))
        .or_else(|| {
            mounts.into_iter().find_map(|(i, m)| {
                first_unhonoured(m, MOUNT_TAKEN, &format!("HostConfig.Mounts[{i}]"))
            })
        })
        .or_else(|| {
            endpoints.into_iter().flatten().find_map(|(name, ep)| {
                let at = format!("NetworkingConfig.EndpointsConfig.{name}");
                first_unhonoured(ep, ENDPOINT_TAKEN, &at)
            })
        });
    match found {
        Some((field, v)) => Err(EngineError::InvalidArgument(format!(
            "{field} ({v}) is not supported by ketch: nothing was created"
        ))),
        None => Ok(()),
    }
}

/// The first field of a `network connect` body's `EndpointConfig` set to
/// something ketch does not honour.
pub fn check_connect(body: &Value) -> Result<(), EngineError> {
    match first_unhonoured(&body["EndpointConfig"], ENDPOINT_TAKEN, "EndpointConfig") {
        Some((field, v)) => Err(EngineError::InvalidArgument(format!(
            "{field} ({v}) is not supported by ketch: nothing was connected"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_values_pass_and_set_ones_are_named() {
        let cli = serde_json::json!({
            "Image": "busybox", "Domainname": "", "OnBuild": null,
            "HostConfig": {"Privileged": false, "MemorySwappiness": -1, "Dns": [],
                "CgroupnsMode": "", "ConsoleSize": [24, 80], "Isolation": "default",
                "Memory": 1048576, "ShmSize": 0}
        });
        assert!(check(&cli).is_ok());
        // What the docker CLI sends for a plain `--mount` and `--network`:
        // zero-valued options and endpoint settings pass.
        let cli = serde_json::json!({
            "HostConfig": {"Mounts": [{"Type": "volume", "Source": "v", "Target": "/v",
                "VolumeOptions": {"NoCopy": false, "Labels": null}, "Consistency": ""}]},
            "NetworkingConfig": {"EndpointsConfig": {"backend": {"Aliases": ["db"],
                "IPAMConfig": null, "Links": null, "MacAddress": "", "DriverOpts": null,
                "NetworkID": "", "IPAddress": "", "IPPrefixLen": 0}}}
        });
        assert!(check(&cli).is_ok(), "{:?}", check(&cli));
        let connect = serde_json::json!({"Container": "c", "EndpointConfig":
            {"IPAMConfig": {"IPv4Address": "172.30.0.9"}}});
        let e = check_connect(&connect).unwrap_err().to_string();
        assert!(e.contains("EndpointConfig.IPAMConfig"), "{e}");
        for (body, field) in [
            (
                serde_json::json!({"HostConfig": {"Privileged": true}}),
                "HostConfig.Privileged (true)",
            ),
            (
                serde_json::json!({"HostConfig": {"Dns": ["1.1.1.1"]}}),
                "HostConfig.Dns",
            ),
            (
                serde_json::json!({"HostConfig": {"BlkioWeight": 300}}),
                "HostConfig.BlkioWeight (300)",
            ),
            (
                serde_json::json!({"MacAddress": "02:42:ac:11:00:02"}),
                "Config.MacAddress",
            ),
            (
                serde_json::json!({"HostConfig": {"Mounts": [
                    {"Type": "bind", "Source": "/srv", "Target": "/srv"},
                    {"Type": "bind", "Source": "/a", "Target": "/a",
                        "BindOptions": {"Propagation": "rshared"}}]}}),
                "HostConfig.Mounts[1].BindOptions",
            ),
            (
                serde_json::json!({"NetworkingConfig": {"EndpointsConfig": {"backend": {
                    "Aliases": ["db"], "IPAMConfig": {"IPv4Address": "172.30.0.9"}}}}}),
                "NetworkingConfig.EndpointsConfig.backend.IPAMConfig",
            ),
            (
                serde_json::json!({"NetworkingConfig": {"EndpointsConfig": {"backend": {
                    "MacAddress": "02:42:ac:11:00:02"}}}}),
                "NetworkingConfig.EndpointsConfig.backend.MacAddress",
            ),
        ] {
            let e = check(&body).unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
    }
}
