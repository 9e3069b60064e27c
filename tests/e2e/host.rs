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
        echo '# sysctl'; cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv6/conf/all/forwarding
        echo '# state'; ls -A /run/lab 2>/dev/null; ls -d /run/netns 2>/dev/null
        echo '# processes'; ps -eo args= | grep -cE '^lab-(monitor|init)' || true
        echo '# in lab cgroups'; ps -eo cgroup= | grep -c ':/lab/' || true
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

#[test]
fn up_killed_at_any_moment_then_down_leaves_the_host_as_it_was() {
    let _host = exclusive();
    let before = snapshot();
    let mut topology = String::from("[networks.lan]\nnat = true\nipv6 = true\n[networks.back]\n");
    for i in 1..=10 {
        topology += &format!("[nodes.n{i}]\nnetworks = [\"lan\", \"back\"]\n");
    }
    topology += "[[links]]\nendpoints = [\"n1\", \"n2\"]\n[[links]]\nendpoints = [\"n9\", \"n10\"]\n";
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, kill_after: Option<std::time::Duration>| {
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(&file, format!("name = \"{name}\"\n{topology}")).unwrap();
        let mut child = std::process::Command::new(lab_bin())
            .args(["up", file.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        if let Some(d) = kill_after {
            std::thread::sleep(d);
            let _ = child.kill();
        }
        child.wait().unwrap()
    };
    // How long a whole `up` takes here, to spread the kills over it.
    let name = unique("kill");
    let _guard = GuardDown(name.clone());
    let t = std::time::Instant::now();
    assert!(run(&name, None).success());
    let full = t.elapsed();
    assert!(lab(&["down", &name]).status.success());
    assert_eq!(snapshot(), before);

    // Kill moments: spread over the bring-up, shuffled by a seed that changes per run.
    let mut seed = u64::from(std::process::id()) | 1;
    let mut killed_mid_way = 0;
    for trial in 0..24u32 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let fraction = (f64::from(trial) + (seed % 1000) as f64 / 1000.0) / 24.0;
        let delay = full.mul_f64(fraction * 1.2);
        let name = unique("kill");
        let _guard = GuardDown(name.clone());
        let status = run(&name, Some(delay));
        if !status.success() {
            killed_mid_way += 1;
        }
        let out = lab(&["down", &name]);
        assert!(out.status.success(), "trial {trial} (SIGKILL after {delay:?}): down failed:\n{}", show(&out));
        let after = snapshot();
        assert_eq!(
            after, before,
            "trial {trial}: SIGKILL after {delay:?} of ~{full:?}, then down, left the host changed"
        );
    }
    assert!(killed_mid_way >= 10, "only {killed_mid_way} of 24 kills landed during bring-up");
}

#[test]
fn down_finds_a_lab_whose_state_directory_was_deleted() {
    let _host = exclusive();
    let before = snapshot();
    let l = Lab::up(
        "nostate",
        "[networks.lan]\nnat = true\n[nodes.a]\nnetworks = [\"lan\"]\ncommand = [\"sleep\", \"infinity\"]\n[nodes.b]\nnetworks = [\"lan\"]\n[[links]]\nendpoints = [\"a\", \"b\"]\n",
    );
    assert!(l.exec("a", &["ping", "-c1", "-W2", "b"]).status.success());
    // Everything but the nodes' kept layers, which are mounts (rm cannot take them).
    host(&format!("rm -rf /run/lab/{}", l.name));
    let left = host(&format!(
        "find /run/lab/{} -mindepth 1 -not -path '*/layer*' -not -name nodes -not -name a -not -name b",
        l.name
    ));
    assert_eq!(text(&left.stdout), "", "the state is gone");
    let out = lab(&["down", &l.name]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(text(&out.stderr).contains("2 nodes"), "found both nodes by their names: {}", show(&out));
    assert_eq!(leftovers(&l.name), Vec::<String>::new());
    assert_eq!(snapshot(), before);
    drop(l);
}

/// Takes lab `name` down when dropped, also when the test failed.
struct GuardDown(String);
impl Drop for GuardDown {
    fn drop(&mut self) {
        let _ = lab(&["down", &self.0]);
    }
}
