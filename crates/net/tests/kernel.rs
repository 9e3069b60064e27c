//! lab-net against the real kernel. Needs root; each test names its objects uniquely and
//! removes them in a guard, also when it fails. `ip` and `nft` only check from outside.

use lab_net::{nat, netns, BridgeOptions, Netlink, VethEnd};
use std::fs::File;
use std::os::fd::AsFd;
use std::process::Command;

fn sh(cmd: &str) -> (bool, String) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("running sh");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn require_root() {
    assert!(nix::unistd::geteuid().is_root(), "these tests need root: run them as root (sudo -E cargo test)");
}

/// Runs cleanup commands when dropped.
struct Cleanup(Vec<String>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.0 {
            let _ = sh(c);
        }
    }
}

/// A network namespace held by a process of its own, addressed by pid: no name under
/// /run/netns (which `ip netns add` would leave mounted on the host).
struct TestNs(std::process::Child);

impl TestNs {
    fn new() -> TestNs {
        let mut child = Command::new("unshare")
            .args(["--net", "sh", "-c", "echo ready; exec sleep infinity"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("running unshare --net");
        let mut ready = [0u8; 6];
        std::io::Read::read_exact(child.stdout.as_mut().expect("piped"), &mut ready).expect("namespace ready");
        TestNs(child)
    }

    fn file(&self) -> File {
        File::open(format!("/proc/{}/ns/net", self.0.id())).expect("the namespace file")
    }

    /// `ip ARGS` run inside the namespace.
    fn ip(&self, args: &str) -> (bool, String) {
        sh(&format!("nsenter -t {} -n ip {args}", self.0.id()))
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tag(prefix: &str) -> String {
    format!("{prefix}{}", std::process::id() % 100000)
}

#[tokio::test]
async fn bridge_and_veth_straight_into_a_namespace() {
    require_root();
    let ns = TestNs::new();
    let br = tag("ltb");
    let veth = tag("ltv");
    let _cleanup = Cleanup(vec![format!("ip link del {veth}"), format!("ip link del {br}")]);
    let nsfile = ns.file();

    let host = Netlink::host().unwrap();
    let mac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
    let group = 0x4c41_fff0 + std::process::id() % 8;
    let bridge = host
        .create_bridge(&br, "lab/test/net/lan", mac, group, BridgeOptions { mtu: Some(1400), ..Default::default() })
        .await
        .unwrap();
    host.add_address(bridge, &br, "10.250.7.1/24".parse().unwrap()).await.unwrap();
    let mut a = VethEnd::new(&veth);
    a.bridge = Some(bridge);
    a.alias = Some("lab/test/n1/eth0");
    a.group = Some(group);
    a.group = Some(group);
    let mut b = VethEnd::new("eth0");
    b.netns = Some(nsfile.as_fd());
    host.create_veth(a, b).await.unwrap();

    let node = Netlink::in_netns(&nsfile, "the test namespace").await.unwrap();
    let links = node.links().await.unwrap();
    let eth0 = links.iter().find(|l| l.name == "eth0").expect("eth0 inside the namespace");
    assert!(!eth0.up, "the peer end is created down");
    node.set_up(eth0.index, "eth0").await.unwrap();
    node.set_up(1, "lo").await.unwrap();
    node.add_address(eth0.index, "eth0", "10.250.7.2/24".parse().unwrap()).await.unwrap();
    node.add_route("0.0.0.0/0".parse().unwrap(), "10.250.7.1".parse().unwrap()).await.unwrap();

    let (_, out) = sh(&format!("ip -d link show {veth}"));
    assert!(out.contains(&format!("master {br}")), "{out}");
    assert!(out.contains("alias lab/test/n1/eth0"), "{out}");
    let (_, out) = sh(&format!("ip link show {br}"));
    assert!(out.contains("02:11:22:33:44:55"), "bridge keeps the MAC we gave it: {out}");
    let (_, out) = ns.ip("route");
    assert!(out.contains("default via 10.250.7.1 dev eth0"), "{out}");
    let (ok, out) = sh(&format!("nsenter -t {} -n ping -c1 -W2 10.250.7.1", ns.0.id()));
    assert!(ok, "node reaches the bridge address: {out}");

    let links = host.links().await.unwrap();
    assert_eq!(links.iter().filter(|l| l.group == group).count(), 2, "bridge and host end in the group");

    // Deleting one end removes the pair; deleting again is fine.
    host.delete_link(&veth).await.unwrap();
    host.delete_link(&veth).await.unwrap();
    assert!(node.links().await.unwrap().iter().all(|l| l.name != "eth0"));
    // The bridge goes with its group; an empty group is fine too.
    host.delete_group(group).await.unwrap();
    host.delete_group(group).await.unwrap();
    assert!(host.link(&br).await.unwrap().is_none());
}

#[tokio::test]
async fn mute_bridges_and_host_ends_carry_no_address_and_answer_no_arp() {
    require_root();
    let (node, mid) = (TestNs::new(), TestNs::new());
    let (fnode, fmid) = (node.file(), mid.file());
    let m = Netlink::in_netns(&fmid, "mid").await.unwrap();
    let bridge = m
        .create_bridge(
            "br0",
            "lab/test/net/plain",
            [0x02, 0, 0, 0, 0, 1],
            7,
            BridgeOptions { mute: true, ..Default::default() },
        )
        .await
        .unwrap();
    let host_end = VethEnd { bridge: Some(bridge), alias: Some("lab/test/n/eth0"), mute: true, ..VethEnd::new("hv0") };
    let node_end = VethEnd { netns: Some(fnode.as_fd()), ..VethEnd::new("eth0") };
    m.create_veth(host_end, node_end).await.unwrap();
    for dev in ["br0", "hv0"] {
        let (_, out) = mid.ip(&format!("-d link show {dev}"));
        assert!(out.contains("NOARP") && out.contains(",UP"), "{dev}: {out}");
        let (_, out) = mid.ip(&format!("addr show dev {dev}"));
        assert!(!out.contains("inet"), "{dev} has an address: {out}");
    }
    let (_, out) = mid.ip("-d link show hv0");
    assert!(out.contains("alias lab/test/n/eth0") && out.contains("master br0"), "{out}");
    assert!(mid.ip("addr add 10.9.8.1/32 dev lo").0);
    assert!(node.ip("link set eth0 up").0 && node.ip("addr add 10.9.8.2/24 dev eth0").0);
    assert!(node.ip("route add 10.9.8.1/32 dev eth0").0);
    let (ok, _) = sh(&format!("nsenter -t {} -n ping -c1 -W1 10.9.8.1", node.0.id()));
    assert!(!ok, "the bridge's namespace answered through a mute bridge");
    let (_, neigh) = node.ip("neigh show 10.9.8.1");
    assert!(!neigh.contains("lladdr"), "ARP answered: {neigh}");
}

#[tokio::test]
async fn veth_between_two_namespaces() {
    require_root();
    let (n1, n2) = (TestNs::new(), TestNs::new());
    let (f1, f2) = (n1.file(), n2.file());
    let host = Netlink::host().unwrap();
    let mut a = VethEnd::new("eth1");
    a.netns = Some(f1.as_fd());
    let mut b = VethEnd::new("eth1");
    b.netns = Some(f2.as_fd());
    host.create_veth(a, b).await.unwrap();
    for ns in [&n1, &n2] {
        let (_, out) = ns.ip("-br link show eth1");
        assert!(out.contains("eth1@"), "{out}");
    }
    assert!(host.link("eth1").await.unwrap().is_none(), "nothing appears on the host");
}

#[test]
fn nat_table_lifecycle() {
    require_root();
    let table = tag("lab-test-nat-");
    let _cleanup = Cleanup(vec![format!("nft delete table inet {table}")]);
    let rules = [
        nat::Masquerade { subnet: "10.250.9.0/24".parse().unwrap(), except: "lb-test-0".into() },
        nat::Masquerade { subnet: "fd42:9::/64".parse().unwrap(), except: "lb-*".into() },
    ];
    let forwards = [nat::Forward {
        protocol: nat::Protocol::Udp,
        host_port: 15353,
        address: "10.250.9.2".parse().unwrap(),
        port: 53,
        bridge: "lb-test-0".into(),
    }];
    let isolation = lab_net::firewall::Isolation {
        nat_bridges: vec!["lb-test-0".into()],
        plain_bridges: vec!["lb-test-1".into()],
        sealed: vec!["lw-test-*".into()],
        other_labs: vec!["lb-*".into(), "lw-*".into()],
        lab_interfaces: vec!["lv-*".into()],
    };
    nat::create_table(&table, &rules, &forwards, &isolation).unwrap();
    assert!(nat::tables().unwrap().contains(&table));
    let (ok, out) = sh(&format!("nft list table inet {table}"));
    assert!(ok, "{out}");
    assert!(out.contains("type nat hook postrouting priority srcnat"), "{out}");
    assert!(out.contains("ip saddr 10.250.9.0/24 oifname != \"lb-test-0\" masquerade"), "{out}");
    assert!(out.contains("ip6 saddr fd42:9::/64 oifname != \"lb-*\" masquerade"), "{out}");
    assert!(out.contains("ip saddr 127.0.0.0/8 oifname \"lb-test-0\" masquerade"), "{out}");
    assert!(out.contains("type nat hook prerouting priority dstnat"), "{out}");
    assert_eq!(
        out.matches(
            "iifname != \"lv-*\" meta nfproto ipv4 fib daddr type local udp dport 15353 dnat ip to 10.250.9.2:53"
        )
        .count(),
        2,
        "prerouting and output, never from a lab's interface: {out}"
    );
    // The isolation chains: a bridge's own traffic; nothing through plain bridges and wire
    // ends; NAT out but not to other labs; in, only replies and forwarded ports.
    assert!(out.contains("type filter hook forward priority filter; policy accept;"), "{out}");
    for rule in [
        "iifname \"lb-test-0\" oifname \"lb-test-0\" accept",
        "iifname \"lb-test-1\" drop",
        "oifname \"lb-test-1\" drop",
        "iifname \"lw-test-*\" drop",
        "iifname \"lb-test-0\" oifname \"lb-*\" drop",
        "iifname \"lb-test-0\" oifname \"lw-*\" drop",
        "oifname \"lb-test-0\" ct state established,related accept",
        "oifname \"lb-test-0\" ct status dnat accept",
        "oifname \"lb-test-0\" drop",
    ] {
        assert!(out.contains(rule), "{rule} in {out}");
    }
    assert!(out.contains("type filter hook input priority filter; policy accept;"), "{out}");
    let err = nat::create_table(&table, &rules, &[], &isolation);
    assert!(err.is_ok() || err.as_ref().is_err_and(|e| e.errno().is_some()), "{err:?}");
    nat::delete_table(&table).unwrap();
    assert!(!nat::tables().unwrap().contains(&table));
    nat::delete_table(&table).expect("deleting a missing table is fine");
}

#[test]
fn listing_tables_while_another_process_changes_them_never_fails() {
    require_root();
    // A dump the kernel marks interrupted (another change meanwhile) is asked for again.
    let table = tag("lab-test-churn-");
    let _cleanup = Cleanup(vec![format!("nft delete table inet {table}")]);
    let isolation = lab_net::firewall::Isolation::default();
    let rules = [nat::Masquerade { subnet: "10.250.8.0/24".parse().unwrap(), except: "lb-test-8".into() }];
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (table, stop) = (table.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                nat::create_table(&table, &rules, &[], &isolation).unwrap();
                nat::delete_table(&table).unwrap();
            }
        })
    };
    for _ in 0..300 {
        nat::tables().expect("listing tables while they change");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.join().unwrap();
}

#[test]
fn netns_names_are_bind_mounts_ip_netns_sees() {
    require_root();
    let name = tag("lab-test-ns-");
    let _cleanup = Cleanup(vec![format!("umount /run/netns/{name}; rm -f /run/netns/{name}")]);
    let prepared = netns::prepare_dir().unwrap();
    netns::persist(std::path::Path::new("/proc/self/ns/net"), &name).unwrap();
    assert!(netns::list().contains(&name));
    let (_, out) = sh("ip netns list");
    assert!(out.contains(&name), "{out}");
    let err = netns::persist(std::path::Path::new("/proc/self/ns/net"), &name).unwrap_err();
    assert!(err.to_string().contains("the name is taken"), "{err}");
    netns::remove(&name).unwrap();
    netns::remove(&name).unwrap();
    assert!(!netns::list().contains(&name));
    // A new, empty one by name, as `ip netns add` makes it: its loopback (and the fallback
    // tunnel devices of loaded modules), and not ours.
    netns::create(&name).unwrap();
    let (ok, links) = sh(&format!("ip -n {name} -o link"));
    assert!(ok && links.contains(" lo: "), "{links}");
    assert!(!links.contains("veth") && !links.contains(" eth"), "{links}");
    let (_, ours) = sh("readlink /proc/self/ns/net");
    let (_, made) = sh(&format!("ip netns exec {name} readlink /proc/self/ns/net"));
    assert_ne!(ours, made);
    assert!(netns::create(&name).unwrap_err().to_string().contains("the name is taken"));
    netns::remove(&name).unwrap();
    let (_, mounts) = sh("cat /proc/self/mounts");
    assert!(!mounts.contains(&name), "{mounts}");
    // Other tests may hold names in /run/netns: only then is the directory kept.
    if netns::release_dir(prepared).unwrap() && prepared.mounted {
        assert!(!sh("findmnt /run/netns").0, "the mount point we made is gone");
    }
}

#[test]
fn partitions_are_bridge_rules_replaced_whole() {
    require_root();
    let ns = TestNs::new();
    let f = ns.file();
    let list = || sh(&format!("nsenter -t {} -n nft list table bridge lab-test", ns.0.id()));
    let pairs = vec![(vec!["lv-a".to_string(), "lv-c".to_string()], vec!["lv-b".to_string()])];
    netns::run_in(f.as_fd(), "test", || lab_net::firewall::set_partitions("lab-test", &pairs)).unwrap();
    let (ok, out) = list();
    assert!(ok, "{out}");
    for rule in [
        "iifname \"lv-a\" oifname \"lv-b\" drop",
        "iifname \"lv-b\" oifname \"lv-a\" drop",
        "iifname \"lv-c\" oifname \"lv-b\" drop",
    ] {
        assert!(out.contains(rule), "{rule} in {out}");
    }
    let fewer = vec![(vec!["lv-a".to_string()], vec!["lv-b".to_string()])];
    netns::run_in(f.as_fd(), "test", || lab_net::firewall::set_partitions("lab-test", &fewer)).unwrap();
    let (_, out) = list();
    assert!(out.contains("iifname \"lv-a\" oifname \"lv-b\" drop") && !out.contains("lv-c"), "replaced: {out}");
    netns::run_in(f.as_fd(), "test", || lab_net::firewall::set_partitions("lab-test", &[])).unwrap();
    assert!(!list().0, "no partitions, no table");
}

#[tokio::test]
async fn a_wire_joins_two_host_ends_and_goes_away() {
    require_root();
    // Two nodes' namespaces and, between them, one holding both host ends.
    let (a, b, mid) = (TestNs::new(), TestNs::new(), TestNs::new());
    let (fa, fb, fm) = (a.file(), b.file(), mid.file());
    let host = Netlink::host().unwrap();
    for (node, name, end) in [(&fa, "wa", "ha"), (&fb, "wb", "hb")] {
        let node_end = VethEnd { netns: Some(node.as_fd()), ..VethEnd::new(name) };
        let host_end = VethEnd { netns: Some(fm.as_fd()), ..VethEnd::new(end) };
        host.create_veth(node_end, host_end).await.unwrap();
    }
    let m = Netlink::in_netns(&fm, "mid").await.unwrap();
    let (ha, hb) = (m.index("ha").await.unwrap(), m.index("hb").await.unwrap());
    m.set_up(ha, "ha").await.unwrap();
    m.set_up(hb, "hb").await.unwrap();
    for (ns, name, addr) in [(&a, "wa", "10.9.9.1/30"), (&b, "wb", "10.9.9.2/30")] {
        let (ok, out) = ns.ip(&format!("addr add {addr} dev {name}"));
        assert!(ok, "{out}");
        assert!(ns.ip(&format!("link set {name} up")).0);
    }
    // The failed ping leaves 10.9.9.2's neighbour entry INCOMPLETE, probed once a second: the
    // ping that should pass may wait up to a second for the next probe, so it waits three.
    let ping = |wait: u32| sh(&format!("nsenter -t {} -n ping -c1 -W{wait} 10.9.9.2", a.0.id())).0;
    assert!(!ping(1), "no wire yet");
    m.redirect(ha, "ha", hb).await.unwrap();
    m.redirect(hb, "hb", ha).await.unwrap();
    assert!(ping(3), "across the wire");
    let (_, out) = sh(&format!("nsenter -t {} -n tc filter show dev ha ingress", mid.0.id()));
    assert!(out.contains("mirred") && out.contains("Redirect to device hb"), "{out}");
    m.clear_ingress(ha, "ha").await.unwrap();
    m.clear_ingress(hb, "hb").await.unwrap();
    m.clear_ingress(hb, "hb").await.expect("clearing twice is fine");
    assert!(!ping(1), "the wire is gone");
}

#[tokio::test]
async fn tbf_rate_and_netem_impairments() {
    require_root();
    let ns = TestNs::new();
    let f = ns.file();
    let host = Netlink::host().unwrap();
    let (a, b) = (
        VethEnd { netns: Some(f.as_fd()), ..VethEnd::new("imp0") },
        VethEnd { netns: Some(f.as_fd()), ..VethEnd::new("imp1") },
    );
    host.create_veth(a, b).await.unwrap();
    let nl = Netlink::in_netns(&f, "test").await.unwrap();
    let index = nl.index("imp0").await.unwrap();
    let rate = lab_net::tc::Impairment { rate: Some(10_000_000), ..Default::default() };
    nl.impair(index, "imp0", &rate).await.unwrap();
    let (_, out) = ns.ip("-d link show imp0");
    assert!(out.contains("qdisc tbf"), "{out}");
    let (_, out) = sh(&format!("nsenter -t {} -n tc qdisc show dev imp0", ns.0.id()));
    assert!(out.contains("tbf") && out.contains("rate 10Mbit"), "{out}");
    let delay = lab_net::tc::Impairment { delay: Some(50_000), ..Default::default() };
    match nl.impair(index, "imp0", &delay).await {
        Ok(()) => {
            let (_, out) = sh(&format!("nsenter -t {} -n tc qdisc show dev imp0", ns.0.id()));
            assert!(out.contains("netem") && out.contains("delay 50ms"), "{out}");
        }
        Err(e) => {
            // This machine's kernel has no sch_netem: the error must say so.
            assert!(e.to_string().contains("sch_netem"), "{e}");
            eprintln!("netem not available on this kernel, checked its error instead: {e}");
        }
    }
    nl.clear_impairment(index, "imp0").await.unwrap();
    let (_, out) = sh(&format!("nsenter -t {} -n tc qdisc show dev imp0", ns.0.id()));
    assert!(!out.contains("tbf"), "{out}");
}

#[test]
fn sysctls_are_written_in_the_namespace() {
    require_root();
    let ns = TestNs::new();
    let f = ns.file();
    let host_before = lab_net::sysctl::read(lab_net::sysctl::IPV4_FORWARD).unwrap();
    let want = if host_before == "1" { "0" } else { "1" };
    lab_net::sysctl::write_in(f.as_fd(), "test", &[("net.ipv4.ip_forward".into(), want.into())]).unwrap();
    let (_, out) = sh(&format!("nsenter -t {} -n cat /proc/sys/net/ipv4/ip_forward", ns.0.id()));
    assert_eq!(out.trim(), want);
    assert_eq!(lab_net::sysctl::read(lab_net::sysctl::IPV4_FORWARD).unwrap(), host_before, "host untouched");
    let err = lab_net::sysctl::write_in(f.as_fd(), "test", &[("net.ipv4.no_such_key".into(), "1".into())]);
    assert!(err.unwrap_err().to_string().contains("this kernel has no /proc/sys/net/ipv4/no_such_key"));
}
