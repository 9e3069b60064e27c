//! Each node's /etc/hosts, written once every node's addresses are known.

use super::{Attach, InterfacePlan, NetworkPlan, NodePlan};
use std::collections::HashSet;
use std::fmt::Write as _;

/// Gives every node its hosts file.
pub(super) fn fill(nodes: &mut [NodePlan], networks: &[NetworkPlan]) {
    let hosts: Vec<String> = (0..nodes.len()).map(|i| hosts_file(i, nodes, networks)).collect();
    for (node, hosts) in nodes.iter_mut().zip(hosts) {
        node.hosts = hosts;
    }
}

/// /etc/hosts for node `me`: every node by name, at the addresses of an interface `me` can
/// reach directly when there is one (else at its loopback addresses); every address also as
/// `<node>.<network>` and `<node>-<interface>`, loopback addresses as `<node>-lo`.
fn hosts_file(me: usize, nodes: &[NodePlan], networks: &[NetworkPlan]) -> String {
    let segment = |i: &InterfacePlan| match &i.attach {
        Attach::Bridge { network, .. } => format!("net:{network}"),
        Attach::Link { link, .. } => format!("link:{link}"),
    };
    let mine: HashSet<String> = nodes[me].interfaces.iter().map(segment).collect();
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let mut qualified = String::new();
    for (i, node) in nodes.iter().enumerate() {
        let addressed: Vec<&InterfacePlan> = node.interfaces.iter().filter(|i| !i.addresses.is_empty()).collect();
        let best = addressed.iter().find(|iface| i == me || mine.contains(&segment(iface))).or(addressed.first());
        let mut names = vec![node.name.to_string()];
        if node.hostname.as_str() != node.name.as_str() {
            names.push(node.hostname.to_string());
        }
        match best {
            Some(iface) => {
                // Its primary addresses (the first of each version); secondary ones go by
                // `<node>-<interface>` only.
                let v4 = iface.addresses.iter().find(|a| a.is_ipv4());
                for a in v4.into_iter().chain(iface.addresses.iter().find(|a| a.is_ipv6())) {
                    writeln!(out, "{}\t{}", a.ip(), names.join(" ")).expect("writing to a String");
                }
            }
            None if !node.loopback.is_empty() => {
                for a in &node.loopback {
                    writeln!(out, "{}\t{}", a.ip(), names.join(" ")).expect("writing to a String");
                }
            }
            None if i == me => writeln!(out, "127.0.1.1\t{}", names.join(" ")).expect("writing to a String"),
            None => {}
        }
        for iface in addressed {
            let mut aliases = vec![format!("{}-{}", node.name, iface.name)];
            if let Attach::Bridge { network, .. } = &iface.attach {
                aliases.insert(0, format!("{}.{}", node.name, networks[*network].name));
            }
            for a in &iface.addresses {
                writeln!(qualified, "{}\t{}", a.ip(), aliases.join(" ")).expect("writing to a String");
            }
        }
        for a in &node.loopback {
            writeln!(qualified, "{}\t{}-lo", a.ip(), node.name).expect("writing to a String");
        }
    }
    out + &qualified
}
