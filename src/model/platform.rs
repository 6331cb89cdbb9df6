//! Which runtime runs a container: [`RuntimeKind`], recorded as the
//! container's [`Platform`] (`wasi/wasm`, or `linux/<arch>` as the image
//! names it), the strings Docker clients see in `inspect`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The two kinds of container ketch runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuntimeKind {
    /// A WebAssembly module or component, an instance inside ketchd.
    Wasm,
    /// An OCI root filesystem in namespaces, under a monitor process.
    Linux,
}

impl RuntimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Wasm => "wasm",
            RuntimeKind::Linux => "linux",
        }
    }
}

impl fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A container's platform: its runtime kind and, for Linux, the image's
/// architecture. Serialised as `os/arch`, as records always stored it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Platform {
    Wasm,
    Linux {
        arch: String,
    },
    /// A platform this ketch does not know (a record from a newer one):
    /// kept as written, and refused by every backend.
    Other(String),
}

impl Platform {
    pub const WASM: &'static str = "wasi/wasm";

    pub fn linux(arch: &str) -> Self {
        Platform::Linux {
            arch: arch.to_string(),
        }
    }

    pub fn kind(&self) -> Option<RuntimeKind> {
        match self {
            Platform::Wasm => Some(RuntimeKind::Wasm),
            Platform::Linux { .. } => Some(RuntimeKind::Linux),
            Platform::Other(_) => None,
        }
    }

    pub fn is(&self, kind: RuntimeKind) -> bool {
        self.kind() == Some(kind)
    }
}

impl From<String> for Platform {
    fn from(s: String) -> Self {
        if s == Platform::WASM {
            return Platform::Wasm;
        }
        match s.strip_prefix("linux/") {
            Some(arch) => Platform::linux(arch),
            None => Platform::Other(s),
        }
    }
}

impl From<Platform> for String {
    fn from(p: Platform) -> String {
        p.to_string()
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Platform::Wasm => f.write_str(Platform::WASM),
            Platform::Linux { arch } => write!(f, "linux/{arch}"),
            Platform::Other(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_keep_the_strings_records_always_had() {
        for s in ["wasi/wasm", "linux/amd64", "linux/arm64", "plan9/386"] {
            let p = Platform::from(s.to_string());
            assert_eq!(p.to_string(), s);
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<Platform>(&json).unwrap(), p);
        }
        assert_eq!(
            Platform::from("wasi/wasm".to_string()).kind(),
            Some(RuntimeKind::Wasm)
        );
        assert!(Platform::from("linux/amd64".to_string()).is(RuntimeKind::Linux));
        assert_eq!(Platform::from("plan9/386".to_string()).kind(), None);
    }
}
