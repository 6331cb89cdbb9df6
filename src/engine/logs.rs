//! Container logs: a json-file log (one `{"log","stream","time"}` object per
//! line, as Docker's default driver) plus a broadcast to attached clients
//! and `logs -f` followers.

use crate::api::stream::StdStream;
use crate::runtime::logfile::{self, LogFile};
pub use crate::runtime::logfile::{read_entries, Entry, Mark, Rotation};
use crate::runtime::OutputSink;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use tokio::sync::broadcast;

/// Messages buffered per subscriber before a slow one starts losing live
/// output (the log file always has everything).
const BROADCAST_CAPACITY: usize = 4096;
/// Log files held open between writes, all containers together. Past this,
/// a container's log is opened for each write and closed after it, so tens
/// of thousands of containers that print cost no descriptors of ketchd's.
const OPEN_FILES_MAX: usize = 1024;
/// Log files held open now (at most [`OPEN_FILES_MAX`]).
static OPEN_FILES: AtomicUsize = AtomicUsize::new(0);

#[derive(Clone, Debug)]
pub enum LogEvent {
    Output {
        stream: StdStream,
        data: Bytes,
        time: DateTime<Utc>,
    },
    /// The current run of the container ended.
    Exit,
}

/// How a container's output is kept: its logging driver's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogSettings {
    pub rotation: Rotation,
    /// `false` for the `none` driver: nothing is stored, and `logs` has
    /// nothing to read (attached clients still get the output).
    pub stored: bool,
}

impl Default for LogSettings {
    /// json-file without a size limit.
    fn default() -> Self {
        LogSettings {
            rotation: Rotation::default(),
            stored: true,
        }
    }
}

/// What a `none` container's monitor keeps on disk, only until ketchd
/// relays it to attached clients.
const UNSTORED: Rotation = Rotation {
    max_size: 1 << 20,
    max_files: 1,
};

/// The writer, and whether it holds one of the [`OPEN_FILES`] slots.
struct Writer {
    file: LogFile,
    counted: bool,
}

pub struct Log {
    path: PathBuf,
    settings: LogSettings,
    /// The file, held open between writes while [`OPEN_FILES`] allows.
    file: Mutex<Writer>,
    /// Live output for attached clients and followers: made by the first
    /// subscriber and dropped when a send finds none left, as its buffer is
    /// [`BROADCAST_CAPACITY`] slots (256 KiB), more than an idle guest.
    tx: Mutex<Option<broadcast::Sender<LogEvent>>>,
    /// While another process appends to the file: how far its lines have
    /// been published. Guarded together with `file`.
    relayed: Mutex<Option<Mark>>,
}

