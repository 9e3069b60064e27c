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
/// reach directly when there is one; every address also as `<node>.<network>`.
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
                for a in &iface.addresses {
                    writeln!(out, "{}\t{}", a.ip(), names.join(" ")).expect("writing to a String");
                }
            }
            None if i == me => writeln!(out, "127.0.1.1\t{}", names.join(" ")).expect("writing to a String"),
            None => {}
        }
        for iface in addressed {
            if let Attach::Bridge { network, .. } = &iface.attach {
                for a in &iface.addresses {
                    writeln!(qualified, "{}\t{}.{}", a.ip(), node.name, networks[*network].name)
                        .expect("writing to a String");
                }
            }
        }
    }
    out + &qualified
}
