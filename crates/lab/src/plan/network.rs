//! Networks: their subnets (named, or the first free one of a pool), bridges, and the
//! addresses handed out on them; host ports forwarded to nodes.

use super::node::stable_mac;
use super::{Facts, NetworkPlan, NodePlan, PortPlan};
use crate::identity::{self, HostIf};
use crate::topology::{gateway, overlaps, InterfaceKind, Topology};
use crate::TopologyError;
use ipnetwork::IpNetwork;
use std::collections::HashSet;
use std::net::IpAddr;

/// Subnets handed out to networks that do not name one: /24s from this block.
pub const SUBNET_POOL: &str = "10.42.0.0/16";
const POOL_PREFIX: u8 = 24;
/// IPv6 subnets handed out to dual-stack networks that do not name one: /64s of this ULA block.
pub const SUBNET6_POOL: &str = "fd42:4242::/48";
const POOL6_PREFIX: u8 = 64;

/// The networks of `topology`, each with its subnets, bridge and gateways.
pub(super) fn networks(topology: &Topology, facts: &Facts, id: &str) -> Result<Vec<NetworkPlan>, TopologyError> {
    let mut used = facts.used_subnets.clone();
    // A network without NAT is a segment the host is not on: whatever the host routes, and
    // whatever other labs have, its subnet touches none of it. A NAT network's the host
    // routes: it must be free.
    for n in topology.networks.iter().filter(|n| n.nat) {
        for (net, span) in [(n.subnet, &n.span), (n.subnet6, &n.span6)] {
            let Some(net) = net else { continue };
            if let Some((_, who)) = used.iter().find(|(u, _)| overlaps(*u, net)) {
                return Err(topology.error_at(
                    span.clone(),
                    format!("subnet {net} of network `{}` is already in use by {who}", n.name),
                    Some("pick another subnet, or leave it out to get a free one".into()),
                ));
            }
        }
    }
    // Free subnets are picked away from everything, other labs' segments too.
    used.extend(facts.segment_subnets.iter().cloned());
    for n in &topology.networks {
        for s in [n.subnet, n.subnet6].into_iter().flatten() {
            used.push((s, format!("network `{}` of this lab", n.name)));
        }
    }
    for l in &topology.links {
        for a in &l.endpoints[0].addresses {
            used.push((*a, "a link of this lab".into()));
        }
    }
    let mut out = Vec::new();
    for (k, n) in topology.networks.iter().enumerate() {
        let mut pick = |pool: &str, prefix: u8, span: &std::ops::Range<usize>| {
            let s = free_subnet(pool, prefix, &used).ok_or_else(|| {
                topology.error_at(
                    span.clone(),
                    format!("no free /{prefix} left in {pool} for network `{}`", n.name),
                    Some("give the network an explicit subnet".into()),
                )
            })?;
            used.push((s, format!("network `{}` of this lab", n.name)));
            Ok::<_, TopologyError>(s)
        };
        let subnet = match n.subnet {
            Some(s) => s,
            None => pick(SUBNET_POOL, POOL_PREFIX, &n.span)?,
        };
        let subnet6 = match (n.ipv6, n.subnet6) {
            (_, Some(s)) => Some(s),
            (true, None) => Some(pick(SUBNET6_POOL, POOL6_PREFIX, &n.span6)?),
            (false, None) => None,
        };
        out.push(NetworkPlan {
            name: n.name.clone(),
            bridge: HostIf::Bridge.name(id, k),
            alias: identity::network_alias(&topology.name, &n.name),
            mac: bridge_mac(id, k),
            subnet,
            gateway: if n.nat { gateway(subnet) } else { None },
            subnet6,
            gateway6: if n.nat { subnet6.and_then(gateway) } else { None },
            mtu: n.mtu,
            nat: n.nat,
            stp: n.stp,
            vlan_filtering: n.vlan_filtering,
        });
    }
    Ok(out)
}

/// The first /`prefix` of `pool` that overlaps nothing in use.
pub(super) fn free_subnet(pool: &str, prefix: u8, used: &[(IpNetwork, String)]) -> Option<IpNetwork> {
    let pool: IpNetwork = pool.parse().ok()?;
    let count = 1u128.checked_shl(u32::from(prefix.checked_sub(pool.prefix())?))?;
    let (base, bits): (u128, u32) = match pool.network() {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    };
    let step = 1u128 << (bits - u32::from(prefix));
    (0..count)
        .filter_map(|i| {
            let start = base + i * step;
            let ip = if bits == 32 { IpAddr::V4((start as u32).into()) } else { IpAddr::V6(start.into()) };
            IpNetwork::new(ip, prefix).ok()
        })
        .find(|c| !used.iter().any(|(u, _)| overlaps(*u, *c)))
}

