//! One container in memory, and its lifecycle: one file per verb, each
//! owning its move of the [`StateRecord`](super::StateRecord) state
//! machine. Verbs on one container are serialised by its `op` lock.

mod create;
mod exit;
mod kill;
mod observe;
mod pause;
mod remove;
mod rename;
mod restart;
mod start;
mod stop;
mod update;
mod wait;

pub use wait::WaitCondition;

use super::lock;
use super::logs::Log;
use super::{record_file, EngineError, Record};
use crate::model::{ContainerId, Status, TransitionError};
use crate::runtime::Control;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::DuplexStream;
use tokio::sync::watch;

/// How long `kill` and a forced `rm` wait for a killed instance to be gone.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Bytes buffered between an attached client's stdin and the guest.
const STDIN_BUFFER: usize = 64 * 1024;

/// One container in memory.
pub struct Container {
    pub id: ContainerId,
    pub(super) dir: PathBuf,
    record: Mutex<Record>,
    pub log: Arc<Log>,
    control: Mutex<Option<Arc<dyn Control>>>,
    /// Host side of the guest's stdin (containers with `OpenStdin`). Made
    /// at create and after each exit, so a client may attach before start.
    stdin: Mutex<Option<DuplexStream>>,
    stdin_guest: Mutex<Option<DuplexStream>>,
    /// Counts exits; waiters watch it.
    exits: watch::Sender<u64>,
    removed: watch::Sender<bool>,
    /// Serialises lifecycle verbs on this container.
    pub(in crate::engine) op: tokio::sync::Mutex<()>,
    /// `State.Health`: kept from run to run (in memory), reset to
    /// starting at each start.
    health: Mutex<Option<crate::api::types::Health>>,
    /// Serialises writes of its record, and its deletion; held by the write
    /// itself, so a cancelled caller cannot let a second write race the first.
    io: Arc<tokio::sync::Mutex<()>>,
}

impl Container {
    pub(super) fn new(rec: Record, dir: PathBuf) -> Arc<Self> {
        let (exits, _) = watch::channel(0);
        let (removed, _) = watch::channel(false);
        let c = Arc::new(Container {
            id: rec.id.clone(),
            log: Arc::new(Log::open(
                &dir.join(format!("{}-json.log", rec.id)),
                super::config::log_settings(&rec.host_config.log_config).unwrap_or_default(),
            )),
            dir,
            control: Mutex::new(None),
            stdin: Mutex::new(None),
            stdin_guest: Mutex::new(None),
            exits,
            removed,
            op: tokio::sync::Mutex::new(()),
            health: Mutex::new(None),
            io: Arc::new(tokio::sync::Mutex::new(())),
            record: Mutex::new(rec),
        });
        c.fresh_stdin();
        c
    }

    pub fn record(&self) -> Record {
        lock(&self.record).clone()
    }

    /// `State.Health`, once it has been started with a health check.
    pub fn health(&self) -> Option<crate::api::types::Health> {
        lock(&self.health).clone()
    }

    pub(in crate::engine) fn update_health<T>(
        &self,
        f: impl FnOnce(&mut Option<crate::api::types::Health>) -> T,
    ) -> T {
        f(&mut lock(&self.health))
    }

    pub fn status(&self) -> Status {
        lock(&self.record).state.status()
    }

    pub fn created(&self) -> chrono::DateTime<chrono::Utc> {
        lock(&self.record).created
    }

    pub fn name(&self) -> String {
        lock(&self.record).name.clone()
    }

