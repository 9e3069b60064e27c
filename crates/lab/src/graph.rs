//! A lab drawn as a graph: networks and nodes are vertices; a node's interface on a network
//! and a point-to-point link are edges, labelled with interface names and addresses. As
//! Mermaid (renders in GitHub and most Markdown viewers) or Graphviz DOT. A lab that is up
//! shows its faults too: impaired interfaces, links down, partitions.
//!
//! Edges are written in breadth-first order from the first network, so that Graphviz ranks
//! vertices by their distance from it: a router lands between the networks it joins.

use crate::plan::{Attach, NetworkPlan, Plan};
use crate::state::RuntimeChanges;
use std::collections::{BTreeSet, VecDeque};

/// A vertex: a network or a node, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Vertex {
    Net(usize),
    Node(usize),
}

/// An edge, from the vertex nearer the start to the one farther.
#[derive(Debug, Clone)]
enum Edge {
    /// Interface `iface` of node `node` on network `net`; `node_first` if the node is nearer.
    Attach { node: usize, iface: usize, net: usize, node_first: bool },
    /// Link `link`, its ends in the order drawn.
    Link { link: usize, ends: [(usize, usize); 2] },
}

/// Every edge once, in breadth-first order from the first network (or node), each pointing
/// away from where the walk came from; vertices not reached start walks of their own.
fn edges(plan: &Plan) -> Vec<Edge> {
    let mut adjacent: Vec<(Vertex, Vertex, Edge)> = Vec::new();
    for (n, node) in plan.nodes.iter().enumerate() {
        for (i, iface) in node.interfaces.iter().enumerate() {
            if let Attach::Bridge { network, .. } = &iface.attach {
                let e = Edge::Attach { node: n, iface: i, net: *network, node_first: true };
                adjacent.push((Vertex::Node(n), Vertex::Net(*network), e));
            }
        }
    }
    for (l, link) in plan.links.iter().enumerate() {
        let end = |k: usize| {
            let (node, ifname) = &link.endpoints[k];
            let iface = plan.nodes.get(*node).and_then(|n| n.interfaces.iter().position(|i| i.name == *ifname));
            (*node, iface.unwrap_or(0))
        };
        let ends = [end(0), end(1)];
        adjacent.push((Vertex::Node(ends[0].0), Vertex::Node(ends[1].0), Edge::Link { link: l, ends }));
    }
    let starts = (0..plan.networks.len()).map(Vertex::Net).chain((0..plan.nodes.len()).map(Vertex::Node));
    let mut seen = BTreeSet::new();
    let mut used = vec![false; adjacent.len()];
    let mut out = Vec::new();
    for start in starts {
        if !seen.insert(start) {
            continue;
        }
        let mut queue = VecDeque::from([start]);
        while let Some(v) = queue.pop_front() {
            for (k, (a, b, e)) in adjacent.iter().enumerate() {
                if used[k] || (*a != v && *b != v) {
                    continue;
                }
                used[k] = true;
                let (from_a, other) = if *a == v { (true, *b) } else { (false, *a) };
                out.push(match e.clone() {
                    Edge::Attach { node, iface, net, .. } => Edge::Attach { node, iface, net, node_first: from_a },
                    Edge::Link { link, ends } => {
                        Edge::Link { link, ends: if from_a { ends } else { [ends[1], ends[0]] } }
                    }
                });
                if seen.insert(other) {
                    queue.push_back(other);
                }
            }
        }
    }
    out
}

/// What is wrong with an interface now: down, impaired.
fn faults(plan: &Plan, changes: Option<&RuntimeChanges>, node: usize, iface: usize) -> Vec<String> {
    let (Some(c), Some(n)) = (changes, plan.nodes.get(node)) else { return Vec::new() };
    let Some(i) = n.interfaces.get(iface) else { return Vec::new() };
    let mut out = Vec::new();
    if c.links_down.iter().any(|(name, f)| name == n.name.as_str() && *f == i.name) {
        out.push("DOWN".to_string());
    }
    if let Some(imp) = c.impairment(plan, n.name.as_str(), i.name.as_str()) {
        out.push(imp.to_string());
    }
    out
}

