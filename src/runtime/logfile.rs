//! A container's log on disk, as Docker's json-file driver keeps it: one
//! `{"log","stream","time"}` object per line, rotated once it would pass
//! `max-size` into `PATH.1` … `PATH.(max-file − 1)` (the oldest dropped).
//! ketchd writes it for Wasm containers, a Linux container's monitor for
//! its container; ketchd reads both, rotated files first.

use crate::api::stream::StdStream;
use chrono::{DateTime, Utc};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Rotated files read back at most, whatever a log's settings say.
const MAX_FILES: u32 = 100;

/// When a log rotates: past `max_size` bytes (0: never), keeping
/// `max_files` files in all (the current one included).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rotation {
    pub max_size: u64,
    pub max_files: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_size: 0,
            max_files: 1,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    log: std::borrow::Cow<'a, str>,
    stream: StdStream,
    time: DateTime<Utc>,
}

/// Encode `data` as log lines (one per line of output) onto `buf`.
pub fn encode(stream: StdStream, data: &[u8], time: DateTime<Utc>, buf: &mut Vec<u8>) {
    for piece in data.split_inclusive(|&b| b == b'\n') {
        let line = Line {
            log: String::from_utf8_lossy(piece),
            stream,
            time,
        };
        // A line of strings always encodes; skip one that somehow does not.
        if serde_json::to_writer(&mut *buf, &line).is_ok() {
            buf.push(b'\n');
        }
    }
}

/// One stored entry.
pub struct Entry {
    pub stream: StdStream,
    pub data: bytes::Bytes,
    pub time: DateTime<Utc>,
}

/// Decode one stored line.
pub fn decode(line: &[u8]) -> Option<Entry> {
    let l: Line = serde_json::from_slice(line).ok()?;
    Some(Entry {
        stream: l.stream,
        data: bytes::Bytes::from(l.log.into_owned()),
        time: l.time,
    })
}

/// The writer of one log: the file held open or not (the caller decides,
/// to bound its descriptors), its size, and its rotation.
pub struct LogFile {
    path: PathBuf,
    rotation: Rotation,
    file: Option<File>,
    /// Bytes in the current file, once it has been opened.
    size: u64,
}

impl LogFile {
    pub fn new(path: &Path, rotation: Rotation) -> Self {
        LogFile {
            path: path.to_path_buf(),
            rotation,
            file: None,
            size: 0,
        }
    }

    pub fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// Let go of the descriptor (the next append opens the file again).
    pub fn close(&mut self) {
        self.file = None;
    }

    fn open(&mut self) -> std::io::Result<&mut File> {
        if self.file.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = f.metadata()?.len();
            self.file = Some(f);
        }
        // Just set when it was empty.
        self.file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("log file not open"))
    }

    /// Append encoded lines (each ends in a newline), rotating between
    /// them so that every file stays within the size; one line over the
    /// size gets a file of its own.
    pub fn append(&mut self, mut buf: &[u8]) -> std::io::Result<()> {
        self.open()?;
        let max = self.rotation.max_size;
        while !buf.is_empty() {
            let room = max.saturating_sub(self.size);
            let take = if max == 0 || buf.len() as u64 <= room {
                buf.len()
            } else {
                // The whole lines that fit.
                let within = &buf[..usize::try_from(room).unwrap_or(usize::MAX).min(buf.len())];
                match within.iter().rposition(|&b| b == b'\n') {
                    Some(i) => i + 1,
                    None if self.size > 0 => {
                        self.rotate()?;
                        continue;
                    }
                    None => buf
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(buf.len(), |i| i + 1),
                }
            };
            self.open()?.write_all(&buf[..take])?;
            self.size += take as u64;
            buf = &buf[take..];
        }
        Ok(())
    }

    /// `PATH.(n-1)` → `PATH.n`, …, `PATH` → `PATH.1`; with one file, the
    /// current one is emptied.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let n = self.rotation.max_files.clamp(1, MAX_FILES);
        if n == 1 {
            File::create(&self.path)?;
        } else {
            for i in (1..n - 1).rev() {
                let from = rotated(&self.path, i);
                if from.exists() {
                    std::fs::rename(&from, rotated(&self.path, i + 1))?;
                }
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        self.size = 0;
        Ok(())
    }
}

