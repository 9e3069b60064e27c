//! Outbound NAT, against an "upstream" namespace this test makes to play the outside world.
//! No packet goes anywhere but between namespaces the test and the lab made.

use crate::support::*;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::Duration;

/// A namespace on the far side of a veth from the host, on a TEST-NET-2 /30 of its own. It
/// is held by a process of its own (no name under /run/netns, which `ip netns add` would
/// leave mounted on the host).
pub(crate) struct Upstream {
    holder: std::process::Child,
    veth: String,
    pub host_addr: Ipv4Addr,
    pub addr: Ipv4Addr,
    /// The namespace's IPv6 address (a documentation prefix, /64, on the same veth).
    pub addr6: std::net::Ipv6Addr,
}

impl Upstream {
    pub fn new() -> Upstream {
        // Eight at a time per test process: names and /30s apart.
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 8;
        let tag = format!("{}{n}", std::process::id() % 100_000);
        let base = 4 * ((std::process::id() % 8) * 8 + n) as u8;
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
            addr6: std::net::Ipv6Addr::new(0x2001, 0xdb8, 0xff, u16::from(base), 0, 0, 0, 2),
            holder,
        };
        let host6 = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0xff, u16::from(base), 0, 0, 0, 1);
        let pid = up.holder.id();
        let script = format!(
            "set -e; ip link add {v} type veth peer name eth0 netns {pid}; \
             ip addr add {h}/30 dev {v}; ip -6 addr add {h6}/64 dev {v} nodad; ip link set {v} up; \
             nsenter -t {pid} -n sh -c 'ip addr add {a}/30 dev eth0 && ip -6 addr add {a6}/64 dev eth0 nodad && \
             ip link set eth0 up && ip link set lo up && ip -6 route add default via {h6}'",
            v = up.veth,
            h = up.host_addr,
            a = up.addr,
            h6 = host6,
            a6 = up.addr6
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

impl Upstream {
    /// Connects from inside the upstream namespace to `to` and reads one line.
    fn fetch(&self, to: SocketAddr) -> std::io::Result<String> {
        let ns = std::fs::File::open(format!("/proc/{}/ns/net", self.holder.id()))?;
        std::thread::spawn(move || {
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
            read_line(to)
        })
        .join()
        .expect("fetch thread")
    }
}

/// `f` again while it is refused (the server may take a moment to listen), nothing else.
fn wait_for(f: &dyn Fn() -> std::io::Result<String>) -> std::io::Result<String> {
    for _ in 0..50 {
        match f() {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::thread::sleep(Duration::from_millis(100))
            }
            other => return other,
        }
    }
    f()
}

/// Connects to `to` and reads what it says, up to a newline.
fn read_line(to: SocketAddr) -> std::io::Result<String> {
    let mut conn = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&mut conn), &mut line)?;
    Ok(line.trim().to_string())
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

