//! `POST /containers/create`: validate the request once, pick the runtime,
//! and make the container so a crash never leaves a half-made one.

use super::super::config::{
    complete_log_config, merge_config, port_mappings, validate_healthcheck, validate_host_config,
};
use super::super::{volumes, Engine, EngineError, Record, StateRecord};
use super::{write_record, Durability};
use crate::api::types::{ContainerCreateRequest, HostConfig};
use crate::model::{ids, ContainerId};
use chrono::Utc;
use std::collections::BTreeMap;
use std::sync::Arc;

impl Engine {
    /// `POST /containers/create`.
    pub async fn create(
        self: &Arc<Self>,
        name: Option<&str>,
        req: ContainerCreateRequest,
    ) -> Result<Record, EngineError> {
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                let n = n.strip_prefix('/').unwrap_or(n);
                if !ids::valid_container_name(n) {
                    return Err(EngineError::InvalidArgument(format!(
                        "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                n.to_string()
            }
            // Picked by `insert`, under the lock that reserves it.
            None => String::new(),
        };
        if req.config.image.is_empty() {
            return Err(EngineError::InvalidArgument(
                "no image given in the create request".into(),
            ));
        }
        // The image is resolved, then volumes are made (and fsynced) and
        // binds checked on the host, so a missing image makes no volume.
        // Without volumes or binds this is a lookup in the image store's
        // cached index (a stat), done in place; with them, off the runtime.
        if let Some(hc) = &req.config.healthcheck {
            validate_healthcheck(hc)?;
        }
        let mut host_config = req.host_config.unwrap_or_default();
        complete_log_config(&mut host_config.log_config)?;
        let inherited_binds = self.volumes_from(&mut host_config)?;
        for link in host_config.links.iter().flatten() {
            self.lookup(crate::engine::networks::link_target(link))?;
        }
        let on_host = host_config.binds.as_ref().is_some_and(|b| !b.is_empty())
            || host_config.mounts.as_ref().is_some_and(|m| !m.is_empty());
        let image_name = req.config.image.clone();
        let prepare = move |e: &Engine| {
            let img = e.images.resolve(&image_name)?;
            let mut hc = host_config;
            e.prepare_volumes(&mut hc)?;
            validate_host_config(&hc, &e.volumes)?;
            Ok((img, hc))
        };
        let (img, mut host_config) = if on_host {
            self.off_runtime("resolving the image and volumes", prepare)
                .await?
        } else {
            prepare(self)?
        };
        let config = merge_config(&img, req.config);
        if let Some(hc) = &config.healthcheck {
            validate_healthcheck(hc).map_err(|e| {
                EngineError::InvalidArgument(format!("image {}: {e}", config.image))
            })?;
        }
        let mut argv: Vec<String> = config.entrypoint.clone().unwrap_or_default();
        argv.extend(config.cmd.clone().unwrap_or_default());
        if argv.first().is_none_or(|a| a.is_empty()) {
            return Err(EngineError::InvalidArgument(format!(
                "no command specified: image {} has no ENTRYPOINT or CMD and none was given",
                config.image
            )));
        }
        let platform = self
            .prepare_program(&img, &argv[0], &config.working_dir)
            .await?;
        let backend = self.backends.for_platform(&platform, &config.image)?;
        backend.validate(&host_config)?;
        backend.complete(&mut host_config);
        let mut endpoints = BTreeMap::new();
        // A Wasm container joins only a network it names.
        #[cfg(feature = "wasm")]
        let wasm_joins = backend.kind() == crate::model::RuntimeKind::Wasm
            && crate::engine::networks::joins(crate::engine::networks::default_mode(
                &host_config.network_mode,
            ));
        #[cfg(not(feature = "wasm"))]
        let wasm_joins = false;
        if backend.caps().networks || wasm_joins {
            let (primary, all) =
                self.initial_endpoints(&host_config.network_mode, req.networking_config.as_ref())?;
            // Recorded by name, however the request named it.
            host_config.network_mode = primary;
            endpoints = all;
            for link in endpoints.values().flat_map(|e| &e.links) {
                self.lookup(crate::engine::networks::link_target(link))?;
            }
        }
        let mappings = port_mappings(&config, &host_config)?;
        if !mappings.is_empty() && !backend.serves_ports(&img.id, &argv[0], &config.working_dir) {
            return Err(EngineError::InvalidArgument(format!(
                "image {}: cannot publish ports: the program is a WASI preview 1 module, which has no sockets; build it as a component (wasm32-wasip2)",
                config.image
            )));
        }
        let id = ContainerId::random();
        let rec = Record {
            id: id.clone(),
            name: name.clone(),
            created: Utc::now(),
            image: config.image.clone(),
            image_id: img.id.clone(),
            path: argv[0].clone(),
            args: argv[1..].to_vec(),
            config,
            host_config,
            platform,
            state: StateRecord::default(),
            networks: endpoints,
            inherited_binds,
        };
        self.insert(rec).await
    }

    /// Reserve the record's name (a generated one if it has none) and
    /// write it; once the create journal holds it on the disk, it is a
    /// container.
    pub(in crate::engine) async fn insert(
        self: &Arc<Self>,
        mut rec: Record,
    ) -> Result<Record, EngineError> {
        let dir = self.root.join("containers").join(rec.id.as_str());
        {
            // Pick and reserve the name under the table lock, so two creates
            // can neither both take one name nor both be given one.
            let mut t = self.table_mut();
            if rec.name.is_empty() {
                rec.name = unused_name(&t);
            }
            if let Some(other) = t.names.get(&rec.name) {
                return Err(EngineError::name_in_use(&rec.name, other.as_str()));
            }
            t.names.insert(rec.name.clone(), rec.id.clone());
        }
        let name = rec.name.clone();
        let parent = self.root.join("containers");
        let engine = self.clone();
        let (rec2, dir2) = (rec.clone(), dir.clone());
        let write = tokio::task::spawn_blocking(move || {
            // The directory is a container once its record's first line is
            // written; until then, ketchd's start deletes it. A create
            // answers once the journal holds it on the disk.
            let made = engine
                .spare_dirs
                .make(&dir2)
                .map_err(EngineError::io(&dir2))
                .and_then(|()| write_record(&dir2, &rec2, Durability::Volatile))
                .and_then(|()| {
                    if rec2.host_config.auto_remove {
                        return Ok(());
                    }
                    // The journal makes it durable; creates under way
                    // together share its flush.
                    engine
                        .creates
                        .created(&rec2)
                        .map_err(EngineError::io(&parent))
                });
            if made.is_err() {
                if let Err(e) = engine.creates.removed(&rec2.id) {
                    tracing::warn!(
                        "{}: cannot cancel the failed create of {}: {e}; the next start makes it",
                        engine.creates.path().display(),
                        rec2.name
                    );
                }
                let _ = std::fs::remove_dir_all(&dir2);
            }
            made
        })
        .await
        .map_err(EngineError::task("container creation"))
        .and_then(|r| r);
        if let Err(e) = write {
            self.table_mut().names.remove(&name);
            return Err(e);
        }
        self.register(rec.clone(), dir);
        self.event(&rec, "create", &[]);
        Ok(rec)
    }

    /// `--volumes-from NAME[:ro|rw]`: the other container's binds and
    /// mounts become this one's (as binds; `ro` makes each read-only,
    /// `rw` keeps each as it was), as Docker copies them at create.
    fn volumes_from(&self, hc: &mut HostConfig) -> Result<Vec<String>, EngineError> {
        let mut inherited = Vec::new();
        for spec in hc.volumes_from.clone().unwrap_or_default() {
            let (name, mode) = match spec.rsplit_once(':') {
                Some((n, m @ ("ro" | "rw"))) => (n, Some(m)),
                Some(_) => {
                    return Err(EngineError::InvalidArgument(format!(
                        "invalid VolumesFrom {spec:?}: the mode must be ro or rw"
                    )))
                }
                None => (spec.as_str(), None),
            };
            let other = self.lookup(name)?.record();
            let binds = hc.binds.get_or_insert_with(Vec::new);
            let mut add = |source: &str, target: &str, read_only: bool| {
                let ro = match mode {
                    Some("ro") => true,
                    Some(_) => false,
                    None => read_only,
                };
                let bind = format!("{source}:{target}{}", if ro { ":ro" } else { "" });
                binds.push(bind.clone());
                inherited.push(bind);
            };
            for b in other.host_config.binds.iter().flatten() {
                let parts: Vec<&str> = b.split(':').collect();
                if let [source, target, rest @ ..] = parts.as_slice() {
                    add(
                        source,
                        target,
                        rest.first()
                            .is_some_and(|m| m.split(',').any(|o| o == "ro")),
                    );
                }
            }
            for m in other.host_config.mounts.iter().flatten() {
                if matches!(m.kind.as_str(), "bind" | "volume") {
                    add(&m.source, &m.target, m.read_only);
                }
            }
        }
        Ok(inherited)
    }

    /// Make the volumes a create request names (as Docker does), and give
    /// `-v /path` an anonymous one, recorded by name in its binds.
    fn prepare_volumes(&self, hc: &mut HostConfig) -> Result<(), EngineError> {
        let ensure = |name: Option<&str>| -> Result<String, EngineError> {
            Ok(self
                .volume_create_now(name, BTreeMap::new(), name.is_none())?
                .name)
        };
        for b in hc.binds.iter_mut().flatten() {
            let parts: Vec<&str> = b.split(':').collect();
            match parts.as_slice() {
                [guest] if guest.starts_with('/') => {
                    let name = ensure(None)?;
                    *b = format!("{name}:{guest}");
                }
                [src, ..] => {
                    if let Some(n) = volumes::named(src) {
                        ensure(Some(n))?;
                    }
                }
                [] => {}
            }
        }
        for m in hc.mounts.iter_mut().flatten() {
            if m.kind == "volume" {
                m.source = ensure(
                    Some(&m.source)
                        .filter(|s| !s.is_empty())
                        .map(|s| s.as_str()),
                )?;
            }
        }
        Ok(())
    }
}

/// A generated name no container has (Docker's `adjective_surname`, with
/// a number once those run short).
fn unused_name(t: &super::super::Table) -> String {
    loop {
        let n = ids::random_name();
        if !t.names.contains_key(&n) {
            return n;
        }
        let n2 = format!("{n}_{}", rand::random::<u16>());
        if !t.names.contains_key(&n2) {
            return n2;
        }
    }
}