/// `PATH.i`.
pub fn rotated(path: &Path, i: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// Where a reader stopped: the file (by inode) and the offset in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    pub ino: u64,
    pub end: u64,
}

impl Mark {
    /// The current end of the log at `path`.
    pub fn now(path: &Path) -> Mark {
        std::fs::metadata(path).map_or(Mark::default(), |m| Mark {
            ino: inode(&m),
            end: m.len(),
        })
    }
}

#[cfg(unix)]
fn inode(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[cfg(not(unix))]
fn inode(_m: &std::fs::Metadata) -> u64 {
    0
}

/// Every stored entry up to `upto` (`None`: all of them), oldest first:
/// the rotated files, then the current one. The file `upto` names is read
/// to its offset and no further (later files were made after it); a mark
/// taken before the log existed reads nothing. A torn last line is
/// skipped.
pub fn read_entries(path: &Path, upto: Option<Mark>) -> std::io::Result<Vec<Entry>> {
    if upto.is_some_and(|m| m.ino == 0) {
        return Ok(Vec::new());
    }
    let mut files: Vec<PathBuf> = (1..MAX_FILES)
        .map(|i| rotated(path, i))
        .take_while(|p| p.exists())
        .collect();
    files.reverse();
    files.push(path.to_path_buf());
    let mut out = Vec::new();
    for p in files {
        let f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let ino = inode(&f.metadata()?);
        let limit = match upto {
            Some(m) if m.ino == ino => m.end,
            _ => u64::MAX,
        };
        for line in BufReader::new(f.take(limit)).split(b'\n') {
            if let Some(e) = decode(&line?) {
                out.push(e);
            }
        }
        if limit != u64::MAX {
            break;
        }
    }
    Ok(out)
}

/// What another process appended to the log since `from`: whole lines
/// only, following the file through the rotations made meanwhile (into
/// `PATH.k`, then the newer rotated files, then the current one). Returns
/// the entries and the new mark.
pub fn read_since(path: &Path, from: Mark) -> (Vec<Entry>, Mark) {
    let mut out = Vec::new();
    let now = Mark::now(path);
    let mut at = from;
    if now.ino == from.ino && now.end < from.end {
        // Emptied in place (a log of one file rotated): start over.
        at.end = 0;
    } else if now.ino != from.ino {
        // Rotated: finish the old file where it went, if it is still kept,
        // then the files rotated after it, oldest first.
        let was = (1..MAX_FILES)
            .map_while(|i| {
                std::fs::metadata(rotated(path, i))
                    .ok()
                    .map(|m| (i, inode(&m)))
            })
            .find(|(_, ino)| *ino == from.ino)
            .map(|(i, _)| i);
        if let Some(k) = was {
            for i in (1..=k).rev() {
                if let Ok(f) = File::open(rotated(path, i)) {
                    read_lines(f, if i == k { from.end } else { 0 }, &mut out);
                }
            }
        }
        at = Mark {
            ino: now.ino,
            end: 0,
        };
    }
    if let Ok(f) = File::open(path) {
        at.end += read_lines(f, at.end, &mut out);
    }
    (out, at)
}

/// Decode the whole lines of `f` from `from`; returns the bytes consumed.
fn read_lines(mut f: File, from: u64, out: &mut Vec<Entry>) -> u64 {
    let mut data = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_end(&mut data).is_err() {
        return 0;
    }
    let Some(end) = data.iter().rposition(|&b| b == b'\n') else {
        return 0;
    };
    out.extend(data[..end].split(|&b| b == b'\n').filter_map(decode));
    end as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(f: &mut LogFile, text: &str) {
        let mut buf = Vec::new();
        encode(StdStream::Stdout, text.as_bytes(), Utc::now(), &mut buf);
        f.append(&buf).unwrap();
    }

    fn texts(e: &[Entry]) -> Vec<String> {
        e.iter()
            .map(|e| String::from_utf8_lossy(&e.data).trim().to_string())
            .collect()
    }

    #[test]
    fn a_log_rotates_at_its_size_and_keeps_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut f = LogFile::new(
            &path,
            Rotation {
                max_size: 200,
                max_files: 3,
            },
        );
        for i in 0..40 {
            line(&mut f, &format!("line {i:02}\n"));
        }
        assert!(rotated(&path, 2).exists() && !rotated(&path, 3).exists());
        for p in [path.clone(), rotated(&path, 1), rotated(&path, 2)] {
            assert!(
                std::fs::metadata(&p).unwrap().len() <= 200,
                "{}",
                p.display()
            );
        }
        // Read back in order: the newest lines, none repeated.
        let all = texts(&read_entries(&path, Some(Mark::now(&path))).unwrap());
        assert_eq!(all.last().unwrap(), "line 39");
        let n: Vec<u32> = all.iter().map(|l| l[5..].parse().unwrap()).collect();
        assert!(n.windows(2).all(|w| w[1] == w[0] + 1), "{all:?}");
        assert!(all.len() >= 6 && all.len() < 40, "{}", all.len());
    }

    /// A burst of lines read at once from the container is split between
    /// files at line ends: none passes the size; a line longer than the
    /// size has a file to itself.
    #[test]
    fn a_burst_of_lines_is_split_between_files_at_line_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut f = LogFile::new(
            &path,
            Rotation {
                max_size: 300,
                max_files: 3,
            },
        );
        let burst: String = (0..30).map(|i| format!("line {i:02}\n")).collect();
        line(&mut f, &burst);
        let files = [path.clone(), rotated(&path, 1), rotated(&path, 2)];
        for p in &files {
            let n = std::fs::metadata(p).unwrap().len();
            assert!(n > 0 && n <= 300, "{}: {n}", p.display());
        }
        let all = texts(&read_entries(&path, Some(Mark::now(&path))).unwrap());
        assert_eq!(all.last().unwrap(), "line 29");
        let n: Vec<u32> = all.iter().map(|l| l[5..].parse().unwrap()).collect();
        assert!(n.windows(2).all(|w| w[1] == w[0] + 1), "{all:?}");
        line(&mut f, &format!("{}\n", "y".repeat(400)));
        let big = std::fs::metadata(&path).unwrap().len();
        assert!(big > 400, "the long line alone: {big}");
        line(&mut f, "after\n");
        assert!(std::fs::metadata(&path).unwrap().len() < 300);
    }

    #[test]
    fn one_file_is_emptied_and_a_reader_follows_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut one = LogFile::new(
            &path,
            Rotation {
                max_size: 100,
                max_files: 1,
            },
        );
        for i in 0..20 {
            line(&mut one, &format!("x{i}\n"));
        }
        assert!(std::fs::metadata(&path).unwrap().len() <= 100);
        assert!(!rotated(&path, 1).exists());

        let path = dir.path().join("d-json.log");
        let mut f = LogFile::new(
            &path,
            Rotation {
                max_size: 100,
                max_files: 5,
            },
        );
        line(&mut f, "first\n");
        let (got, mut mark) = read_since(&path, Mark::now(&path));
        assert!(got.is_empty());
        let mut seen = Vec::new();
        for i in 0..12 {
            line(&mut f, &format!("l{i}\n"));
            // Read after every fourth line: each read spans rotations.
            if i % 4 == 3 {
                let (got, m) = read_since(&path, mark);
                seen.extend(texts(&got));
                mark = m;
            }
        }
        let want: Vec<String> = (0..12).map(|i| format!("l{i}")).collect();
        assert_eq!(seen, want);
    }
}