/// Mermaid flowchart: networks as rounded boxes, nodes as boxes; faults in red.
pub fn mermaid(plan: &Plan, changes: Option<&RuntimeChanges>) -> String {
    let mut out = format!("%% lab {}\ngraph LR\n", plan.lab);
    for n in &plan.networks {
        out += &format!("  {}([\"{}\"])\n", net_id(n), network_label(n).join("<br/>"));
    }
    for node in &plan.nodes {
        out += &format!("  {}[\"{}\"]\n", node_id(node.name.as_str()), node_label(node).join("<br/>"));
    }
    let mut faulty = Vec::new();
    for (k, e) in edges(plan).iter().enumerate() {
        let (a, b, label, bad) = match e {
            Edge::Attach { node, iface, net, node_first } => {
                let (n, i) = (&plan.nodes[*node], &plan.nodes[*node].interfaces[*iface]);
                let mut label = interface_label(i);
                let f = faults(plan, changes, *node, *iface);
                label.extend(f.iter().cloned());
                let (x, y) = (node_id(n.name.as_str()), net_id(&plan.networks[*net]));
                let (a, b) = if *node_first { (x, y) } else { (y, x) };
                (a, b, label.join("<br/>"), !f.is_empty())
            }
            Edge::Link { ends, .. } => {
                let side = |(node, iface): (usize, usize)| {
                    let i = &plan.nodes[node].interfaces[iface];
                    let mut l = interface_label(i);
                    l.extend(faults(plan, changes, node, iface));
                    l.join("<br/>")
                };
                let bad = ends.iter().any(|&(n, i)| !faults(plan, changes, n, i).is_empty());
                let label = format!("{} — {}", side(ends[0]), side(ends[1]));
                (node_id(plan.nodes[ends[0].0].name.as_str()), node_id(plan.nodes[ends[1].0].name.as_str()), label, bad)
            }
        };
        out += &format!("  {a} ---|\"{label}\"| {b}\n");
        if bad {
            faulty.push(k);
        }
    }
    let mut count = edges(plan).len();
    for [x, y] in changes.map(|c| c.partitions.as_slice()).unwrap_or_default() {
        for a in x {
            for b in y {
                out += &format!("  {} -.-|\"partitioned\"| {}\n", node_id(a), node_id(b));
                faulty.push(count);
                count += 1;
            }
        }
    }
    for k in faulty {
        out += &format!("  linkStyle {k} stroke:#d00,color:#d00\n");
    }
    out
}

