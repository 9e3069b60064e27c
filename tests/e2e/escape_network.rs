//! The escape battery, on the network: what a default node can reach through the host (other
//! labs, the host itself) and which of lab's faults it can undo. Each check has a control that
//! shows it can fail. Traffic stays between namespaces the tests and labs make.

use crate::nat::Upstream;
use crate::network::{assert_cut, assert_reaches, measure, ok};
use crate::support::*;

/// Node `node`'s IPv4 address on its first interface.
fn address(lab: &Lab, node: &str) -> String {
    let j = node_json(&lab.name, node);
    let first = &j["interfaces"][0]["addresses"][0]["address"];
    first.as_str().unwrap_or_else(|| panic!("{node} has an address: {j}")).to_string()
}

#[test]
fn nat_networks_of_two_labs_never_reach_each_other() {
    let _host = shared();
    let upstream = Upstream::new();
    let two = "[networks.lan]\nnat = true\n[networks.other]\nnat = true\n[nodes.a]\nnetworks = [\"lan\"]\n[nodes.o]\nnetworks = [\"other\"]\n";
    let lab_a = Lab::up("isoa", two);
    let lab_b = Lab::up("isob", "[networks.lan]\nnat = true\n[nodes.b]\nnetworks = [\"lan\"]\n");
    // Control: the host routes for them, so the drops below are isolation, not a dead end.
    assert_reaches(&lab_a, "a", &[&upstream.addr.to_string()]);
    assert_reaches(&lab_b, "b", &[&upstream.addr.to_string()]);
    let (a, b, o) = (address(&lab_a, "a"), address(&lab_b, "b"), address(&lab_a, "o"));
    assert_cut(&lab_a, "a", &[&b]);
    assert_cut(&lab_b, "b", &[&a]);
    // Nor do two networks of one lab: a router node joins networks, not the host.
    assert_cut(&lab_a, "a", &[&o]);
    // The host itself still reaches its nodes.
    let from_host = host(&format!("ping -c1 -W2 {b}"));
    assert!(from_host.status.success(), "{}", show(&from_host));
    lab_b.down();
    lab_a.down();
}

#[test]
fn a_network_without_nat_reaches_nothing_of_the_host() {
    let _host = shared();
    let upstream = Upstream::new();
    let listener = std::net::TcpListener::bind(("0.0.0.0", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let _ = std::io::Write::write_all(&mut &conn, b"host service\n");
        }
    });
    let lab = Lab::up(
        "plain",
        "[networks.plain]\nipv6 = true\n[networks.out]\nnat = true\n[nodes.p]\nnetworks = [\"plain\"]\n[nodes.n]\nnetworks = [\"out\"]\n",
    );
    let bridge = host_end(&lab.name, "net", "plain");
    let addrs = text(&host(&format!("ip addr show dev {bridge}")).stdout);
    assert!(!addrs.contains("inet"), "the host has an address on a network without NAT: {addrs}");
    assert!(text(&host(&format!("ip link show dev {bridge}")).stdout).contains("NOARP"));
    let target = upstream.host_addr.to_string();
    let connect = format!("timeout 3 bash -c 'exec 3<>/dev/tcp/{target}/{port}; head -1 <&3'");
    // Control: a NAT network's node reaches the host's address and its service.
    assert_eq!(lab.sh("n", &connect), "host service\n");
    // A node on the plain network that routes to the host's address itself gets nothing.
    lab.sh("p", &format!("ip route add {target}/32 dev eth0"));
    assert_cut(&lab, "p", &[&target]);
    let tried = lab.exec("p", &["sh", "-c", &connect]);
    assert!(!tried.status.success(), "a plain network's node reached a host service:\n{}", show(&tried));
    // IPv6: the bridge has no link-local address to answer from; all-nodes multicast brings
    // back only the node itself.
    let all = lab.exec("p", &["ping", "-6", "-c2", "-i0.3", "-W1", "ff02::1%eth0"]);
    let from: std::collections::BTreeSet<String> = text(&all.stdout)
        .lines()
        .filter_map(|l| l.split("from ").nth(1)?.split(':').next().map(str::to_string))
        .collect();
    assert!(from.len() <= 1, "more than the node answered on the plain network: {}", show(&all));
    lab.down();
}

