//! Bridge networking for Linux containers, over rtnetlink: the bridges
//! ketchd makes for its networks, and the veth pair that joins each
//! container's network namespace to one.
//!
//! A netlink socket belongs to the network namespace it was opened in, so
//! one opened on the host and one opened inside the container's namespace
//! are enough to wire both ends of a veth without moving between
//! namespaces. The container's end lives in its namespace: when the last
//! process there ends, the kernel deletes the pair, so nothing can leak.

use super::sys;
use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

pub use crate::model::network::{host_ifname, mac_string, Attachment, HostLink};

impl HostLink {
    fn of(l: &LinkMessage) -> Self {
        let mut h = HostLink {
            index: l.header.index,
            ..Default::default()
        };
        for a in &l.attributes {
            match a {
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let LinkInfo::Kind(k) = i {
                            h.kind = k.to_string();
                        }
                    }
                }
                LinkAttribute::IfAlias(s) => h.alias = s.clone(),
                _ => {}
            }
        }
        h
    }
}

/// May a network use the host link `l` named `name` as its bridge? Only
/// a bridge, and, with `mark` (ketch made it), only the one marked so.
fn check_bridge(name: &str, l: &HostLink, mark: Option<&str>) -> io::Result<()> {
    if l.kind != "bridge" {
        let kind = if l.kind.is_empty() {
            "network"
        } else {
            l.kind.as_str()
        };
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{name} is a {kind} device, not a bridge: ketch leaves it alone"),
        ));
    }
    match mark {
        Some(m) if l.alias != m => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "bridge {name} is not the one ketch made (its alias is {:?}, not {m:?}): ketch leaves it alone",
                l.alias
            ),
        )),
        _ => Ok(()),
    }
}

