//! The whole host before and after: `lab down --all` leaves interfaces, namespaces, nft
//! tables, mounts, cgroups, sysctls and lab's state as they were.

use crate::support::*;

fn snapshot() -> String {
    let cmd = r#"
        echo '# links'; ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort
        echo '# netns'; ip netns list
        echo '# nft'; nft list tables
        echo '# mounts'; awk '{print $5, $9}' /proc/self/mountinfo | sort
        echo '# cgroups'; find /sys/fs/cgroup -type d -not -path '*process_api*' | sort
        echo '# sysctl'; cat /proc/sys/net/ipv4/ip_forward
        echo '# state'; ls -A /run/lab 2>/dev/null; ls -d /run/netns 2>/dev/null
        echo '# processes'; ps -eo comm= | grep -c '^lab-' || true
    "#;
    text(&host(cmd).stdout)
}

#[test]
fn down_all_leaves_the_host_as_it_was() {
    let _host = exclusive();
    let before = snapshot();
    let a = Lab::up_file("host", &repo().join("topologies/three-node.toml"));
    let b = Lab::up(
        "host",
        "[networks.x]\n[nodes.p]\nnetworks = [\"x\"]\n[nodes.q]\n[[links]]\nendpoints = [\"p\", \"q\"]\n",
    );
    assert!(a.exec("node1", &["ping", "-c1", "-W2", "node3"]).status.success());
    assert!(b.exec("p", &["true"]).status.success());
    assert_ne!(snapshot(), before, "the labs are visible while up");
    let out = lab(&["down", "--all"]);
    assert!(out.status.success(), "{}", show(&out));
    for l in [&a, &b] {
        assert!(text(&out.stderr).contains(&format!("lab {} is down", l.name)), "{}", show(&out));
    }
    let after = snapshot();
    assert_eq!(after, before, "lab down --all did not restore the host");
    drop((a, b));
}
