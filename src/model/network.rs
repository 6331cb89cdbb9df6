//! A container's interfaces on bridge networks, as the engine plans them
//! and the Linux runtime makes them, and the host links they meet.

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// One of a container's interfaces on a bridge network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The host's bridge device.
    pub bridge: String,
    /// The alias ketch marks the bridge with if it made it (and so may
    /// make it again when it is gone); None for a bridge it adopted, which
    /// must be there.
    #[serde(default)]
    pub bridge_mark: Option<String>,
    /// The interface inside the container (`eth0`, `eth1`, ...).
    pub ifname: String,
    /// The host's end of the veth pair.
    pub host_ifname: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    /// The first attachment carries the default route, unless its
    /// network is internal.
    pub default_route: bool,
}

impl Attachment {
    /// Docker's MAC scheme: `02:42` then the IPv4 address, so addresses
    /// are stable and never collide on one bridge.
    pub fn mac(&self) -> [u8; 6] {
        let o = self.ip.octets();
        [0x02, 0x42, o[0], o[1], o[2], o[3]]
    }
}

pub fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The host end's name for a container's `n`th interface (at most 15
/// bytes, the kernel's limit).
pub fn host_ifname(container_id: &str, n: usize) -> String {
    format!("vk{}{n}", &container_id[..container_id.len().min(11)])
}

/// What the host has under a link name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostLink {
    pub index: u32,
    /// `bridge`, `veth`, `dummy`, ... (IFLA_INFO_KIND); empty for a device
    /// without one, such as a NIC.
    pub kind: String,
    /// IFLA_IFALIAS: ketch marks the bridges it makes there.
    pub alias: String,
}
