//! Bringing labs up and down: the three-node example, repeats, rollbacks, several labs.

use crate::support::*;

#[test]
fn three_node_example_up_ping_every_pair_down() {
    let _host = shared();
    let lab = Lab::up_file("three", &repo().join("topologies/three-node.toml"));
    let nodes = ["node1", "node2", "node3"];
    for a in nodes {
        for b in nodes.iter().filter(|b| **b != a) {
            let out = lab.exec(a, &["ping", "-c1", "-W2", b]);
            assert!(out.status.success(), "{a} cannot ping {b} by name:\n{}", show(&out));
            assert!(text(&out.stdout).contains(&format!("PING {b} (10.")), "{}", show(&out));
        }
    }
    // ip netns knows the nodes as <lab>.<node>.
    let netns = text(&host("ip netns list").stdout);
    for n in nodes {
        assert!(netns.contains(&format!("{}.{n}", lab.name)), "{netns}");
    }
    lab.down();
}

#[test]
fn up_prints_a_table_and_returns_while_nodes_keep_running() {
    let _host = shared();
    let name = unique("table");
    let file = repo().join("topologies/three-node.toml");
    let out = lab(&["up", file.to_str().unwrap(), "--name", &name]);
    let guard = GuardDown(name.clone());
    assert!(out.status.success(), "{}", show(&out));
    let table = text(&out.stdout);
    let header = table.lines().next().unwrap_or_default();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["LAB", "NODE", "STATE", "PID", "UPTIME", "ADDRESSES", "PORTS"]
    );
    for n in ["node1", "node2", "node3"] {
        let row = table.lines().find(|l| l.split_whitespace().nth(1) == Some(n)).unwrap_or_else(|| panic!("{table}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[2], "running", "{row}");
        let pid: i32 = cols[3].parse().unwrap_or_else(|_| panic!("pid in {row}"));
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "node init {pid} runs after up returned");
        assert!(cols[4].ends_with('s'), "uptime in seconds: {row}");
        assert!(cols[5].starts_with("eth0=10."), "{row}");
    }
    drop(guard);
    assert_eq!(leftovers(&name), Vec::<String>::new());
}

/// Runs `lab down NAME` when dropped.
struct GuardDown(String);
impl Drop for GuardDown {
    fn drop(&mut self) {
        let _ = lab(&["down", &self.0]);
    }
}

