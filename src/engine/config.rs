//! The pure part of a create request: image defaults merged under the
//! request, host-config validation, ports, HTTP options and directory
//! grants, each parsed in one place.

use super::volumes;
use super::EngineError;
use crate::api::types::{ContainerConfig, HealthConfig, HostConfig, LogConfig};
use crate::fsutil;
use crate::image::Image;
use crate::model::net::NetOptions;
use crate::model::{ports, HttpOptions, PortMapping, Proto, RestartPolicy};
use crate::runtime::Grant;
use std::path::PathBuf;

pub(super) fn validate_host_config(
    hc: &HostConfig,
    volumes: &volumes::Volumes,
) -> Result<(), EngineError> {
    if hc.memory < 0 {
        return Err(EngineError::InvalidArgument(format!(
            "invalid memory limit {}",
            hc.memory
        )));
    }
    if hc.memory > 0 && hc.memory < 64 * 1024 {
        return Err(EngineError::InvalidArgument(
            "minimum memory limit allowed is 64KiB (one Wasm page)".into(),
        ));
    }
    let policy = RestartPolicy::from_api(
        &hc.restart_policy.name,
        hc.restart_policy.maximum_retry_count,
    )?;
    if hc.auto_remove && policy != RestartPolicy::No {
        return Err(EngineError::InvalidArgument(
            "conflicting options: cannot specify both --restart and --rm".into(),
        ));
    }
    if hc.restart_policy.maximum_retry_count != 0
        && !matches!(policy, RestartPolicy::OnFailure { .. })
    {
        return Err(EngineError::InvalidArgument(
            "maximum retry count cannot be used with restart policy other than on-failure".into(),
        ));
    }
    grants(hc, volumes)?;
    http_options(hc)?;
    net_options(hc)?;
    Ok(())
}

/// The ports a container asks for: `PortBindings`, plus its exposed ports
/// with `PublishAllPorts`.
pub fn port_mappings(
    cfg: &ContainerConfig,
    hc: &HostConfig,
) -> Result<Vec<PortMapping>, EngineError> {
    let bindings = hc
        .port_bindings
        .iter()
        .flatten()
        .map(|(k, v)| {
            let list = v
                .iter()
                .flatten()
                .map(|b| (b.host_ip.clone(), b.host_port.clone()))
                .collect();
            (k.clone(), list)
        })
        .collect();
    Ok(ports::from_api(
        &bindings,
        &exposed_ports(cfg)?,
        hc.publish_all_ports,
    )?)
}

/// `Config.ExposedPorts` (`EXPOSE` merged with the request).
pub(super) fn exposed_ports(cfg: &ContainerConfig) -> Result<Vec<(u16, Proto)>, EngineError> {
    cfg.exposed_ports
        .iter()
        .flatten()
        .map(|(k, _)| Ok(ports::parse_port_key(k)?))
        .collect()
}

pub(super) fn http_options(hc: &HostConfig) -> Result<HttpOptions, EngineError> {
    Ok(crate::api::annotations::http_options(
        &hc.annotations.clone().unwrap_or_default(),
    )?)
}

pub(super) fn net_options(hc: &HostConfig) -> Result<NetOptions, EngineError> {
    Ok(crate::api::annotations::net_options(
        &hc.annotations.clone().unwrap_or_default(),
    )?)
}

/// `-v host:guest[:ro]`, `-v volume:guest[:ro]` and `--mount
/// type=bind|volume` into directory grants. Host paths must be absolute
/// existing directories; volumes exist by now (made at create).
pub(crate) fn grants(
    hc: &HostConfig,
    volumes: &volumes::Volumes,
) -> Result<Vec<Grant>, EngineError> {
    let mut out = Vec::new();
    for b in hc.binds.iter().flatten() {
        let parts: Vec<&str> = b.split(':').collect();
        let (host, guest, mode) = match parts.as_slice() {
            [h, g] => (*h, *g, ""),
            [h, g, m] => (*h, *g, *m),
            _ => {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid volume specification: {b:?}"
                )))
            }
        };
        let read_only = match mode {
            "" | "rw" => false,
            "ro" => true,
            m if m.split(',').all(|x| matches!(x, "ro" | "rw" | "z" | "Z")) => {
                m.split(',').any(|x| x == "ro")
            }
            m => {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid volume mode {m:?} in {b:?}"
                )))
            }
        };
        out.push(grant(&source_path(host, volumes)?, guest, read_only)?);
    }
    for m in hc.mounts.iter().flatten() {
        if m.kind != "bind" && m.kind != "volume" {
            return Err(EngineError::InvalidArgument(format!(
                "mount type {:?} for {} is not supported yet: use a bind mount or a volume",
                m.kind, m.target
            )));
        }
        out.push(grant(
            &source_path(&m.source, volumes)?,
            &m.target,
            m.read_only,
        )?);
    }
    Ok(out)
}

