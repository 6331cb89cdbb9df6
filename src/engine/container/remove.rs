//! `DELETE /containers/{id}`: kill if forced, then delete. The record goes
//! first, so a crash mid-delete leaves a directory that ketchd's next start
//! deletes, never a half-removed container.

use super::super::{Engine, EngineError};
use super::Container;
use std::sync::Arc;

impl Engine {
    pub async fn remove(self: &Arc<Self>, name: &str, force: bool) -> Result<(), EngineError> {
        let c = self.lookup(name)?;
        let _op = c.op.lock().await;
        let seen = c.exits_seen();
        c.check("remove", |s| s.can_remove(force))?;
        // Only an instance to kill needs its stop recorded first; a stopped
        // container is renamed away without another write.
        let status = c.status();
        let alive = status.is_alive() || status == crate::model::Status::Restarting;
        if alive
            && c.transition("remove", |s| s.remove_requested(force))
                .await?
        {
            // Suppress auto-remove racing with this removal.
            c.update(|r| r.host_config.auto_remove = false).await?;
            c.kill_and_wait(seen).await;
        }
        self.remove_now(&c).await
    }

    /// `POST /containers/prune`: remove every stopped container. Returns
    /// the ids removed.
    pub async fn container_prune(
        self: &Arc<Self>,
        keep: &super::super::PruneFilter,
    ) -> Result<Vec<String>, EngineError> {
        let mut deleted = Vec::new();
        for c in self.list() {
            if c.status().is_alive() {
                continue;
            }
            let rec = c.record();
            if !keep(
                &rec.config.labels.clone().unwrap_or_default(),
                Some(rec.created),
            ) {
                continue;
            }
            let id = c.id.to_string();
            match self.remove(&id, false).await {
                Ok(()) => deleted.push(id),
                // Started or removed meanwhile: not ours to prune.
                Err(EngineError::Transition { .. } | EngineError::NoSuchContainer(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }

    pub(in crate::engine) async fn remove_now(
        &self,
        c: &Arc<Container>,
    ) -> Result<(), EngineError> {
        let rec = c.set(|r| r.state.removing());
        if let Some(b) = rec.kind().and_then(|k| self.backends.get(k)) {
            b.cleanup(&rec);
        }
        self.forget_execs(&rec.id);
        let dir = c.dir().to_path_buf();
        let spares =
            (rec.kind() == Some(crate::model::RuntimeKind::Wasm)).then(|| self.spare_dirs.clone());
        let io = c.io.clone().lock_owned().await;
        let journal = self.creates.clone();
        let (deleted, answer) = tokio::sync::oneshot::channel();
        // One trip off the runtime: the record goes, the removal is
        // answered (`run --rm` waits for it), then the rest of the
        // directory goes without delaying the answer (a Wasm container's
        // is kept, emptied, for a create).
        tokio::task::spawn_blocking(move || {
            // Without its line in the journal the next start would bring
            // the container back: then the record stays.
            let gone = journal
                .removed(&rec.id)
                // Named only on failure: the path takes the journal's lock.
                .map_err(|e| EngineError::io(journal.path())(e))
                .and_then(|()| {
                    super::super::record_file::delete(&dir).map_err(EngineError::io(&dir))
                });
            drop(io);
            let ok = gone.is_ok();
            let _ = deleted.send(gone);
            if ok {
                let gone = match spares {
                    Some(s) => s.retire(&dir),
                    None => std::fs::remove_dir_all(&dir),
                };
                if let Err(e) = gone {
                    tracing::warn!(
                        "cannot delete {}: {e}; it goes at the next start",
                        dir.display()
                    );
                }
            }
        });
        let path = c.dir().display().to_string();
        answer.await.map_err(|_| EngineError::Io {
            path,
            source: std::io::Error::other("the removal task ended before deleting the record"),
        })??;
        self.forget(c);
        self.event(&c.record(), "destroy", &[]);
        c.removed.send_replace(true);
        Ok(())
    }
}
