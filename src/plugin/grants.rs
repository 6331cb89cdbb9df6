//! What a sandbox grants its plugin (deny by default), what a plugin image
//! declares it wants, and the limits every call runs under.

use super::PluginError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// The annotation (on the image manifest, or a label of its config) in
/// which a plugin image declares the grants it wants, as JSON
/// ([`Declared`]). The host reads it and may grant a subset; nothing is
/// granted because it is declared.
pub const GRANTS_ANNOTATION: &str = "io.ketch.plugin.grants";

/// Where a plugin's stdout or stderr goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// Dropped (the default).
    #[default]
    Discard,
    /// Kept, up to [`Limits::output`] bytes per call, and handed back in
    /// [`RunOutput`](super::RunOutput) / [`Invoked`](super::Invoked).
    Capture,
    /// Written to the host process's own stdout or stderr.
    Inherit,
}

/// One directory granted to the plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirGrant {
    pub host: PathBuf,
    pub guest: String,
    pub read_only: bool,
}

/// What the host gives a plugin: nothing unless named here.
#[derive(Clone, Debug, Default)]
pub struct Grants {
    pub(super) dirs: Vec<DirGrant>,
    pub(super) env: Vec<(String, String)>,
    pub(super) http: Vec<String>,
    pub(super) stdout: Output,
    pub(super) stderr: Output,
}

impl Grants {
    /// No files, no environment, no network, output discarded.
    pub fn new() -> Self {
        Grants::default()
    }

    /// Grant the host directory `host` at `guest`, read-only or not.
    pub fn dir(
        mut self,
        host: impl Into<PathBuf>,
        guest: impl Into<String>,
        read_only: bool,
    ) -> Self {
        self.dirs.push(DirGrant {
            host: host.into(),
            guest: guest.into(),
            read_only,
        });
        self
    }

    /// Set one environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Allow outgoing HTTP requests (wasi:http) to `host` (any port) or
    /// `host:port`; `*` allows every host and must be asked for.
    pub fn allow_http(mut self, host: impl Into<String>) -> Self {
        self.http.push(host.into());
        self
    }

    pub fn stdout(mut self, to: Output) -> Self {
        self.stdout = to;
        self
    }

    pub fn stderr(mut self, to: Output) -> Self {
        self.stderr = to;
        self
    }

    /// Checks the grants are within what the plugin declared, if it
    /// declared anything: a host may narrow a plugin's wishes, never widen
    /// them.
    pub(super) fn check_within(
        &self,
        plugin: &str,
        declared: Option<&Declared>,
    ) -> Result<(), PluginError> {
        let refuse = |reason: String| PluginError::Grant {
            plugin: plugin.to_string(),
            reason,
        };
        for d in &self.dirs {
            if !d.guest.starts_with('/') {
                return Err(refuse(format!(
                    "the guest path {:?} of directory {} is not absolute",
                    d.guest,
                    d.host.display()
                )));
            }
        }
        let Some(declared) = declared else {
            return Ok(());
        };
        let undeclared = |what: String| {
            refuse(format!(
                "{what} is not among the grants the plugin declares ({GRANTS_ANNOTATION})"
            ))
        };
        for d in &self.dirs {
            let ok = declared
                .dirs
                .iter()
                .any(|w| w.guest == d.guest && (d.read_only || !w.read_only));
            if !ok {
                let mode = if d.read_only {
                    "read-only"
                } else {
                    "read-write"
                };
                return Err(undeclared(format!("directory {} ({mode})", d.guest)));
            }
        }
        for (k, _) in &self.env {
            if !declared.env.iter().any(|w| w == k) {
                return Err(undeclared(format!("environment variable {k}")));
            }
        }
        for h in &self.http {
            if !declared.http.iter().any(|w| w == h || w == "*") {
                return Err(undeclared(format!("HTTP host {h}")));
            }
        }
        Ok(())
    }
}

