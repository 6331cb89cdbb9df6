//! Container logs: a json-file log (one `{"log","stream","time"}` object per
//! line, as Docker's default driver) plus a broadcast to attached clients
//! and `logs -f` followers.

use crate::api::stream::StdStream;
use crate::runtime::OutputSink;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
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

#[derive(serde::Serialize, serde::Deserialize)]
struct Line {
    log: String,
    stream: StdStream,
    time: DateTime<Utc>,
}

pub struct Log {
    path: PathBuf,
    /// The file, held open between writes while [`OPEN_FILES`] allows.
    file: Mutex<Option<File>>,
    /// Live output for attached clients and followers: made by the first
    /// subscriber and dropped when a send finds none left, as its buffer is
    /// [`BROADCAST_CAPACITY`] slots (256 KiB), more than an idle guest.
    tx: Mutex<Option<broadcast::Sender<LogEvent>>>,
    /// While another process appends to the file: how far its lines have
    /// been published. Guarded together with `file`.
    relayed: Mutex<Option<u64>>,
}

impl Log {
    pub fn open(path: &Path) -> Self {
        Log {
            path: path.to_path_buf(),
            file: Mutex::new(None),
            tx: Mutex::new(None),
            relayed: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current end of the file and a subscription to everything after
    /// it, taken atomically so a follower neither misses nor repeats a line.
    pub fn snapshot_and_subscribe(&self) -> (u64, broadcast::Receiver<LogEvent>) {
        let g = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let relayed = *self.relayed.lock().unwrap_or_else(|e| e.into_inner());
        let len =
            relayed.unwrap_or_else(|| std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0));
        let rx = self
            .tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| broadcast::channel(BROADCAST_CAPACITY).0)
            .subscribe();
        drop(g);
        (len, rx)
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
        // A file opened for this write alone, when the open-file cap is
        // taken; closed when it goes out of scope.
        let mut once = None;
        if g.is_none() {
            match OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
            {
                Ok(f) if OPEN_FILES.fetch_add(1, Ordering::Relaxed) < OPEN_FILES_MAX => {
                    *g = Some(f)
                }
                Ok(f) => {
                    OPEN_FILES.fetch_sub(1, Ordering::Relaxed);
                    once = Some(f);
                }
                Err(e) => tracing::warn!("cannot open log {}: {e}", self.path.display()),
            }
        }
        let time = Utc::now();
        let mut buf = Vec::with_capacity(data.len() + 64);
        for piece in data.split_inclusive(|&b| b == b'\n') {
            let line = Line {
                log: String::from_utf8_lossy(piece).into_owned(),
                stream,
                time,
            };
            // A line of strings always encodes; skip one that somehow does not.
            if serde_json::to_writer(&mut buf, &line).is_ok() {
                buf.push(b'\n');
            }
        }
        if let Some(f) = g.as_mut().or(once.as_mut()) {
            if let Err(e) = f.write_all(&buf) {
                tracing::warn!("cannot write log {}: {e}", self.path.display());
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
        let held = self.file.get_mut().unwrap_or_else(|e| e.into_inner());
        if held.take().is_some() {
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
        let len = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        *self.relayed.lock().unwrap_or_else(|e| e.into_inner()) = Some(len);
    }

    fn relay(&self) -> bool {
        let _g = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let mut relayed = self.relayed.lock().unwrap_or_else(|e| e.into_inner());
        let Some(from) = *relayed else { return false };
        let Ok(mut f) = File::open(&self.path) else {
            return false;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len <= from || f.seek(SeekFrom::Start(from)).is_err() {
            return false;
        }
        let mut data = Vec::new();
        if f.take(len - from).read_to_end(&mut data).is_err() {
            return false;
        }
        // Only whole lines; a torn last line waits for the next call.
        let Some(end) = data.iter().rposition(|&b| b == b'\n') else {
            return false;
        };
        for line in data[..end].split(|&b| b == b'\n') {
            if let Ok(l) = serde_json::from_slice::<Line>(line) {
                self.publish(|| LogEvent::Output {
                    stream: l.stream,
                    data: Bytes::from(l.log),
                    time: l.time,
                });
            }
        }
        *relayed = Some(from + end as u64 + 1);
        true
    }

    fn relay_stop(&self) {
        *self.relayed.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// One stored entry.
pub struct Entry {
    pub stream: StdStream,
    pub data: Bytes,
    pub time: DateTime<Utc>,
}

/// Read stored entries up to byte offset `end` (a torn last line is skipped).
pub fn read_entries(path: &Path, end: u64) -> std::io::Result<Vec<Entry>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    f.seek(SeekFrom::Start(0))?;
    let r = BufReader::new(f.take(end));
    let mut out = Vec::new();
    for line in r.lines() {
        let line = line?;
        if let Ok(l) = serde_json::from_str::<Line>(&line) {
            out.push(Entry {
                stream: l.stream,
                data: Bytes::from(l.log),
                time: l.time,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_followed(log: &Log) -> bool {
        log.tx.lock().unwrap().is_some()
    }

    fn open_descriptors() -> usize {
        std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
    }

    #[test]
    fn followers_get_what_follows_and_an_unfollowed_log_keeps_no_channel() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(&dir.path().join("c-json.log"));
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
        let stored = read_entries(log.path(), end).unwrap();
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
            .map(|i| Log::open(&dir.path().join(format!("{i}-json.log"))))
            .collect();
        for l in &logs {
            l.write(StdStream::Stdout, b"tick\n");
        }
        // Other tests of this process hold some open files too.
        assert!(
            open_descriptors() <= before + OPEN_FILES_MAX,
            "{} open",
            open_descriptors()
        );
        // Every line reached its file, held open or not.
        for l in logs.iter().rev().take(5) {
            let e = read_entries(l.path(), u64::MAX).unwrap();
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
