//! Network labs: routed topologies, IPv6, named namespaces, graphs, link faults, partitions,
//! stopping and starting nodes, impairments and captures. All traffic stays between the
//! namespaces the tests make.

use crate::support::*;
use std::collections::BTreeSet;

pub(crate) fn ping(lab: &Lab, node: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["ping", "-c1", "-W2"];
    all.extend_from_slice(args);
    lab.exec(node, &all)
}

pub(crate) fn assert_reaches(lab: &Lab, from: &str, args: &[&str]) {
    // Up to four pings: after a partition heals or a link comes back, a neighbour (ARP, ND)
    // entry that was still resolving meanwhile fails its first packet, as on any network.
    let script = "for i in 1 2 3 4; do ping -c1 -W1 \"$@\" && exit 0; done; exit 1";
    let mut all = vec!["sh", "-c", script, "ping"];
    all.extend_from_slice(args);
    let out = lab.exec(from, &all);
    assert!(out.status.success(), "{from} cannot ping {args:?}:\n{}", show(&out));
}

pub(crate) fn assert_cut(lab: &Lab, from: &str, args: &[&str]) {
    let mut all = vec!["-W1"];
    all.extend_from_slice(args);
    let out = ping(lab, from, &all);
    assert!(!out.status.success(), "{from} still reaches {args:?}:\n{}", show(&out));
}

pub(crate) fn ok(args: &[&str]) -> String {
    let out = crate::support::lab(args);
    assert!(out.status.success(), "lab {args:?} failed:\n{}", show(&out));
    text(&out.stdout)
}