/// The grants a plugin image declares it wants ([`GRANTS_ANNOTATION`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declared {
    /// Guest paths, each read-only or not.
    #[serde(default)]
    pub dirs: Vec<DeclaredDir>,
    /// Environment variable names.
    #[serde(default)]
    pub env: Vec<String>,
    /// HTTP hosts (`host` or `host:port`).
    #[serde(default)]
    pub http: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredDir {
    pub guest: String,
    #[serde(default)]
    pub read_only: bool,
}

impl Declared {
    pub(super) fn parse(plugin: &str, json: &str) -> Result<Self, PluginError> {
        serde_json::from_str(json).map_err(|e| {
            PluginError::invalid(
                plugin,
                format!("its {GRANTS_ANNOTATION} annotation is not valid: {e}"),
            )
        })
    }
}

/// Whether a call gets a fresh instance or reuses one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reuse {
    /// A fresh instance per call: nothing a call leaves behind reaches the
    /// next (the default).
    #[default]
    Fresh,
    /// Instances are kept between calls (one per concurrent caller) and
    /// dropped after a call that fails.
    Keep,
}

/// The memory a plugin instance may hold without [`Limits::memory`].
pub const DEFAULT_MEMORY: u64 = 64 << 20;
/// A call's deadline without [`Limits::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest [`Limits::timeout`].
pub const MAX_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// Output captured per stream and call without [`Limits::output`].
pub const DEFAULT_OUTPUT: usize = 1 << 20;

/// The limits every call runs under. Each has a default: no plugin runs
/// unbounded.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub(super) memory: u64,
    pub(super) timeout: Duration,
    pub(super) fuel: Option<u64>,
    pub(super) output: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: DEFAULT_MEMORY,
            timeout: DEFAULT_TIMEOUT,
            fuel: None,
            output: DEFAULT_OUTPUT,
        }
    }
}

impl Limits {
    pub fn new() -> Self {
        Limits::default()
    }

    /// Bytes of linear memory and tables one instance may hold.
    pub fn memory(mut self, bytes: u64) -> Self {
        self.memory = bytes;
        self
    }

    /// How long one call may run, in host calls or pure computation alike.
    /// Held to [`MAX_TIMEOUT`] (a century: `Duration::MAX` asks for no
    /// practical limit); the deadline is checked every millisecond, so a
    /// call runs at least that long.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d.min(MAX_TIMEOUT);
        self
    }

    /// Fuel (roughly, Wasm instructions) one call may use.
    pub fn fuel(mut self, units: u64) -> Self {
        self.fuel = Some(units);
        self
    }

    /// Bytes of captured stdout (and of stderr) one call may write.
    pub fn output(mut self, bytes: usize) -> Self {
        self.output = bytes;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_must_be_within_what_the_plugin_declares() {
        let declared = Declared::parse(
            "p",
            r#"{"dirs":[{"guest":"/data","read_only":true},{"guest":"/out"}],"env":["LANG"],"http":["api.example.com"]}"#,
        )
        .unwrap();
        let ok = Grants::new()
            .dir("/tmp", "/data", true)
            .dir("/tmp", "/out", false)
            .env("LANG", "C")
            .allow_http("api.example.com");
        ok.check_within("p", Some(&declared)).unwrap();
        for (bad, says) in [
            (
                Grants::new().dir("/tmp", "/data", false),
                "directory /data (read-write)",
            ),
            (Grants::new().dir("/", "/etc", true), "directory /etc"),
            (Grants::new().env("HOME", "/"), "environment variable HOME"),
            (Grants::new().allow_http("*"), "HTTP host *"),
        ] {
            let e = bad
                .check_within("p", Some(&declared))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says) && e.contains(GRANTS_ANNOTATION), "{e}");
        }
        // Without a declaration the host decides alone.
        Grants::new()
            .dir("/", "/etc", true)
            .check_within("p", None)
            .unwrap();
        let e = Grants::new()
            .dir("/", "etc", true)
            .check_within("p", None)
            .unwrap_err();
        assert!(e.to_string().contains("not absolute"), "{e}");
        let e = Declared::parse("p", r#"{"dirs":[],"net":["*"]}"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("plugin p: its io.ketch.plugin.grants"),
            "{e}"
        );
    }
}
