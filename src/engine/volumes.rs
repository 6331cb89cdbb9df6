//! Named volumes: directories under `<root>/volumes/<name>/_data` that
//! outlive the containers using them, granted to Wasm containers and bind
//! mounted into Linux ones. `volume.json` beside `_data` holds the
//! metadata, replaced atomically.

use super::{Engine, EngineError};
use crate::fsutil;
use crate::model::{ids, ContainerId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const META: &str = "volume.json";
const DATA: &str = "_data";

/// As `GET /volumes/{name}` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub mountpoint: String,
    pub created_at: DateTime<Utc>,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub scope: String,
    /// Made for `-v /path` without a name; `volume prune` removes these.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
}

pub struct Volumes {
    root: PathBuf,
}

fn invalid_name(name: &str) -> EngineError {
    EngineError::InvalidArgument(format!(
        "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed"
    ))
}

impl Volumes {
    pub fn open(root: &Path) -> Result<Self, EngineError> {
        std::fs::create_dir_all(root).map_err(EngineError::io(root))?;
        Ok(Volumes {
            root: root.to_path_buf(),
        })
    }

    /// The directory a volume's data lives in (whether or not it exists).
    pub fn data_path(&self, name: &str) -> Result<PathBuf, EngineError> {
        if !ids::valid_container_name(name) {
            return Err(invalid_name(name));
        }
        Ok(self.root.join(name).join(DATA))
    }

    pub fn get(&self, name: &str) -> Result<Volume, EngineError> {
        if !ids::valid_container_name(name) {
            return Err(EngineError::NotFound(format!("get {name}: no such volume")));
        }
        let p = self.root.join(name).join(META);
        std::fs::read(&p)
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .ok_or_else(|| EngineError::NotFound(format!("get {name}: no such volume")))
    }

    /// Create a volume, or return it if it exists (as Docker does).
    pub fn create(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
        anonymous: bool,
    ) -> Result<Volume, EngineError> {
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => ContainerId::random().to_string(),
        };
        if let Ok(v) = self.get(&name) {
            return Ok(v);
        }
        let data = self.data_path(&name)?;
        std::fs::create_dir_all(&data).map_err(EngineError::io(&data))?;
        let v = Volume {
            name: name.clone(),
            driver: "local".into(),
            mountpoint: data.display().to_string(),
            created_at: Utc::now(),
            labels,
            options: BTreeMap::new(),
            scope: "local".into(),
            anonymous,
        };
        let meta = self.root.join(&name).join(META);
        fsutil::write_atomic(
            &meta,
            &serde_json::to_vec_pretty(&v)
                .map_err(|e| EngineError::io(&meta)(std::io::Error::other(e)))?,
        )
        .map_err(EngineError::io(&meta))?;
        Ok(v)
    }

    pub fn list(&self) -> Vec<Volume> {
        let mut out: Vec<Volume> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| self.get(&e.file_name().to_string_lossy()).ok())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Delete a volume and its data. Returns the bytes freed.
    fn delete(&self, name: &str) -> Result<u64, EngineError> {
        let dir = self.root.join(name);
        let size = dir_size(&dir);
        // Rename first, so a crash mid-delete leaves no half volume.
        let tomb = self.root.join(format!(".removing-{name}"));
        std::fs::rename(&dir, &tomb).map_err(EngineError::io(&dir))?;
        let _ = std::fs::remove_dir_all(&tomb);
        Ok(size)
    }
}

fn dir_size(p: &Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    std::fs::read_dir(p)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| dir_size(&e.path()))
        .sum()
}

/// The volume name a bind source refers to, if it is not a host path.
/// Bytes of the regular files under `dir`, symlinks not followed, at most
/// a million entries.
#[cfg(target_os = "linux")]
fn tree_size(dir: &Path) -> u64 {
    const MAX_ENTRIES: usize = 1_000_000;
    let Ok(root) = crate::confine::Root::open(dir) else {
        return 0;
    };
    let (mut size, mut seen) = (0u64, 0usize);
    let _ = crate::confine::Root::walk(root.fd(), &mut |_, node, st| {
        seen += 1;
        if matches!(node, crate::confine::Node::File(_)) {
            size += st.st_size as u64;
        }
        Ok(seen < MAX_ENTRIES)
    });
    size
}

