//! Default locations: `/var/lib/ketch` and `/run/ketch/ketch.sock` for
//! root, the XDG data and runtime dirs otherwise (on Windows, data goes
//! to `%LOCALAPPDATA%\ketch`, and there is no socket).

use std::path::PathBuf;

fn is_root() -> bool {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }
    #[cfg(not(unix))]
    {
        false
    }
}

pub fn default_data_root() -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/lib/ketch");
    }
    #[cfg(windows)]
    if let Some(d) = std::env::var_os("LOCALAPPDATA").filter(|v| !v.is_empty()) {
        return PathBuf::from(d).join("ketch");
    }
    match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d).join("ketch"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
            .join(".local/share/ketch"),
    }
}

#[cfg(unix)]
pub fn default_socket() -> PathBuf {
    if is_root() {
        return PathBuf::from("/run/ketch/ketch.sock");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d).join("ketch/ketch.sock"),
        // SAFETY: getuid has no preconditions and cannot fail.
        None => PathBuf::from(format!("/tmp/ketch-{}/ketch.sock", unsafe {
            libc::getuid()
        })),
    }
}

/// A `-H`/`KETCH_HOST` value ketch cannot connect to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("invalid host {0:?}: no socket path")]
    NoSocketPath(String),
    #[error("unsupported host {0:?}: ketch speaks over unix sockets (unix:///path)")]
    Unsupported(String),
}

/// `unix:///path` or a bare path to a socket path.
pub fn parse_host(host: &str) -> Result<PathBuf, HostError> {
    if let Some(p) = host.strip_prefix("unix://") {
        if p.is_empty() {
            return Err(HostError::NoSocketPath(host.to_string()));
        }
        return Ok(PathBuf::from(p));
    }
    if host.starts_with('/') {
        return Ok(PathBuf::from(host));
    }
    Err(HostError::Unsupported(host.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(
            parse_host("unix:///run/k.sock"),
            Ok(PathBuf::from("/run/k.sock"))
        );
        assert_eq!(parse_host("/run/k.sock"), Ok(PathBuf::from("/run/k.sock")));
        assert!(parse_host("unix://").is_err());
        assert!(parse_host("tcp://127.0.0.1:2375").is_err());
    }
}
