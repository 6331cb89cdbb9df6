//! `--device`, `--device-cgroup-rule` and `--init`: host devices made in a
//! container's `/dev` and allowed by its device cgroup, extra device
//! cgroup rules, and the init that runs as its pid 1.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use crate::model::device::valid_access;

/// A device node made in the container, and allowed by its cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Its path in the container.
    pub path: String,
    /// `c` or `b`.
    pub kind: char,
    pub major: u64,
    pub minor: u64,
    pub file_mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Of `r`, `w` and `m`.
    pub access: String,
}

impl Device {
    /// The device cgroup rule that allows it.
    pub fn rule(&self) -> DeviceRule {
        DeviceRule {
            kind: self.kind,
            major: Some(self.major),
            minor: Some(self.minor),
            access: self.access.clone(),
        }
    }
}

/// A device cgroup rule: `TYPE MAJOR:MINOR ACCESS`, `*` for any number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRule {
    /// `a` (all), `c` or `b`.
    pub kind: char,
    pub major: Option<u64>,
    pub minor: Option<u64>,
    pub access: String,
}

/// The devices a `--device` mapping gives: the host's node, or every node
/// under a host directory (as Docker does for `/dev/dri`), at the same
/// place under the container path. Symlinks on the host are followed, as
/// Docker follows them.
pub fn host_devices(host: &str, dest: &str, access: &str) -> Result<Vec<Device>, String> {
    let fail = |e: std::io::Error| {
        format!("error gathering device information while adding custom device {host:?}: {e}")
    };
    let meta = std::fs::metadata(host).map_err(fail)?;
    if meta.is_dir() {
        let mut out = Vec::new();
        collect(Path::new(host), dest, access, &mut out, 0).map_err(fail)?;
        return Ok(out);
    }
    device_of(&meta, dest, access)
        .map(|d| vec![d])
        .ok_or_else(|| {
            format!(
                "error gathering device information while adding custom device {host:?}: not a device node"
            )
        })
}

/// How deep a `--device` directory is walked.
const MAX_DEPTH: usize = 8;
/// How many nodes one `--device` directory may give.
const MAX_DEVICES: usize = 1024;

fn collect(
    dir: &Path,
    dest: &str,
    access: &str,
    out: &mut Vec<Device>,
    depth: usize,
) -> std::io::Result<()> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let inner = format!("{}/{name}", dest.trim_end_matches('/'));
        // Not followed inside the directory: a link to a directory
        // could loop.
        let meta = entry.metadata()?;
        if meta.is_dir() {
            collect(&entry.path(), &inner, access, out, depth + 1)?;
        } else if let Some(d) = device_of(&meta, &inner, access) {
            if out.len() == MAX_DEVICES {
                return Err(std::io::Error::other(format!(
                    "more than {MAX_DEVICES} devices"
                )));
            }
            out.push(d);
        }
    }
    Ok(())
}

fn device_of(meta: &std::fs::Metadata, dest: &str, access: &str) -> Option<Device> {
    let ft = meta.file_type();
    let kind = if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else {
        return None;
    };
    let rdev = meta.rdev();
    Some(Device {
        path: dest.to_string(),
        kind,
        major: libc::major(rdev) as u64,
        minor: libc::minor(rdev) as u64,
        file_mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        access: access.to_string(),
    })
}

/// `--device-cgroup-rule 'c 1:3 rwm'` (`a`, `b` or `c`; numbers or `*`).
pub fn parse_rule(rule: &str) -> Result<DeviceRule, String> {
    let bad = || {
        format!(
            "invalid device cgroup rule {rule:?}: expected TYPE MAJOR:MINOR ACCESS, as 'c 1:3 rwm'"
        )
    };
    let f: Vec<&str> = rule.split_whitespace().collect();
    let [kind, nums, access] = f[..] else {
        return Err(bad());
    };
    let kind = match kind {
        "a" | "b" | "c" => kind.chars().next().unwrap_or('a'),
        _ => return Err(bad()),
    };
    let (major, minor) = nums.split_once(':').ok_or_else(bad)?;
    let num = |s: &str| match s {
        "*" => Ok(None),
        n => n.parse::<u64>().map(Some).map_err(|_| bad()),
    };
    if !valid_access(access) {
        return Err(bad());
    }
    Ok(DeviceRule {
        kind,
        major: num(major)?,
        minor: num(minor)?,
        access: access.to_string(),
    })
}

