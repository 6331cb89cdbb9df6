//! The host's network for networks' bridges and running containers'
//! interfaces, over the Linux runtime's rtnetlink.

use crate::engine::networks::HostNet;
use crate::model::network::{Attachment, HostLink};
use crate::runtime::linux::net;
use std::io;
use std::net::Ipv4Addr;
use std::path::Path;

pub(crate) struct LinuxNet;

impl HostNet for LinuxNet {
    fn lock(&self) -> io::Result<std::fs::File> {
        net::host_lock()
    }
    fn link(&self, name: &str) -> io::Result<Option<HostLink>> {
        net::host_link(name)
    }
    fn make_bridge(&self, name: &str, gateway: Ipv4Addr, prefix: u8, mark: &str) -> io::Result<()> {
        net::make_bridge(name, gateway, prefix, mark)
    }
    fn ensure_bridge(
        &self,
        name: &str,
        gateway: Ipv4Addr,
        prefix: u8,
        mark: Option<&str>,
    ) -> io::Result<bool> {
        net::ensure_bridge(name, gateway, prefix, mark)
    }
    fn mark_link(&self, index: u32, mark: &str) -> io::Result<()> {
        net::mark_link(index, mark)
    }
    fn remove_link(&self, index: u32) -> io::Result<()> {
        net::remove_link(index)
    }
    fn remove_address(&self, name: &str, ip: Ipv4Addr, prefix: u8) -> io::Result<()> {
        net::remove_address(name, ip, prefix)
    }
    fn hold_address(&self, name: &str, ip: Ipv4Addr) -> io::Result<()> {
        net::hold_address(name, ip)
    }
    fn routes(&self) -> Vec<(Ipv4Addr, u8)> {
        net::host_routes()
    }
    fn connect(&self, netns: &Path, a: &Attachment) -> io::Result<()> {
        net::connect(netns, a)
    }
    fn disconnect(&self, netns: &Path, ifname: &str) -> io::Result<()> {
        net::disconnect(netns, ifname)
    }
}
