//! lab-net against the real kernel. Needs root; each test names its objects uniquely and
//! removes them in a guard, also when it fails. `ip` and `nft` only check from outside.

use lab_net::{nat, netns, Netlink, VethEnd};
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
    let bridge = host.create_bridge(&br, "lab/test/net/lan", mac, group, Some(1400)).await.unwrap();
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
        nat::Masquerade { subnet: "10.250.9.0/24".parse().unwrap(), bridge: "lb-test-0".into() },
        nat::Masquerade { subnet: "fd42:9::/64".parse().unwrap(), bridge: "lb-test-0".into() },
    ];
    let forwards = [nat::Forward {
        protocol: nat::Protocol::Udp,
        host_port: 15353,
        address: "10.250.9.2".parse().unwrap(),
        port: 53,
        bridge: "lb-test-0".into(),
    }];
    nat::create_table(&table, &rules, &forwards).unwrap();
    assert!(nat::tables().unwrap().contains(&table));
    let (ok, out) = sh(&format!("nft list table inet {table}"));
    assert!(ok, "{out}");
    assert!(out.contains("type nat hook postrouting priority srcnat"), "{out}");
    assert!(out.contains("ip saddr 10.250.9.0/24 oifname != \"lb-test-0\" masquerade"), "{out}");
    assert!(out.contains("ip6 saddr fd42:9::/64 oifname != \"lb-test-0\" masquerade"), "{out}");
    assert!(out.contains("ip saddr 127.0.0.0/8 oifname \"lb-test-0\" masquerade"), "{out}");
    assert!(out.contains("type nat hook prerouting priority dstnat"), "{out}");
    assert_eq!(
        out.matches("fib daddr type local udp dport 15353 dnat ip to 10.250.9.2:53").count(),
        2,
        "prerouting and output: {out}"
    );
    let err = nat::create_table(&table, &rules, &[]);
    assert!(err.is_ok() || err.as_ref().is_err_and(|e| e.errno().is_some()), "{err:?}");
    nat::delete_table(&table).unwrap();
    assert!(!nat::tables().unwrap().contains(&table));
    nat::delete_table(&table).expect("deleting a missing table is fine");
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
    let (_, mounts) = sh("cat /proc/self/mounts");
    assert!(!mounts.contains(&name), "{mounts}");
    // Other tests may hold names in /run/netns: only then is the directory kept.
    if netns::release_dir(prepared).unwrap() && prepared.mounted {
        assert!(!sh("findmnt /run/netns").0, "the mount point we made is gone");
    }
}

#[test]
fn partition_filter_lives_in_the_namespace_and_is_replaced_whole() {
    require_root();
    let ns = TestNs::new();
    let f = ns.file();
    let list = || sh(&format!("nsenter -t {} -n nft list table inet lab-partition", ns.0.id()));
    let addrs: Vec<std::net::IpAddr> = vec!["10.9.0.2".parse().unwrap(), "fd00::2".parse().unwrap()];
    netns::run_in(f.as_fd(), "test", || nat::create_filter("lab-partition", &addrs)).unwrap();
    let (ok, out) = list();
    assert!(ok, "{out}");
    assert!(out.contains("ip saddr 10.9.0.2 drop") && out.contains("ip6 daddr fd00::2 drop"), "{out}");
    netns::run_in(f.as_fd(), "test", || nat::create_filter("lab-partition", &addrs[..1])).unwrap();
    let (_, out) = list();
    assert!(out.contains("ip daddr 10.9.0.2 drop") && !out.contains("fd00::2"), "replaced: {out}");
    assert!(!nat::tables().unwrap().contains(&"lab-partition".to_string()), "nothing on the host");
    netns::run_in(f.as_fd(), "test", || nat::delete_table("lab-partition")).unwrap();
    assert!(!list().0, "deleted");
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