/// Graphviz DOT, undirected: `dot -Tsvg` draws it. Every label is an edge's own `label`,
/// which dot lays out as a vertex of its own, so that no two labels overlap (head and tail
/// labels are placed after the layout and can).
pub fn dot(plan: &Plan, changes: Option<&RuntimeChanges>) -> String {
    let mut out = format!(
        "graph \"{}\" {{\n  layout=dot; rankdir=LR; nodesep=0.4; ranksep=0.8;\n  \
         node [shape=box, fontsize=12]; edge [fontsize=10];\n",
        plan.lab
    );
    for n in &plan.networks {
        out += &format!("  \"{}\" [shape=ellipse, label=\"{}\"];\n", net_id(n), network_label(n).join("\\n"));
    }
    for node in &plan.nodes {
        out += &format!("  \"{}\" [label=\"{}\"];\n", node_id(node.name.as_str()), node_label(node).join("\\n"));
    }
    let red = |bad: bool| if bad { ", color=\"#d00000\", fontcolor=\"#d00000\", style=dashed" } else { "" };
    for e in edges(plan) {
        match e {
            Edge::Attach { node, iface, net, node_first } => {
                let (n, i) = (&plan.nodes[node], &plan.nodes[node].interfaces[iface]);
                let mut label = interface_label(i);
                let f = faults(plan, changes, node, iface);
                label.extend(f.iter().cloned());
                let (x, y) = (node_id(n.name.as_str()), net_id(&plan.networks[net]));
                let (a, b) = if node_first { (x, y) } else { (y, x) };
                out += &format!("  \"{a}\" -- \"{b}\" [label=\"{}\"{}];\n", label.join("\\n"), red(!f.is_empty()));
            }
            Edge::Link { ends, .. } => {
                // One line per end, each naming its node.
                let side = |(node, iface): (usize, usize)| {
                    let (n, i) = (&plan.nodes[node], &plan.nodes[node].interfaces[iface]);
                    let mut l = interface_label(i);
                    l.extend(faults(plan, changes, node, iface));
                    format!("{} {}", n.name, l.join(" "))
                };
                let bad = ends.iter().any(|&(n, i)| !faults(plan, changes, n, i).is_empty());
                out += &format!(
                    "  \"{}\" -- \"{}\" [label=\"{}\\n{}\"{}];\n",
                    node_id(plan.nodes[ends[0].0].name.as_str()),
                    node_id(plan.nodes[ends[1].0].name.as_str()),
                    side(ends[0]),
                    side(ends[1]),
                    red(bad)
                );
            }
        }
    }
    for [x, y] in changes.map(|c| c.partitions.as_slice()).unwrap_or_default() {
        for a in x {
            for b in y {
                out += &format!(
                    "  \"{}\" -- \"{}\" [label=\"partitioned\", constraint=false{}];\n",
                    node_id(a),
                    node_id(b),
                    red(true)
                );
            }
        }
    }
    out + "}\n"
}

/// A node's name, and its loopback addresses under it.
fn node_label(n: &crate::plan::NodePlan) -> Vec<String> {
    let image = match &n.rootfs {
        crate::topology::Rootfs::Image(r) => {
            let short = r.strip_prefix("docker.io/").unwrap_or(r);
            Some(short.strip_prefix("library/").unwrap_or(short).to_string())
        }
        _ => None,
    };
    std::iter::once(n.name.to_string()).chain(image).chain(n.loopback.iter().map(|a| format!("lo {a}"))).collect()
}

fn network_label(n: &NetworkPlan) -> Vec<String> {
    let mut lines = vec![n.name.to_string(), n.subnet.to_string()];
    lines.extend(n.subnet6.map(|s| s.to_string()));
    if n.nat {
        lines.push("NAT".into());
    }
    lines
}