    /// The container's own directory (its record, log, and runtime state).
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Apply `f` to the record and persist it atomically. The write (an
    /// fsync) runs off the async runtime; writes of one container happen
    /// one at a time, in order, so the file always holds the latest record.
    /// If the write fails, the change stays in memory.
    pub(super) async fn update(&self, f: impl FnOnce(&mut Record)) -> Result<Record, EngineError> {
        self.update_as(f, Durability::Durable).await
    }

    /// [`Container::update`], as durable as `durability` asks.
    pub(super) async fn update_as(
        &self,
        f: impl FnOnce(&mut Record),
        durability: Durability,
    ) -> Result<Record, EngineError> {
        let io = self.io.clone().lock_owned().await;
        let rec = {
            let mut g = lock(&self.record);
            f(&mut g);
            g.clone()
        };
        self.persist(io, rec.clone(), durability).await?;
        Ok(rec)
    }

    /// Make a state move and persist it; an illegal move changes nothing
    /// and is the verb's typed error, as is a move that cannot be recorded.
    pub(super) async fn transition<T>(
        &self,
        verb: &'static str,
        f: impl FnOnce(&mut super::StateRecord) -> Result<T, TransitionError>,
    ) -> Result<T, EngineError> {
        let io = self.io.clone().lock_owned().await;
        let (out, rec, before) = {
            let mut g = lock(&self.record);
            let before = g.state.clone();
            match f(&mut g.state) {
                Ok(out) => (out, g.clone(), before),
                Err(e) => {
                    g.state = before;
                    return Err(EngineError::transition(verb, &g.id, &g.name, e));
                }
            }
        };
        if let Err(e) = self.persist(io, rec, Durability::State).await {
            lock(&self.record).state = before;
            return Err(e);
        }
        Ok(out)
    }

    async fn persist(
        &self,
        io: tokio::sync::OwnedMutexGuard<()>,
        rec: Record,
        durability: Durability,
    ) -> Result<(), EngineError> {
        // A removal deleted the record (under this lock): a write still
        // queued behind it must not make the file again.
        if self.status() == Status::Removing {
            return Ok(());
        }
        let sync = durable(&rec, durability);
        if !sync {
            // An append without a sync is a page-cache write of a file in a
            // directory ketchd just used: done in place, as log lines are,
            // not handed to a blocking thread. Compacting is not.
            if !record_file::append_only(&self.dir, &rec, false)? {
                return Ok(());
            }
        }
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let _io = io;
            if sync {
                record_file::append(&dir, &rec, true)
            } else {
                record_file::compact(&dir, &rec, false)
            }
        })
        .await
        .map_err(EngineError::task("writing a container record"))?
    }

    /// Apply `f` in memory only (for a container about to be removed).
    pub(super) fn set(&self, f: impl FnOnce(&mut Record)) -> Record {
        let mut g = lock(&self.record);
        f(&mut g);
        g.clone()
    }

    /// Take the host end of stdin (for an attached client).
    pub fn take_stdin(&self) -> Option<DuplexStream> {
        lock(&self.stdin).take()
    }

    /// Give the host end back after a client detached without closing it.
    pub fn stdin_return(&self, w: DuplexStream) {
        let mut g = lock(&self.stdin);
        if g.is_none() {
            *g = Some(w);
        }
    }

    /// A new stdin pipe for the next run.
    fn fresh_stdin(&self) {
        let open = lock(&self.record).config.open_stdin;
        let (host, guest) = if open {
            let (h, g) = tokio::io::duplex(STDIN_BUFFER);
            (Some(h), Some(g))
        } else {
            (None, None)
        };
        *lock(&self.stdin) = host;
        *lock(&self.stdin_guest) = guest;
    }

    /// The guest's end of stdin for a run about to start (`None` unless
    /// the container keeps stdin open).
    pub(super) fn guest_stdin(&self) -> Option<crate::runtime::Stdin> {
        if !lock(&self.record).config.open_stdin {
            return None;
        }
        let mut guest = lock(&self.stdin_guest).take();
        if guest.is_none() {
            self.fresh_stdin();
            guest = lock(&self.stdin_guest).take();
        }
        guest.map(|g| Box::pin(g) as crate::runtime::Stdin)
    }

    /// Control of the running instance, if one runs.
    pub(super) fn control(&self) -> Option<Arc<dyn Control>> {
        lock(&self.control).clone()
    }

    fn set_control(&self, ctl: Option<Arc<dyn Control>>) {
        *lock(&self.control) = ctl;
    }

    /// The number of exits so far; pass it to [`Container::exit_after`].
    fn exits_seen(&self) -> u64 {
        *self.exits.borrow()
    }

    /// Wait until the exit counter moves past `seen`, up to `timeout`.
    async fn exit_after(&self, seen: u64, timeout: Option<Duration>) -> bool {
        let mut rx = self.exits.subscribe();
        let fut = rx.wait_for(|n| *n > seen);
        match timeout {
            Some(t) => matches!(tokio::time::timeout(t, fut).await, Ok(Ok(_))),
            None => fut.await.is_ok(),
        }
    }

    /// Kill the instance, if one runs, and wait (a while) for its exit.
    async fn kill_and_wait(&self, seen: u64) {
        if let Some(ctl) = self.control() {
            ctl.kill();
            self.exit_after(seen, Some(KILL_WAIT)).await;
        }
    }

    fn is_removed(&self) -> bool {
        *self.removed.borrow()
    }
}

/// Whether a record write waits for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Durability {
    Durable,
    /// A move of the state machine (start, exit, stop, pause): durable
    /// only for a container whose restart policy reads it when ketchd
    /// starts. For the others a crash loses at most that the container
    /// ran, or its exit code (the next start records 255): the price of
    /// not waiting on the disk twice in every run, which bounded churn.
    State,
    Volatile,
}

/// Append a container record to its file in `dir`, as durable as
/// [`durable`] says.
pub(super) fn write_record(
    dir: &Path,
    rec: &Record,
    durability: Durability,
) -> Result<(), EngineError> {
    record_file::append(dir, rec, durable(rec, durability))
}

/// Does a write of `rec` wait for the disk? Yes unless asked not to, or the
/// container is `--rm`: such a record is worthless after a crash, since the
/// next start removes the container anyway.
fn durable(rec: &Record, durability: Durability) -> bool {
    let durable = match durability {
        Durability::Durable => true,
        Durability::State => rec.restart_policy() != crate::model::RestartPolicy::No,
        Durability::Volatile => false,
    };
    durable && !rec.host_config.auto_remove
}

impl Container {
    /// Is `verb` legal now? (For verbs that must act before they can
    /// record their move, as `start` does.)
    pub(super) fn check(
        &self,
        verb: &'static str,
        legal: impl FnOnce(Status) -> Result<(), TransitionError>,
    ) -> Result<(), EngineError> {
        let (status, name) = {
            let g = lock(&self.record);
            (g.state.status(), g.name.clone())
        };
        legal(status).map_err(|e| EngineError::transition(verb, &self.id, &name, e))
    }
}
