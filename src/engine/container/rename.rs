//! `POST /containers/{id}/rename?name=`: a new name, reserved under the
//! table lock as a create reserves one, written to the record, and told to
//! the container's network peers (their `/etc/hosts` and name lookups).

use super::super::{Engine, EngineError};
use crate::model::ids;
use std::sync::Arc;

impl Engine {
    /// `DELETE /containers/PARENT/ALIAS?link=1`: forget the link `ALIAS`
    /// of `PARENT` (its `/etc/hosts` line goes at its next start).
    pub async fn unlink(self: &Arc<Self>, path: &str) -> Result<(), EngineError> {
        let Some((parent, alias)) = path.trim_start_matches('/').split_once('/') else {
            return Err(EngineError::InvalidArgument(format!(
                "Conflict, cannot remove the default link name of the container: {path}"
            )));
        };
        let c = self.lookup(parent)?;
        let _op = c.op.lock().await;
        let links = c.record().host_config.links.unwrap_or_default();
        let kept: Vec<String> = links
            .iter()
            .filter(|l| {
                let a = l.split_once(':').map_or(l.as_str(), |(_, a)| a);
                a.rsplit('/').next() != Some(alias)
            })
            .cloned()
            .collect();
        if kept.len() == links.len() {
            return Err(EngineError::NotFound(format!(
                "Could not find container link {alias} of {parent}"
            )));
        }
        c.update(|r| r.host_config.links = Some(kept)).await?;
        Ok(())
    }

    pub async fn rename(self: &Arc<Self>, name: &str, new: &str) -> Result<(), EngineError> {
        let new = new.strip_prefix('/').unwrap_or(new);
        if new.is_empty() {
            return Err(EngineError::InvalidArgument(
                "Neither old nor new names may be empty".into(),
            ));
        }
        if !ids::valid_container_name(new) {
            return Err(EngineError::InvalidArgument(format!(
                "Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let c = self.lookup(name)?;
        let _op = c.op.lock().await;
        let old = c.name();
        if old == new {
            return Err(EngineError::InvalidArgument(format!(
                "Renaming a container with the same name as its current name: {new}"
            )));
        }
        {
            let mut t = self.table_mut();
            if let Some(other) = t.names.get(new) {
                return Err(EngineError::name_in_use(new, other.as_str()));
            }
            t.names.insert(new.to_string(), c.id.clone());
        }
        match c.update(|r| r.name = new.to_string()).await {
            Ok(_) => {
                self.table_mut().names.remove(&old);
            }
            Err(e) => {
                self.table_mut().names.remove(new);
                return Err(e);
            }
        }
        let rec = c.record();
        if !rec.networks.is_empty() {
            self.refresh_peers(&rec);
        }
        self.event(&rec, "rename", &[("oldName", &format!("/{old}"))]);
        Ok(())
    }
}