/// A route netlink socket in the network namespace of the calling thread.
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// Send one request and read until its acknowledgement. Returns the
    /// messages the kernel answered with (for a get).
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        req.header.sequence_number = self.seq;
        req.finalize();
        let mut buf = vec![0u8; req.buffer_len()];
        req.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        let mut out = Vec::new();
        let mut rbuf = vec![0u8; 16 * 1024];
        loop {
            let n = self.socket.recv(&mut &mut rbuf[..], 0)?;
            let mut off = 0;
            while off < n {
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rbuf[off..n])
                    .map_err(|e| io::Error::other(format!("netlink reply: {e}")))?;
                let len = m.header.length as usize;
                let ours = m.header.sequence_number == self.seq;
                match m.payload {
                    NetlinkPayload::Error(e) if ours => {
                        return match e.code {
                            None => Ok(out),
                            Some(_) => Err(e.to_io()),
                        };
                    }
                    NetlinkPayload::Done(_) if ours => return Ok(out),
                    NetlinkPayload::InnerMessage(inner) if ours => out.push(inner),
                    _ => {}
                }
                if len == 0 {
                    break;
                }
                off += len;
            }
        }
    }

    /// What the host has under the link name `name`, if anything.
    pub fn link(&mut self, name: &str) -> io::Result<Option<HostLink>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(m), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(HostLink::of(&l)),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The index of the link called `name`, if there is one.
    pub fn link_index(&mut self, name: &str) -> io::Result<Option<u32>> {
        Ok(self.link(name)?.map(|l| l.index))
    }

    fn index(&mut self, name: &str) -> io::Result<u32> {
        self.link_index(name)?
            .ok_or_else(|| io::Error::other(format!("no network device {name}")))
    }

    fn set_link(&mut self, index: u32, attrs: Vec<LinkAttribute>, up: bool) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        if up {
            m.header.flags = LinkFlags::Up;
            m.header.change_mask = LinkFlags::Up;
        }
        m.attributes = attrs;
        self.request(RouteNetlinkMessage::SetLink(m), 0).map(drop)
    }

    fn add_address(&mut self, index: u32, ip: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.index = index;
        let broadcast =
            Ipv4Addr::from(u32::from(ip) | (u32::MAX.checked_shr(prefix.into()).unwrap_or(0)));
        m.attributes.push(AddressAttribute::Local(ip.into()));
        m.attributes.push(AddressAttribute::Address(ip.into()));
        m.attributes.push(AddressAttribute::Broadcast(broadcast));
        self.request(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Take `ip/prefix` off the link `name` (what ketch put on a bridge it
    /// adopted). A missing link or address is not an error.
    pub fn remove_address(&mut self, name: &str, ip: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let Some(index) = self.link_index(name)? else {
            return Ok(());
        };
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(ip.into()));
        m.attributes.push(AddressAttribute::Address(ip.into()));
        match self.request(RouteNetlinkMessage::DelAddress(m), 0) {
            Err(e) if e.raw_os_error() != Some(libc::EADDRNOTAVAIL) => Err(e),
            _ => Ok(()),
        }
    }

    /// Make a new bridge `name` marked with the alias `mark`. A link of
    /// that name already there is an error (`AlreadyExists`): it is not
    /// ketch's to take.
    fn create_bridge(&mut self, name: &str, mark: &str) -> io::Result<u32> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        if let Err(e) = self.request(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL) {
            let msg = if e.raw_os_error() == Some(libc::EEXIST) {
                format!("a network device named {name} already exists")
            } else {
                format!("creating bridge {name}: {e}")
            };
            return Err(io::Error::new(e.kind(), msg));
        }
        let index = self.index(name)?;
        // The kernel takes no alias in RTM_NEWLINK, so it is set after.
        if let Err(e) = self.set_link(index, vec![LinkAttribute::IfAlias(mark.to_string())], false)
        {
            let _ = self.delete_index(index);
            return Err(io::Error::new(
                e.kind(),
                format!("marking bridge {name} as ketch's: {e}"),
            ));
        }
        Ok(index)
    }

    /// Make a new network's bridge `name`, marked `mark`, with
    /// `gateway/prefix` on it, and bring it up. An existing link of that
    /// name is an error; on any failure the bridge made is deleted again.
    pub fn make_bridge(
        &mut self,
        name: &str,
        gateway: Ipv4Addr,
        prefix: u8,
        mark: &str,
    ) -> io::Result<()> {
        let index = self.create_bridge(name, mark)?;
        let r = self
            .add_address(index, gateway, prefix)
            .and_then(|()| self.set_link(index, Vec::new(), true));
        if let Err(e) = r {
            let _ = self.delete_index(index);
            return Err(io::Error::new(
                e.kind(),
                format!("setting up bridge {name}: {e}"),
            ));
        }
        Ok(())
    }

    /// See that the bridge `name` is there with `gateway/prefix` on it, and
    /// up: every container start asks, as a reboot removes bridges. With
    /// `mark` (ketch made it), a missing bridge is made again, and one
    /// there must carry the mark; without (adopted), it must be there.
    /// Either way a link that is not a bridge is refused, never changed.
    /// Returns whether the address was added (it was not there before).
    pub fn ensure_bridge(
        &mut self,
        name: &str,
        gateway: Ipv4Addr,
        prefix: u8,
        mark: Option<&str>,
    ) -> io::Result<bool> {
        let index = match self.link(name)? {
            Some(l) => {
                check_bridge(name, &l, mark)?;
                l.index
            }
            None => {
                let Some(mark) = mark else {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!(
                            "bridge {name} is gone: it is the host's (adopted), so ketch does not make it again"
                        ),
                    ));
                };
                match self.create_bridge(name, mark) {
                    Ok(i) => i,
                    // Another start made it meanwhile (it may not carry
                    // the mark yet).
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        let l = self.link(name)?.ok_or(e)?;
                        check_bridge(name, &l, None)?;
                        l.index
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let added = match self.add_address(index, gateway, prefix) {
            Ok(()) => true,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => false,
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("adding {gateway}/{prefix} to bridge {name}: {e}"),
                ))
            }
        };
        self.set_link(index, Vec::new(), true)?;
        Ok(added)
    }

    /// Remove a link (either end of a veth pair: the kernel removes both).
    /// A missing link is not an error.
    pub fn delete_link(&mut self, name: &str) -> io::Result<()> {
        match self.link_index(name)? {
            Some(index) => self.delete_index(index),
            None => Ok(()),
        }
    }

    /// Remove the link with index `index`; a missing one is not an error.
    pub fn delete_index(&mut self, index: u32) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        match self.request(RouteNetlinkMessage::DelLink(m), 0) {
            Err(e) if e.raw_os_error() != Some(libc::ENODEV) => Err(e),
            _ => Ok(()),
        }
    }

    fn add_default_route(&mut self, gateway: Ipv4Addr) -> io::Result<()> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Static;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        self.request(RouteNetlinkMessage::NewRoute(m), NLM_F_CREATE | NLM_F_EXCL)
            .map(drop)
    }
}