/// The addresses of every network still free to hand out, IPv4 and IPv6.
pub(super) struct Addresses {
    v4: Vec<Allocator>,
    v6: Vec<Option<Allocator>>,
}

impl Addresses {
    /// Every address of `networks`, less their gateways and the static addresses
    /// `topology` gives.
    pub(super) fn new(topology: &Topology, networks: &[NetworkPlan]) -> Addresses {
        let mut v4: Vec<Allocator> = networks.iter().map(|n| Allocator::new(n.subnet, n.gateway)).collect();
        let mut v6: Vec<Option<Allocator>> =
            networks.iter().map(|n| n.subnet6.map(|s| Allocator::new(s, n.gateway6))).collect();
        for iface in topology.nodes.iter().flat_map(|n| &n.interfaces) {
            if let InterfaceKind::Network { network, addresses, .. } = &iface.kind {
                for a in addresses {
                    let alloc = if a.is_ipv4() { Some(&mut v4[*network]) } else { v6[*network].as_mut() };
                    if let Some(alloc) = alloc {
                        alloc.taken.insert(*a);
                    }
                }
            }
        }
        Addresses { v4, v6 }
    }

    /// The next free IPv4 address of network `network`.
    pub(super) fn next_v4(&mut self, network: usize) -> Option<IpAddr> {
        self.v4[network].next()
    }

    /// The next free IPv6 address of network `network`; `None` also when it has no IPv6.
    pub(super) fn next_v6(&mut self, network: usize) -> Option<IpAddr> {
        self.v6[network].as_mut()?.next()
    }
}

/// Hands out addresses in order, skipping the network, gateway and static addresses.
struct Allocator {
    hosts: Box<dyn Iterator<Item = IpAddr>>,
    taken: HashSet<IpAddr>,
}

impl Allocator {
    fn new(subnet: IpNetwork, gateway: Option<IpAddr>) -> Allocator {
        let broadcast = subnet.is_ipv4().then(|| subnet.broadcast());
        // The first address is left for a gateway or a router even where the host takes none.
        let hosts = subnet.iter().skip(2).filter(move |ip| Some(*ip) != broadcast);
        Allocator { hosts: Box::new(hosts), taken: gateway.into_iter().collect() }
    }

    fn next(&mut self) -> Option<IpAddr> {
        let taken = &self.taken;
        let ip = self.hosts.find(|ip| !taken.contains(ip))?;
        self.taken.insert(ip);
        Some(ip)
    }
}

/// Forwarded host ports, each to the node's IPv4 address on its first NAT network.
pub(super) fn ports(
    topology: &Topology,
    facts: &Facts,
    nodes: &[NodePlan],
    networks: &[NetworkPlan],
) -> Result<Vec<PortPlan>, TopologyError> {
    let mut out = Vec::new();
    for (node, plan) in topology.nodes.iter().zip(nodes) {
        for p in &node.ports {
            if let Some((_, who)) = facts.used_ports.iter().find(|(k, _)| *k == (p.host, p.protocol)) {
                return Err(topology.error_at(
                    p.span.clone(),
                    format!("host port {}/{} is already forwarded by {who}", p.host, p.protocol),
                    Some("pick another host port, or take that lab down first".into()),
                ));
            }
            let target = plan.interfaces.iter().find_map(|i| match &i.attach {
                super::Attach::Bridge { network, .. } if networks[*network].nat => {
                    Some((i.addresses.iter().find(|a| a.is_ipv4())?.ip(), networks[*network].bridge.clone()))
                }
                _ => None,
            });
            let (address, bridge) = target.expect("the topology checked the node is on a NAT network");
            out.push(PortPlan {
                node: node.name.clone(),
                protocol: p.protocol,
                host_port: p.host,
                node_port: p.node,
                address,
                bridge,
            });
        }
    }
    Ok(out)
}

/// A stable, locally administered MAC for a bridge, so that it never changes as ports come
/// and go (the kernel would otherwise take the lowest port's MAC and stale ARP caches).
fn bridge_mac(id: &str, network: usize) -> [u8; 6] {
    stable_mac(&format!("{id}/{network}"))
}