#[test]
fn down_twice_and_by_file_is_fine() {
    let _host = shared();
    let lab_ = Lab::up("twice", "[nodes.a]\n[nodes.b]\n");
    let file = lab_.file.to_str().unwrap().to_string();
    let name = lab_.name.clone();
    // By file: the name comes from the file.
    let out = lab(&["down", &file]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(text(&out.stderr).contains(&format!("lab {name} is down")), "{}", show(&out));
    let again = lab(&["down", &name]);
    assert!(again.status.success(), "second down must succeed:\n{}", show(&again));
    assert!(text(&again.stderr).contains("nothing to remove"), "{}", show(&again));
    assert_eq!(leftovers(&name), Vec::<String>::new());
    lab_.down();
}

#[test]
fn the_same_name_twice_is_a_clear_error() {
    let _host = shared();
    let lab_ = Lab::up("dup", "[nodes.a]\n");
    let out = lab(&["up", lab_.file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(text(&out.stderr).contains(&format!("lab {} is already up", lab_.name)), "{}", show(&out));
    assert!(text(&out.stderr).contains("lab down"), "the hint says what to do:\n{}", show(&out));
    // The first lab is untouched.
    assert_eq!(lab_.sh("a", "echo ok"), "ok\n");
    lab_.down();
}

#[test]
fn two_labs_at_once_get_their_own_subnets_names_and_tables() {
    let _host = shared();
    let topo = "[networks.lan]\nnat = true\n[nodes.a]\nnetworks = [\"lan\"]\n[nodes.b]\nnetworks = [\"lan\"]\n";
    let (first, second) = std::thread::scope(|s| {
        let one = s.spawn(|| Lab::up("pair", topo));
        let two = s.spawn(|| Lab::up("pair", topo));
        (one.join().expect("first up"), two.join().expect("second up"))
    });
    let subnet = |l: &Lab| {
        let out = l.sh("a", "ip -o -4 addr show eth0 | awk '{print $4}'");
        out.trim().rsplit_once('.').map(|(net, _)| net.to_string()).unwrap_or_default()
    };
    assert_ne!(subnet(&first), subnet(&second), "two labs picked the same subnet");
    for l in [&first, &second] {
        assert!(l.exec("a", &["ping", "-c1", "-W2", "b"]).status.success());
        let tables = text(&host("nft list tables").stdout);
        assert!(tables.contains(&format!("table inet lab-{}", l.name)), "{tables}");
    }
    first.down();
    // The other lab still works after the first is gone.
    assert!(second.exec("b", &["ping", "-c1", "-W2", "a"]).status.success());
    second.down();
}

#[test]
fn a_node_that_cannot_start_fails_up_naming_it_and_rolls_back() {
    let _host = shared();
    let (lab_, out) = Lab::try_up(
        "fail",
        r#"
[networks.lan]
nat = true
[nodes.a]
networks = ["lan"]
[nodes.b]
networks = ["lan"]
command = ["/no/such/program", "--flag"]
[nodes.c]
networks = ["lan"]
[[links]]
endpoints = ["a", "c"]
"#,
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(err.contains("node b:"), "names the node:\n{err}");
    assert!(err.contains("/no/such/program"), "names the command:\n{err}");
    assert!(err.contains("No such file or directory"), "says why:\n{err}");
    assert_eq!(leftovers(&lab_.name), Vec::<String>::new(), "a failed up must leave nothing");
}

#[test]
fn a_missing_rootfs_is_refused_before_anything_is_made() {
    let _host = shared();
    let (lab_, out) = Lab::try_up("norootfs", "[nodes.a]\n[nodes.b]\nrootfs = \"/no/such/rootfs\"\n");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(text(&out.stderr).contains("node b: rootfs /no/such/rootfs is not a directory"), "{}", show(&out));
    assert_eq!(leftovers(&lab_.name), Vec::<String>::new());
}

#[test]
fn sigint_during_up_rolls_back() {
    let _host = shared();
    let mut topology = String::from("[networks.lan]\nnat = true\n");
    for i in 0..40 {
        topology += &format!("[nodes.n{i}]\nnetworks = [\"lan\"]\n");
    }
    // How long an `up` of it takes here (a slow VM takes several times as long), to spread the
    // signals over it.
    let full = {
        let t = std::time::Instant::now();
        let (l, out) = Lab::try_up("sigintfull", &topology);
        assert!(out.status.success(), "{}", show(&out));
        let d = t.elapsed();
        l.down();
        d
    };
    let mut interrupted = 0;
    for fraction in [0.1, 0.3, 0.5, 0.7, 0.9] {
        let delay = full.mul_f64(fraction);
        let name = unique("sigint");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lab.toml");
        std::fs::write(&file, format!("name = \"{name}\"\n{topology}")).unwrap();
        let _guard = GuardDown(name.clone());
        let child = std::process::Command::new(lab_bin())
            .args(["up", file.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT)
            .unwrap();
        let out = child.wait_with_output().unwrap();
        match out.status.code() {
            // It finished first; then down must still clean up.
            Some(0) => assert!(lab(&["down", &name]).status.success()),
            // The signal came before lab caught it: nothing may have been made yet.
            None => {}
            Some(code) => {
                interrupted += 1;
                assert_eq!(code, 130, "Ctrl-C of up exits 130, as a shell's:\n{}", show(&out));
                assert!(text(&out.stderr).contains("interrupted"), "{}", show(&out));
                assert!(text(&out.stderr).contains("everything made so far was removed"), "{}", show(&out));
            }
        }
        assert_eq!(leftovers(&name), Vec::<String>::new(), "after SIGINT at {delay:?} of {full:?}");
    }
    assert!(interrupted > 0, "no SIGINT landed during bring-up; the rollback path was not exercised");
}

#[test]
fn node_seven_of_ten_failing_names_it_and_rolls_everything_back() {
    let _host = shared();
    for (what, bad) in [
        ("command", "command = [\"/no/such/daemon\"]\n"),
        ("rootfs", "rootfs = \"/no/such/rootfs\"\n"),
        ("mount", "mounts = [\"/no/such/dir:/data\"]\n"),
    ] {
        let mut topology = String::from("[networks.lan]\nnat = true\n");
        for i in 1..=10 {
            topology += &format!("[nodes.n{i}]\nnetworks = [\"lan\"]\n");
            if i == 7 {
                topology += bad;
            }
        }
        let (l, out) = Lab::try_up("seven", &topology);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", show(&out));
        let err = text(&out.stderr);
        assert!(err.contains("node n7:"), "{what}: names node 7:\n{err}");
        assert!(err.contains("/no/such/"), "{what}: says what is missing:\n{err}");
        assert_eq!(leftovers(&l.name), Vec::<String>::new(), "{what}: a failed up must leave nothing");
    }
}

#[test]
fn five_labs_come_up_in_parallel() {
    let _host = shared();
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..5).map(|_| unique("par")).collect();
    let _guards: Vec<GuardDown> = names.iter().map(|n| GuardDown(n.clone())).collect();
    let children: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let file = dir.path().join(format!("{name}.toml"));
            // Different shapes: NAT or not, a link or not.
            let nat = if k % 2 == 0 { "nat = true\n" } else { "" };
            let link = if k % 2 == 1 { "[[links]]\nendpoints = [\"a\", \"c\"]\n" } else { "" };
            let body = format!(
                "name = \"{name}\"\n[networks.lan]\n{nat}[nodes.a]\nnetworks = [\"lan\"]\n[nodes.b]\nnetworks = [\"lan\"]\n[nodes.c]\n{link}"
            );
            std::fs::write(&file, body).unwrap();
            std::process::Command::new(lab_bin())
                .args(["up", file.to_str().unwrap()])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (name, child) in names.iter().zip(children) {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "lab up {name}:\n{}", show(&out));
    }
    let subnets: std::collections::BTreeSet<String> = names
        .iter()
        .map(|n| {
            let out = lab(&["exec", "--lab", n, "a", "ping", "-c1", "-W2", "b"]);
            assert!(out.status.success(), "{n}: {}", show(&out));
            first_address(&node_json(n, "a")).unwrap_or_default()
        })
        .collect();
    assert_eq!(subnets.len(), 5, "each lab got its own subnet: {subnets:?}");
    for n in &names {
        assert!(lab(&["down", n]).status.success());
        assert_eq!(leftovers(n), Vec::<String>::new());
    }
}

#[test]
fn two_ups_of_one_name_at_once_one_wins_and_the_other_says_why() {
    let _host = shared();
    let name = unique("race");
    let _guard = GuardDown(name.clone());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lab.toml");
    std::fs::write(&file, format!("name = \"{name}\"\n[networks.lan]\nnat = true\n[nodes.a]\nnetworks = [\"lan\"]\n[nodes.b]\nnetworks = [\"lan\"]\n")).unwrap();
    let spawn = || {
        std::process::Command::new(lab_bin())
            .args(["up", file.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    let outs = [first.wait_with_output().unwrap(), second.wait_with_output().unwrap()];
    let won: Vec<_> = outs.iter().filter(|o| o.status.success()).collect();
    assert_eq!(won.len(), 1, "exactly one up wins:\n{}\n{}", show(&outs[0]), show(&outs[1]));
    let lost = outs.iter().find(|o| !o.status.success()).unwrap();
    assert!(text(&lost.stderr).contains(&format!("lab {name} is already up")), "{}", show(lost));
    assert!(lab(&["exec", "--lab", &name, "a", "ping", "-c1", "-W2", "b"]).status.success(), "the winner works");
    assert!(lab(&["down", &name]).status.success());
    assert_eq!(leftovers(&name), Vec::<String>::new());
}