#[test]
fn a_node_cannot_undo_its_partition_impairment_or_link_down() {
    let _host = shared();
    let lab = Lab::up(
        "undo",
        &format!(
            "[defaults]\n{}[networks.lan]\n[nodes.n1]\nnetworks = [\"lan\"]\n[nodes.n2]\nnetworks = [\"lan\"]\n\
             [[links]]\nendpoints = [\"n1:eth1\", \"n2:eth1\"]\naddresses = [\"10.77.9.1/30\", \"10.77.9.2/30\"]\n",
            probe_mount()
        ),
    );
    let n2 = address(&lab, "n2");
    // Control: what a node does to its own firewall it can undo (as it could lab's partition
    // filter when that lived in the node).
    lab.sh("n1", &format!("nft add table inet mine && nft add chain inet mine out '{{ type filter hook output priority 0; }}' && nft add rule inet mine out ip daddr {n2} drop"));
    assert_cut(&lab, "n1", &[&n2]);
    lab.sh("n1", "nft flush ruleset");
    assert_reaches(&lab, "n1", &[&n2]);

    ok(&["partition", "--lab", &lab.name, "n1", "--from", "n2"]);
    for node in ["n1", "n2"] {
        lab.sh(
            node,
            "nft flush ruleset; tc qdisc del dev eth0 root 2>/dev/null; tc qdisc del dev eth1 root 2>/dev/null; true",
        );
    }
    // A new address does not get round it either: the host drops by interface, not address.
    lab.sh("n1", "ip addr add 10.77.8.99/24 dev eth0");
    assert_cut(&lab, "n1", &[&n2]);
    assert_cut(&lab, "n1", &["-I", "10.77.8.99", &n2]);
    assert_cut(&lab, "n1", &["10.77.9.2"]);
    assert_cut(&lab, "n2", &["10.77.9.1"]);
    ok(&["heal", &lab.name]);
    assert_reaches(&lab, "n1", &[&n2]);
    assert_reaches(&lab, "n1", &["10.77.9.2"]);

    // Impairment: a rate the node's own `tc qdisc del` cannot lift, on the bridge (an IFB on
    // the host) and on the link (the wire's far end).
    let limited = |got: f64| got < 8e6 * 1.2;
    // Control: the node's own qdisc goes with its own `tc qdisc del`.
    lab.sh("n1", "tc qdisc add dev eth1 root tbf rate 8mbit burst 16k latency 50ms");
    assert!(limited(measure(&lab, "n1", "n2", "10.77.9.2", 2_000_000)), "the node's own limit holds");
    lab.sh("n1", "tc qdisc del dev eth1 root");
    let free = measure(&lab, "n1", "n2", "10.77.9.2", 5_000_000);
    assert!(!limited(free), "its own limit is gone: {:.1} Mbit/s", free / 1e6);
    for ifname in ["eth0", "eth1"] {
        ok(&["impair", "--lab", &lab.name, &format!("n1:{ifname}"), "--rate", "8mbit"]);
        lab.sh(
            "n1",
            &format!("tc qdisc del dev {ifname} root 2>/dev/null; tc qdisc add dev {ifname} root pfifo; true"),
        );
        let to = if ifname == "eth0" { n2.clone() } else { "10.77.9.2".into() };
        let got = measure(&lab, "n1", "n2", &to, 2_000_000);
        assert!(limited(got) && got > 8e6 * 0.5, "{ifname}: {:.1} Mbit/s against 8 Mbit/s", got / 1e6);
    }

    // Link down: the node's `ip link set up` brings no carrier back.
    ok(&["link", "--lab", &lab.name, "n1:eth1", "down"]);
    lab.sh("n1", "ip link set eth1 down; ip link set eth1 up");
    assert_cut(&lab, "n1", &["10.77.9.2"]);
    assert!(lab.sh("n2", "ip -br link show eth1").contains("NO-CARRIER"), "the far end lost its carrier too");
    ok(&["link", "--lab", &lab.name, "n1:eth1", "up"]);
    assert_reaches(&lab, "n1", &["10.77.9.2"]);
    lab.down();
}
