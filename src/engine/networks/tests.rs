//! The network store, IPAM and bridge ownership, without a host.

use super::*;
use std::sync::Mutex;

#[test]
fn only_bridges_are_adopted_and_only_when_asked() {
    assert!(!adoption("n", "kt-x", None, false).unwrap());
    assert!(adoption("n", "br0", Some("bridge"), true).unwrap());
    let e = adoption("n", "br0", Some("bridge"), false).unwrap_err();
    assert!(matches!(e, EngineError::Conflict(_)));
    let e = e.to_string();
    assert!(e.contains(ADOPT_OPTION) && e.contains("br0"), "{e}");
    for kind in ["veth", "dummy", ""] {
        for adopt in [false, true] {
            let e = adoption("n", "eth0", Some(kind), adopt).unwrap_err();
            assert!(matches!(e, EngineError::Conflict(_)));
            let e = e.to_string();
            assert!(e.contains("not a bridge") && e.contains("eth0"), "{e}");
        }
    }
    // Adopting what is not there is a mistake, not a new bridge.
    assert!(matches!(
        adoption("n", "br9", None, true),
        Err(EngineError::InvalidArgument(_))
    ));
}

const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn record(bridge: &str, made: Option<bool>) -> NetworkRecord {
    let mut v = serde_json::json!({
        "id": ID, "name": "n", "driver": "bridge", "bridge": bridge,
        "subnet": "172.30.0.0/16", "gateway": "172.30.0.1",
        "created": "2026-01-01T00:00:00Z"
    });
    if let Some(m) = made {
        v["bridge_made"] = m.into();
    }
    serde_json::from_value(v).unwrap()
}

#[test]
fn old_records_own_only_ketchs_own_bridge_names() {
    // Before `bridge_made`: only `kt-<its own id12>`.
    assert!(record("kt-0123456789ab", None).owns_bridge());
    assert!(!record("kt-lab", None).owns_bridge());
    assert!(!record("kt-fedcba987654", None).owns_bridge());
    assert!(!record("br-user", None).owns_bridge());
    assert!(record("br-user", Some(true)).owns_bridge());
    assert!(!record("kt-0123456789ab", Some(false)).owns_bridge());
    assert!(!record("", Some(true)).owns_bridge());
    // What is written says so, and reads back the same.
    let n = record("br-user", Some(false));
    let v = serde_json::to_value(&n).unwrap();
    assert_eq!(v["bridge_made"], false);
    assert!(v.get("gateway_added").is_none());
    let back: NetworkRecord = serde_json::from_value(v).unwrap();
    assert_eq!(back.bridge_made, Some(false));
    assert!(!back.gateway_added);
}

#[test]
fn only_the_bridge_ketch_made_may_be_deleted() {
    let mark = bridge_mark(ID);
    let made = record("br-made", Some(true));
    let adopted = record("br-host", Some(false));
    assert_eq!(host_bridge(&made, None), HostBridge::Missing);
    assert_eq!(
        host_bridge(&made, Some(("bridge", mark.as_str()))),
        HostBridge::Made
    );
    // Same name, but someone else's (made after a reboot, say).
    for alias in ["", "lab", "ketch network 99"] {
        assert!(matches!(
            host_bridge(&made, Some(("bridge", alias))),
            HostBridge::Foreign(_)
        ));
    }
    // Never a non-bridge, whatever the record or the alias says.
    for kind in ["", "veth", "dummy"] {
        for n in [&made, &adopted] {
            let HostBridge::Foreign(why) = host_bridge(n, Some((kind, mark.as_str()))) else {
                panic!("{kind:?} judged usable");
            };
            assert!(why.contains("not a bridge"), "{why}");
        }
    }
    // Adopted: a bridge, used but never deleted.
    assert_eq!(
        host_bridge(&adopted, Some(("bridge", ""))),
        HostBridge::Adopted
    );
    // Made before the marks: only under ketch's own name.
    let old = record("kt-0123456789ab", None);
    assert_eq!(host_bridge(&old, Some(("bridge", ""))), HostBridge::Made);
    let old = record("br-user", None);
    assert_eq!(host_bridge(&old, Some(("bridge", ""))), HostBridge::Adopted);
}

