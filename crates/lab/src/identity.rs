//! Every name a lab gives to a kernel object, made and recognised here and nowhere else:
//! host-side interfaces and their aliases, nftables tables, network namespace names, cgroups.
//! Names carry the lab's identity, so that `lab down` finds what a lost journal forgot.
//!
//! | object | name |
//! |---|---|
//! | bridge of network `k` | `lb-<id>-<k>` (alias `lab/<lab>/net/<network>`) |
//! | host end of a bridged interface | `lv-<id>-<n>` (alias `lab/<lab>/<node>/<interface>`) |
//! | host end of a link's interface | `lw-<id>-<n>` (same alias) |
//! | IFB device shaping `lv-<id>-<n>` | `li-<id>-<n>` (alias `.../impair`) |
//! | host ends of a gateway namespace's uplink and legs | `lg-<id>-0`, `lg-<id>-<k+1>` (alias `lab/<lab>/gateway/...`) |
//! | nftables tables (inet: NAT and isolation; bridge: partitions) | `lab-<lab>` |
//! | network namespace name | `<lab>.<node>` (names have no `.`: no two labs can make the same); a gateway namespace: `<lab>` |
//! | cgroup | `lab/<lab>/<node>` |
//!
//! `<id>` is five base-36 characters, unique among live labs, so that every host-side name fits
//! the kernel's 15 bytes whatever the lab's name.

use crate::topology::{IfName, Name};

/// Length of a lab's id.
pub const ID_LEN: usize = 5;
/// Link groups lab uses: a range of its own, far from the small numbers people pick.
pub const GROUP_BASE: u32 = 0x4c41_0000;
/// The cgroup every lab's cgroups are below.
pub const CGROUP_ROOT: &str = "lab";
/// Interface aliases of labs start with this.
const ALIAS_ROOT: &str = "lab/";
/// nftables tables of labs start with this.
const TABLE_PREFIX: &str = "lab-";

/// The kinds of host interface a lab makes, by the prefix of their names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostIf {
    /// A network's bridge.
    Bridge,
    /// The host end of a bridged interface: a port of the bridge.
    Port,
    /// The host end of a link's interface, wired to the other's.
    Wire,
    /// The IFB device that shapes what a bridged interface sends.
    Ifb,
    /// The host end of a gateway namespace's uplink (0) or of its leg on network `k` (`k+1`).
    Gateway,
}

impl HostIf {
    const ALL: [HostIf; 5] = [HostIf::Bridge, HostIf::Port, HostIf::Wire, HostIf::Ifb, HostIf::Gateway];

    fn prefix(self) -> &'static str {
        match self {
            HostIf::Bridge => "lb-",
            HostIf::Port => "lv-",
            HostIf::Wire => "lw-",
            HostIf::Ifb => "li-",
            HostIf::Gateway => "lg-",
        }
    }

    /// The name of the `n`th interface of this kind of lab `id`.
    pub fn name(self, id: &str, n: usize) -> IfName {
        IfName::parse(&format!("{}{id}-{n}", self.prefix())).expect("a lab id and a counter fit 15 bytes")
    }

    /// A pattern (nftables `prefix*`) for this kind's interfaces of lab `id`, or of every lab.
    pub fn pattern(self, id: Option<&str>) -> String {
        match id {
            Some(id) => format!("{}{id}-*", self.prefix()),
            None => format!("{}*", self.prefix()),
        }
    }

    /// The kind and lab id of a host interface lab made, from its name.
    pub fn parse(name: &str) -> Option<(HostIf, String)> {
        let kind = HostIf::ALL.into_iter().find(|k| name.starts_with(k.prefix()))?;
        let (id, n) = name[kind.prefix().len()..].split_once('-')?;
        (id.len() == ID_LEN && !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())).then(|| (kind, id.to_string()))
    }
}

/// The IFB device that shapes host port `port` (`lv-<id>-<n>` → `li-<id>-<n>`).
pub fn ifb_of(port: &IfName) -> Option<IfName> {
    let rest = port.as_str().strip_prefix(HostIf::Port.prefix())?;
    IfName::parse(&format!("{}{rest}", HostIf::Ifb.prefix())).ok()
}

/// Alias of network `network`'s bridge.
pub fn network_alias(lab: &Name, network: &Name) -> String {
    format!("{ALIAS_ROOT}{lab}/net/{network}")
}

/// Alias of the host end of interface `ifname` of node `node`.
pub fn interface_alias(lab: &Name, node: &Name, ifname: &IfName) -> String {
    format!("{ALIAS_ROOT}{lab}/{node}/{ifname}")
}

/// Alias of a gateway namespace's interface `what` (`uplink`, or a network's name).
pub fn gateway_alias(lab: &Name, what: &str) -> String {
    format!("{ALIAS_ROOT}{lab}/gateway/{what}")
}

/// The name under /run/netns of lab `lab`'s gateway namespace.
pub fn gateway_netns(lab: &Name) -> String {
    lab.to_string()
}

/// Alias of the IFB device shaping the interface whose host end has alias `alias`.
pub fn impair_alias(alias: &str) -> String {
    format!("{alias}/impair")
}

/// What an alias of lab's names: the lab, and whether it is a network's bridge.
pub fn parse_alias(alias: &str) -> Option<(Name, bool)> {
    let rest = alias.strip_prefix(ALIAS_ROOT)?;
    let (lab, what) = rest.split_once('/')?;
    Some((Name::parse(lab).ok()?, what.starts_with("net/")))
}

