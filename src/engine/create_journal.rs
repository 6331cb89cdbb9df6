//! What makes a create durable: one append-only journal of created and
//! removed containers, `containers/.creates-<generation>`, whose flushes
//! concurrent creates share.
//!
//! A create answers once its container is on the disk. Syncing each new
//! container's own record and the `containers/` directory took two flushes
//! of the disk per create, which bounded churn, though a short-lived
//! container is removed before a crash could ever matter. Now its record is
//! written without waiting, and its create appends the record to the
//! journal, where one `fdatasync` covers every create under way.
//!
//! - A removal appends a line that cancels the create, before the record
//!   goes (not waited for: a power loss may bring back a removed container,
//!   as it could before). Only a container whose create line is in a file
//!   still kept needs one; if it cannot be written, the removal fails and
//!   the record stays.
//! - A flush that fails fails every create after it, until ketchd
//!   restarts: the kernel drops the pages it could not write, so a later
//!   flush would prove nothing.
//! - Past [`ROTATE_AT`] bytes a new generation starts. A checkpoint then
//!   syncs the records of the old generation's containers that are still
//!   there, and deletes its file. The disk is flushed for those only: in
//!   churn, almost none.
//! - At ketchd's start, every generation is read back. A container it
//!   created and did not remove, whose record is missing or torn (a power
//!   loss before the kernel wrote it), is written again from the journal.
//!   The containers still journaled are carried into a new generation in
//!   one write and one flush, and the old files are deleted.
//!
//! Lines are framed as records are (see `record_file`): a torn last line is
//! passed over.

use super::record::Record;
use super::record_file;
use crate::fsutil::{self, GroupSync};
use crate::model::ContainerId;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Journal size past which a new generation starts (about 1,800 creates).
const ROTATE_AT: u64 = 2 << 20;
/// Journal files' names: `.creates-<generation>` among the containers.
const PREFIX: &str = ".creates-";