#[test]
fn the_adopt_option_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let nets = Networks::open(dir.path(), None).unwrap();
    let opts = |o: &[(&str, &str)]| {
        o.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    for o in [
        opts(&[(ADOPT_OPTION, "true")]),
        opts(&[(ADOPT_OPTION, "yes"), (BRIDGE_NAME_OPTION, "br0")]),
    ] {
        let e = nets
            .create(CreateNetwork {
                name: "net-a".into(),
                options: o,
                ..Default::default()
            })
            .unwrap_err();
        assert!(matches!(e, EngineError::InvalidArgument(_)));
        assert!(e.to_string().contains(ADOPT_OPTION), "{e}");
    }
    // Without a host to ask (no bridges), a new bridge is ketch's.
    let n = nets
        .create(CreateNetwork {
            name: "net-b".into(),
            options: opts(&[(ADOPT_OPTION, "false"), (BRIDGE_NAME_OPTION, "br0")]),
            ..Default::default()
        })
        .unwrap();
    assert!(n.owns_bridge() && n.bridge == "br0");
    let n = nets
        .create(CreateNetwork {
            name: "net-c".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(n.bridge, default_bridge_name(&n.id));
    assert!(n.owns_bridge());
}

#[test]
fn cidrs_parse_and_overlap() {
    assert_eq!(
        parse_cidr("10.1.2.3/16").unwrap(),
        (Ipv4Addr::new(10, 1, 0, 0), 16)
    );
    assert!(parse_cidr("10.1.2.3").is_err());
    assert!(parse_cidr("10.1.2.3/31").is_err());
    assert!(parse_cidr("300.1.2.3/16").is_err());
    let a = parse_cidr("172.17.0.0/16").unwrap();
    assert!(overlaps(a, parse_cidr("172.17.5.0/24").unwrap()));
    assert!(!overlaps(a, parse_cidr("172.18.0.0/16").unwrap()));
}

#[test]
fn allocation_skips_gateway_and_used() {
    let sn = parse_cidr("10.0.0.0/29").unwrap();
    let gw = Ipv4Addr::new(10, 0, 0, 1);
    let mut used = BTreeSet::new();
    assert_eq!(allocate(sn, gw, &used), Some(Ipv4Addr::new(10, 0, 0, 2)));
    used.insert(Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(allocate(sn, gw, &used), Some(Ipv4Addr::new(10, 0, 0, 3)));
    for i in 3..=6 {
        used.insert(Ipv4Addr::new(10, 0, 0, i));
    }
    // .7 is the broadcast address.
    assert_eq!(allocate(sn, gw, &used), None);
}

#[test]
fn store_makes_predefined_networks_and_refuses_overlaps() {
    let dir = tempfile::tempdir().unwrap();
    let nets = Networks::open(dir.path(), None).unwrap();
    for name in ["bridge", "host", "none"] {
        assert!(nets.lookup(name).unwrap().predefined());
    }
    let default = nets.lookup("bridge").unwrap();
    let user = nets
        .create(CreateNetwork {
            name: "backend".into(),
            ..Default::default()
        })
        .unwrap();
    assert_ne!(default.subnet, user.subnet);
    assert!(user.bridge.len() <= 15);
    assert!(matches!(
        nets.create(CreateNetwork {
            name: "backend".into(),
            ..Default::default()
        }),
        Err(EngineError::Conflict(_))
    ));
    assert!(matches!(
        nets.create(CreateNetwork {
            name: "clash".into(),
            subnet: Some(user.subnet.clone()),
            ..Default::default()
        }),
        Err(EngineError::Conflict(_))
    ));
    assert!(nets
        .create(CreateNetwork {
            name: "bad gw".into(),
            ..Default::default()
        })
        .is_err());
    // Reopened, the same networks come back.
    let again = Networks::open(dir.path(), None).unwrap();
    assert_eq!(again.lookup("backend").unwrap().subnet, user.subnet);
    assert_eq!(again.lookup(&user.id[..8]).unwrap().name, "backend");
    assert!(matches!(
        again.lookup("nope"),
        Err(EngineError::NotFound(_))
    ));
}

/// A host whose bridges are only noted, checking that each has its
/// network's record on the disk before it is made.
struct RecordFirst {
    dir: std::path::PathBuf,
    made: Mutex<Vec<String>>,
}

impl HostNet for RecordFirst {
    fn lock(&self) -> std::io::Result<std::fs::File> {
        std::fs::File::open(&self.dir)
    }
    fn link(&self, _: &str) -> std::io::Result<Option<crate::model::network::HostLink>> {
        Ok(None)
    }
    fn make_bridge(&self, name: &str, _: Ipv4Addr, _: u8, mark: &str) -> std::io::Result<()> {
        let id = mark.rsplit(' ').next().unwrap_or_default();
        // A ketchd killed right now must leave a record that names it.
        let rec: NetworkRecord =
            serde_json::from_slice(&std::fs::read(self.dir.join(format!("{id}.json")))?)
                .map_err(std::io::Error::other)?;
        assert_eq!(rec.bridge, name);
        self.made.lock().unwrap().push(name.to_string());
        Ok(())
    }
    fn ensure_bridge(&self, _: &str, _: Ipv4Addr, _: u8, _: Option<&str>) -> std::io::Result<bool> {
        Ok(false)
    }
    fn mark_link(&self, _: u32, _: &str) -> std::io::Result<()> {
        Ok(())
    }
    fn remove_link(&self, _: u32) -> std::io::Result<()> {
        Ok(())
    }
    fn remove_address(&self, _: &str, _: Ipv4Addr, _: u8) -> std::io::Result<()> {
        Ok(())
    }
    fn hold_address(&self, _: &str, _: Ipv4Addr) -> std::io::Result<()> {
        Ok(())
    }
    fn routes(&self) -> Vec<(Ipv4Addr, u8)> {
        Vec::new()
    }
    fn connect(&self, _: &Path, _: &crate::model::network::Attachment) -> std::io::Result<()> {
        Ok(())
    }
    fn disconnect(&self, _: &Path, _: &str) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_bridge_is_made_only_once_its_network_is_recorded() {
    let d = tempfile::tempdir().unwrap();
    let host = Arc::new(RecordFirst {
        dir: d.path().to_path_buf(),
        made: Mutex::new(Vec::new()),
    });
    let nets = Networks::open(d.path(), Some(host.clone())).unwrap();
    nets.create(CreateNetwork {
        name: "app".into(),
        driver: "bridge".into(),
        ..Default::default()
    })
    .unwrap();
    // The default network's bridge and the new one's.
    assert_eq!(host.made.lock().unwrap().len(), 2);
}