/// Join a container's network namespace to a bridge: `ns` is a socket in
/// that namespace, `host` one on the host, `host_ns` the host namespace.
pub fn attach(
    host: &mut Netlink,
    ns: &mut Netlink,
    host_ns: RawFd,
    a: &Attachment,
) -> io::Result<()> {
    let ctx = |what: &str| {
        let what = what.to_string();
        let bridge = a.bridge.clone();
        move |e: io::Error| io::Error::new(e.kind(), format!("{what} (bridge {bridge}): {e}"))
    };
    host.ensure_bridge(&a.bridge, a.gateway, a.prefix, a.bridge_mark.as_deref())?;
    let bridge = host.index(&a.bridge)?;
    // Both ends are made inside the container's namespace; the peer is
    // moved to the host's as it is created.
    let mut peer = LinkMessage::default();
    peer.attributes
        .push(LinkAttribute::IfName(a.host_ifname.clone()));
    peer.attributes.push(LinkAttribute::NetNsFd(host_ns));
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(a.ifname.clone()));
    m.attributes.push(LinkAttribute::Address(a.mac().to_vec()));
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    // The host end's name is this container's own: a veth under it is the
    // pair of its previous run, which the kernel deletes in the background
    // once that run's namespace dies. Take it away rather than race it.
    if let Some(old) = host.link(&a.host_ifname)?.filter(|l| l.kind == "veth") {
        match host.delete_index(old.index) {
            Err(e) if e.raw_os_error() != Some(libc::ENODEV) => {
                return Err(ctx("removing the previous run's veth")(e))
            }
            _ => {}
        }
    }
    ns.request(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
        .map_err(ctx("creating the veth pair"))?;
    let host_end = host.index(&a.host_ifname)?;
    host.set_link(host_end, vec![LinkAttribute::Controller(bridge)], true)
        .map_err(ctx("joining the veth to its bridge"))?;
    let inner = ns.index(&a.ifname)?;
    ns.add_address(inner, a.ip, a.prefix)
        .map_err(ctx("addressing the container's interface"))?;
    ns.set_link(inner, Vec::new(), true)
        .map_err(ctx("bringing the container's interface up"))?;
    if a.default_route {
        ns.add_default_route(a.gateway)
            .map_err(ctx("adding the default route"))?;
    }
    Ok(())
}

/// Run `f` on a thread that has entered the network namespace at `netns`
/// (a namespace is per thread, so the caller's stays as it was).
pub fn in_netns<T: Send>(netns: &Path, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let ns = std::fs::File::open(netns)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            sys::setns(ns.as_raw_fd(), libc::CLONE_NEWNET)?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("network namespace thread panicked")))
    })
}

/// Join a running container (whose network namespace is `netns`) to one
/// more bridge network.
pub fn connect(netns: &Path, a: &Attachment) -> io::Result<()> {
    let mut host = Netlink::open()?;
    let host_ns = std::fs::File::open("/proc/self/ns/net")?;
    in_netns(netns, || {
        let mut ns = Netlink::open()?;
        attach(&mut host, &mut ns, host_ns.as_raw_fd(), a)
    })
}

/// Take interface `ifname` out of a running container.
pub fn disconnect(netns: &Path, ifname: &str) -> io::Result<()> {
    in_netns(netns, || Netlink::open()?.delete_link(ifname))
}

/// Held while a network's subnet is chosen and its bridge made: ketchds
/// sharing a host (each with its own data root) then see each other's
/// bridges among the host's routes and never pick the same subnet.
pub fn host_lock() -> io::Result<std::fs::File> {
    let dir = if Path::new("/run/lock").is_dir() {
        "/run/lock"
    } else {
        "/tmp"
    };
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(Path::new(dir).join("ketch-networks.lock"))?;
    // SAFETY: flock on a descriptor we own; released when `f` is closed.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(f)
}

