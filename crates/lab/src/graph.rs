//! A lab drawn as a graph: networks and nodes are vertices; a node's interface on a network
//! and a point-to-point link are edges, labelled with interface names and addresses. As
//! Mermaid (renders in GitHub and most Markdown viewers) or Graphviz DOT.

use crate::plan::{Attach, NetworkPlan, Plan};

/// Mermaid flowchart: networks as rounded boxes, nodes as boxes.
pub fn mermaid(plan: &Plan) -> String {
    let mut out = format!("%% lab {}\ngraph LR\n", plan.lab);
    for n in &plan.networks {
        out += &format!("  {}([\"{}\"])\n", net_id(n), network_label(n).join("<br/>"));
    }
    for node in &plan.nodes {
        out += &format!("  {}[\"{}\"]\n", node_id(node.name.as_str()), node.name);
    }
    for node in &plan.nodes {
        for iface in &node.interfaces {
            if let Attach::Bridge { network, .. } = &iface.attach {
                let label = interface_label(iface.name.as_str(), &iface.addresses).join("<br/>");
                out += &format!(
                    "  {} ---|\"{label}\"| {}\n",
                    node_id(node.name.as_str()),
                    net_id(&plan.networks[*network])
                );
            }
        }
    }
    for (a, ia, b, ib) in links(plan) {
        out += &format!(
            "  {} ---|\"{} — {}\"| {}\n",
            node_id(a),
            interface_label(ia.0, ia.1).join("<br/>"),
            interface_label(ib.0, ib.1).join("<br/>"),
            node_id(b)
        );
    }
    out
}

/// Graphviz DOT, undirected: `dot -Tsvg` draws it.
pub fn dot(plan: &Plan) -> String {
    let mut out = format!("graph \"{}\" {{\n  layout=dot; rankdir=LR;\n  node [shape=box];\n", plan.lab);
    for n in &plan.networks {
        out += &format!("  \"{}\" [shape=ellipse, label=\"{}\"];\n", net_id(n), network_label(n).join("\\n"));
    }
    for node in &plan.nodes {
        out += &format!("  \"{}\" [label=\"{}\"];\n", node_id(node.name.as_str()), node.name);
    }
    for node in &plan.nodes {
        for iface in &node.interfaces {
            if let Attach::Bridge { network, .. } = &iface.attach {
                out += &format!(
                    "  \"{}\" -- \"{}\" [label=\"{}\"];\n",
                    node_id(node.name.as_str()),
                    net_id(&plan.networks[*network]),
                    interface_label(iface.name.as_str(), &iface.addresses).join("\\n")
                );
            }
        }
    }
    for (a, ia, b, ib) in links(plan) {
        out += &format!(
            "  \"{}\" -- \"{}\" [taillabel=\"{}\", headlabel=\"{}\"];\n",
            node_id(a),
            node_id(b),
            interface_label(ia.0, ia.1).join("\\n"),
            interface_label(ib.0, ib.1).join("\\n")
        );
    }
    out + "}\n"
}

type End<'a> = (&'a str, &'a [ipnetwork::IpNetwork]);

/// Each point-to-point link: node, (interface, addresses) at both ends.
fn links<'a>(plan: &'a Plan) -> Vec<(&'a str, End<'a>, &'a str, End<'a>)> {
    plan.links
        .iter()
        .map(|l| {
            let end = |(node, ifname): &'a (usize, crate::topology::IfName)| {
                let n = &plan.nodes[*node];
                let addrs =
                    n.interfaces.iter().find(|i| i.name == *ifname).map(|i| i.addresses.as_slice()).unwrap_or_default();
                (n.name.as_str(), (ifname.as_str(), addrs))
            };
            let (a, ia) = end(&l.endpoints[0]);
            let (b, ib) = end(&l.endpoints[1]);
            (a, ia, b, ib)
        })
        .collect()
}

fn network_label(n: &NetworkPlan) -> Vec<String> {
    let mut lines = vec![n.name.to_string(), n.subnet.to_string()];
    lines.extend(n.subnet6.map(|s| s.to_string()));
    if n.nat {
        lines.push("NAT".into());
    }
    lines
}

fn interface_label(name: &str, addresses: &[ipnetwork::IpNetwork]) -> Vec<String> {
    std::iter::once(name.to_string()).chain(addresses.iter().map(|a| a.to_string())).collect()
}

/// Identifiers that no name can break: names are letters, digits and `-` (topology rules),
/// so `-` becomes `_`.
fn node_id(name: &str) -> String {
    format!("node_{}", name.replace('-', "_"))
}

fn net_id(n: &NetworkPlan) -> String {
    format!("net_{}", n.name.as_str().replace('-', "_"))
}

#[cfg(test)]
mod tests {
    use crate::plan::{Facts, Plan};
    use crate::{Source, Topology};

    fn plan() -> Plan {
        let text = r#"
            name = "g"
            [networks.lan]
            subnet = "10.5.0.0/24"
            nat = true
            [nodes.a]
            networks = ["lan"]
            [nodes.b-1]
            networks = ["lan"]
            [[links]]
            endpoints = ["a:eth1", "b-1:eth1"]
            addresses = ["10.0.0.1/31", "10.0.0.0/31"]
        "#;
        Plan::new(&Topology::parse(Source::new("g.toml", text)).unwrap(), &Facts::default()).unwrap()
    }

    #[test]
    fn mermaid_has_every_vertex_and_edge() {
        let m = super::mermaid(&plan());
        assert!(m.contains("graph LR\n"));
        assert!(m.contains("  net_lan([\"lan<br/>10.5.0.0/24<br/>NAT\"])\n"), "{m}");
        assert!(m.contains("  node_b_1[\"b-1\"]\n"), "{m}");
        assert!(m.contains("  node_a ---|\"eth0<br/>10.5.0.2/24\"| net_lan\n"), "{m}");
        assert!(m.contains("  node_a ---|\"eth1<br/>10.0.0.1/31 — eth1<br/>10.0.0.0/31\"| node_b_1\n"), "{m}");
    }

    #[test]
    fn dot_has_every_vertex_and_edge() {
        let d = super::dot(&plan());
        assert!(d.starts_with("graph \"g\" {"));
        assert!(d.contains("\"net_lan\" [shape=ellipse, label=\"lan\\n10.5.0.0/24\\nNAT\"];"), "{d}");
        assert!(d.contains("\"node_b_1\" -- \"net_lan\" [label=\"eth0\\n10.5.0.3/24\"];"), "{d}");
        assert!(d.contains(
            "\"node_a\" -- \"node_b_1\" [taillabel=\"eth1\\n10.0.0.1/31\", headlabel=\"eth1\\n10.0.0.0/31\"];"
        ));
        assert!(d.trim_end().ends_with('}'));
    }
}