/// An edge as an unordered pair (the graph is undirected; its order only guides the layout).
fn edge(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

/// Vertices and edges of `lab graph --format mermaid`, read back from its lines.
fn parse_mermaid(m: &str) -> (BTreeSet<String>, BTreeSet<(String, String)>) {
    let mut vertices = BTreeSet::new();
    let mut edges = BTreeSet::new();
    for line in m.lines().map(str::trim) {
        if let Some((a, rest)) = line.split_once(" ---|") {
            let (_, b) = rest.rsplit_once("| ").expect("edge ends with `| target`");
            edges.insert(edge(a, b));
        } else if let Some(at) = line.find(['[', '(']) {
            vertices.insert(line[..at].to_string());
        }
    }
    (vertices, edges)
}

/// Vertices and edges of `lab graph --format dot`.
fn parse_dot(d: &str) -> (BTreeSet<String>, BTreeSet<(String, String)>) {
    let mut vertices = BTreeSet::new();
    let mut edges = BTreeSet::new();
    let quoted = |s: &str| s.trim().trim_matches('"').to_string();
    for line in d.lines().map(str::trim).filter(|l| l.starts_with('"')) {
        let head = line.split(" [").next().expect("a statement");
        match head.split_once(" -- ") {
            Some((a, b)) => _ = edges.insert(edge(&quoted(a), &quoted(b))),
            None => _ = vertices.insert(quoted(head)),
        }
    }
    (vertices, edges)
}

#[test]
fn routed_triangle_ipv6_netns_names_graph_and_stop_start() {
    let _host = shared();
    let lab = Lab::up_file("routed", &repo().join("topologies/routed.toml"));

    // a reaches c only through b: with a TTL of 1, b answers instead.
    assert_reaches(&lab, "a", &["-4", "c"]);
    let ttl = ping(&lab, "a", &["-4", "-t1", "c"]);
    let said = text(&ttl.stdout);
    assert!(!ttl.status.success() && said.contains("From b") && said.contains("Time to live exceeded"), "{said}");
    assert_reaches(&lab, "a", &["-6", "c"]);
    assert_reaches(&lab, "c", &["-6", "a"]);
    let addrs = lab.sh("a", "getent ahostsv6 c | head -1");
    assert!(addrs.starts_with("fd00:23::2"), "{addrs}");

    // The namespaces are where `ip netns` looks.
    let netns = text(&host("ip netns list").stdout);
    for node in ["a", "b", "c"] {
        assert!(netns.contains(&format!("{}.{node}", lab.name)), "{netns}");
    }
    let out = host(&format!("ip netns exec {}.b ip -br addr show eth1", lab.name));
    assert!(text(&out.stdout).contains("10.0.23.1/30"), "{}", show(&out));
    let slaac = host(&format!("ip netns exec {}.b sysctl -n net.ipv6.conf.eth1.accept_ra", lab.name));
    assert_eq!(text(&slaac.stdout).trim(), "0", "SLAAC is off");

    // The graph, read back.
    let (v, e) = parse_mermaid(&ok(&["graph", &lab.name]));
    let want_v: BTreeSet<String> = ["net_left", "node_a", "node_b", "node_c"].map(String::from).into();
    assert_eq!(v, want_v);
    let want_e: BTreeSet<_> = [edge("node_a", "net_left"), edge("node_b", "net_left"), edge("node_b", "node_c")].into();
    assert_eq!(e, want_e);
    let (v, e) = parse_dot(&ok(&["graph", &lab.name, "--format", "dot"]));
    assert_eq!((v, e), (want_v, want_e));
    let dot = ok(&["graph", &lab.name, "--format", "dot"]);
    assert!(dot.contains("10.0.23.1/30") && dot.contains("fd00:1::10/64"), "addresses in labels: {dot}");
    let svg = ok(&["graph", &lab.name, "--format", "svg"]);
    assert!(svg.contains("<svg") && svg.contains("node_c"), "{svg}");

    // Stopping the router cuts a from c; starting it again restores everything.
    let before = node_json(&lab.name, "b")["interfaces"].clone();
    ok(&["stop", "--lab", &lab.name, "b"]);
    assert_eq!(node_json(&lab.name, "b")["state"], "stopped");
    let exec = lab.exec("b", &["true"]);
    assert!(!exec.status.success() && text(&exec.stderr).contains("is stopped"), "{}", show(&exec));
    assert!(!text(&host("ip netns list").stdout).contains(&format!("{}.b", lab.name)));
    // c's end of the link stays, without carrier: a cable to a switched-off router.
    let c_links = lab.sh("c", "ip -br link show eth0");
    assert!(c_links.contains("NO-CARRIER"), "c's end of the link lost its carrier with b: {c_links}");
    assert_cut(&lab, "a", &["-4", "c"]);
    ok(&["start", "--lab", &lab.name, "b"]);
    assert_eq!(node_json(&lab.name, "b")["state"], "running");
    assert_eq!(node_json(&lab.name, "b")["interfaces"], before, "b kept its addresses and MACs");
    assert_eq!(lab.sh("b", "ip -br addr show eth1").split_whitespace().nth(2), Some("10.0.23.1/30"));
    assert_reaches(&lab, "a", &["-4", "c"]);
    assert_reaches(&lab, "a", &["-6", "c"]);
    lab.down();
}

const PAIR_AND_LINK: &str = r#"
[networks.lan]
ipv6 = true
mtu = 1400
[nodes.n1]
networks = ["lan"]
[nodes.n2]
networks = ["lan"]
[nodes.n3]
networks = ["lan"]
[[links]]
endpoints = ["n1:eth1", "n3:eth1"]
addresses = ["10.77.1.1/30", "10.77.1.2/30"]
mtu = 9000
"#;

#[test]
fn partition_cuts_every_path_both_ways_and_heal_restores_it() {
    let _host = shared();
    let lab = Lab::up("part", PAIR_AND_LINK);
    // MTU per network (both veth ends and the bridge) and per link.
    let mtu = |node: &str, ifname: &str| lab.sh(node, &format!("cat /sys/class/net/{ifname}/mtu")).trim().to_string();
    assert_eq!(
        (mtu("n1", "eth0"), mtu("n1", "eth1"), mtu("n3", "eth1")),
        ("1400".into(), "9000".into(), "9000".into())
    );
    let bridge = text(&host(&format!("ip -o link show | grep 'lab/{}/net/lan'", lab.name)).stdout);
    assert!(bridge.contains("mtu 1400"), "{bridge}");
    assert_reaches(&lab, "n1", &["-4", "n3"]);
    assert_reaches(&lab, "n1", &["10.77.1.2"]);

    ok(&["partition", "--lab", &lab.name, "n1", "--from", "n3"]);
    assert_cut(&lab, "n1", &["-4", "n3"]);
    assert_cut(&lab, "n1", &["-6", "n3"]);
    assert_cut(&lab, "n1", &["10.77.1.2"]);
    assert_cut(&lab, "n3", &["-4", "n1"]);
    assert_cut(&lab, "n3", &["10.77.1.1"]);
    // Only that pair.
    assert_reaches(&lab, "n1", &["-4", "n2"]);
    assert_reaches(&lab, "n2", &["-4", "n3"]);

    ok(&["heal", &lab.name]);
    assert_reaches(&lab, "n1", &["-4", "n3"]);
    assert_reaches(&lab, "n3", &["-6", "n1"]);
    assert_reaches(&lab, "n3", &["10.77.1.1"]);

    let err = crate::support::lab(&["partition", "--lab", &lab.name, "n1", "--from", "n1"]);
    assert!(!err.status.success() && text(&err.stderr).contains("on both sides"), "{}", show(&err));
    let err = crate::support::lab(&["partition", "--lab", &lab.name, "n1", "--from", "nope"]);
    assert!(!err.status.success() && text(&err.stderr).contains("no node nope"), "{}", show(&err));
    lab.down();
}

#[test]
fn a_partition_survives_stop_and_start() {
    let _host = shared();
    let lab = Lab::up("partst", PAIR_AND_LINK);
    ok(&["partition", "--lab", &lab.name, "n1", "--from", "n3"]);
    ok(&["stop", "--lab", &lab.name, "n3"]);
    ok(&["start", "--lab", &lab.name, "n3"]);
    assert_cut(&lab, "n3", &["-4", "n1"]);
    assert_cut(&lab, "n1", &["10.77.1.2"]);
    assert_reaches(&lab, "n3", &["-4", "n2"]);
    ok(&["heal", &lab.name]);
    // The link came back with the node, addresses on both ends.
    assert_reaches(&lab, "n1", &["10.77.1.2"]);
    lab.down();
}

#[test]
fn link_down_and_up() {
    let _host = shared();
    let lab = Lab::up(
        "link",
        r#"
[nodes.r1]
routes = ["10.88.0.0/24 via 10.77.2.2"]
[nodes.r2]
sysctls = { "net.ipv4.ip_forward" = 1 }
[[links]]
endpoints = ["r1:eth0", "r2:eth0"]
addresses = ["10.77.2.1/30", "10.77.2.2/30"]
"#,
    );
    assert_reaches(&lab, "r1", &["10.77.2.2"]);
    ok(&["link", "--lab", &lab.name, "r1:eth0", "down"]);
    let state = lab.sh("r1", "ip -br link show eth0");
    assert!(state.contains("DOWN"), "{state}");
    assert_cut(&lab, "r1", &["10.77.2.2"]);
    assert_cut(&lab, "r2", &["10.77.2.1"]);
    ok(&["link", "--lab", &lab.name, "r1:eth0", "up"]);
    assert_reaches(&lab, "r1", &["10.77.2.2"]);
    assert_reaches(&lab, "r2", &["10.77.2.1"]);
    // The kernel dropped the route with the link; it is back.
    let routes = lab.sh("r1", "ip route");
    assert!(routes.contains("10.88.0.0/24 via 10.77.2.2"), "{routes}");

    let err = crate::support::lab(&["link", "--lab", &lab.name, "r1:eth9", "down"]);
    assert!(!err.status.success() && text(&err.stderr).contains("no interface eth9"), "{}", show(&err));
    lab.down();
}

/// Sends `bytes` from `from` to `to`'s address `addr` over TCP; the receiver's rate, bit/s.
pub(crate) fn measure(lab: &Lab, from: &str, to: &str, addr: &str, bytes: u64) -> f64 {
    let port = 5001;
    let mut sink = std::process::Command::new(lab_bin())
        .args(["exec", "--lab", &lab.name, to, "/probe", "sink", &port.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting the sink");
    let mut out = sink.stdout.take().expect("piped");
    let mut line = [0u8; 10];
    std::io::Read::read_exact(&mut out, &mut line).expect("sink listening");
    let sent = lab.exec(from, &["/probe", "send", &format!("{addr}:{port}"), &bytes.to_string()]);
    assert!(sent.status.success(), "{}", show(&sent));
    let mut result = String::new();
    std::io::Read::read_to_string(&mut out, &mut result).expect("sink result");
    assert!(sink.wait().expect("sink exits").success());
    let mut words = result.split_whitespace();
    let got: u64 = words.next().and_then(|w| w.parse().ok()).expect("bytes");
    let secs: f64 = words.next().and_then(|w| w.parse().ok()).expect("seconds");
    assert_eq!(got, bytes);
    got as f64 * 8.0 / secs
}

#[test]
fn rate_limit_holds_within_twenty_percent_and_can_change_at_run_time() {
    let _host = shared();
    let lab = Lab::up(
        "rate",
        &format!(
            r#"
[defaults]
{}
[nodes.tx]
impair.eth0 = {{ rate = "20mbit" }}
[nodes.rx]
[[links]]
endpoints = ["tx:eth0", "rx:eth0"]
addresses = ["10.77.3.1/30", "10.77.3.2/30"]
"#,
            probe_mount()
        ),
    );
    // Shaped on the host, where tx cannot undo it: on the wire's end that delivers to rx.
    let qdisc = text(&host(&format!("tc qdisc show dev {}", host_end(&lab.name, "rx", "eth0"))).stdout);
    assert!(qdisc.contains("tbf") && qdisc.contains("rate 20Mbit"), "{qdisc}");
    let inside = text(&host(&format!("ip netns exec {}.tx tc qdisc show dev eth0", lab.name)).stdout);
    assert!(!inside.contains("tbf"), "nothing of it in the node: {inside}");
    let within = |got: f64, want: f64| (got - want).abs() <= want * 0.2;
    let rate = measure(&lab, "tx", "rx", "10.77.3.2", 5_000_000);
    assert!(within(rate, 20e6), "measured {:.1} Mbit/s against a 20 Mbit/s limit", rate / 1e6);

    ok(&["impair", "--lab", &lab.name, "tx:eth0", "--rate", "8mbit"]);
    let rate = measure(&lab, "tx", "rx", "10.77.3.2", 2_500_000);
    assert!(within(rate, 8e6), "measured {:.1} Mbit/s against an 8 Mbit/s limit", rate / 1e6);

    ok(&["impair", "--lab", &lab.name, "tx:eth0", "--clear"]);
    let qdisc = text(&host(&format!("tc qdisc show dev {}", host_end(&lab.name, "rx", "eth0"))).stdout);
    assert!(!qdisc.contains("tbf"), "{qdisc}");
    // The other direction was never limited.
    let rate = measure(&lab, "rx", "tx", "10.77.3.1", 5_000_000);
    assert!(rate > 40e6, "unlimited: {:.1} Mbit/s", rate / 1e6);
    lab.down();
}

#[test]
fn delay_and_loss_use_netem_or_say_which_module_is_missing() {
    let _host = shared();
    let lab = Lab::up(
        "netem",
        r#"
[nodes.a]
[nodes.b]
[[links]]
endpoints = ["a:eth0", "b:eth0"]
addresses = ["10.77.4.1/30", "10.77.4.2/30"]
"#,
    );
    let netem = crate::report::with_or_without(crate::report::Feature::Netem);
    let out = crate::support::lab(&[
        "impair", "--lab", &lab.name, "a:eth0", "--delay", "50ms", "--jitter", "5ms", "--loss", "1%",
    ]);
    if netem {
        assert!(out.status.success(), "{}", show(&out));
        let rtt = lab.sh("a", "ping -c3 -i0.2 10.77.4.2 | tail -1");
        assert!(rtt.contains("rtt"), "{rtt}");
    } else {
        eprintln!("this kernel has no sch_netem (CONFIG_NET_SCH_NETEM): checking lab's error instead");
        assert!(!out.status.success(), "{}", show(&out));
        let err = text(&out.stderr);
        assert!(err.contains("sch_netem") && err.contains("a rate alone works"), "{err}");
        // Nothing half-applied, and the link still works.
        assert_reaches(&lab, "a", &["10.77.4.2"]);
    }
    lab.down();

    // In the file: `up` fails (and leaves nothing) where netem is missing.
    let (lab, out) = Lab::try_up(
        "netemup",
        r#"
[networks.lan]
[nodes.a]
networks = ["lan"]
impair.eth0 = { delay = "20ms" }
"#,
    );
    if netem {
        assert!(out.status.success(), "{}", show(&out));
    } else {
        assert!(!out.status.success() && text(&out.stderr).contains("sch_netem"), "{}", show(&out));
        assert_eq!(leftovers(&lab.name), Vec::<String>::new());
    }
}

#[test]
fn capture_writes_pcap_of_both_directions() {
    let _host = shared();
    let lab = Lab::up(
        "cap",
        r#"
[networks.lan]
[nodes.a]
networks = ["lan"]
[nodes.b]
networks = ["lan"]
"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.pcap");
    let mut capture = std::process::Command::new(lab_bin())
        // Only ICMP: a node's own chatter when its interface comes up (IPv6 neighbour
        // discovery, MLD) must not fill the count first.
        .args(["capture", "--lab", &lab.name, "a:eth0", "-w", file.to_str().unwrap(), "-c", "8", "-f", "icmp"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting lab capture");
    // It says so on stderr once the socket is open.
    let mut started = [0u8; 9];
    std::io::Read::read_exact(capture.stderr.as_mut().unwrap(), &mut started).unwrap();
    assert_eq!(&started, b"capturing");
    // Four echoes and their replies: eight frames.
    let pings = lab.exec("a", &["ping", "-4", "-c4", "-i0.2", "-W2", "b"]);
    assert!(pings.status.success(), "{}", show(&pings));
    let status = capture.wait().unwrap();
    assert!(status.success());
    let pcap = std::fs::read(&file).unwrap();
    assert_eq!(&pcap[..4], &0xa1b2_c3d4u32.to_le_bytes(), "pcap magic");
    assert_eq!(u32::from_le_bytes(pcap[20..24].try_into().unwrap()), 1, "Ethernet frames");
    let mut at = 24;
    let mut frames = Vec::new();
    while at + 16 <= pcap.len() {
        let len = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        frames.push(pcap[at + 16..at + 16 + len].to_vec());
        at += 16 + len;
    }
    assert_eq!(frames.len(), 8);
    // IPv4 ICMP frames: type at offset 14 + 20.
    let icmp = |f: &Vec<u8>| u16::from_be_bytes([f[12], f[13]]) == 0x0800 && f.len() > 34 && f[23] == 1;
    let types: BTreeSet<u8> = frames.iter().filter(|f| icmp(f)).map(|f| f[34]).collect();
    assert!(types.contains(&8) && types.contains(&0), "echo requests and replies, both directions: {types:?}");
    lab.down();
}

#[test]
fn a_node_killed_from_the_host_starts_again_with_its_link() {
    let _host = shared();
    let lab = Lab::up(
        "restartkilled",
        r#"
[nodes.a]
[nodes.b]
[[links]]
endpoints = ["a:eth0", "b:eth0"]
addresses = ["10.77.5.1/30", "10.77.5.2/30"]
"#,
    );
    let pid = node_json(&lab.name, "a")["pid"].as_i64().expect("a runs") as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let mut state = serde_json::Value::Null;
    for _ in 0..100 {
        state = node_json(&lab.name, "a")["state"].clone();
        if state == "exited" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(state, "exited", "{state}");
    // Not stopped with `lab stop`: start clears what is left of it, then makes it again.
    ok(&["start", "--lab", &lab.name, "a"]);
    assert_eq!(node_json(&lab.name, "a")["state"], "running");
    assert_reaches(&lab, "a", &["10.77.5.2"]);
    assert_reaches(&lab, "b", &["10.77.5.1"]);
    // Starting a running node changes nothing and says so, as `docker start`.
    let again = crate::support::lab(&["start", "--lab", &lab.name, "a"]);
    assert!(again.status.success() && text(&again.stderr).contains("already running"), "{}", show(&again));
    lab.down();
}

#[test]
fn svg_without_graphviz_says_what_to_install() {
    let routed = repo().join("topologies/routed.toml");
    let out = std::process::Command::new(lab_bin())
        .args(["graph", routed.to_str().unwrap(), "--format", "svg"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", show(&out));
    assert!(text(&out.stderr).contains("needs Graphviz's `dot`"), "{}", show(&out));
    // A file that is not up is drawn as it would be planned.
    let dot = ok(&["graph", routed.to_str().unwrap(), "--format", "dot"]);
    assert!(dot.contains("\"node_b\" -- \"node_c\""), "{dot}");
}

#[test]
fn faults_set_while_a_peer_is_stopped_come_back_with_it() {
    let _host = shared();
    let lab = Lab::up(
        "peerstop",
        "[nodes.a]\n[nodes.b]\n[[links]]\nendpoints = [\"a:eth0\", \"b:eth0\"]\naddresses = [\"10.77.5.1/30\", \"10.77.5.2/30\"]\n",
    );
    ok(&["stop", "--lab", &lab.name, "b"]);
    assert!(lab.sh("a", "ip -br link show eth0").contains("NO-CARRIER"), "a's end lost its carrier");
    // a's sending is shaped on b's end of the wire, which is not there now: kept for later.
    ok(&["impair", "--lab", &lab.name, "a:eth0", "--rate", "5mbit"]);
    ok(&["link", "--lab", &lab.name, "a:eth0", "down"]);
    ok(&["start", "--lab", &lab.name, "b"]);
    let qdisc = text(&host(&format!("tc qdisc show dev {}", host_end(&lab.name, "b", "eth0"))).stdout);
    assert!(qdisc.contains("tbf") && qdisc.contains("rate 5Mbit"), "{qdisc}");
    assert!(lab.sh("b", "ip -br link show eth0").contains("NO-CARRIER"), "the link stays down");
    assert_cut(&lab, "b", &["10.77.5.1"]);
    ok(&["link", "--lab", &lab.name, "a:eth0", "up"]);
    assert_reaches(&lab, "b", &["10.77.5.1"]);
    lab.down();
}