#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum Line<'a> {
    Create(&'a Record),
    Remove(&'a ContainerId),
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum ReadLine {
    Create(Box<Record>),
    Remove(ContainerId),
}

pub(super) struct CreateJournal {
    /// The containers' directory, which holds the journal.
    dir: PathBuf,
    state: Mutex<State>,
    flushes: GroupSync,
    /// [`ROTATE_AT`], but for tests.
    rotate_at: u64,
}

struct State {
    file: Arc<File>,
    generation: u64,
    len: u64,
    /// Containers created in generations not yet checkpointed, with the
    /// generation each was created in.
    unsynced: HashMap<ContainerId, u64>,
    /// A checkpoint is under way: the next generation waits for it.
    checkpointing: bool,
    /// A checkpoint failed: no generation is deleted until ketchd's next
    /// start reads them all (a later one may hold removals of the
    /// failed one's containers).
    keep_files: bool,
    /// A flush of the journal failed: no create is durable from here on.
    failed: Option<String>,
}

impl State {
    fn check(&self) -> io::Result<()> {
        match &self.failed {
            None => Ok(()),
            Some(e) => Err(io::Error::other(format!(
                "the create journal could not be written to the disk ({e}); restart ketchd"
            ))),
        }
    }
}

impl CreateJournal {
    /// Read back what earlier ketchds wrote (see the module's docs) and
    /// start a new journal in `dir`. Blocking.
    pub(super) fn open(dir: &Path) -> io::Result<Self> {
        Self::open_rotating_at(dir, ROTATE_AT)
    }

    fn open_rotating_at(dir: &Path, rotate_at: u64) -> io::Result<Self> {
        let generations = generations(dir)?;
        let last = generations.last().map_or(0, |(g, _)| *g);
        let mut created: HashMap<ContainerId, Box<Record>> = HashMap::new();
        // Files read back, to delete once carried; one that cannot be read
        // stays for the next start.
        let mut read = Vec::with_capacity(generations.len());
        for (_, path) in &generations {
            let data = match std::fs::read(path) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(
                        "cannot read {}: {e}; it is read again at the next start",
                        path.display()
                    );
                    continue;
                }
            };
            read.push(path);
            for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                match serde_json::from_slice::<ReadLine>(line) {
                    Ok(ReadLine::Create(rec)) => {
                        created.insert(rec.id.clone(), rec);
                    }
                    Ok(ReadLine::Remove(id)) => {
                        created.remove(&id);
                    }
                    // Torn by a crash mid-append.
                    Err(_) => {}
                }
            }
        }
        // Carried into the new generation: their records are not known to
        // be on the disk.
        let mut carried = Vec::with_capacity(created.len());
        for (id, rec) in created {
            // The journal is ketchd's own, but an id names a directory.
            if ContainerId::parse(id.as_str()).is_none() {
                tracing::warn!("{}: ignoring a malformed container id", dir.display());
                continue;
            }
            let cdir = dir.join(id.as_str());
            // A directory's entry may be lost while its contents are not:
            // a record of another container (a spare's former owner) is
            // no record of this one.
            let lost = match record_file::read(&cdir) {
                Ok(Some(r)) => r.id != id,
                Ok(None) => true,
                // Left for the scan that follows to report.
                Err(_) => false,
            };
            if lost {
                tracing::warn!(
                    "container {} ({}) lost its record in a crash; written again from {}",
                    rec.name,
                    id.short(),
                    dir.display()
                );
                if let Err(e) = restore(&cdir, &rec) {
                    tracing::warn!("cannot write {} again: {e}", cdir.display());
                }
            }
            // Stays journaled even if it could not be written: the next
            // start tries again.
            carried.push(rec);
        }
        let generation = last + 1;
        // Its name's sync covers the directories written again above.
        let file = new_generation(dir, generation)?;
        let mut lines = Vec::new();
        for rec in &carried {
            lines.extend(record_file::frame(&Line::Create(rec))?);
        }
        (&file).write_all(&lines)?;
        file.sync_data()?;
        for path in read {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!("cannot delete {}: {e}", path.display());
            }
        }
        // Deleted for good: an older generation coming back after a power
        // loss without the newer one's removals would revive containers.
        fsutil::sync_dir(dir)?;
        Ok(CreateJournal {
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                file: Arc::new(file),
                generation,
                len: lines.len() as u64,
                unsynced: carried.into_iter().map(|r| (r.id, generation)).collect(),
                checkpointing: false,
                keep_files: false,
                failed: None,
            }),
            flushes: GroupSync::default(),
            rotate_at,
        })
    }

    /// The file being appended to, for messages.
    pub(super) fn path(&self) -> PathBuf {
        file_name(&self.dir, self.lock().generation)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record a new container and return once the journal holds it on the
    /// disk. Blocking.
    pub(super) fn created(self: &Arc<Self>, rec: &Record) -> io::Result<()> {
        let line = record_file::frame(&Line::Create(rec))?;
        let full = {
            let mut st = self.lock();
            st.check()?;
            (&*st.file).write_all(&line)?;
            st.len += line.len() as u64;
            let generation = st.generation;
            st.unsynced.insert(rec.id.clone(), generation);
            st.len > self.rotate_at && !st.checkpointing
        };
        if full {
            self.rotate()?;
        }
        self.flushes.sync(|| {
            let file = self.lock().file.clone();
            let flushed = file.sync_data();
            if let Err(e) = &flushed {
                self.lock().failed = Some(e.to_string());
            }
            flushed
        })?;
        // A round that failed before this one proves nothing about the
        // lines it covered: the kernel drops the pages it could not write.
        self.lock().check()
    }

    /// Record that the container `id` is being removed (or was never
    /// made), before its record goes. Not waited onto the disk. Only a
    /// container whose create line is in a file still kept needs one: a
    /// checkpointed or `--rm` container costs nothing. An error means the
    /// record must stay, or the next start would bring it back. Blocking.
    pub(super) fn removed(&self, id: &ContainerId) -> io::Result<()> {
        let mut st = self.lock();
        if !st.unsynced.contains_key(id) {
            return Ok(());
        }
        let line = record_file::frame(&Line::Remove(id))?;
        (&*st.file).write_all(&line)?;
        st.len += line.len() as u64;
        st.unsynced.remove(id);
        Ok(())
    }

    /// Start the next generation: every line of the current one is flushed
    /// first, so its file is whole on the disk, and a checkpoint of it runs
    /// in the background.
    fn rotate(self: &Arc<Self>) -> io::Result<()> {
        let old = {
            let mut st = self.lock();
            if st.checkpointing {
                return Ok(());
            }
            if let Err(e) = st.file.sync_data() {
                st.failed = Some(e.to_string());
                return Err(e);
            }
            let next = st.generation + 1;
            let file = match new_generation(&self.dir, next) {
                Ok(f) => f,
                Err(e) => {
                    // The lines so far are flushed; the next create tries
                    // again.
                    tracing::warn!("cannot start {}: {e}", file_name(&self.dir, next).display());
                    return Ok(());
                }
            };
            st.file = Arc::new(file);
            st.len = 0;
            st.checkpointing = true;
            std::mem::replace(&mut st.generation, next)
        };
        let journal = self.clone();
        let spawned = std::thread::Builder::new()
            .name("create-checkpoint".into())
            .spawn(move || journal.checkpoint(old));
        if let Err(e) = spawned {
            // The old generation stays; the next rotation checkpoints
            // only its own, so keep every file for the next start.
            let mut st = self.lock();
            st.checkpointing = false;
            st.keep_files = true;
            tracing::warn!("cannot checkpoint generation {old}: {e}");
        }
        Ok(())
    }

    /// Make the records of the containers created in `generation` durable
    /// by themselves, then delete its file.
    fn checkpoint(&self, generation: u64) {
        let ids: Vec<ContainerId> = {
            let st = self.lock();
            st.unsynced
                .iter()
                .filter(|(_, g)| **g == generation)
                .map(|(id, _)| id.clone())
                .collect()
        };
        let synced = ids
            .iter()
            .try_for_each(|id| match sync_container(&self.dir.join(id.as_str())) {
                // Removed meanwhile.
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                r => r,
            })
            .and_then(|()| fsutil::sync_dir(&self.dir));
        let path = file_name(&self.dir, generation);
        // While files are kept, their containers' removals must still be
        // journaled; so they are until the file is gone for good.
        let deleted = synced.and_then(|()| {
            if self.lock().keep_files {
                return Err(io::Error::other("an earlier checkpoint failed"));
            }
            std::fs::remove_file(&path).and_then(|()| fsutil::sync_dir(&self.dir))
        });
        let mut st = self.lock();
        st.checkpointing = false;
        match deleted {
            Ok(()) => st.unsynced.retain(|_, g| *g != generation),
            Err(e) => {
                st.keep_files = true;
                tracing::warn!(
                    "cannot checkpoint {}: {e}; it is read again at the next start",
                    path.display()
                );
            }
        }
    }
}

