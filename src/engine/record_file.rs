//! A container's record on disk: `<dir>/container.jsonl`, appended to by
//! every write, one JSON record a line; the last whole line is the record.
//!
//! Appending writes into the file's own blocks. Replacing the file (a
//! temporary file renamed over it) made and freed a block per write, and
//! ext4 writes a renamed-over file out at once (`auto_da_alloc`) and, on a
//! `discard` mount, trims the freed block before the rename returns: about
//! 0.85 ms a write, three writes in every run of a container. An append is
//! a few microseconds.
//!
//! A torn append (a crash mid-write) leaves a partial last line, which
//! does not parse and is passed over: the record is the one before it, as
//! with an atomic replace. Each line starts with a newline of its own, so
//! an append after a torn one still begins a line. Past [`COMPACT_AT`]
//! bytes the file is replaced, atomically, by its last line.

use super::{EngineError, Record};
use crate::fsutil;
use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::path::Path;

/// The record's file in a container's directory.
pub const FILE: &str = "container.jsonl";
/// The single-document record of an older ketchd, read when there is no
/// [`FILE`]; the first write makes one.
const LEGACY_FILE: &str = "container.json";
/// File size past which an append compacts the file to its last line.
const COMPACT_AT: u64 = 64 * 1024;

/// Append `rec` to the record in `dir`; `sync` waits for the disk. A file
/// grown past [`COMPACT_AT`] is compacted.
pub fn append(dir: &Path, rec: &Record, sync: bool) -> Result<(), EngineError> {
    if append_only(dir, rec, sync)? {
        compact(dir, rec, sync)?;
    }
    Ok(())
}

/// Append `rec` without compacting; returns whether the file has grown
/// past [`COMPACT_AT`] (then [`compact`] it).
pub fn append_only(dir: &Path, rec: &Record, sync: bool) -> Result<bool, EngineError> {
    let path = dir.join(FILE);
    let line = encode(&path, rec)?;
    let written = (|| {
        let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
        f.write_all(&line)?;
        if f.metadata()?.len() > COMPACT_AT {
            return Ok(true);
        }
        if sync {
            f.sync_data()?;
        }
        Ok(false)
    })();
    written.map_err(EngineError::io(&path))
}

/// Replace the file in `dir`, atomically, by the one line of `rec`.
pub fn compact(dir: &Path, rec: &Record, sync: bool) -> Result<(), EngineError> {
    let path = dir.join(FILE);
    let line = encode(&path, rec)?;
    let replace = if sync {
        fsutil::write_atomic
    } else {
        fsutil::write_atomic_volatile
    };
    // The file's first line needs no newline before it.
    replace(&path, &line[1..]).map_err(EngineError::io(&path))
}

/// `rec` as an appended line (see [`frame`]).
fn encode(path: &Path, rec: &Record) -> Result<Vec<u8>, EngineError> {
    // The path is formatted only on failure: this runs on every append.
    frame(rec).map_err(|e| EngineError::io(path)(e))
}

/// `value` as a line to append to a file of JSON lines: a newline of its
/// own before it (see the module's docs) and one after. The create
/// journal's lines are framed the same way.
pub(super) fn frame(value: &impl serde::Serialize) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::with_capacity(2048);
    line.push(b'\n');
    serde_json::to_writer(&mut line, value).map_err(std::io::Error::other)?;
    line.push(b'\n');
    Ok(line)
}

