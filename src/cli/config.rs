//! The CLI's registry credentials: a Docker-style `config.json`
//! (`{"auths": {"host": {"auth": base64("user:pass")}}}`), mode 0600, in
//! `$KETCH_CONFIG` or `~/.ketch`.

use crate::image::registry::{normalize_server, Credentials};
use anyhow::Context;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

#[derive(Default, Serialize, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub auths: BTreeMap<String, AuthEntry>,
    /// Whatever else a Docker config carries is kept as it is.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Default, Serialize, Deserialize)]
pub struct AuthEntry {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth: String,
    #[serde(
        default,
        rename = "identitytoken",
        skip_serializing_if = "String::is_empty"
    )]
    pub identity_token: String,
}

pub fn path() -> PathBuf {
    let dir = std::env::var_os("KETCH_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ketch")))
        .unwrap_or_else(|| PathBuf::from(".ketch"));
    dir.join("config.json")
}

impl Config {
    pub fn load() -> anyhow::Result<Self> {
        let p = path();
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| format!("reading {}", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }

    /// Replace the file atomically; it holds secrets, so 0600 from birth.
    pub fn save(&self) -> anyhow::Result<()> {
        let p = path();
        let dir = p
            .parent()
            .with_context(|| format!("{} has no directory", p.display()))?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = dir.join(format!(".config.json.{}", std::process::id()));
        let data = serde_json::to_vec_pretty(self)?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &p)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            anyhow::Error::new(e).context(format!("writing {}", p.display()))
        })
    }

    /// The credentials stored for `server` (any spelling of it).
    pub fn credentials(&self, server: &str) -> Option<Credentials> {
        let key = normalize_server(server);
        let (_, e) = self
            .auths
            .iter()
            .find(|(k, _)| normalize_server(k) == key)?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&e.auth)
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (user, pass) = text.split_once(':')?;
        Some(Credentials {
            username: user.to_string(),
            password: pass.to_string(),
            server_address: key,
            identity_token: e.identity_token.clone(),
        })
    }

    pub fn set(&mut self, server: &str, c: &Credentials) {
        self.remove(server);
        self.auths.insert(
            normalize_server(server),
            AuthEntry {
                auth: base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", c.username, c.password)),
                identity_token: c.identity_token.clone(),
            },
        );
    }

    pub fn remove(&mut self, server: &str) -> bool {
        let key = normalize_server(server);
        let before = self.auths.len();
        self.auths.retain(|k, _| normalize_server(k) != key);
        before != self.auths.len()
    }
}

/// The `X-Registry-Auth` header value for an image's registry, if logged in.
pub fn registry_auth(image: &str) -> anyhow::Result<Option<String>> {
    let r = crate::model::ImageRef::parse(image).map_err(anyhow::Error::msg)?;
    Ok(Config::load()?
        .credentials(&r.domain)
        .map(|c| c.to_header()))
}