/// The lab's nftables tables (inet and bridge share it).
pub fn nft_table(lab: &Name) -> String {
    format!("{TABLE_PREFIX}{lab}")
}

/// Whether nftables table `table` is a lab's.
pub fn is_lab_table(table: &str) -> bool {
    table.strip_prefix(TABLE_PREFIX).is_some_and(|l| Name::parse(l).is_ok())
}

/// The name under /run/netns of node `node`'s network namespace.
pub fn netns(lab: &Name, node: &Name) -> String {
    format!("{lab}.{node}")
}

/// The node whose network namespace name `ns` would be in lab `lab`, if it could be one.
pub fn netns_node<'a>(lab: &Name, ns: &'a str) -> Option<&'a str> {
    ns.strip_prefix(lab.as_str())?.strip_prefix('.').filter(|node| Name::parse(node).is_ok())
}

/// The lab's cgroup, below each hierarchy's root.
pub fn lab_cgroup(lab: &Name) -> String {
    format!("{CGROUP_ROOT}/{lab}")
}

/// Node `node`'s cgroup.
pub fn cgroup(lab: &Name, node: &Name) -> String {
    format!("{CGROUP_ROOT}/{lab}/{node}")
}

/// A short id for host-side names and a link group, from the lab's name so that they are
/// stable, salted until `free` accepts both.
pub fn lab_id(lab: &Name, free: impl Fn(&str, u32) -> bool) -> (String, u32) {
    (0u32..)
        .map(|salt| {
            let h = fnv1a(format!("{lab}#{salt}").as_bytes());
            (base36(h, ID_LEN), GROUP_BASE | (h >> 48) as u32)
        })
        .find(|(id, group)| free(id, *group))
        .expect("some salt gives a free id and group")
}

/// FNV-1a: small, stable across versions and machines (names must not change with a
/// library upgrade, or `lab down` would not find a lab's objects).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

fn base36(mut v: u64, len: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..len)
        .map(|_| {
            let d = DIGITS[(v % 36) as usize] as char;
            v /= 36;
            d
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    #[test]
    fn every_name_is_made_and_read_back() {
        let (lab, node) = (name("three-node"), name("node1"));
        let port = HostIf::Port.name("abc12", 7);
        assert_eq!(port.as_str(), "lv-abc12-7");
        assert_eq!(HostIf::parse("lv-abc12-7"), Some((HostIf::Port, "abc12".into())));
        assert_eq!(HostIf::parse("lw-abc12-123"), Some((HostIf::Wire, "abc12".into())));
        assert_eq!(HostIf::parse("lb-abc12-0"), Some((HostIf::Bridge, "abc12".into())));
        assert_eq!(ifb_of(&port).unwrap().as_str(), "li-abc12-7");
        assert_eq!(HostIf::parse("li-abc12-7"), Some((HostIf::Ifb, "abc12".into())));
        assert_eq!(HostIf::parse("lg-abc12-0"), Some((HostIf::Gateway, "abc12".into())));
        assert_eq!(parse_alias(&gateway_alias(&lab, "uplink")), Some((lab.clone(), false)));
        assert_eq!(gateway_netns(&lab), "three-node");
        assert_eq!(netns_node(&lab, &gateway_netns(&lab)), None);
        for not_ours in ["lv-abc1-1", "eth0", "lb-abc12-", "lb-abc12-x"] {
            assert_eq!(HostIf::parse(not_ours), None, "{not_ours}");
        }
        assert_eq!(HostIf::Wire.pattern(Some("abc12")), "lw-abc12-*");
        assert_eq!(HostIf::Bridge.pattern(None), "lb-*");
        // The longest id and a six-digit counter still fit IFNAMSIZ.
        assert_eq!(HostIf::Wire.name("zzzzz", 999_999).as_str().len(), 15);

        let alias = interface_alias(&lab, &node, &IfName::parse("eth0").unwrap());
        assert_eq!(alias, "lab/three-node/node1/eth0");
        assert_eq!(parse_alias(&alias), Some((lab.clone(), false)));
        assert_eq!(parse_alias(&network_alias(&lab, &name("lan"))), Some((lab.clone(), true)));
        assert_eq!(parse_alias(&impair_alias(&alias)), Some((lab.clone(), false)));
        assert_eq!(parse_alias("docker0"), None);

        assert_eq!(nft_table(&lab), "lab-three-node");
        assert!(is_lab_table("lab-three-node") && !is_lab_table("filter") && !is_lab_table("lab-"));
        assert_eq!(netns(&lab, &node), "three-node.node1");
        assert_eq!(netns_node(&lab, "three-node.node1"), Some("node1"));
        assert_eq!(netns_node(&lab, "three-nodes.x"), None);
        assert_eq!(netns_node(&lab, "three-node-node1"), None);
        // `a-b` + `c` and `a` + `b-c` were both `a-b-c` once.
        assert_ne!(netns(&name("a-b"), &name("c")), netns(&name("a"), &name("b-c")));
        assert_eq!(cgroup(&lab, &node), "lab/three-node/node1");
        assert_eq!(lab_cgroup(&lab), "lab/three-node");
    }

    #[test]
    fn ids_are_stable_and_salted_until_free() {
        let lab = name("demo");
        let (id, group) = lab_id(&lab, |_, _| true);
        assert_eq!(lab_id(&lab, |_, _| true), (id.clone(), group));
        assert_eq!((id.len(), group & 0xffff_0000), (ID_LEN, GROUP_BASE));
        let (other, _) = lab_id(&lab, |i, _| i != id);
        assert_ne!(other, id);
    }
}