#[test]
fn forwarded_ports_answer_from_upstream_and_from_the_host() {
    let _host = shared();
    let upstream = Upstream::new();
    // A host port of this test's own (several test runs may share a machine).
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    let lab = Lab::up(
        "ports",
        &format!(
            r#"
[networks.lan]
nat = true
[nodes.web]
networks = ["lan"]
{}
command = ["/probe", "serve", "80", "hello-from-web"]
ports = ["{port}:80", "{}:53/udp"]
"#,
            probe_mount(),
            port + 1
        ),
    );
    let from_upstream = wait_for(&|| upstream.fetch(SocketAddr::from((upstream.host_addr, port))));
    assert_eq!(from_upstream.expect("upstream reaches the forwarded port"), "hello-from-web");
    let from_host = read_line(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    assert_eq!(from_host.expect("the host reaches its forwarded port on loopback"), "hello-from-web");
    let rules = text(&host(&format!("nft list table inet lab-{}", lab.name)).stdout);
    assert!(rules.contains(&format!("tcp dport {port} dnat ip to")), "{rules}");
    assert!(rules.contains(&format!("udp dport {} dnat ip to", port + 1)), "{rules}");

    // Another lab cannot take the same host port: an error at the line that asks for it.
    let (other, out) = Lab::try_up(
        "ports2",
        &format!("[networks.lan]\nnat = true\n[nodes.x]\nnetworks = [\"lan\"]\nports = [\"{port}:8080\"]\n"),
    );
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(err.contains(&format!("host port {port}/tcp is already forwarded by lab {}", lab.name)), "{err}");
    assert!(err.contains(&format!("{}.toml:6:", other.name)), "points at the line: {err}");
    assert_eq!(leftovers(&other.name), Vec::<String>::new());

    // Nor one a host process listens on.
    let listener = std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    let busy = listener.local_addr().unwrap().port();
    let (other, out) = Lab::try_up(
        "ports3",
        &format!("[networks.lan]\nnat = true\n[nodes.x]\nnetworks = [\"lan\"]\nports = [\"{busy}:80\"]\n"),
    );
    assert!(!out.status.success(), "{}", show(&out));
    assert!(text(&out.stderr).contains("a process on the host listens on it"), "{}", show(&out));
    assert_eq!(leftovers(&other.name), Vec::<String>::new());
    lab.down();
}

#[test]
fn a_copy_behind_its_gateway_namespace_forwards_its_ports_and_masquerades_both_versions() {
    let _host = shared();
    let upstream = Upstream::new();
    let port = 20_000 + (std::process::id() % 20_000) as u16 + 2;
    let net = "[networks.lan]\nsubnet = \"10.77.32.0/24\"\nsubnet6 = \"fd00:77:32::/64\"\nnat = true\n";
    // The first lab has the subnets on the host; the second, a copy, gets a namespace.
    let first = Lab::up("gwfirst", &format!("{net}[nodes.x]\nnetworks = [\"lan\"]\n"));
    let copy = Lab::up(
        "gwcopy",
        &format!(
            "{net}[nodes.web]\nnetworks = [\"lan\"]\n{}command = [\"/probe\", \"serve\", \"80\", \"hello-from-the-copy\"]\nports = [\"{port}:80\"]\n",
            probe_mount()
        ),
    );
    let from_upstream = wait_for(&|| upstream.fetch(SocketAddr::from((upstream.host_addr, port))));
    assert_eq!(from_upstream.expect("upstream reaches the copy's forwarded port"), "hello-from-the-copy");
    let from_host = read_line(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    assert_eq!(from_host.expect("the host reaches it on loopback"), "hello-from-the-copy");

    // Out, over both versions, masqueraded twice: what upstream sees comes from the host.
    for l in [&first, &copy] {
        let node = if l.name == first.name { "x" } else { "web" };
        let v6 = l.exec(node, &["ping", "-6", "-c1", "-W2", &upstream.addr6.to_string()]);
        assert!(v6.status.success(), "{}'s node has no IPv6 way out:\n{}", l.name, show(&v6));
        let listener = upstream.receive_one(40_405, Duration::from_secs(5));
        let target = upstream.addr.to_string();
        let sent = l.exec(node, &["bash", "-c", &format!("echo hello > /dev/udp/{target}/40405")]);
        assert!(sent.status.success(), "{}", show(&sent));
        let from = listener.join().unwrap().expect("no datagram arrived upstream");
        assert_eq!(from.ip(), std::net::IpAddr::V4(upstream.host_addr), "{}: not masqueraded to the host", l.name);
    }
    // The copy's gateway is in its namespace, with the network's addresses; the host has
    // neither, only the uplink's transfer addresses.
    let inside = text(&host(&format!("ip -n {} addr show dev lan", copy.name)).stdout);
    assert!(inside.contains("inet 10.77.32.1/24") && inside.contains("inet6 fd00:77:32::1/64"), "{inside}");
    let bridge = host_end(&copy.name, "net", "lan");
    let on_host = text(&host(&format!("ip addr show dev {bridge}")).stdout);
    assert!(!on_host.contains("inet"), "the copy's bridge has an address on the host: {on_host}");
    let shown = text(&lab(&["inspect", &copy.name]).stdout);
    assert!(
        shown.contains(&format!("NAT via 10.77.32.1/24 fd00:77:32::1/64 in network namespace {}", copy.name)),
        "{shown}"
    );
    copy.down();
    first.down();
}