/// Flush a container's record and its directory's entries.
fn sync_container(cdir: &Path) -> io::Result<()> {
    // Opened for writing: Windows flushes only a file open for writing.
    OpenOptions::new()
        .append(true)
        .open(cdir.join(record_file::FILE))?
        .sync_data()?;
    fsutil::sync_dir(cdir)
}

/// Write a container's record again, in a directory of its own.
fn restore(cdir: &Path, rec: &Record) -> io::Result<()> {
    if cdir.exists() {
        // Whatever it holds is another container's or torn.
        std::fs::remove_dir_all(cdir)?;
    }
    std::fs::create_dir(cdir)?;
    record_file::append(cdir, rec, false).map_err(|e| io::Error::other(e.to_string()))?;
    sync_container(cdir)
}

fn file_name(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{generation}"))
}

/// A new, empty journal file whose name is on the disk.
fn new_generation(dir: &Path, generation: u64) -> io::Result<File> {
    let path = file_name(dir, generation);
    let file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)?;
    if let Err(e) = fsutil::sync_dir(dir) {
        // Not left to make the next try's create_new fail.
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(file)
}

/// The journal files in `dir`, oldest first.
fn generations(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(g) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|g| g.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((g, e.path()));
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::record;

    /// A container as a create leaves it: a directory with its record.
    fn make(dir: &Path, journal: &Arc<CreateJournal>) -> Record {
        let rec = record("", Default::default());
        let cdir = dir.join(rec.id.as_str());
        std::fs::create_dir(&cdir).unwrap();
        record_file::append(&cdir, &rec, false).unwrap();
        journal.created(&rec).unwrap();
        rec
    }

    fn files(dir: &Path) -> Vec<u64> {
        generations(dir)
            .unwrap()
            .into_iter()
            .map(|(g, _)| g)
            .collect()
    }

    #[test]
    fn a_full_generation_is_checkpointed_and_deleted() {
        let d = tempfile::tempdir().unwrap();
        let journal = Arc::new(CreateJournal::open_rotating_at(d.path(), 8 * 1024).unwrap());
        assert_eq!(files(d.path()), [1]);
        let settle = || {
            for _ in 0..3000 {
                if !journal.lock().checkpointing {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            panic!("a checkpoint did not end in 30 s");
        };
        // Each create after the last checkpoint ended, so that no rotation
        // is put off (a full generation waits while one runs).
        let recs: Vec<Record> = (0..40)
            .map(|_| {
                let r = make(d.path(), &journal);
                settle();
                r
            })
            .collect();
        for r in &recs[..10] {
            journal.removed(&r.id).unwrap();
            std::fs::remove_dir_all(d.path().join(r.id.as_str())).unwrap();
        }
        // Each create's line is about 1 KiB: several generations began,
        // and each was deleted once its containers were synced.
        let st = journal.lock();
        assert!(st.generation > 2, "generation {}", st.generation);
        assert!(!st.keep_files);
        assert_eq!(files(d.path()), [st.generation]);
        // Only the current generation's containers wait for a checkpoint.
        assert!(st.unsynced.values().all(|g| *g == st.generation));
        assert!(st.unsynced.len() < 20, "{} unsynced", st.unsynced.len());
    }

    #[test]
    fn only_a_journaled_container_costs_a_removal_line() {
        let d = tempfile::tempdir().unwrap();
        let journal = Arc::new(CreateJournal::open(d.path()).unwrap());
        let len = || std::fs::metadata(file_name(d.path(), 1)).unwrap().len();
        // An --rm container was never journaled: its removal writes nothing.
        let rm = record("", Default::default());
        journal.removed(&rm.id).unwrap();
        assert_eq!(len(), 0);
        let rec = make(d.path(), &journal);
        let after_create = len();
        journal.removed(&rec.id).unwrap();
        assert!(len() > after_create);
        assert_eq!(journal.lock().len, len());
        // Once removed, a second removal writes nothing either.
        let after_remove = len();
        journal.removed(&rec.id).unwrap();
        assert_eq!(len(), after_remove);
    }

    #[test]
    fn a_removal_in_a_later_generation_cancels_an_earlier_create() {
        let d = tempfile::tempdir().unwrap();
        let [a, b, c] = [(); 3].map(|()| record("", Default::default()));
        let lines = |ls: &[Line<'_>]| -> Vec<u8> {
            ls.iter()
                .flat_map(|l| record_file::frame(l).unwrap())
                .collect()
        };
        std::fs::write(
            file_name(d.path(), 4),
            lines(&[Line::Create(&a), Line::Create(&b), Line::Create(&c)]),
        )
        .unwrap();
        std::fs::write(file_name(d.path(), 5), lines(&[Line::Remove(&a.id)])).unwrap();
        // c's directory holds a record, but another container's: the
        // spare it was made from kept its owner's after a power loss.
        let cdir = d.path().join(c.id.as_str());
        std::fs::create_dir(&cdir).unwrap();
        record_file::append(&cdir, &record("old", Default::default()), false).unwrap();

        let journal = CreateJournal::open(d.path()).unwrap();
        assert_eq!(files(d.path()), [6]);
        assert!(!d.path().join(a.id.as_str()).exists());
        for r in [&b, &c] {
            let back = record_file::read(&d.path().join(r.id.as_str()))
                .unwrap()
                .unwrap();
            assert_eq!(back.id, r.id);
        }
        let st = journal.lock();
        assert!(st.unsynced.contains_key(&b.id) && st.unsynced.contains_key(&c.id));
        assert!(!st.unsynced.contains_key(&a.id));
    }

    #[test]
    fn a_start_writes_back_the_records_a_crash_lost_and_not_the_removed() {
        let d = tempfile::tempdir().unwrap();
        let journal = Arc::new(CreateJournal::open(d.path()).unwrap());
        let [kept, lost, removed] = [(); 3].map(|()| make(d.path(), &journal));
        journal.removed(&removed.id).unwrap();
        // A power loss: the kernel never wrote two directories, and the
        // last append was torn.
        for r in [&lost, &removed] {
            std::fs::remove_dir_all(d.path().join(r.id.as_str())).unwrap();
        }
        let current = file_name(d.path(), 1);
        let mut f = OpenOptions::new().append(true).open(&current).unwrap();
        f.write_all(b"\n{\"create\":{\"id\":\"").unwrap();
        drop((journal, f));

        let journal = CreateJournal::open(d.path()).unwrap();
        // The two are carried into the new generation, the removed one not.
        let mut carried: Vec<_> = journal.lock().unsynced.keys().cloned().collect();
        carried.sort();
        let mut want = vec![kept.id.clone(), lost.id.clone()];
        want.sort();
        assert_eq!(carried, want);
        for r in [&kept, &lost] {
            let back = record_file::read(&d.path().join(r.id.as_str()))
                .unwrap()
                .expect("a created container has its record");
            assert_eq!((back.id, back.name), (r.id.clone(), r.name.clone()));
        }
        assert!(!d.path().join(removed.id.as_str()).exists());
        // The old journal was read and deleted; a new one began.
        assert_eq!(files(d.path()), [2]);
        assert_eq!(journal.lock().generation, 2);
    }
}