/// Where `--init`'s binary is mounted in the container, as Docker mounts
/// its own.
pub const INIT_DEST: &str = "/sbin/docker-init";

static INIT_PATH: OnceLock<Option<PathBuf>> = OnceLock::new();

/// ketchd `--init-path`: the init binary `--init` runs as pid 1. It must
/// be statically linked: it runs inside the image, which may have no
/// libraries at all.
pub fn set_init_path(path: &Path) -> Result<(), String> {
    check_init(path)?;
    let _ = INIT_PATH.set(Some(path.to_path_buf()));
    Ok(())
}

/// The init binary: `--init-path`, else the first static one of Docker's
/// `docker-init` and tini's `tini-static` found where packages put them.
pub fn init_binary() -> Result<PathBuf, String> {
    INIT_PATH
        .get_or_init(|| {
            let dirs = [
                "/usr/local/libexec/docker",
                "/usr/libexec/docker",
                "/usr/local/bin",
                "/usr/local/sbin",
                "/usr/bin",
                "/usr/sbin",
            ];
            dirs.iter()
                .flat_map(|d| ["docker-init", "tini-static"].map(|n| Path::new(d).join(n)))
                .find(|p| check_init(p).is_ok())
        })
        .clone()
        .ok_or_else(|| {
            "no init binary: install tini (its tini-static) or docker-init, or start ketchd with --init-path".to_string()
        })
}

/// A statically linked ELF executable: no `PT_INTERP` program header.
fn check_init(path: &Path) -> Result<(), String> {
    let fail = |why: String| format!("init binary {}: {why}", path.display());
    let data = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if meta.mode() & 0o111 == 0 {
        return Err(fail("not executable".into()));
    }
    match elf_interpreter(&data) {
        Some(false) => Ok(()),
        Some(true) => Err(fail(
            "dynamically linked: it would not run in an image without its libraries".into(),
        )),
        None => Err(fail("not a 64-bit little-endian ELF executable".into())),
    }
}

/// Whether a 64-bit little-endian ELF file names an interpreter; `None`
/// if it is not one.
fn elf_interpreter(data: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if data.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(data.get(o..o + 2)?.try_into().ok()?));
    let phoff = usize::try_from(u64::from_le_bytes(data.get(0x20..0x28)?.try_into().ok()?)).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    for i in 0..phnum {
        let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
        let kind = u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?);
        if kind == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_with_wildcards_and_refuse_the_malformed() {
        assert_eq!(
            parse_rule("c 1:3 rwm").unwrap(),
            DeviceRule {
                kind: 'c',
                major: Some(1),
                minor: Some(3),
                access: "rwm".into()
            }
        );
        let r = parse_rule("b 8:* r").unwrap();
        assert_eq!((r.major, r.minor), (Some(8), None));
        for bad in [
            "x 1:3 rwm",
            "c 1-3 rwm",
            "c 1:3",
            "c 1:3 rwx",
            "c a:3 r",
            "c 1:3 rr",
        ] {
            assert!(parse_rule(bad).unwrap_err().contains(bad), "{bad}");
        }
    }

    #[test]
    fn host_devices_are_read_from_the_host() {
        let d = host_devices("/dev/null", "/dev/mynull", "rw").unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].kind, d[0].major, d[0].minor), ('c', 1, 3));
        assert_eq!(d[0].path, "/dev/mynull");
        let e = host_devices("/etc/hostname", "/dev/x", "rwm").unwrap_err();
        assert!(e.contains("not a device node"), "{e}");
        let e = host_devices("/dev/nonexistent", "/dev/x", "rwm").unwrap_err();
        assert!(e.contains("\"/dev/nonexistent\""), "{e}");
    }

    #[test]
    fn only_a_static_elf_is_an_init() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("text");
        std::fs::write(&text, "#!/bin/sh\n").unwrap();
        std::os::unix::fs::PermissionsExt::set_mode(
            &mut std::fs::metadata(&text).unwrap().permissions(),
            0o755,
        );
        assert!(check_init(&text).is_err());
        // This test binary is dynamically linked.
        let me = std::env::current_exe().unwrap();
        assert!(check_init(&me).unwrap_err().contains("dynamically linked"));
        assert_eq!(elf_interpreter(b"\x7fELF\x02\x01"), None);
    }
}