/// An interface's name, its VLANs on its bridge (`vlan 10`, `trunk 10,20`), its addresses.
fn interface_label(i: &crate::plan::InterfacePlan) -> Vec<String> {
    use crate::topology::PortVlans;
    let vlans = match &i.attach {
        crate::plan::Attach::Bridge { vlans: PortVlans::Access(v), .. } => Some(format!("vlan {v}")),
        crate::plan::Attach::Bridge { vlans: PortVlans::Trunk(v), .. } => {
            Some(format!("trunk {}", v.iter().map(u16::to_string).collect::<Vec<_>>().join(",")))
        }
        _ => None,
    };
    std::iter::once(i.name.to_string()).chain(vlans).chain(i.addresses.iter().map(|a| a.to_string())).collect()
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
        let m = super::mermaid(&plan(), None);
        assert!(m.contains("graph LR\n"));
        assert!(m.contains("  net_lan([\"lan<br/>10.5.0.0/24<br/>NAT\"])\n"), "{m}");
        assert!(m.contains("  node_b_1[\"b-1\"]\n"), "{m}");
        assert!(m.contains("  net_lan ---|\"eth0<br/>10.5.0.2/24\"| node_a\n"), "{m}");
        assert!(m.contains("  node_a ---|\"eth1<br/>10.0.0.1/31 — eth1<br/>10.0.0.0/31\"| node_b_1\n"), "{m}");
    }

    #[test]
    fn dot_has_every_vertex_and_edge() {
        let d = super::dot(&plan(), None);
        assert!(d.starts_with("graph \"g\" {"));
        assert!(d.contains("\"net_lan\" [shape=ellipse, label=\"lan\\n10.5.0.0/24\\nNAT\"];"), "{d}");
        // From the network outwards.
        assert!(d.contains("\"net_lan\" -- \"node_b_1\" [label=\"eth0\\n10.5.0.3/24\"];"), "{d}");
        assert!(d.contains("\"node_a\" -- \"node_b_1\" [label=\"a eth1 10.0.0.1/31\\nb-1 eth1 10.0.0.0/31\"];"), "{d}");
        assert!(d.trim_end().ends_with('}'));
    }

    #[test]
    fn a_router_comes_after_the_first_network_and_before_the_second() {
        let text = r#"
            [networks.left]
            [networks.right]
            [nodes.h1]
            networks = ["left"]
            [nodes.r]
            networks = ["right", "left"]
            [nodes.h2]
            networks = ["right"]
        "#;
        let plan = Plan::new(&Topology::parse(Source::new("r.toml", text)).unwrap(), &Facts::default()).unwrap();
        let d = super::dot(&plan, None);
        assert!(d.contains("\"net_left\" -- \"node_r\""), "{d}");
        assert!(d.contains("\"node_r\" -- \"net_right\""), "{d}");
        assert!(d.contains("\"net_right\" -- \"node_h2\""), "{d}");
    }

    #[test]
    fn vlans_are_on_their_ports() {
        let text = r#"
            [networks.sw]
            [nodes.a]
            networks = { sw = { vlan = 10 } }
            [nodes.t]
            networks = { sw = { vlans = [20, 10] } }
        "#;
        let plan = Plan::new(&Topology::parse(Source::new("v.toml", text)).unwrap(), &Facts::default()).unwrap();
        let d = super::dot(&plan, None);
        assert!(d.contains("\"net_sw\" -- \"node_a\" [label=\"eth0\\nvlan 10\\n"), "{d}");
        assert!(d.contains("\"net_sw\" -- \"node_t\" [label=\"eth0\\ntrunk 10,20\"]"), "{d}");
    }

    #[test]
    fn a_node_on_an_image_says_which() {
        let text = "[nodes.a]\nimage = \"alpine:3.20\"\n[nodes.b]\nimage = \"localhost:5000/app:dev\"\n";
        let facts = Facts { images_unresolved: true, ..Facts::default() };
        let plan = Plan::new(&Topology::parse(Source::new("i.toml", text)).unwrap(), &facts).unwrap();
        let m = super::mermaid(&plan, None);
        assert!(m.contains("a<br/>alpine:3.20") && m.contains("b<br/>localhost:5000/app:dev"), "{m}");
    }

    #[test]
    fn faults_are_drawn_in_red() {
        let plan = plan();
        let mut changes = crate::state::RuntimeChanges::default();
        changes.links_down.insert(("a".into(), crate::topology::IfName::parse("eth1").unwrap()));
        let rate = crate::topology::Impairment { rate: Some(10_000_000), ..Default::default() };
        changes.impairments.push(("b-1".into(), crate::topology::IfName::parse("eth0").unwrap(), rate));
        changes.partitions.push([["a".to_string()].into(), ["b-1".to_string()].into()]);
        let d = super::dot(&plan, Some(&changes));
        assert!(d.contains("label=\"eth0\\n10.5.0.3/24\\nrate 10mbit\", color=\"#d00000\""), "{d}");
        assert!(d.contains("10.0.0.1/31 DOWN"), "{d}");
        assert!(d.contains("\"node_a\" -- \"node_b_1\" [label=\"partitioned\", constraint=false"), "{d}");
        let m = super::mermaid(&plan, Some(&changes));
        assert!(m.contains("node_a -.-|\"partitioned\"| node_b_1") && m.contains("linkStyle"), "{m}");
    }
}
