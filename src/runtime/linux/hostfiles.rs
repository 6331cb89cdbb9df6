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
/// mounted, so the file (its inode) must stay the same.
pub fn rewrite_hosts(run_dir: &Path, content: &str) -> std::io::Result<()> {
    std::fs::write(run_dir.join("hosts"), content)
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
