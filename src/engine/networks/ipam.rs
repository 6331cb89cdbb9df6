//! Address management: subnets that overlap nothing the host routes, and
//! addresses free on them.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// Why a subnet was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("invalid subnet {0:?}: expected a.b.c.d/len")]
    Form(String),
    #[error("invalid subnet {subnet:?}: {addr:?} is not an IPv4 address")]
    Address { subnet: String, addr: String },
    #[error("invalid subnet {0:?}: the prefix length must be 8 to 30")]
    Prefix(String),
}

/// Parse `a.b.c.d/len`, as the network address (host bits cleared).
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), CidrError> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| CidrError::Form(s.to_string()))?;
    let ip: Ipv4Addr = a.parse().map_err(|_| CidrError::Address {
        subnet: s.to_string(),
        addr: a.to_string(),
    })?;
    let len: u8 = l
        .parse()
        .ok()
        .filter(|l| (8..=30).contains(l))
        .ok_or_else(|| CidrError::Prefix(s.to_string()))?;
    Ok((Ipv4Addr::from(u32::from(ip) & mask(len)), len))
}

fn mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

pub(super) fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let m = mask(a.1.min(b.1));
    u32::from(a.0) & m == u32::from(b.0) & m
}

/// Where new networks' subnets come from, as Docker's default pools:
/// 172.17-31.0.0/16, then 192.168.x.0/20.
pub(super) fn candidate_subnets() -> impl Iterator<Item = (Ipv4Addr, u8)> {
    (17..=31)
        .map(|b| (Ipv4Addr::new(172, b, 0, 0), 16))
        .chain((0..16).map(|i| (Ipv4Addr::new(192, 168, i * 16, 0), 20)))
}

/// The lowest address of `subnet` that is neither the network, its
/// broadcast, the gateway, nor in `used`.
pub fn allocate(
    subnet: (Ipv4Addr, u8),
    gateway: Ipv4Addr,
    used: &BTreeSet<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let base = u32::from(subnet.0);
    let size = 1u32 << (32 - u32::from(subnet.1));
    (1..size - 1)
        .map(|i| Ipv4Addr::from(base + i))
        .find(|ip| *ip != gateway && !used.contains(ip))
}