/// Make a new network's bridge (see [`Netlink::make_bridge`]).
pub fn make_bridge(name: &str, gateway: Ipv4Addr, prefix: u8, mark: &str) -> io::Result<()> {
    Netlink::open()?.make_bridge(name, gateway, prefix, mark)
}

/// See that a network's bridge is there (see [`Netlink::ensure_bridge`]).
pub fn ensure_bridge(
    name: &str,
    gateway: Ipv4Addr,
    prefix: u8,
    mark: Option<&str>,
) -> io::Result<bool> {
    Netlink::open()?.ensure_bridge(name, gateway, prefix, mark)
}

/// Mark the link `index` as a bridge ketch made (one made before ketch
/// marked its bridges).
pub fn mark_link(index: u32, mark: &str) -> io::Result<()> {
    Netlink::open()?.set_link(index, vec![LinkAttribute::IfAlias(mark.to_string())], false)
}

/// Remove the host link `index` (a bridge the caller found to be ketch's).
pub fn remove_link(index: u32) -> io::Result<()> {
    Netlink::open()?.delete_index(index)
}

/// Put `ip/32` on the bridge `name` (a Wasm container's address, which
/// ketchd serves); already there is not an error.
pub fn hold_address(name: &str, ip: Ipv4Addr) -> io::Result<()> {
    let mut nl = Netlink::open()?;
    let index = nl
        .link_index(name)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("bridge {name} is gone")))?;
    match nl.add_address(index, ip, 32) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        r => r,
    }
}

/// Take a network's gateway address off a bridge ketch adopted.
pub fn remove_address(name: &str, ip: Ipv4Addr, prefix: u8) -> io::Result<()> {
    Netlink::open()?.remove_address(name, ip, prefix)
}

/// What the host has under the link name `name` (see [`Netlink::link`]).
pub fn host_link(name: &str) -> io::Result<Option<HostLink>> {
    Netlink::open()?.link(name)
}

/// IPv4 networks the host already routes (from `/proc/net/route`), so a
/// new network's subnet does not shadow one of them.
pub fn host_routes() -> Vec<(Ipv4Addr, u8)> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    parse_routes(&text)
}

fn parse_routes(text: &str) -> Vec<(Ipv4Addr, u8)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            // The kernel prints each address as a native-endian integer
            // over its network-order bytes.
            let dest = Ipv4Addr::from(dest.to_ne_bytes());
            let prefix = mask.count_ones() as u8;
            // The default route overlaps everything; it is not a subnet.
            (prefix > 0).then_some((dest, prefix))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_from_proc_format() {
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(parse_routes(text), vec![(Ipv4Addr::new(192, 0, 2, 0), 24)]);
    }

    #[test]
    fn only_bridges_and_only_marked_ones_are_used() {
        let link = |kind: &str, alias: &str| HostLink {
            index: 7,
            kind: kind.into(),
            alias: alias.into(),
        };
        let mark = "ketch network abc";
        // Adopted: any bridge, never anything else.
        assert!(check_bridge("br0", &link("bridge", ""), None).is_ok());
        for kind in ["", "veth", "dummy"] {
            let e = check_bridge("eth0", &link(kind, mark), None).unwrap_err();
            assert!(e.to_string().contains("not a bridge"), "{e}");
            assert!(check_bridge("eth0", &link(kind, mark), Some(mark)).is_err());
        }
        // Made by ketch: only the bridge it marked.
        assert!(check_bridge("br0", &link("bridge", mark), Some(mark)).is_ok());
        for alias in ["", "ketch network other", "lab"] {
            let e = check_bridge("br0", &link("bridge", alias), Some(mark)).unwrap_err();
            assert!(e.to_string().contains("not the one ketch made"), "{e}");
        }
    }

    #[test]
    fn host_ifnames_fit_the_kernel_limit() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert!(host_ifname(id, 9).len() <= 15);
        assert_ne!(host_ifname(id, 0), host_ifname(id, 1));
        let a = Attachment {
            bridge: "ketch0".into(),
            bridge_mark: None,
            ifname: "eth0".into(),
            host_ifname: host_ifname(id, 0),
            ip: Ipv4Addr::new(172, 17, 0, 2),
            prefix: 16,
            gateway: Ipv4Addr::new(172, 17, 0, 1),
            default_route: true,
        };
        assert_eq!(mac_string(a.mac()), "02:42:ac:11:00:02");
    }
}
