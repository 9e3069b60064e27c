//! Outbound NAT, against an "upstream" namespace this test makes to play the outside world.
//! No packet goes anywhere but between namespaces the test and the lab made.

use crate::support::*;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::Duration;

/// A namespace on the far side of a veth from the host, on a TEST-NET-2 /30 of its own. It
/// is held by a process of its own (no name under /run/netns, which `ip netns add` would
/// leave mounted on the host).
struct Upstream {
    holder: std::process::Child,
    veth: String,
    host_addr: Ipv4Addr,
    addr: Ipv4Addr,
}

impl Upstream {
    fn new() -> Upstream {
        let tag = std::process::id() % 100_000;
        let base = 4 * (std::process::id() % 60) as u8;
        let mut holder = std::process::Command::new("unshare")
            .args(["--net", "sh", "-c", "echo ready; exec sleep infinity"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("running unshare --net");
        // It says "ready" once it is in its own namespace.
        let mut ready = [0u8; 6];
        std::io::Read::read_exact(holder.stdout.as_mut().expect("piped"), &mut ready).expect("upstream ready");
        let up = Upstream {
            veth: format!("tup{tag}"),
            host_addr: Ipv4Addr::new(198, 51, 100, base + 1),
            addr: Ipv4Addr::new(198, 51, 100, base + 2),
            holder,
        };
        let pid = up.holder.id();
        let script = format!(
            "set -e; ip link add {v} type veth peer name eth0 netns {pid}; \
             ip addr add {h}/30 dev {v}; ip link set {v} up; \
             nsenter -t {pid} -n sh -c 'ip addr add {a}/30 dev eth0 && ip link set eth0 up && ip link set lo up'",
            v = up.veth,
            h = up.host_addr,
            a = up.addr
        );
        let out = host(&script);
        assert!(out.status.success(), "making the upstream namespace:\n{}", show(&out));
        up
    }

    /// Binds a UDP socket inside the upstream namespace (on a thread that entered it) and
    /// returns the source address of the first datagram, if one comes within `wait`.
    fn receive_one(&self, port: u16, wait: Duration) -> std::thread::JoinHandle<Option<SocketAddr>> {
        let ns = std::fs::File::open(format!("/proc/{}/ns/net", self.holder.id())).expect("upstream netns");
        let bind = SocketAddr::from((self.addr, port));
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("entering upstream netns");
            let socket = UdpSocket::bind(bind).expect("binding in the upstream namespace");
            socket.set_read_timeout(Some(wait)).unwrap();
            tx.send(()).unwrap();
            let mut buf = [0u8; 64];
            socket.recv_from(&mut buf).ok().map(|(_, from)| from)
        });
        rx.recv().expect("listener ready");
        handle
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = host(&format!("ip link del {}", self.veth));
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

#[test]
fn nodes_reach_upstream_through_masquerade_and_isolated_ones_do_not() {
    let _host = shared();
    let upstream = Upstream::new();
    let lab = Lab::up(
        "nat",
        r#"
[networks.lan]
nat = true
[networks.private]
[nodes.node1]
networks = ["lan"]
[nodes.hidden]
networks = ["private"]
"#,
    );
    let target = upstream.addr.to_string();
    let ping = lab.exec("node1", &["ping", "-c1", "-W2", &target]);
    assert!(ping.status.success(), "node1 cannot reach the upstream namespace:\n{}", show(&ping));

    // In the upstream namespace, the packet comes from the host's upstream address.
    let listener = upstream.receive_one(40_404, Duration::from_secs(5));
    let sent = lab.exec("node1", &["bash", "-c", &format!("echo hello > /dev/udp/{target}/40404")]);
    assert!(sent.status.success(), "{}", show(&sent));
    let from = listener.join().unwrap().expect("no datagram arrived upstream");
    assert_eq!(from.ip(), std::net::IpAddr::V4(upstream.host_addr), "not masqueraded to the host's address");

    let rule = text(&host(&format!("nft list table inet lab-{}", lab.name)).stdout);
    assert!(rule.contains("masquerade"), "{rule}");
    assert_eq!(std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap().trim(), "1");

    // A node on a network without NAT has no way out.
    let isolated = lab.exec("hidden", &["ping", "-c1", "-W1", &target]);
    assert!(!isolated.status.success(), "a node without NAT reached upstream:\n{}", show(&isolated));
    lab.down();
}
