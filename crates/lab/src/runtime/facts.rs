//! What the planner must know about this machine, gathered under the global lock.

use crate::identity::{self, HostIf};
use crate::plan::Facts;
use crate::state::all_states;
use crate::topology::Name;
use crate::Error;
use lab_net::Netlink;

/// Subnets in use (host routes, other labs) and lab ids taken (by other labs' state or by
/// leftover interfaces whose lab is unknown).
pub async fn gather(host: &Netlink, lab: &Name) -> Result<Facts, Error> {
    let mut facts = Facts { no_ipv6: !std::path::Path::new("/proc/sys/net/ipv6").exists(), ..Facts::default() };
    // Other labs first: a conflict then names the lab rather than its bridge's route.
    for (name, state) in all_states() {
        let Some(state) = state else { continue };
        if &name == lab {
            continue;
        }
        facts.taken_ids.insert(state.plan.id.clone());
        facts.taken_groups.insert(state.plan.group);
        facts.taken_userns.extend(state.plan.nodes.iter().filter_map(|n| n.userns.map(|m| m.host)));
        // The host routes a NAT network's subnet unless its lab has a gateway namespace.
        let behind = state.plan.gateway.is_some();
        for n in &state.plan.networks {
            for subnet in [Some(n.subnet), n.subnet6].into_iter().flatten() {
                let used = if n.nat && !behind { &mut facts.lab_subnets } else { &mut facts.segment_subnets };
                used.push((subnet, format!("lab {name}'s network {}", n.name)));
            }
        }
        if let Some(g) = &state.plan.gateway {
            for a in &g.host_addresses {
                facts.lab_subnets.push((super::gateway::network_of(*a), format!("lab {name}'s gateway namespace")));
            }
            facts.taken_netns.push((g.netns.clone(), format!("lab {name}'s gateway namespace")));
        }
        for p in &state.plan.ports {
            facts.used_ports.push(((p.host_port, p.protocol), format!("lab {name} (node {})", p.node)));
        }
        for n in &state.plan.nodes {
            facts.taken_netns.push((n.netns.clone(), format!("lab {name}'s node {}", n.name)));
        }
    }
    for ns in lab_net::netns::list() {
        if !facts.taken_netns.iter().any(|(n, _)| *n == ns) && identity::netns_node(lab, &ns).is_none() {
            facts.taken_netns.push((ns, "a network namespace of the host's (`ip netns list`)".into()));
        }
    }
    for r in host.host_routes().await? {
        // A route through an interface of a lab's (its bridge, its gateway's uplink) is that
        // lab's: known from its state, or left over by one that is gone.
        let labs = r.dev.as_deref().is_some_and(|d| HostIf::parse(d).is_some());
        let dev = r.dev.map(|d| format!(" dev {d}")).unwrap_or_default();
        let used = if labs { &mut facts.lab_subnets } else { &mut facts.used_subnets };
        used.push((r.destination, format!("host route {}{dev}", r.destination)));
    }
    for link in host.links().await? {
        if link.alias.as_deref().and_then(identity::parse_alias).is_some_and(|(l, _)| &l == lab) {
            continue;
        }
        if let Some((_, id)) = HostIf::parse(&link.name) {
            facts.taken_ids.insert(id);
        }
        if link.group != 0 {
            facts.taken_groups.insert(link.group);
        }
    }
    Ok(facts)
}

/// The images `topology` names that the image store has (the plan says which it lacks).
pub fn images(
    topology: &crate::topology::Topology,
) -> Result<std::collections::BTreeMap<String, crate::plan::ImageFacts>, Error> {
    let mut out = std::collections::BTreeMap::new();
    let wanted = topology.images();
    if wanted.is_empty() {
        return Ok(out);
    }
    let store = lab_image::Store::open(lab_image::STORE_ROOT)?;
    for r in wanted {
        let reference = lab_image::Reference::parse(r)?;
        if let Some(image) = store.resolve(&reference)? {
            let facts = crate::plan::ImageFacts {
                digest: image.manifest.to_string(),
                layers: image.layers,
                config: image.config.config,
            };
            out.insert(r.to_string(), facts);
        }
    }
    Ok(out)
}
