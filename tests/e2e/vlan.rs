//! VLANs and spanning tree on a network: access ports, a trunk a node splits into 802.1Q
//! interfaces, isolation between VLANs, `stp = true`. Needs a kernel whose bridges filter
//! VLANs (the VM's); elsewhere `lab up` must refuse the file clearly and leave nothing.

use crate::report::{with_or_without, Feature};
use crate::support::*;

const SWITCHED: &str = r#"
[networks.sw]
subnet = "10.70.0.0/24"
[nodes.a10]
networks = { sw = { address = "10.70.0.10", vlan = 10 } }
[nodes.b10]
networks = { sw = { address = "10.70.0.11", vlan = 10 } }
[nodes.c20]
networks = { sw = { address = "10.70.0.20", vlan = 20 } }
[nodes.plain]
networks = { sw = "10.70.0.30" }
[nodes.trunk]
networks = { sw = { vlans = [10, 20] } }
setup = ["ip link add link eth0 name eth0.10 type vlan id 10 && ip addr add 10.70.0.100/24 dev eth0.10 && ip link set eth0.10 up"]
"#;

/// One ping, a few tries (a port's first frames can beat its neighbour entries).
fn pings(l: &Lab, from: &str, to: &str) -> bool {
    l.exec(from, &["sh", "-c", &format!("for i in 1 2 3; do ping -c1 -W1 {to} && exit 0; done; exit 1")])
        .status
        .success()
}

#[test]
fn access_ports_of_one_vlan_talk_other_vlans_do_not_and_a_trunk_carries_tagged_frames() {
    let _host = shared();
    if !with_or_without(Feature::Vlans) {
        let (guard, out) = Lab::try_up("novlans", SWITCHED);
        assert!(!out.status.success() && text(&out.stderr).contains("CONFIG_BRIDGE_VLAN_FILTERING"), "{}", show(&out));
        assert_eq!(leftovers(&guard.name), Vec::<String>::new());
        return;
    }
    let l = Lab::up("vlans", SWITCHED);
    assert!(pings(&l, "a10", "10.70.0.11"), "the same VLAN");
    assert!(!pings(&l, "a10", "10.70.0.20"), "another VLAN is out of reach");
    assert!(!pings(&l, "a10", "10.70.0.30"), "and so is the untagged default VLAN");
    // A trunk has no address of lab's: the node addresses its VLAN interfaces. Its VLAN 10
    // interface reaches VLAN 10, its VLAN 20 one VLAN 20 only, and untagged it reaches nobody.
    assert!(!text(&lab(&["ps", &l.name]).stdout).contains("10.70.0.101"), "no address on the trunk itself");
    assert!(pings(&l, "trunk", "10.70.0.10"), "{}", l.sh("trunk", "ip -d addr"));
    l.sh("trunk", "ip link del eth0.10 && ip link add link eth0 name eth0.20 type vlan id 20 && ip addr add 10.70.0.100/24 dev eth0.20 && ip link set eth0.20 up");
    assert!(pings(&l, "trunk", "10.70.0.20"), "VLAN 20 over the trunk");
    assert!(!pings(&l, "trunk", "10.70.0.10"), "VLAN 20 is not VLAN 10");
    l.sh("trunk", "ip link del eth0.20 && ip addr add 10.70.0.100/24 dev eth0");
    assert!(!pings(&l, "trunk", "10.70.0.30"), "a trunk carries no untagged frames");
    // What the bridge says, from the host.
    let port = host_end(&l.name, "a10", "eth0");
    let vlans = text(&host(&format!("bridge vlan show dev {port}")).stdout);
    assert!(vlans.contains("10 PVID Egress Untagged") && !vlans.contains(" 1 PVID"), "{vlans}");
    l.down();
}

#[test]
fn stp_runs_on_a_network_that_asks_for_it() {
    let _host = shared();
    let l = Lab::up(
        "stp",
        r#"
[networks.ring]
subnet = "10.71.0.0/24"
stp = true
[nodes.a]
networks = ["ring"]
[nodes.b]
networks = ["ring"]
"#,
    );
    let bridge = host_end(&l.name, "net", "ring");
    let info = text(&host(&format!("ip -d link show {bridge}")).stdout);
    assert!(info.contains("stp_state 1") && info.contains("forward_delay 200"), "{info}");
    // Ports forward once through listening and learning (2 s each).
    let reach = l.exec("a", &["sh", "-c", "for i in $(seq 12); do ping -c1 -W1 b && exit 0; done; exit 1"]);
    assert!(reach.status.success(), "{}", show(&reach));
    l.down();
}