/// The record in `dir`: the last line of its file that parses. `None`
/// when there is no record file, or none whole in it: a create that did not
/// finish (one that answered is in the create journal, which writes it
/// again), or a removal that did (it deletes the record first). Without a whole line,
/// an older ketchd's record is the record, if there is one.
pub fn read(dir: &Path) -> Result<Option<Record>, String> {
    let path = dir.join(FILE);
    match std::fs::read(&path) {
        Ok(data) => match last_whole(&data) {
            Some(rec) => Ok(Some(rec)),
            // Only a torn first line: the record is still the older
            // ketchd's, if there is one.
            None => read_legacy(dir),
        },
        Err(e) if e.kind() == ErrorKind::NotFound => read_legacy(dir),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn read_legacy(dir: &Path) -> Result<Option<Record>, String> {
    let legacy = dir.join(LEGACY_FILE);
    match std::fs::read(&legacy) {
        Ok(d) => serde_json::from_slice(&d)
            .map(Some)
            .map_err(|e| format!("{}: {e}", legacy.display())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", legacy.display())),
    }
}

/// Delete the record in `dir`: from here on the directory is garbage,
/// deleted by whoever finds it first. An older ketchd's record goes first:
/// a crash between the two unlinks leaves the newest record, never
/// brings back an older one.
pub fn delete(dir: &Path) -> std::io::Result<()> {
    for f in [LEGACY_FILE, FILE] {
        match std::fs::remove_file(dir.join(f)) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn last_whole(data: &[u8]) -> Option<Record> {
    data.split(|&b| b == b'\n')
        .rev()
        .filter(|l| !l.is_empty())
        .find_map(|l| serde_json::from_slice(l).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerId, Platform};

    fn rec(name: &str) -> Record {
        Record {
            id: ContainerId::random(),
            name: name.into(),
            created: chrono::Utc::now(),
            image: "hello".into(),
            image_id: crate::model::Digest::of(b"hello"),
            config: Default::default(),
            host_config: Default::default(),
            path: "/hello.wasm".into(),
            args: vec![],
            platform: Platform::Wasm,
            state: Default::default(),
            networks: Default::default(),
            inherited_binds: Vec::new(),
        }
    }

    fn name(dir: &Path) -> String {
        read(dir).unwrap().expect("a record").name
    }

    #[test]
    fn the_last_whole_line_is_the_record_and_a_torn_one_is_passed_over() {
        let d = tempfile::tempdir().unwrap();
        append(d.path(), &rec("one"), true).unwrap();
        append(d.path(), &rec("two"), false).unwrap();
        assert_eq!(name(d.path()), "two");
        // A crash mid-append: half a line, no newline.
        let whole = std::fs::read(d.path().join(FILE)).unwrap();
        let mut torn = whole.clone();
        let mut third = serde_json::to_vec(&rec("three")).unwrap();
        third.truncate(third.len() / 2);
        torn.push(b'\n');
        torn.extend_from_slice(&third);
        std::fs::write(d.path().join(FILE), &torn).unwrap();
        assert_eq!(name(d.path()), "two");
        // The next append starts a line of its own.
        append(d.path(), &rec("four"), false).unwrap();
        assert_eq!(name(d.path()), "four");
    }

    #[test]
    fn a_long_file_is_compacted_to_its_last_record() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..200 {
            append(d.path(), &rec(&format!("r{i}")), false).unwrap();
        }
        let len = std::fs::metadata(d.path().join(FILE)).unwrap().len();
        assert!(len <= COMPACT_AT, "{len} bytes");
        assert_eq!(name(d.path()), "r199");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_older_single_document_record_is_read_until_the_first_append() {
        let d = tempfile::tempdir().unwrap();
        let old = rec("old");
        std::fs::write(
            d.path().join(LEGACY_FILE),
            serde_json::to_vec_pretty(&old).unwrap(),
        )
        .unwrap();
        assert_eq!(name(d.path()), "old");
        append(d.path(), &rec("new"), false).unwrap();
        assert_eq!(name(d.path()), "new");
        // The first append of the new format torn by a crash: the record
        // is still the older one.
        std::fs::write(d.path().join(FILE), b"\n{\"torn").unwrap();
        assert_eq!(name(d.path()), "old");
        delete(d.path()).unwrap();
        assert!(read(d.path()).unwrap().is_none());
        let left: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{left:?}");
        // A create that never finished its first line.
        std::fs::write(d.path().join(FILE), b"\n{\"torn").unwrap();
        assert!(read(d.path()).unwrap().is_none());
    }
}
