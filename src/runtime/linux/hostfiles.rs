//! The files ketchd writes into a container's run dir for its `/etc`:
//! `hosts`, `hostname` and `resolv.conf`.

use super::{io_err, LinuxBackend, LinuxProgram, NetworkMode};
use crate::runtime::RuntimeError;
use std::net::Ipv4Addr;
use std::path::Path;

impl LinuxBackend {
    pub(super) fn write_host_files(p: &LinuxProgram) -> Result<(), RuntimeError> {
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let (hosts, resolv) = match p.network {
            NetworkMode::Host => (
                std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
                host_resolv,
            ),
            NetworkMode::None | NetworkMode::Bridge => (
                hosts_file(
                    &p.hostname,
                    p.attachments.first().map(|a| a.ip),
                    &p.peer_hosts,
                ),
                container_resolv(&host_resolv),
            ),
        };
        for (name, data) in [
            ("hosts", hosts),
            ("hostname", format!("{}\n", p.hostname)),
            ("resolv.conf", resolv),
        ] {
            let path = p.run_dir.join(name);
            std::fs::write(&path, data).map_err(io_err(&path))?;
        }
        Ok(())
    }
}

/// A container's `/etc/hosts`: loopback, its own name on its primary
/// address, and its peers.
pub fn hosts_file(
    hostname: &str,
    own: Option<Ipv4Addr>,
    peers: &[(Ipv4Addr, Vec<String>)],
) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::\tip6-localnet\nff00::\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    let own = own.map_or_else(|| "127.0.0.1".to_string(), |ip| ip.to_string());
    s.push_str(&format!("{own}\t{hostname}\n"));
    for (ip, names) in peers {
        s.push_str(&format!("{ip}\t{}\n", names.join(" ")));
    }
    s
}

/// Rewrite a running container's `/etc/hosts` in place: it is bind
/// mounted, so the file (its inode) must stay the same. Unchanged content
/// is not written, and changed content is written over the old before the
/// file is cut to length, so a lookup in the container never reads an
/// empty file. The container may have written the file: only as much of
/// it is read as the comparison needs.
pub fn rewrite_hosts(run_dir: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Read;
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(run_dir.join("hosts"))?;
    let mut old = Vec::with_capacity(content.len() + 1);
    (&mut f)
        .take(content.len() as u64 + 1)
        .read_to_end(&mut old)?;
    if old == content.as_bytes() {
        return Ok(());
    }
    f.write_all_at(content.as_bytes(), 0)?;
    f.set_len(content.len() as u64)
}

/// The host's resolver configuration without loopback nameservers, which
/// mean nothing inside another network namespace; Docker's public
/// fallback if none remain.
pub(super) fn container_resolv(host: &str) -> String {
    let mut out = String::new();
    let mut servers = 0;
    for l in host.lines() {
        let mut f = l.split_whitespace();
        if f.next() == Some("nameserver") {
            match f.next().and_then(|a| a.parse::<std::net::IpAddr>().ok()) {
                Some(a) if a.is_loopback() => continue,
                Some(_) => servers += 1,
                None => continue,
            }
        }
        out.push_str(l);
        out.push('\n');
    }
    if servers == 0 {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::rewrite_hosts;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn hosts_are_rewritten_in_place_and_only_when_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, "a long first version\n".repeat(1000)).unwrap();
        let ino = std::fs::metadata(&path).unwrap().ino();
        rewrite_hosts(dir.path(), "short\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "short\n");
        rewrite_hosts(dir.path(), "short\nand longer\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "short\nand longer\n"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino);
        // The same content again writes nothing.
        let before = std::fs::metadata(&path).unwrap().mtime_nsec();
        std::thread::sleep(std::time::Duration::from_millis(20));
        rewrite_hosts(dir.path(), "short\nand longer\n").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mtime_nsec(), before);
        // A symlink put in its place is not followed.
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &path).unwrap();
        assert!(rewrite_hosts(dir.path(), "x\n").is_err());
    }
}