impl Log {
    pub fn open(path: &Path, settings: LogSettings) -> Self {
        Log {
            path: path.to_path_buf(),
            settings,
            file: Mutex::new(Writer {
                file: LogFile::new(path, settings.rotation),
                counted: false,
            }),
            tx: Mutex::new(None),
            relayed: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Is anything stored for `logs` to read (not the `none` driver)?
    pub fn is_stored(&self) -> bool {
        self.settings.stored
    }

    /// How another process writing this log rotates it (a Linux
    /// container's monitor).
    pub fn rotation(&self) -> Rotation {
        if self.settings.stored {
            self.settings.rotation
        } else {
            UNSTORED
        }
    }

    /// The current end of the file and a subscription to everything after
    /// it, taken atomically so a follower neither misses nor repeats a line.
    pub fn snapshot_and_subscribe(&self) -> (Mark, broadcast::Receiver<LogEvent>) {
        let g = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let relayed = *self.relayed.lock().unwrap_or_else(|e| e.into_inner());
        let mark = relayed.unwrap_or_else(|| Mark::now(&self.path));
        let rx = self
            .tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| broadcast::channel(BROADCAST_CAPACITY).0)
            .subscribe();
        drop(g);
        (mark, rx)
    }

    pub fn exit(&self) {
        self.publish(|| LogEvent::Exit);
    }

    /// Send to the subscribers, if a channel exists: `event` is made only
    /// then, so an unfollowed log copies no output. With no subscriber
    /// left, free the channel.
    fn publish(&self, event: impl FnOnce() -> LogEvent) {
        let mut tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        if tx.as_ref().is_some_and(|t| t.send(event()).is_err()) {
            *tx = None;
        }
    }

    fn append(&self, stream: StdStream, data: &[u8]) {
        let mut g = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let time = Utc::now();
        if self.settings.stored {
            let mut buf = Vec::with_capacity(data.len() + 64);
            logfile::encode(stream, data, time, &mut buf);
            // Hold the file open while the cap allows; else open it for
            // this write alone.
            if !g.counted {
                g.counted = OPEN_FILES.fetch_add(1, Ordering::Relaxed) < OPEN_FILES_MAX;
                if !g.counted {
                    OPEN_FILES.fetch_sub(1, Ordering::Relaxed);
                }
            }
            if let Err(e) = g.file.append(&buf) {
                crate::lograte::warn_limited!(
                    "container log write",
                    "cannot write log {}: {e}",
                    self.path.display()
                );
            }
            if !g.counted {
                g.file.close();
            }
        }
        // Still under the file's lock, so a new subscriber's snapshot and
        // this line are in order.
        self.publish(|| LogEvent::Output {
            stream,
            data: Bytes::copy_from_slice(data),
            time,
        });
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        let w = self.file.get_mut().unwrap_or_else(|e| e.into_inner());
        if w.counted {
            OPEN_FILES.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl OutputSink for Log {
    fn write(&self, stream: StdStream, data: &[u8]) {
        self.append(stream, data);
    }

    fn relay_from_end(&self) {
        let _g = self.file.lock().unwrap_or_else(|e| e.into_inner());
        *self.relayed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Mark::now(&self.path));
    }

    fn relay(&self) -> bool {
        let _g = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let mut relayed = self.relayed.lock().unwrap_or_else(|e| e.into_inner());
        let Some(from) = *relayed else { return false };
        let (entries, to) = logfile::read_since(&self.path, from);
        for e in entries {
            self.publish(|| LogEvent::Output {
                stream: e.stream,
                data: e.data,
                time: e.time,
            });
        }
        *relayed = Some(to);
        to != from
    }

    fn relay_stop(&self) {
        *self.relayed.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> LogSettings {
        LogSettings::default()
    }

    fn is_followed(log: &Log) -> bool {
        log.tx.lock().unwrap().is_some()
    }

    fn open_descriptors() -> usize {
        std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
    }

    #[test]
    fn followers_get_what_follows_and_an_unfollowed_log_keeps_no_channel() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(&dir.path().join("c-json.log"), stored());
        log.write(StdStream::Stdout, b"before\n");
        assert!(!is_followed(&log), "no channel without a follower");
        let (end, mut rx) = log.snapshot_and_subscribe();
        log.write(StdStream::Stderr, b"after\n");
        match rx.try_recv().unwrap() {
            LogEvent::Output { stream, data, .. } => {
                assert_eq!((stream, &data[..]), (StdStream::Stderr, &b"after\n"[..]))
            }
            LogEvent::Exit => panic!("an exit before the output"),
        }
        let stored = read_entries(log.path(), Some(end)).unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(&stored[0].data[..], b"before\n");
        // The follower leaves: the next event finds nobody and frees it.
        drop(rx);
        log.exit();
        assert!(!is_followed(&log));
    }

    #[test]
    fn thousands_of_logs_hold_a_bounded_number_of_descriptors() {
        let dir = tempfile::tempdir().unwrap();
        let before = open_descriptors();
        let logs: Vec<Log> = (0..OPEN_FILES_MAX + 200)
            .map(|i| Log::open(&dir.path().join(format!("{i}-json.log")), stored()))
            .collect();
        for l in &logs {
            l.write(StdStream::Stdout, b"tick\n");
        }
        // Other tests of this process open files meanwhile too (some
        // slack); without the cap all 1,224 would be open.
        assert!(
            open_descriptors() <= before + OPEN_FILES_MAX + 64,
            "{} open",
            open_descriptors()
        );
        // Every line reached its file, held open or not.
        for l in logs.iter().rev().take(5) {
            let e = read_entries(l.path(), None).unwrap();
            assert_eq!(e.len(), 1, "{}", l.path().display());
        }
        drop(logs);
        assert!(
            open_descriptors() <= before + 16,
            "{} open",
            open_descriptors()
        );
    }
}