/// Where there is no [`crate::confine::Root`]: sizes are not counted.
#[cfg(not(target_os = "linux"))]
fn tree_size(_dir: &Path) -> u64 {
    0
}

pub fn named(source: &str) -> Option<&str> {
    (!source.is_empty() && !source.starts_with('/')).then_some(source)
}

impl Engine {
    /// `POST /volumes/create` (an existing name is answered as it is, as
    /// Docker does); the create event is emitted only for a new volume.
    pub async fn volume_create(
        self: &std::sync::Arc<Self>,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
        anonymous: bool,
    ) -> Result<Volume, EngineError> {
        let name = name.map(str::to_string);
        self.off_runtime("creating a volume", move |e| {
            e.volume_create_now(name.as_deref(), labels, anonymous)
        })
        .await
    }

    pub(super) fn volume_create_now(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
        anonymous: bool,
    ) -> Result<Volume, EngineError> {
        let existed = name.is_some_and(|n| self.volumes.get(n).is_ok());
        let v = self.volumes.create(name, labels, anonymous)?;
        if !existed {
            self.events
                .emit("volume", "create", &v.name, &[("driver", "local")]);
        }
        Ok(v)
    }

    /// Containers whose binds or mounts name this volume.
    /// Does any container use the volume `name`?
    pub fn volume_in_use(&self, name: &str) -> bool {
        !self.volume_users(name).is_empty()
    }

    fn volume_users(&self, name: &str) -> Vec<String> {
        self.list()
            .into_iter()
            .map(|c| c.record())
            .filter(|r| {
                let hc = &r.host_config;
                hc.binds
                    .iter()
                    .flatten()
                    .any(|b| b.split(':').next() == Some(name))
                    || hc.mounts.iter().flatten().any(|m| m.source == name)
            })
            .map(|r| r.id.to_string())
            .collect()
    }

    /// `system df`: each volume with the bytes of its files and how many
    /// containers use it. Walked by descriptor, at most a million entries
    /// a volume (a larger one counts what those hold).
    pub async fn volume_usage(
        self: &std::sync::Arc<Self>,
    ) -> Result<Vec<(Volume, u64, usize)>, EngineError> {
        self.off_runtime("sizing volumes", |e| {
            Ok(e.volumes
                .list()
                .into_iter()
                .map(|v| {
                    let size = e.volumes.data_path(&v.name).map_or(0, |p| tree_size(&p));
                    let users = e.volume_users(&v.name).len();
                    (v, size, users)
                })
                .collect())
        })
        .await
    }

    /// `DELETE /volumes/{name}`.
    pub async fn volume_remove(
        self: &std::sync::Arc<Self>,
        name: &str,
        force: bool,
    ) -> Result<(), EngineError> {
        let name = name.to_string();
        self.off_runtime("removing a volume", move |e| {
            e.volume_remove_now(&name, force)
        })
        .await
    }

    fn volume_remove_now(&self, name: &str, force: bool) -> Result<(), EngineError> {
        match self.volumes.get(name) {
            Ok(_) => {}
            Err(_) if force => return Ok(()),
            Err(e) => return Err(e),
        }
        let users = self.volume_users(name);
        if !users.is_empty() {
            return Err(EngineError::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        self.volumes.delete(name)?;
        self.events
            .emit("volume", "destroy", name, &[("driver", "local")]);
        Ok(())
    }

    /// `POST /volumes/prune`: unused volumes (anonymous ones only, unless
    /// `all`). Returns the names removed and the bytes freed.
    pub async fn volume_prune(
        self: &std::sync::Arc<Self>,
        all: bool,
        keep: super::PruneFilter,
    ) -> Result<(Vec<String>, u64), EngineError> {
        self.off_runtime("pruning volumes", move |e| {
            Ok(e.volume_prune_now(all, &keep))
        })
        .await
    }

    fn volume_prune_now(&self, all: bool, keep: &super::PruneFilter) -> (Vec<String>, u64) {
        let mut gone = Vec::new();
        let mut freed = 0;
        for v in self.volumes.list() {
            if (all || v.anonymous)
                && keep(&v.labels, Some(v.created_at))
                && self.volume_users(&v.name).is_empty()
            {
                if let Ok(n) = self.volumes.delete(&v.name) {
                    freed += n;
                    self.events
                        .emit("volume", "destroy", &v.name, &[("driver", "local")]);
                    gone.push(v.name);
                }
            }
        }
        (gone, freed)
    }
}
