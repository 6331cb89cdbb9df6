//! At ketchd start: make the container table true again. Leftovers of
//! interrupted creates and removals are deleted; a container recorded as
//! alive is reattached by its backend (a Linux container's monitor may
//! still run it) or recorded as exited; `--rm` containers are removed;
//! restart policies bring containers back.

use super::container::{Container, Durability};
use super::{record_file, Engine, EngineError, Record, CREATING_SUFFIX, REMOVING_SUFFIX};
use crate::runtime::{ExitStatus, Reattached};
use chrono::Utc;
use futures_util::stream::{self, StreamExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Exit code recorded for a container that was running when ketchd went away.
pub const EXIT_DAEMON_GONE: i64 = 255;
/// Containers settled, and restarted, at once: their record writes and
/// instantiations overlap, so 10,000 `--restart always` guests are back
/// in seconds rather than one fsync after another.
const PARALLEL: usize = 64;

/// What the containers directory holds, read without the runtime.
struct Found {
    records: Vec<(Record, PathBuf)>,
}

/// Delete leftovers and read every whole record. Blocking.
fn scan(dir: &Path) -> Result<Found, EngineError> {
    let mut records = Vec::new();
    for e in std::fs::read_dir(dir)
        .map_err(EngineError::io(dir))?
        .flatten()
    {
        let path = e.path();
        if path
            .extension()
            .is_some_and(|x| x == REMOVING_SUFFIX || x == CREATING_SUFFIX)
        {
            // An older ketchd's removal it did not finish deleting, or a
            // create it did not finish making.
            if let Err(err) = std::fs::remove_dir_all(&path) {
                tracing::warn!("cannot delete {}: {err}", path.display());
            }
            continue;
        }
        if !path.is_dir() {
            continue;
        }
        match record_file::read(&path) {
            Ok(Some(r)) if e.file_name() == r.id.as_str() => records.push((r, path)),
            Ok(Some(r)) => {
                // A power loss kept a directory's contents but not its
                // name: a spare holding its removed owner's record, or a
                // container's directory not yet renamed into place (the
                // create journal wrote that one again under its name).
                tracing::warn!(
                    "deleting {}: it holds the record of {}",
                    path.display(),
                    r.id
                );
                if let Err(err) = std::fs::remove_dir_all(&path) {
                    tracing::warn!("cannot delete {}: {err}", path.display());
                }
            }
            Ok(None) => {
                // A create that did not finish, or a removal that did:
                // nothing refers to it.
                if let Err(err) = std::fs::remove_dir_all(&path) {
                    tracing::warn!("cannot delete {}: {err}", path.display());
                }
            }
            Err(err) => tracing::warn!("ignoring unreadable container record {err}"),
        }
    }
    Ok(Found { records })
}

impl Engine {
    pub(super) async fn reconcile(self: &Arc<Self>) -> Result<(), EngineError> {
        let dir = self.root.join("containers");
        let found = tokio::task::spawn_blocking(move || scan(&dir))
            .await
            .map_err(EngineError::task("reading the container records"))??;
        let settled: Vec<_> = stream::iter(found.records)
            .map(|(rec, path)| {
                let c = self.register(rec, path);
                self.reconcile_one(c)
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        let mut to_restart = Vec::new();
        for s in settled {
            to_restart.extend(s?);
        }
        stream::iter(to_restart)
            .for_each_concurrent(PARALLEL, |c| async move {
                if let Err(e) = self.start_container(&c).await {
                    tracing::warn!("cannot restart container {}: {e}", c.name());
                }
            })
            .await;
        Ok(())
    }

    /// Settle one container; returns it if its policy restarts it.
    async fn reconcile_one(
        self: &Arc<Self>,
        c: Arc<Container>,
    ) -> Result<Option<Arc<Container>>, EngineError> {
        let rec = c.record();
        let was_alive = rec.state.was_alive();
        if was_alive {
            let mut exit = (
                ExitStatus {
                    code: EXIT_DAEMON_GONE,
                    error: Some("ketchd stopped while the container was running".into()),
                    oom_killed: false,
                },
                Utc::now(),
            );
            if let Some(b) = rec.kind().and_then(|k| self.backends.get(k)) {
                match b.reattach(self, &c, &rec) {
                    Reattached::Running(started) => {
                        let at = rec.state.started_at().unwrap_or_else(Utc::now);
                        self.adopt(&c, started, at);
                        return Ok(None);
                    }
                    Reattached::Exited(status, at) => exit = (status, at),
                    Reattached::Lost => {
                        if rec.is(crate::model::RuntimeKind::Linux) {
                            exit.0.error = Some("the container's monitor was killed".into());
                        }
                        b.cleanup(&rec);
                    }
                }
            }
            // Not waited onto the disk: lost in a crash, the record says
            // alive again, and the next start settles it the same way.
            c.update_as(|r| r.exited(&exit.0, exit.1), Durability::Volatile)
                .await?;
        }
        // An --rm container that outlived its daemon is removed, as Docker does.
        if rec.state.status() == crate::model::Status::Removing || rec.host_config.auto_remove {
            let _ = self.remove_now(&c).await;
            return Ok(None);
        }
        let rec = c.record();
        let restart = rec.restart_policy().restart_on_daemon_start(
            rec.state.exit_code(),
            was_alive,
            rec.state.manually_stopped(),
        );
        Ok(restart.then_some(c))
    }
}
