//! Networks: their subnets (named, or the first free one of a pool), bridges, and the
//! addresses handed out on them; host ports forwarded to nodes.

use super::node::stable_mac;
use super::{Facts, GatewayLeg, GatewayPlan, NetworkPlan, NodePlan, PortPlan};
use crate::identity::{self, HostIf};
use crate::topology::{gateway, overlaps, IfName, InterfaceKind, Topology};
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
    // A network without NAT is a segment the host is not on: whatever the host routes, and
    // whatever other labs have, its subnet touches none of it. A NAT network's must not be
    // one the host routes for itself; one that another lab's has (a copy of this lab) goes
    // behind a gateway namespace of this lab's own (`gateway_namespace`).
    for n in topology.networks.iter().filter(|n| n.nat) {
        for (net, span) in [(n.subnet, &n.span), (n.subnet6, &n.span6)] {
            let Some(net) = net else { continue };
            if let Some((_, who)) = facts.used_subnets.iter().find(|(u, _)| overlaps(*u, net)) {
                return Err(topology.error_at(
                    span.clone(),
                    format!("subnet {net} of network `{}` is already in use by {who}", n.name),
                    Some("pick another subnet, or leave it out to get a free one".into()),
                ));
            }
        }
    }
    // Free subnets are picked away from everything.
    let mut used = taken(topology, facts);
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

/// Everything a free subnet must keep away from: what the host routes, for itself and for
/// other labs, other labs' segments, and this lab's own fixed subnets and link addresses.
fn taken(topology: &Topology, facts: &Facts) -> Vec<(IpNetwork, String)> {
    let mut used = facts.used_subnets.clone();
    used.extend(facts.lab_subnets.iter().cloned());
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
    used
}

/// Transfer subnets between the host and a gateway namespace: a /30 each, from this block
/// (kept apart from the pool's first /24s, which networks get).
pub const TRANSFER_POOL: &str = "10.42.248.0/21";
const TRANSFER_PREFIX: u8 = 30;
/// IPv6 transfer subnets, for gateways of networks with IPv6 NAT: a /64 each.
pub const TRANSFER6_POOL: &str = "fd42:4242:ff00::/56";

/// The lab's gateway namespace, if one of its NAT networks has a subnet that the host
/// routes for another lab (it is a copy of a lab that is up).
pub(super) fn gateway_namespace(
    topology: &Topology,
    facts: &Facts,
    id: &str,
    networks: &[NetworkPlan],
) -> Result<Option<GatewayPlan>, TopologyError> {
    let shared = networks.iter().zip(&topology.networks).filter(|(n, _)| n.nat).find_map(|(n, t)| {
        let subnets = [Some(n.subnet), n.subnet6].into_iter().flatten();
        subnets.into_iter().find_map(|s| facts.lab_subnets.iter().find(|(u, _)| overlaps(*u, s)).map(|_| t))
    });
    let Some(first) = shared else { return Ok(None) };
    let netns = identity::gateway_netns(&topology.name);
    if let Some((_, who)) = facts.taken_netns.iter().find(|(n, _)| *n == netns) {
        return Err(topology.error_at(
            first.span.clone(),
            format!("this lab's gateway namespace `{netns}` (its NAT networks' subnets are another lab's too) is taken by {who}"),
            Some("rename the lab (`lab up --name`)".into()),
        ));
    }
    let mut used = taken(topology, facts);
    for n in networks {
        used.extend([Some(n.subnet), n.subnet6].into_iter().flatten().map(|s| (s, format!("network `{}`", n.name))));
    }
    let exhausted = |pool: &str| {
        topology.error_at(
            first.span.clone(),
            format!("no free transfer subnet left in {pool} for this lab's gateway namespace"),
            Some("take a copy of this lab down, or give this one other subnets".into()),
        )
    };
    let mut transfers =
        vec![free_subnet(TRANSFER_POOL, TRANSFER_PREFIX, &used).ok_or_else(|| exhausted(TRANSFER_POOL))?];
    if networks.iter().any(|n| n.nat && n.subnet6.is_some()) {
        transfers.push(free_subnet(TRANSFER6_POOL, POOL6_PREFIX, &used).ok_or_else(|| exhausted(TRANSFER6_POOL))?);
    }
    // The host takes the first address of each, the namespace the second.
    let nth = |s: &IpNetwork, k: usize| s.iter().nth(k).and_then(|ip| IpNetwork::new(ip, s.prefix()).ok());
    let host_addresses = transfers.iter().filter_map(|s| nth(s, 1)).collect();
    let addresses = transfers.iter().filter_map(|s| nth(s, 2)).collect();
    let nat: Vec<(usize, &NetworkPlan)> = networks.iter().enumerate().filter(|(_, n)| n.nat).collect();
    // Legs are named after their networks where every name fits, else `net<k>`.
    let fits = |n: &NetworkPlan| {
        IfName::parse(n.name.as_str()).is_ok() && n.name.as_str() != GatewayPlan::UPLINK && n.name.as_str() != "lo"
    };
    let by_name = nat.iter().all(|(_, n)| fits(n));
    let legs = nat
        .iter()
        .map(|&(k, n)| GatewayLeg {
            network: k,
            host_end: HostIf::Gateway.name(id, k + 1),
            name: if by_name {
                IfName::parse(n.name.as_str()).expect("it fits")
            } else {
                IfName::parse(&format!("net{k}")).expect("fits")
            },
            alias: identity::gateway_alias(&topology.name, n.name.as_str()),
        })
        .collect();
    Ok(Some(GatewayPlan { netns, uplink: HostIf::Gateway.name(id, 0), host_addresses, addresses, legs }))
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
