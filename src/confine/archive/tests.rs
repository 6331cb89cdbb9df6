//! Hostile archives, built byte by byte as an attacker would, with the
//! assertions on what lies outside the extraction root.

use super::*;
use crate::confine::Root;
use std::fs;
use std::io::Read;
use std::path::Path;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Root-only checks fail in CI without root, and skip elsewhere.
fn need_root(what: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{what} needs root");
    eprintln!("skipped: {what} needs root");
    false
}

fn header(kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// A raw name, bypassing the tar crate's own checks.
fn raw_path(h: &mut tar::Header, p: &str) {
    let name = &mut h.as_old_mut().name;
    name.fill(0);
    name[..p.len()].copy_from_slice(p.as_bytes());
}

struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Self {
        Tar(tar::Builder::new(Vec::new()))
    }
    fn file(mut self, p: &str, data: &[u8]) -> Self {
        let mut h = header(tar::EntryType::Regular, data.len() as u64);
        raw_path(&mut h, p);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }
    fn dir(mut self, p: &str) -> Self {
        let mut h = header(tar::EntryType::Directory, 0);
        h.set_mode(0o755);
        raw_path(&mut h, p);
        h.set_cksum();
        self.0.append(&h, io::empty()).unwrap();
        self
    }
    fn link(mut self, kind: tar::EntryType, p: &str, target: &str) -> Self {
        let mut h = header(kind, 0);
        raw_path(&mut h, p);
        h.set_link_name(target).unwrap();
        h.set_cksum();
        self.0.append(&h, io::empty()).unwrap();
        self
    }
    fn special(mut self, kind: tar::EntryType, p: &str, major: u32, minor: u32) -> Self {
        let mut h = header(kind, 0);
        h.set_mode(0o666);
        raw_path(&mut h, p);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_cksum();
        self.0.append(&h, io::empty()).unwrap();
        self
    }
    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// A host directory with a victim beside the extraction root.
struct Host {
    top: tempfile::TempDir,
}

impl Host {
    fn new() -> Self {
        let top = tempfile::tempdir().unwrap();
        fs::create_dir_all(top.path().join("root")).unwrap();
        fs::create_dir_all(top.path().join("victim")).unwrap();
        fs::write(top.path().join("victim/keep"), b"precious").unwrap();
        fs::write(top.path().join("root/mine"), b"mine").unwrap();
        Host { top }
    }
    fn root(&self) -> PathBuf {
        self.top.path().join("root")
    }
    fn extract(&self, data: &[u8], kind: Kind, target: Target) -> Result<Stats, ConfineError> {
        extract_with(&self.root(), data, kind, Limits::default(), target)
    }
    /// Nothing outside the root changed.
    fn intact(&self) {
        assert_eq!(
            fs::read(self.top.path().join("victim/keep")).unwrap(),
            b"precious"
        );
        assert!(!has_opaque(&self.top.path().join("victim")));
        assert!(!has_opaque(self.top.path()));
    }
}

use std::path::PathBuf;

fn extract_with(
    root: &Path,
    data: &[u8],
    kind: Kind,
    limits: Limits,
    target: Target,
) -> Result<Stats, ConfineError> {
    let root = Root::open(root).unwrap();
    extract(
        &root,
        &mut || Ok(Box::new(data) as Box<dyn Read>),
        &Policy { kind, limits },
        target,
    )
}

fn has_opaque(p: &Path) -> bool {
    let mut v = [0u8; 4];
    rustix::fs::lgetxattr(p, "trusted.overlay.opaque", &mut v).is_ok()
}

fn refused(r: Result<Stats, ConfineError>, want: &str) -> String {
    let e = r.expect_err(want).to_string();
    assert!(e.contains(want), "{e:?} should say {want:?}");
    e
}

#[test]
fn whiteouts_of_dot_dot_are_refused_and_the_parent_survives() {
    let h = Host::new();
    for name in [".wh...", "a/.wh...", ".wh..", ".wh."] {
        let data = Tar::new().file(name, b"").bytes();
        refused(
            h.extract(&data, Kind::Layer, Target::Fresh),
            "names nothing inside the layer",
        );
        h.intact();
        assert_eq!(fs::read(h.root().join("mine")).unwrap(), b"mine");
    }
}

#[test]
fn whiteouts_mean_nothing_outside_layers() {
    // `cp` into a volume: a file named `.wh...` is only a file.
    let h = Host::new();
    let data = Tar::new().file(".wh...", b"just a name").bytes();
    h.extract(&data, Kind::Copy, Target::Existing).unwrap();
    assert_eq!(fs::read(h.root().join(".wh...")).unwrap(), b"just a name");
    assert_eq!(fs::read(h.root().join("mine")).unwrap(), b"mine");
    h.intact();
}

#[test]
fn opaque_markers_never_land_outside() {
    if !need_root("trusted.* xattrs") {
        return;
    }
    let h = Host::new();
    let victim = h.top.path().join("victim");
    // The marker's directory is replaced by a symlink to the host later.
    let data = Tar::new()
        .dir("d/")
        .file("d/.wh..wh..opq", b"")
        .link(tar::EntryType::Symlink, "d", victim.to_str().unwrap())
        .bytes();
    h.extract(&data, Kind::Layer, Target::Fresh).unwrap();
    h.intact();
    // A marker beneath an earlier symlink is refused outright.
    let h = Host::new();
    let data = Tar::new()
        .link(tar::EntryType::Symlink, "e", victim.to_str().unwrap())
        .file("e/.wh..wh..opq", b"")
        .bytes();
    refused(h.extract(&data, Kind::Layer, Target::Fresh), "symlink");
    h.intact();
    // A legitimate marker is set.
    let h = Host::new();
    let data = Tar::new().dir("o/").file("o/.wh..wh..opq", b"").bytes();
    h.extract(&data, Kind::Layer, Target::Fresh).unwrap();
    assert!(has_opaque(&h.root().join("o")));
}

#[test]
fn names_that_climb_or_are_absolute_are_refused() {
    for (name, want) in [
        ("../evil", "'..'"),
        ("a/../../evil", "'..'"),
        ("/etc/evil", "absolute"),
    ] {
        let h = Host::new();
        let data = Tar::new().file(name, b"x").bytes();
        refused(h.extract(&data, Kind::Copy, Target::Existing), want);
        h.intact();
        assert!(!h.top.path().join("evil").exists());
    }
}

#[test]
fn nothing_is_written_through_a_symlink() {
    let h = Host::new();
    let victim = h.top.path().join("victim");
    let data = Tar::new()
        .link(tar::EntryType::Symlink, "l", victim.to_str().unwrap())
        .file("l/keep", b"overwritten")
        .bytes();
    refused(h.extract(&data, Kind::Copy, Target::Fresh), "symlink");
    h.intact();
    // A symlink already in the destination (a container's own).
    std::os::unix::fs::symlink(&victim, h.root().join("pre")).unwrap();
    let data = Tar::new()
        .file("first", b"1")
        .file("pre/keep", b"overwritten")
        .bytes();
    refused(h.extract(&data, Kind::Copy, Target::Existing), "symlink");
    h.intact();
    assert!(
        !h.root().join("first").exists(),
        "a refused archive writes nothing into an existing directory"
    );
}

#[test]
fn replacing_a_symlink_by_a_file_never_writes_its_target() {
    let h = Host::new();
    let victim = h.top.path().join("victim/keep");
    std::os::unix::fs::symlink(&victim, h.root().join("f")).unwrap();
    let data = Tar::new().file("f", b"new").bytes();
    h.extract(&data, Kind::Copy, Target::Existing).unwrap();
    h.intact();
    assert_eq!(fs::read(h.root().join("f")).unwrap(), b"new");
}

#[test]
fn hard_links_only_to_earlier_entries() {
    let h = Host::new();
    for target in ["mine", "../victim/keep", "/etc/passwd", "later"] {
        let data = Tar::new()
            .link(tar::EntryType::Link, "h", target)
            .file("later", b"x")
            .bytes();
        let r = h.extract(&data, Kind::Copy, Target::Existing);
        assert!(r.is_err(), "hard link to {target} was accepted");
        h.intact();
    }
    let data = Tar::new()
        .file("a", b"data")
        .link(tar::EntryType::Link, "b", "a")
        .bytes();
    h.extract(&data, Kind::Layer, Target::Fresh).unwrap();
    assert_eq!(fs::read(h.root().join("b")).unwrap(), b"data");
}

#[test]
fn escaping_symlinks_in_layers_are_refused() {
    let h = Host::new();
    let data = Tar::new()
        .link(tar::EntryType::Symlink, "up", "../../../etc")
        .bytes();
    refused(
        h.extract(&data, Kind::Layer, Target::Fresh),
        "outside the layer",
    );
    // Absolute targets resolve inside the container's root: kept.
    let data = Tar::new()
        .link(tar::EntryType::Symlink, "sh", "/bin/busybox")
        .link(tar::EntryType::Symlink, "usr/lib64", "../lib")
        .bytes();
    h.extract(&data, Kind::Layer, Target::Fresh).unwrap();
}

#[test]
fn devices_as_docker_makes_them() {
    let h = Host::new();
    let data = Tar::new()
        .special(tar::EntryType::Char, "dev/null", 1, 3)
        .bytes();
    refused(
        h.extract(&data, Kind::Context, Target::Fresh),
        "not allowed here",
    );
    let data = Tar::new().special(tar::EntryType::Fifo, "p", 0, 0).bytes();
    refused(
        h.extract(&data, Kind::Context, Target::Fresh),
        "not allowed here",
    );
    if !need_root("mknod") {
        return;
    }
    let data = Tar::new()
        .special(tar::EntryType::Char, "dev/null", 1, 3)
        .special(tar::EntryType::Fifo, "run/fifo", 0, 0)
        .file("etc/.wh.gone", b"")
        .bytes();
    h.extract(&data, Kind::Layer, Target::Fresh).unwrap();
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let m = fs::symlink_metadata(h.root().join("dev/null")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(m.permissions().mode() & 0o777, 0o666);
    assert!(fs::symlink_metadata(h.root().join("run/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    let w = fs::symlink_metadata(h.root().join("etc/gone")).unwrap();
    assert!(w.file_type().is_char_device() && w.rdev() == 0);
}

#[test]
fn decompression_bombs_are_refused() {
    // 300 MiB of zeros gzips to ~300 KiB: over the ratio and the floor.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    {
        let mut b = tar::Builder::new(&mut gz);
        let size = 300u64 << 20;
        let mut h = header(tar::EntryType::Regular, size);
        h.set_path("zeros").unwrap();
        h.set_cksum();
        b.append(&h, io::repeat(0).take(size)).unwrap();
        b.finish().unwrap();
    }
    let data = gz.finish().unwrap();
    let h = Host::new();
    let e = refused(
        h.extract(&data, Kind::Context, Target::Fresh),
        "decompression bomb",
    );
    assert!(e.contains("200 times"), "{e}");
}

#[test]
fn entry_count_entry_size_and_total_are_bounded() {
    let small = Limits {
        max_bytes: 100,
        max_entries: 3,
        max_entry_bytes: 60,
        ..Limits::default()
    };
    let h = Host::new();
    let many = Tar::new()
        .file("1", b"")
        .file("2", b"")
        .file("3", b"")
        .file("4", b"")
        .bytes();
    let r = extract_with(&h.root(), &many, Kind::Copy, small, Target::Fresh);
    refused(r, "more than 3 entries");
    let big = Tar::new().file("big", &[1u8; 61]).bytes();
    let r = extract_with(&h.root(), &big, Kind::Copy, small, Target::Fresh);
    refused(r, "limit of 60 bytes per entry");
    let total = Tar::new()
        .file("a", &[1u8; 60])
        .file("b", &[1u8; 60])
        .bytes();
    let r = extract_with(&h.root(), &total, Kind::Copy, small, Target::Fresh);
    refused(r, "over 100 bytes");
}

#[test]
fn endless_long_names_are_refused_without_reading_them_whole() {
    // A GNU long-name record of 64 MiB: the tar reader would hold it all.
    let size = 64u64 << 20;
    let mut h = header(tar::EntryType::GNULongName, size);
    raw_path(&mut h, "././@LongLink");
    h.set_cksum();
    let mut data = h.as_bytes().to_vec();
    data.extend(std::iter::repeat_n(b'a', size as usize));
    let host = Host::new();
    refused(
        host.extract(&data, Kind::Layer, Target::Fresh),
        "metadata record",
    );
}

#[test]
fn an_existing_directory_is_never_replaced_by_a_file() {
    // A file or link named like a directory of the destination (`etc` in
    // a container's `/`, a user's own directory) once deleted the tree.
    let h = Host::new();
    fs::create_dir_all(h.root().join("d/sub")).unwrap();
    fs::write(h.root().join("d/sub/x"), b"x").unwrap();
    for data in [
        Tar::new()
            .file("first", b"1")
            .file("d", b"now a file")
            .bytes(),
        Tar::new()
            .link(tar::EntryType::Symlink, "d", "/elsewhere")
            .bytes(),
    ] {
        refused(
            h.extract(&data, Kind::Copy, Target::Existing),
            "existing directory",
        );
        assert_eq!(fs::read(h.root().join("d/sub/x")).unwrap(), b"x");
        assert!(!h.root().join("first").exists(), "nothing written");
    }
    // Within a fresh layer, later entries replace earlier ones, as Docker.
    let h = Host::new();
    let data = Tar::new()
        .dir("d/")
        .file("d/x", b"x")
        .file("d", b"file")
        .bytes();
    h.extract(&data, Kind::Layer, Target::Fresh).unwrap();
    assert_eq!(fs::read(h.root().join("d")).unwrap(), b"file");
}

#[test]
fn deep_names_and_sparse_files_are_refused() {
    let h = Host::new();
    let deep = "a/".repeat(300) + "f";
    let mut b = tar::Builder::new(Vec::new());
    let mut hd = header(tar::EntryType::Regular, 1);
    hd.set_cksum();
    b.append_data(&mut hd, &deep, &b"x"[..]).unwrap();
    refused(
        h.extract(&b.into_inner().unwrap(), Kind::Layer, Target::Fresh),
        "components",
    );
    let mut b = Tar::new();
    // A 1 GiB hole, then one byte of data: the hole the reader would fill itself.
    let mut hs = header(tar::EntryType::GNUSparse, 1);
    raw_path(&mut hs, "holes");
    let g = hs.as_gnu_mut().unwrap();
    g.sparse[0].offset = *b"07777777777\0";
    g.sparse[0].numbytes = *b"00000000001\0";
    g.realsize = *b"10000000000\0";
    hs.set_cksum();
    b.0.append(&hs, &b"x"[..]).unwrap();
    refused(
        h.extract(&b.bytes(), Kind::Layer, Target::Fresh),
        "not allowed",
    );
}

#[test]
fn modes_owners_and_read_only_dirs() {
    let h = Host::new();
    let mut b = Tar::new();
    let mut hd = header(tar::EntryType::Directory, 0);
    hd.set_mode(0o555);
    raw_path(&mut hd, "ro/");
    hd.set_cksum();
    b.0.append(&hd, io::empty()).unwrap();
    let mut hf = header(tar::EntryType::Regular, 2);
    hf.set_mode(0o4755);
    hf.set_uid(1234);
    hf.set_gid(99);
    raw_path(&mut hf, "ro/suid");
    hf.set_cksum();
    b.0.append(&hf, &b"hi"[..]).unwrap();
    h.extract(&b.bytes(), Kind::Layer, Target::Fresh).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let d = fs::metadata(h.root().join("ro")).unwrap();
    assert_eq!(d.permissions().mode() & 0o7777, 0o555);
    let f = fs::metadata(h.root().join("ro/suid")).unwrap();
    assert_eq!(f.permissions().mode() & 0o7777, 0o4755);
    if is_root() {
        assert_eq!((f.uid(), f.gid()), (1234, 99));
    }
}

#[test]
fn zstd_and_gzip_layers_unpack() {
    let data = Tar::new().file("hello", b"zstd\n").bytes();
    let z = zstd::encode_all(&data[..], 3).unwrap();
    let h = Host::new();
    h.extract(&z, Kind::Layer, Target::Fresh).unwrap();
    assert_eq!(fs::read(h.root().join("hello")).unwrap(), b"zstd\n");
}
