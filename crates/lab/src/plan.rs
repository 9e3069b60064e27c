//! The plan: every name, address, interface and route of a lab decided up front, by a pure
//! function of the topology and a few facts about the machine. No side effects, so it is
//! unit-tested without root, and the runtime only has to carry it out.

use crate::topology::{gateway, overlaps, Hostname, IfName, InterfaceKind, Name, Rootfs, SeccompChoice, Topology};
use crate::TopologyError;
use ipnetwork::IpNetwork;
use lab_sandbox::caps::{effective_set, Cap};
use lab_sandbox::cgroup::Limits;
use lab_sandbox::{BindMount, IdMap};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;

/// Subnets handed out to networks that do not name one: /24s from this block.
pub const SUBNET_POOL: &str = "10.42.0.0/16";
const POOL_PREFIX: u8 = 24;
/// Length of the per-lab id that host-side interface names carry.
pub const ID_LEN: usize = 5;

/// What the plan needs to know about the machine; gathered by the runtime.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Subnets already in use (host routes, other labs' networks), each with who uses it.
    pub used_subnets: Vec<(IpNetwork, String)>,
    /// Ids of other labs, and of leftover interfaces, that a new lab must not reuse.
    pub taken_ids: BTreeSet<String>,
    /// Link groups in use on the host.
    pub taken_groups: BTreeSet<u32>,
    /// Host uid/gid ranges (their first id) other labs' user namespaces use.
    pub taken_userns: BTreeSet<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub lab: Name,
    /// Short id carried by host-side interface names (`lb-<id>-0`), unique among live labs.
    pub id: String,
    /// Link group of the lab's host interfaces, unique on the host: `lab down` deletes them
    /// all with one request.
    pub group: u32,
    /// The lab's nftables table (family inet); all its NAT rules live there.
    pub nft_table: String,
    pub networks: Vec<NetworkPlan>,
    pub nodes: Vec<NodePlan>,
    pub links: Vec<LinkPlan>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPlan {
    pub name: Name,
    pub bridge: String,
    /// Interface alias (`ip link` shows it) that ties the bridge to its lab.
    pub alias: String,
    pub mac: [u8; 6],
    pub subnet: IpNetwork,
    /// The bridge's own address, for NAT networks: nodes' default route.
    pub gateway: Option<IpAddr>,
    pub nat: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePlan {
    pub name: Name,
    pub hostname: Hostname,
    /// Name under /run/netns, so that `ip netns exec <lab>-<node>` works.
    pub netns: String,
    /// cgroup path below each hierarchy's root.
    pub cgroup: String,
    pub rootfs: Rootfs,
    pub command: Option<Vec<String>>,
    pub env: Vec<(String, String)>,
    pub interfaces: Vec<InterfacePlan>,
    pub routes: Vec<RoutePlan>,
    /// The node's /etc/hosts.
    pub hosts: String,
    /// Capabilities every process of the node keeps.
    pub caps: BTreeSet<Cap>,
    pub seccomp: SeccompChoice,
    pub privileged: bool,
    /// Root inside mapped to this host range, when the node has a user namespace.
    pub userns: Option<IdMap>,
    pub limits: Limits,
    pub mounts: Vec<BindMount>,
    /// Sysctls of the node's network namespace, set by its init.
    pub sysctls: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfacePlan {
    /// Name inside the node.
    pub name: IfName,
    pub address: Option<IpNetwork>,
    pub attach: Attach,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attach {
    /// A veth whose other end, `host_veth`, is a port of network `network`'s bridge.
    Bridge { network: usize, host_veth: String, alias: String },
    /// One end of point-to-point link `link`.
    Link { link: usize },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkPlan {
    /// (node index, interface name) of each end.
    pub endpoints: [(usize, IfName); 2],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutePlan {
    pub destination: IpNetwork,
    pub via: IpAddr,
}

impl Plan {
    /// Decides everything about a lab. Fails, pointing into the topology file, only when the
    /// machine makes the file impossible (a subnet already in use, a pool exhausted).
    pub fn new(topology: &Topology, facts: &Facts) -> Result<Plan, TopologyError> {
        let lab = topology.name.clone();
        let (id, group) = lab_identity(lab.as_str(), facts);
        let networks = plan_networks(topology, facts, &id)?;
        let mut nodes = Vec::with_capacity(topology.nodes.len());
        let mut allocators: Vec<Allocator> = networks.iter().map(Allocator::new).collect();
        for iface in topology.nodes.iter().flat_map(|n| &n.interfaces) {
            if let InterfaceKind::Network { network, address: Some(a) } = iface.kind {
                allocators[network].taken.insert(a);
            }
        }

        let mut userns = UsernsAllocator { taken: &facts.taken_userns, next: 0 };
        let mut veth_counter = 0usize;
        for node in &topology.nodes {
            let mut interfaces = Vec::new();
            for iface in &node.interfaces {
                let (address, attach) = match iface.kind {
                    InterfaceKind::Network { network, address } => {
                        let net = &networks[network];
                        let ip = match address {
                            Some(ip) => ip,
                            None => allocators[network].next().ok_or_else(|| {
                                topology.error_at(
                                    topology.networks[network].span.clone(),
                                    format!(
                                        "network `{}` ({}) has no free address left for node `{}`",
                                        net.name, net.subnet, node.name
                                    ),
                                    Some("give the network a larger subnet".into()),
                                )
                            })?,
                        };
                        let host_veth = format!("lv-{id}-{veth_counter}");
                        veth_counter += 1;
                        let alias = format!("lab/{lab}/{}/{}", node.name, iface.name);
                        let address = IpNetwork::new(ip, net.subnet.prefix()).expect("prefix of a valid subnet");
                        (Some(address), Attach::Bridge { network, host_veth, alias })
                    }
                    InterfaceKind::Link { link, address } => (address, Attach::Link { link }),
                };
                interfaces.push(InterfacePlan { name: iface.name.clone(), address, attach });
            }
            let routes = default_route(&interfaces, &networks).into_iter().collect();
            let sec = &node.security;
            let caps = effective_set(&sec.cap_add, &sec.cap_drop, sec.privileged)
                .expect("capability names were checked when the topology was parsed");
            let userns = if sec.userns {
                Some(userns.next().ok_or_else(|| {
                    topology.error_at(
                        0..0,
                        format!("no free host id range left for node `{}`'s user namespace", node.name),
                        None,
                    )
                })?)
            } else {
                None
            };
            // As Docker does: ping works without raw sockets, for any group of the node.
            let max_gid = userns.map_or(2_147_483_647, |m| m.size - 1);
            let sysctls = vec![("net.ipv4.ping_group_range".to_string(), format!("0 {max_gid}"))];
            nodes.push(NodePlan {
                caps,
                seccomp: sec.seccomp.clone(),
                privileged: sec.privileged,
                userns,
                limits: node.limits,
                mounts: node.mounts.clone(),
                sysctls,
                netns: format!("{lab}-{}", node.name),
                cgroup: format!("lab/{lab}/{}", node.name),
                name: node.name.clone(),
                hostname: node.hostname.clone(),
                rootfs: node.rootfs.clone(),
                command: node.command.clone(),
                env: node.env.clone(),
                interfaces,
                routes,
                hosts: String::new(),
            });
        }
        let links: Vec<LinkPlan> = topology
            .links
            .iter()
            .map(|l| LinkPlan { endpoints: l.endpoints.clone().map(|e| (e.node, e.interface)) })
            .collect();
        let hosts: Vec<String> = (0..nodes.len()).map(|i| hosts_file(i, &nodes, &networks)).collect();
        for (node, hosts) in nodes.iter_mut().zip(hosts) {
            node.hosts = hosts;
        }
        Ok(Plan { nft_table: format!("lab-{lab}"), lab, id, group, networks, nodes, links })
    }

    pub fn node(&self, name: &str) -> Option<&NodePlan> {
        self.nodes.iter().find(|n| n.name.as_str() == name)
    }

    /// Whether any network masquerades outbound traffic.
    pub fn needs_nat(&self) -> bool {
        self.networks.iter().any(|n| n.nat)
    }
}

fn plan_networks(topology: &Topology, facts: &Facts, id: &str) -> Result<Vec<NetworkPlan>, TopologyError> {
    let mut used = facts.used_subnets.clone();
    for (net, _) in topology.networks.iter().filter_map(|n| n.subnet.map(|s| (s, n))) {
        if let Some((_, who)) = used.iter().find(|(u, _)| overlaps(*u, net)) {
            let n = topology.networks.iter().find(|n| n.subnet == Some(net)).expect("network with this subnet");
            return Err(topology.error_at(
                n.span.clone(),
                format!("subnet {net} of network `{}` is already in use by {who}", n.name),
                Some("pick another subnet, or leave `subnet` out to get a free one".into()),
            ));
        }
    }
    for n in &topology.networks {
        if let Some(s) = n.subnet {
            used.push((s, format!("network `{}` of this lab", n.name)));
        }
    }
    for l in &topology.links {
        if let Some(a) = l.endpoints[0].address {
            used.push((a, "a link of this lab".into()));
        }
    }
    let mut out = Vec::new();
    for (k, n) in topology.networks.iter().enumerate() {
        let subnet = match n.subnet {
            Some(s) => s,
            None => {
                let s = free_subnet(&used).ok_or_else(|| {
                    topology.error_at(
                        n.span.clone(),
                        format!("no free /{POOL_PREFIX} left in {SUBNET_POOL} for network `{}`", n.name),
                        Some("give the network an explicit `subnet`".into()),
                    )
                })?;
                used.push((s, format!("network `{}` of this lab", n.name)));
                s
            }
        };
        out.push(NetworkPlan {
            name: n.name.clone(),
            bridge: format!("lb-{id}-{k}"),
            alias: format!("lab/{}/net/{}", topology.name, n.name),
            mac: bridge_mac(id, k),
            subnet,
            gateway: if n.nat { gateway(subnet) } else { None },
            nat: n.nat,
        });
    }
    Ok(out)
}

fn free_subnet(used: &[(IpNetwork, String)]) -> Option<IpNetwork> {
    let pool: IpNetwork = SUBNET_POOL.parse().expect("valid pool literal");
    let step = 1u32 << (32 - u32::from(POOL_PREFIX));
    let IpAddr::V4(base) = pool.network() else {
        return None;
    };
    let count = 1u32 << (u32::from(POOL_PREFIX) - u32::from(pool.prefix()));
    (0..count)
        .map(|i| IpNetwork::new(IpAddr::V4((u32::from(base) + i * step).into()), POOL_PREFIX).expect("valid prefix"))
        .find(|c| !used.iter().any(|(u, _)| overlaps(*u, *c)))
}

/// First host id of the ranges user namespaces map to: far above the ranges /etc/subuid
/// hands out, each 65536 ids long.
pub const USERNS_BASE: u32 = 0x4000_0000;
pub const USERNS_SIZE: u32 = 65536;

/// Hands out host id ranges for user namespaces, skipping those other labs use.
struct UsernsAllocator<'a> {
    taken: &'a BTreeSet<u32>,
    next: u32,
}

impl UsernsAllocator<'_> {
    fn next(&mut self) -> Option<IdMap> {
        let slots = (u32::MAX - USERNS_BASE) / USERNS_SIZE;
        while self.next < slots {
            let host = USERNS_BASE + self.next * USERNS_SIZE;
            self.next += 1;
            if !self.taken.contains(&host) {
                return Some(IdMap { host, size: USERNS_SIZE });
            }
        }
        None
    }
}

/// Hands out addresses in order, skipping the network, gateway and static addresses.
struct Allocator {
    hosts: Box<dyn Iterator<Item = IpAddr>>,
    taken: HashSet<IpAddr>,
}

impl Allocator {
    fn new(net: &NetworkPlan) -> Allocator {
        let subnet = net.subnet;
        let last = subnet.broadcast();
        // .1 is left for a gateway or a router even where the host takes no address.
        let hosts = subnet.iter().skip(2).filter(move |ip| *ip != last);
        Allocator { hosts: Box::new(hosts), taken: net.gateway.into_iter().collect() }
    }

    fn next(&mut self) -> Option<IpAddr> {
        let taken = &self.taken;
        let ip = self.hosts.find(|ip| !taken.contains(ip))?;
        self.taken.insert(ip);
        Some(ip)
    }
}

/// Default route through the gateway of the node's first NAT network.
fn default_route(interfaces: &[InterfacePlan], networks: &[NetworkPlan]) -> Option<RoutePlan> {
    interfaces.iter().find_map(|i| match &i.attach {
        Attach::Bridge { network, .. } => networks[*network]
            .gateway
            .map(|via| RoutePlan { destination: IpNetwork::new(IpAddr::V4(0.into()), 0).expect("0.0.0.0/0"), via }),
        Attach::Link { .. } => None,
    })
}

/// /etc/hosts for node `me`: every node by name, at an address `me` can reach directly when
/// there is one; every address also as `<node>.<network>`.
fn hosts_file(me: usize, nodes: &[NodePlan], networks: &[NetworkPlan]) -> String {
    let segment = |i: &InterfacePlan| match &i.attach {
        Attach::Bridge { network, .. } => format!("net:{network}"),
        Attach::Link { link } => format!("link:{link}"),
    };
    let mine: HashSet<String> = nodes[me].interfaces.iter().map(segment).collect();
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let mut qualified = String::new();
    for (i, node) in nodes.iter().enumerate() {
        let addressed: Vec<&InterfacePlan> = node.interfaces.iter().filter(|i| i.address.is_some()).collect();
        let best = addressed
            .iter()
            .find(|iface| i == me || mine.contains(&segment(iface)))
            .or(addressed.first())
            .and_then(|iface| iface.address);
        let mut names = vec![node.name.to_string()];
        if node.hostname.as_str() != node.name.as_str() {
            names.push(node.hostname.to_string());
        }
        match best {
            Some(a) => writeln!(out, "{}\t{}", a.ip(), names.join(" ")),
            None if i == me => writeln!(out, "127.0.1.1\t{}", names.join(" ")),
            None => Ok(()),
        }
        .expect("writing to a String");
        for iface in addressed {
            if let (Attach::Bridge { network, .. }, Some(a)) = (&iface.attach, iface.address) {
                writeln!(qualified, "{}\t{}.{}", a.ip(), node.name, networks[*network].name)
                    .expect("writing to a String");
            }
        }
    }
    out + &qualified
}

/// Link groups lab uses: a range of its own, far from the small numbers people pick.
pub const GROUP_BASE: u32 = 0x4c41_0000;

/// A short id for host-side names and a link group, from the lab's name so that they are
/// stable, salted until both differ from every one in use.
fn lab_identity(name: &str, facts: &Facts) -> (String, u32) {
    (0u32..)
        .map(|salt| {
            let h = fnv1a(format!("{name}#{salt}").as_bytes());
            (base36(h, ID_LEN), GROUP_BASE | (h >> 48) as u32)
        })
        .find(|(id, group)| !facts.taken_ids.contains(id) && !facts.taken_groups.contains(group))
        .expect("some salt gives a free id and group")
}

fn fnv1a(bytes: &[u8]) -> u64 {
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

/// A stable, locally administered MAC for a bridge, so that it never changes as ports come
/// and go (the kernel would otherwise take the lowest port's MAC and stale ARP caches).
fn bridge_mac(id: &str, network: usize) -> [u8; 6] {
    let h = fnv1a(format!("{id}/{network}").as_bytes()).to_be_bytes();
    [0x02, h[0], h[1], h[2], h[3], h[4]]
}

#[cfg(test)]
mod tests;
