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

/// Is `v` the value a client sends for a field it leaves unset?
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
        Value::Object(o) => o.is_empty(),
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

/// The first field of a create body set to something ketch does not honour.
pub fn check(body: &Value) -> Result<(), EngineError> {
    let refuse = |field: String, v: &Value| {
        Err(EngineError::InvalidArgument(format!(
            "{field} ({v}) is not supported by ketch: nothing was created"
        )))
    };
    let Some(top) = body.as_object() else {
        return Ok(());
    };
    for (k, v) in top {
        if !CONFIG_TAKEN.contains(&k.as_str()) && !unset(k, v) {
            return refuse(format!("Config.{k}"), v);
        }
    }
    if let Some(hc) = top.get("HostConfig").and_then(Value::as_object) {
        for (k, v) in hc {
            if !HOST_CONFIG_TAKEN.contains(&k.as_str()) && !unset(k, v) {
                return refuse(format!("HostConfig.{k}"), v);
            }
        }
    }
    Ok(())
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
        ] {
            let e = check(&body).unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
    }
}