/// A bind source: a host path, or the data directory of a named volume.
fn source_path(source: &str, volumes: &volumes::Volumes) -> Result<String, EngineError> {
    match volumes::named(source) {
        Some(name) => Ok(volumes.data_path(name)?.display().to_string()),
        None => Ok(source.to_string()),
    }
}

fn grant(host: &str, guest: &str, read_only: bool) -> Result<Grant, EngineError> {
    if !host.starts_with('/') {
        return Err(EngineError::InvalidArgument(format!("invalid volume {host}:{guest}: named volumes are not supported yet, give an absolute host path")));
    }
    if !guest.starts_with('/') {
        return Err(EngineError::InvalidArgument(format!(
            "invalid volume {host}:{guest}: the container path must be absolute"
        )));
    }
    let meta = std::fs::metadata(host)
        .map_err(|e| EngineError::InvalidArgument(format!("invalid volume {host}:{guest}: {e}")))?;
    if !meta.is_dir() {
        return Err(EngineError::InvalidArgument(format!(
            "invalid volume {host}:{guest}: a Wasm container can only be granted directories"
        )));
    }
    Ok(Grant {
        host: PathBuf::from(host),
        guest: fsutil::clean_abs(guest),
        read_only,
    })
}

pub(crate) fn parse_env(env: &[String]) -> Vec<(String, String)> {
    env.iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// Image config defaults under the create request, as Docker merges them.
pub(super) fn merge_config(img: &Image, mut req: ContainerConfig) -> ContainerConfig {
    let ic = img.config.config().clone().unwrap_or_default();
    let mut env: Vec<String> = ic.env().clone().unwrap_or_default();
    for kv in req.env.take().unwrap_or_default() {
        let key = kv.split('=').next().unwrap_or("").to_string();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    }
    req.env = Some(env);
    match &req.entrypoint {
        Some(e) => {
            if e.len() == 1 && e[0].is_empty() {
                req.entrypoint = None;
            }
        }
        None => {
            req.entrypoint = ic.entrypoint().clone();
            if req.cmd.is_none() {
                req.cmd = ic.cmd().clone();
            }
        }
    }
    if req.working_dir.is_empty() {
        req.working_dir = ic.working_dir().clone().unwrap_or_default();
    }
    if req.user.is_empty() {
        req.user = ic.user().clone().unwrap_or_default();
    }
    let mut labels: std::collections::BTreeMap<String, String> = ic
        .labels()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.extend(req.labels.take().unwrap_or_default());
    req.labels = Some(labels);
    // Exposed ports are the union of the image's and the request's, as Docker.
    if let Some(p) = ic.exposed_ports() {
        let set = req.exposed_ports.get_or_insert_with(Default::default);
        for k in p {
            set.entry(k.clone())
                .or_insert_with(|| serde_json::json!({}));
        }
    }
    if req.stop_signal.is_none() {
        req.stop_signal = ic.stop_signal().clone();
    }
    // The request's health check over the image's, field by field: an
    // empty test or a zero duration takes the image's.
    if let Some(image) = &img.healthcheck {
        let hc = req.healthcheck.get_or_insert_with(Default::default);
        if hc.test.is_empty() {
            hc.test = image.test.clone();
        }
        for (mine, theirs) in [
            (&mut hc.interval, image.interval),
            (&mut hc.timeout, image.timeout),
            (&mut hc.start_period, image.start_period),
            (&mut hc.start_interval, image.start_interval),
            (&mut hc.retries, image.retries),
        ] {
            if *mine == 0 {
                *mine = theirs;
            }
        }
    }
    req
}

/// Options the daemon gives every json-file log (ketchd `--log-opt`), set
/// once at start.
static LOG_DEFAULTS: std::sync::OnceLock<std::collections::BTreeMap<String, String>> =
    std::sync::OnceLock::new();

/// ketchd's own defaults for json-file logs: bounded, as `local`'s are.
pub const LOG_DEFAULT_OPTS: [(&str, &str); 2] = [("max-size", "20m"), ("max-file", "5")];

/// Set the daemon's json-file options (ketchd `--log-opt`, over
/// [`LOG_DEFAULT_OPTS`]); they are checked as a container's would be.
pub fn set_log_defaults(opts: &[(String, String)]) -> Result<(), EngineError> {
    let mut all: std::collections::BTreeMap<String, String> = LOG_DEFAULT_OPTS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.extend(opts.iter().cloned());
    log_settings(&LogConfig {
        kind: "json-file".into(),
        config: all.clone(),
    })?;
    let _ = LOG_DEFAULTS.set(all);
    Ok(())
}

/// `HostConfig.LogConfig` made whole, as Docker's daemon does: json-file
/// when no driver is named, the daemon's options under the request's for
/// json-file; then checked.
pub(super) fn complete_log_config(lc: &mut LogConfig) -> Result<(), EngineError> {
    if lc.kind.is_empty() {
        lc.kind = "json-file".into();
    }
    if lc.kind == "json-file" {
        let defaults = LOG_DEFAULTS.get_or_init(|| {
            LOG_DEFAULT_OPTS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        });
        for (k, v) in defaults {
            lc.config.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    log_settings(lc).map(|_| ())
}

/// What a log configuration means for the log: `json-file` and `local`
/// (both stored as json lines, rotated at `max-size` into `max-file`
/// files; `local` by default at 20m and 5) and `none`. Anything else is
/// refused with Docker's words.
pub(crate) fn log_settings(lc: &LogConfig) -> Result<super::logs::LogSettings, EngineError> {
    use super::logs::{LogSettings, Rotation};
    let bad = |m: String| Err(EngineError::InvalidArgument(m));
    let invalid = |m: String| EngineError::InvalidArgument(m);
    let driver = if lc.kind.is_empty() {
        "json-file"
    } else {
        lc.kind.as_str()
    };
    let (mut max_size, mut max_files) = match driver {
        "json-file" => (0, 1),
        "local" => (20 << 20, 5),
        "none" => {
            if let Some(k) = lc.config.keys().next() {
                return bad(format!("unknown log opt '{k}' for none log driver"));
            }
            return Ok(LogSettings {
                rotation: Rotation::default(),
                stored: false,
            });
        }
        other => {
            return bad(format!(
                "logger: no log driver named '{other}' is registered"
            ))
        }
    };
    for (k, v) in &lc.config {
        match k.as_str() {
            "max-size" if v == "-1" => max_size = 0,
            "max-size" => {
                max_size = crate::model::units::parse_size(v)
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| invalid(format!("invalid max-size {v:?} for {driver} log driver: max-size must be a positive size")))?
            }
            "max-file" => {
                max_files = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| invalid(format!("invalid max-file {v:?} for {driver} log driver: max-file cannot be less than 1")))?
            }
            "compress" if v == "false" => {}
            "compress" => {
                return bad(format!(
                    "log opt 'compress={v}' for {driver} log driver is not supported: rotated files are kept uncompressed"
                ))
            }
            "mode" if v == "blocking" => {}
            "mode" => {
                return bad(format!(
                    "log opt 'mode={v}' is not supported: output is written as it comes (blocking)"
                ))
            }
            other => return bad(format!("unknown log opt '{other}' for {driver} log driver")),
        }
    }
    Ok(LogSettings {
        rotation: Rotation {
            max_size,
            max_files,
        },
        stored: true,
    })
}

/// A health check's values, as Docker checks them at create.
pub(super) fn validate_healthcheck(hc: &HealthConfig) -> Result<(), EngineError> {
    let bad = |m: String| Err(EngineError::InvalidArgument(m));
    match hc.test.first().map(String::as_str) {
        None | Some("NONE") | Some("CMD") | Some("CMD-SHELL") => {}
        Some(other) => {
            return bad(format!(
                "Healthcheck.Test: unknown type {other:?} (NONE, CMD or CMD-SHELL)"
            ))
        }
    }
    if matches!(
        hc.test.first().map(String::as_str),
        Some("CMD") | Some("CMD-SHELL")
    ) && hc.test.get(1).is_none_or(|c| c.trim().is_empty())
    {
        return bad("Healthcheck.Test: no command to run".into());
    }
    for (field, ns) in [
        ("Interval", hc.interval),
        ("Timeout", hc.timeout),
        ("StartPeriod", hc.start_period),
        ("StartInterval", hc.start_interval),
    ] {
        if ns != 0 && ns < 1_000_000 {
            return bad(format!("{field} in Healthcheck cannot be less than 1ms"));
        }
    }
    if hc.retries < 0 {
        return bad("Retries in Healthcheck cannot be negative".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volumes() -> (tempdir::Dir, volumes::Volumes) {
        let d = tempdir::Dir::new();
        let v = volumes::Volumes::open(&d.0.join("volumes")).unwrap();
        (d, v)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                let p =
                    std::env::temp_dir().join(format!("ketch-config-{}", rand::random::<u64>()));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn entry_paths_are_absolute_and_clean() {
        use crate::fsutil::entry_path;
        assert_eq!(entry_path("/app/run.wasm", "/w"), "/app/run.wasm");
        assert_eq!(entry_path("run.wasm", "/w"), "/w/run.wasm");
        assert_eq!(entry_path("run.wasm", ""), "/run.wasm");
        assert_eq!(entry_path("../../x", "/a/b"), "/x");
    }

    #[test]
    fn env_without_a_value_is_dropped_and_values_keep_their_equals() {
        let env = ["A=1".to_string(), "B".into(), "C=x=y".into()];
        assert_eq!(
            parse_env(&env),
            vec![("A".into(), "1".into()), ("C".into(), "x=y".into())]
        );
    }

    #[test]
    fn host_configs_are_refused_with_dockers_reasons() {
        let (_d, v) = volumes();
        let mut hc = HostConfig::default();
        assert!(validate_host_config(&hc, &v).is_ok());
        hc.memory = 1000;
        let e = validate_host_config(&hc, &v).unwrap_err().to_string();
        assert!(e.contains("minimum memory limit"), "{e}");
        hc.memory = 0;
        hc.auto_remove = true;
        hc.restart_policy.name = "always".into();
        let e = validate_host_config(&hc, &v).unwrap_err().to_string();
        assert!(e.contains("cannot specify both --restart and --rm"), "{e}");
        hc.auto_remove = false;
        hc.restart_policy.maximum_retry_count = 3;
        let e = validate_host_config(&hc, &v).unwrap_err().to_string();
        assert!(e.contains("maximum retry count"), "{e}");
        hc.restart_policy.name = "sometimes".into();
        let e = validate_host_config(&hc, &v).unwrap_err().to_string();
        assert!(e.contains("invalid restart policy"), "{e}");
    }

    #[test]
    fn log_drivers_and_their_options_as_docker_names_them() {
        let lc = |kind: &str, opts: &[(&str, &str)]| LogConfig {
            kind: kind.into(),
            config: opts
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let s = log_settings(&lc("json-file", &[("max-size", "10k"), ("max-file", "3")])).unwrap();
        assert_eq!(
            (s.rotation.max_size, s.rotation.max_files, s.stored),
            (10 << 10, 3, true)
        );
        let s = log_settings(&lc("local", &[])).unwrap();
        assert_eq!((s.rotation.max_size, s.rotation.max_files), (20 << 20, 5));
        let s = log_settings(&lc("json-file", &[("max-size", "-1")])).unwrap();
        assert_eq!(s.rotation.max_size, 0);
        assert!(!log_settings(&lc("none", &[])).unwrap().stored);
        for (l, why) in [
            (
                lc("syslog", &[]),
                "no log driver named 'syslog' is registered",
            ),
            (
                lc("json-file", &[("max-size", "lots")]),
                "invalid max-size \"lots\"",
            ),
            (
                lc("json-file", &[("max-file", "0")]),
                "max-file cannot be less than 1",
            ),
            (
                lc("json-file", &[("labels", "a")]),
                "unknown log opt 'labels' for json-file",
            ),
            (
                lc("none", &[("max-size", "1m")]),
                "unknown log opt 'max-size' for none",
            ),
            (lc("local", &[("compress", "true")]), "not supported"),
        ] {
            let e = log_settings(&l).unwrap_err().to_string();
            assert!(e.contains(why), "{l:?}: {e}");
        }
        // An empty request gets the driver and the daemon's bounds.
        let mut l = lc("", &[("max-file", "2")]);
        complete_log_config(&mut l).unwrap();
        assert_eq!(l.kind, "json-file");
        assert_eq!(l.config.get("max-file").map(String::as_str), Some("2"));
        assert!(l.config.contains_key("max-size"));
    }

    #[test]
    fn binds_become_grants_and_bad_ones_are_named() {
        let (d, v) = volumes();
        let host = d.0.display().to_string();
        let mut hc = HostConfig {
            binds: Some(vec![format!("{host}:/data:ro"), format!("{host}:/rw")]),
            ..Default::default()
        };
        let g = grants(&hc, &v).unwrap();
        assert_eq!((g[0].guest.as_str(), g[0].read_only), ("/data", true));
        assert_eq!((g[1].guest.as_str(), g[1].read_only), ("/rw", false));
        for (bad, why) in [
            (format!("{host}:/x:rx"), "invalid volume mode"),
            (format!("{host}:rel"), "must be absolute"),
            ("/no/such/dir/anywhere:/x".to_string(), "invalid volume"),
            (format!("{host}/a:b:c:d"), "invalid volume specification"),
        ] {
            hc.binds = Some(vec![bad.clone()]);
            let e = grants(&hc, &v).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
