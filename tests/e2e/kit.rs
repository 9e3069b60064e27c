//! The coursework kit, Kathará style: a lab folder with a directory per node laid over its
//! root, a startup script per node, a shared folder, mounts relative to the file, and
//! `{lab}`/`{node}` in paths so that copies of a lab and nodes of one default stay apart.

use crate::support::*;

#[test]
fn node_files_startup_scripts_shared_and_relative_paths_make_a_movable_lab_folder() {
    let _host = shared();
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("ospf");
    for d in ["r1/etc/frr", "r2/etc/frr", "shared", "data-r1", "data-r2"] {
        std::fs::create_dir_all(folder.join(d)).unwrap();
    }
    std::fs::write(folder.join("r1/etc/frr/frr.conf"), "hostname r1\n").unwrap();
    std::fs::write(folder.join("r2/etc/frr/frr.conf"), "hostname r2\n").unwrap();
    std::fs::write(
        folder.join("r1.startup"),
        "#!/bin/sh\necho \"up $(hostname) $(cat /sys/class/net/eth0/operstate)\" > /tmp/started\n",
    )
    .unwrap();
    std::fs::write(folder.join("r2.startup"), "echo \"up $(hostname)\" > /tmp/started\n").unwrap();
    std::fs::write(folder.join("shared/notes"), "for everyone\n").unwrap();
    let name = unique("kit");
    std::fs::write(
        folder.join("lab.toml"),
        format!(
            "name = \"{name}\"\n[networks.lan]\n[defaults]\nfiles = \"{{node}}\"\nstartup = \"{{node}}.startup\"\n\
             shared = \"shared\"\nmounts = [\"data-{{node}}:/data\"]\n\
             [nodes.r1]\nnetworks = [\"lan\"]\nexec = [\"cat /tmp/started > /tmp/after-startup\"]\n\
             [nodes.r2]\nnetworks = [\"lan\"]\n"
        ),
    )
    .unwrap();
    // The folder moves: every path is relative to the file.
    let moved = root.path().join("course/week3");
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::rename(&folder, &moved).unwrap();
    let out = lab(&["up", moved.to_str().unwrap()]);
    let l = Lab::adopt(&name, &moved.join("lab.toml"), tempfile::tempdir().unwrap());
    assert!(out.status.success(), "{}", show(&out));
    // r1/etc/frr/frr.conf is at /etc/frr/frr.conf, the node root's own, in its layer.
    assert_eq!(l.sh("r1", "cat /etc/frr/frr.conf; stat -c %u:%g /etc/frr/frr.conf"), "hostname r1\n0:0\n");
    assert_eq!(l.sh("r2", "cat /etc/frr/frr.conf"), "hostname r2\n");
    // An editor's rename over it works (a bind-mounted file would be busy).
    assert_eq!(
        l.sh("r1", "echo new > /etc/frr/x && mv /etc/frr/x /etc/frr/frr.conf && cat /etc/frr/frr.conf"),
        "new\n"
    );
    assert_eq!(
        std::fs::read_to_string(moved.join("r1/etc/frr/frr.conf")).unwrap(),
        "hostname r1\n",
        "a copy, not the host's file"
    );
    // The startup script ran once the network was up, before the exec hooks.
    assert_eq!(l.sh("r1", "cat /tmp/started"), "up r1 up\n");
    assert_eq!(l.sh("r1", "cat /tmp/after-startup"), "up r1 up\n");
    assert_eq!(l.sh("r2", "cat /tmp/started"), "up r2\n");
    // One shared folder; one data folder per node.
    assert_eq!(l.sh("r2", "cat /shared/notes"), "for everyone\n");
    l.sh("r1", "echo from-r1 > /data/x");
    assert_eq!(std::fs::read_to_string(moved.join("data-r1/x")).unwrap(), "from-r1\n");
    assert!(!moved.join("data-r2/x").exists());
    l.down();
    // A missing node folder is refused before anything is made, naming it.
    std::fs::remove_dir_all(moved.join("r2")).unwrap();
    let (l2, out) = (
        Lab::adopt(&name, &moved.join("lab.toml"), tempfile::tempdir().unwrap()),
        lab(&["up", moved.to_str().unwrap()]),
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("node r2: files:") && text(&out.stderr).contains("week3/r2 is not a directory"),
        "{}",
        show(&out)
    );
    assert_eq!(leftovers(&l2.name), Vec::<String>::new());
}

#[test]
fn a_failing_up_or_start_shows_the_nodes_last_log_lines_and_start_waits_for_health() {
    let _host = shared();
    // up --wait: the node's log goes with the rolled-back lab; its last lines come in the error.
    let dir = tempfile::tempdir().unwrap();
    let name = unique("lastlines");
    let file = dir.path().join("l.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"{name}\"\n[nodes.db]\ncommand = \"echo starting; echo 'fatal: no config' >&2; exit 3\"\n\
             healthcheck = {{ cmd = \"false\", interval = \"100ms\", retries = 2 }}\n"
        ),
    )
    .unwrap();
    let _guard = Lab::adopt(&name, &file, tempfile::tempdir().unwrap());
    let up = crate::support::lab(&["up", file.to_str().unwrap(), "--wait"]);
    assert_eq!(up.status.code(), Some(1), "{}", show(&up));
    let err = text(&up.stderr);
    assert!(err.contains("node db") && err.contains("the last lines of node db's log"), "{err}");
    assert!(err.contains("stderr fatal: no config"), "{err}");
    assert_eq!(leftovers(&name), Vec::<String>::new());
    // start returns once the node is healthy again.
    let l = Lab::up(
        "startwaits",
        "[nodes.db]\ncommand = \"sleep 1; touch /tmp/ok; exec sleep infinity\"\n\
         healthcheck = { cmd = \"test -e /tmp/ok\", interval = \"100ms\", retries = 100 }\n",
    );
    let node = format!("{}/db", l.name);
    assert!(crate::support::lab(&["stop", &node]).status.success());
    let out = crate::support::lab(&["start", &node]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(node_json(&l.name, "db")["health"], "healthy", "start returned before the node was healthy");
    l.down();
    // A command that dies while it starts again: start fails, naming the node, with its last
    // words (a host folder remembers the first start).
    let data = tempfile::tempdir().unwrap();
    std::fs::set_permissions(data.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let l = Lab::up(
        "startdies",
        &format!(
            "[nodes.db]\nmounts = [\"{}:/data\"]\n\
             command = \"test -e /data/ran && {{ echo 'second start: giving up' >&2; exit 1; }}; touch /data/ran; exec sleep infinity\"\n\
             healthcheck = {{ cmd = \"test -e /data/ran\", interval = \"100ms\", retries = 5 }}\n",
            data.path().display()
        ),
    );
    let node = format!("{}/db", l.name);
    assert!(crate::support::lab(&["stop", &node]).status.success());
    let out = crate::support::lab(&["start", &node]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(err.contains("node db") && err.contains("stderr second start: giving up"), "{err}");
    l.down();
    // Without a health check too: a command that ends as it starts is not "running again"
    // (its kept layer remembers the first start).
    let l = Lab::up(
        "startends",
        "[nodes.db]\ncommand = \"test -e /var/tmp/ran && { echo 'no config' >&2; exit 2; }; touch /var/tmp/ran; exec sleep infinity\"\n",
    );
    let node = format!("{}/db", l.name);
    assert!(crate::support::lab(&["stop", &node]).status.success());
    let out = crate::support::lab(&["start", &node]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(err.contains("node db: its command ended as it started") && err.contains("stderr no config"), "{err}");
    l.down();
}

#[test]
fn loopback_addresses_are_on_lo_in_hosts_ps_inspect_and_graph() {
    let _host = shared();
    let l = Lab::up(
        "loopback",
        r#"
[nodes.r1]
loopback = ["10.255.0.1/32", "fd00:255::1/128"]
[nodes.r2]
routes = ["10.255.0.1/32 via 10.77.8.1"]
[[links]]
endpoints = ["r1:eth1", "r2:eth1"]
addresses = ["10.77.8.1/30", "10.77.8.2/30"]
"#,
    );
    assert!(l.sh("r1", "ip -br addr show lo").contains("10.255.0.1/32"), "on r1's lo");
    // By name: r1's loopback as r1-lo, the link's ends as r1-eth1 and r2-eth1.
    let hosts = l.sh("r2", "cat /etc/hosts");
    for want in ["10.255.0.1\tr1-lo", "fd00:255::1\tr1-lo", "10.77.8.1\tr1-eth1", "10.77.8.2\tr2-eth1"] {
        assert!(hosts.contains(want), "{want} in:\n{hosts}");
    }
    let out = l.exec("r2", &["ping", "-c1", "-W2", "r1-lo"]);
    assert!(out.status.success(), "r2 reaches r1's loopback over the link: {}", show(&out));
    assert!(text(&crate::support::lab(&["ps", &l.name]).stdout).contains("lo=10.255.0.1/32"));
    let r1 = node_json(&l.name, "r1");
    assert_eq!(r1["loopback"][0]["address"], "10.255.0.1", "{r1}");
    assert_eq!(r1["loopback"][1]["family"], "ipv6", "{r1}");
    let dot = text(&crate::support::lab(&["graph", &l.name, "--format", "dot"]).stdout);
    assert!(dot.contains("label=\"r1\\nlo 10.255.0.1/32\\nlo fd00:255::1/128\""), "{dot}");
    l.down();
}

#[test]
fn a_secondary_address_answers_and_is_named_but_the_node_goes_by_its_primary() {
    let _host = shared();
    let l = Lab::up(
        "secondary",
        r#"
[networks.lan]
subnet = "10.77.9.0/24"
subnet6 = "fd00:77:9::/64"
[nodes.web]
networks = { lan = ["10.77.9.10", "10.77.9.100", "fd00:77:9::10", "fd00:77:9::100"] }
[nodes.client]
networks = ["lan"]
"#,
    );
    let addrs = l.sh("web", "ip -br addr show eth0");
    for a in ["10.77.9.10/24", "10.77.9.100/24", "fd00:77:9::100/64"] {
        assert!(addrs.contains(a), "{a} on web's eth0: {addrs}");
    }
    let out = l.exec("client", &["ping", "-c1", "-W2", "10.77.9.100"]);
    assert!(out.status.success(), "the secondary address answers: {}", show(&out));
    let hosts = l.sh("client", "cat /etc/hosts");
    assert!(hosts.contains("10.77.9.10\tweb\n") && !hosts.contains("10.77.9.100\tweb\n"), "{hosts}");
    assert!(hosts.contains("10.77.9.100\tweb.lan web-eth0"), "{hosts}");
    let ps = text(&crate::support::lab(&["ps", &l.name]).stdout);
    assert!(ps.contains("eth0=10.77.9.100/24"), "{ps}");
    let web = node_json(&l.name, "web");
    let json = web["interfaces"][0]["addresses"].to_string();
    assert!(json.contains("10.77.9.100") && json.contains("fd00:77:9::100"), "{web}");
    let dot = text(&crate::support::lab(&["graph", &l.name, "--format", "dot"]).stdout);
    assert!(dot.contains("10.77.9.100/24"), "{dot}");
    l.down();
}

#[test]
fn stop_start_and_restart_keep_a_nodes_files_start_fresh_and_recreate_do_not() {
    let _host = shared();
    let l = Lab::up(
        "keep",
        r#"
[nodes.db]
command = ["sleep", "infinity"]
"#,
    );
    let write = |what: &str| l.sh("db", &format!("echo {what} > /var/lib/mine && rm /etc/hostname && echo done"));
    let read = || l.sh("db", "cat /var/lib/mine 2>&1; if test -e /etc/hostname; then echo hostname-back; fi");
    assert_eq!(write("one").trim(), "done");
    let ok = |args: &[&str]| {
        let out = crate::support::lab(args);
        assert!(out.status.success(), "lab {args:?}: {}", show(&out));
        text_of(&out)
    };
    ok(&["stop", &format!("{}/db", l.name)]);
    ok(&["start", &format!("{}/db", l.name)]);
    assert_eq!(read().trim(), "one", "stop and start keep what the node wrote, and what it removed");
    ok(&["restart", &format!("{}/db", l.name), "-t", "0"]);
    assert_eq!(read().trim(), "one", "restart keeps it too");
    // A node killed from the host (not stopped) comes back with its files as well.
    let init = node_json(&l.name, "db")["pid"].as_i64().expect("db's pid") as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(init), nix::sys::signal::Signal::SIGKILL).unwrap();
    // The monitor records the end at once; ps reads it.
    let exited = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        node_json(&l.name, "db")["state"] == "exited"
    });
    assert!(exited, "db exits when its init is killed");
    ok(&["start", &format!("{}/db", l.name)]);
    assert_eq!(read().trim(), "one", "a killed node keeps its layer");
    // A running node is not started fresh by mistake.
    let out = crate::support::lab(&["start", "--fresh", &format!("{}/db", l.name)]);
    assert!(!out.status.success() && text_of(&out).contains("running"), "{}", show(&out));
    assert!(ok(&["recreate", &format!("{}/db", l.name), "-t", "0"]).contains("recreated"));
    let fresh = read();
    assert!(fresh.contains("No such file") && fresh.contains("hostname-back"), "recreate starts clean: {fresh}");
    write("two");
    ok(&["stop", &format!("{}/db", l.name)]);
    ok(&["start", "--fresh", &format!("{}/db", l.name)]);
    assert!(read().contains("No such file"), "start --fresh starts clean");
    l.down();
}

#[test]
fn volumes_outlive_stop_start_and_recreate_go_with_down_unless_kept() {
    let _host = shared();
    let l = Lab::up(
        "volumes",
        r#"
[defaults]
volumes = ["scratch:/var/tmp"]
[nodes.db]
volumes = ["pgdata:/var/lib/pgdata", "conf:/etc/app:ro"]
[nodes.web]
"#,
    );
    let db = format!("{}/db", l.name);
    let ok = |args: &[&str]| {
        let out = crate::support::lab(args);
        assert!(out.status.success(), "lab {args:?}: {}", show(&out));
    };
    l.sh("db", "echo rows > /var/lib/pgdata/table && echo mine > /var/tmp/db-scratch");
    // Each node its own: web's scratch is not db's; a new volume has its path's mode in
    // the rootfs (the host's /var/tmp is 1777).
    assert_eq!(l.sh("web", "ls -A /var/tmp; stat -c %a /var/tmp"), "1777\n");
    let ro = l.exec("db", &["sh", "-c", "touch /etc/app/x"]);
    assert!(!ro.status.success() && text_of(&ro).contains("Read-only"), "{}", show(&ro));
    ok(&["stop", &db]);
    ok(&["start", &db]);
    assert_eq!(l.sh("db", "cat /var/lib/pgdata/table"), "rows\n", "a volume lasts across stop/start");
    ok(&["recreate", &db, "-t", "0"]);
    assert_eq!(l.sh("db", "cat /var/lib/pgdata/table /var/tmp/db-scratch"), "rows\nmine\n", "and recreate");
    // Kept past down, found again by the next up of the lab.
    let out = crate::support::lab(&["down", &l.name, "--keep-volumes"]);
    assert!(out.status.success(), "{}", show(&out));
    let kept = format!("/var/lib/lab/volumes/{}/db/pgdata/table", l.name);
    assert!(std::path::Path::new(&kept).exists(), "--keep-volumes keeps {kept}");
    // An `up` that fails rolls back the volumes it made, never those it found.
    let good = std::fs::read_to_string(&l.file).expect("the topology");
    let broken = format!("{good}[nodes.broken]\nvolumes = [\"junk:/var/junk\"]\nsetup = [\"exit 1\"]\n");
    std::fs::write(&l.file, broken).expect("the topology");
    let out = crate::support::lab(&["up", l.file.to_str().expect("utf-8"), "--name", &l.name]);
    assert!(!out.status.success(), "{}", show(&out));
    assert!(std::path::Path::new(&kept).exists(), "a failed up keeps the volumes it found");
    let junk = format!("/var/lib/lab/volumes/{}/broken/junk", l.name);
    assert!(!std::path::Path::new(&junk).exists(), "and removes those it made: {junk}");
    std::fs::write(&l.file, good).expect("the topology");
    let out = crate::support::lab(&["up", l.file.to_str().expect("utf-8"), "--name", &l.name]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(l.sh("db", "cat /var/lib/pgdata/table"), "rows\n", "the next up finds it");
    l.down();
}

#[test]
fn copies_of_a_nat_lab_share_its_subnet_each_serving_its_own_name_to_its_own_nodes_only() {
    let _host = shared();
    let upstream = crate::nat::Upstream::new();
    // One worksheet with NAT and fixed addresses; each copy's server says its lab's name,
    // from a folder of the copy's own (`{lab}` in the mount).
    let dir = tempfile::tempdir().expect("temp dir");
    let names: Vec<String> = ["alice", "bob", "carol"].iter().map(|who| unique(who)).collect();
    for n in &names {
        std::fs::create_dir(dir.path().join(n)).expect("a copy's folder");
        std::fs::write(dir.path().join(n).join("name"), n).expect("its name");
    }
    let probe = std::path::PathBuf::from(lab_bin()).with_file_name("lab-probe");
    let worksheet = format!(
        r#"
[networks.lan]
subnet = "10.77.31.0/24"
nat = true
[nodes.server]
networks = {{ lan = "10.77.31.10" }}
mounts = ["{probe}:/probe:ro", "{dir}/{{lab}}:/srv:ro"]
command = ["sh", "-c", "exec /probe serve 7000 \"$(cat /srv/name)\""]
[nodes.client]
networks = {{ lan = "10.77.31.20" }}
"#,
        probe = probe.display(),
        dir = dir.path().display()
    );
    let file = dir.path().join("worksheet.toml");
    std::fs::write(&file, worksheet).expect("topology");
    let copies: Vec<Lab> = names.iter().map(|n| Lab::up_file_named(n, &file)).collect();
    let outside = upstream.addr.to_string();
    for l in &copies {
        let read = "for i in 1 2 3 4 5; do exec 3<>/dev/tcp/10.77.31.10/7000 && exec cat <&3; sleep 0.2; done";
        let out = l.exec("client", &["bash", "-c", read]);
        assert_eq!(text(&out.stdout).trim(), l.name, "{}'s client reached another server: {}", l.name, show(&out));
        let ping = l.exec("client", &["ping", "-c1", "-W2", &outside]);
        assert!(ping.status.success(), "{}'s client cannot reach upstream through NAT:\n{}", l.name, show(&ping));
        let ps = text(&lab(&["ps", &l.name]).stdout);
        assert!(ps.contains("eth0=10.77.31.20/24"), "{ps}");
    }
    // The first copy's subnet is the host's to route; the others are behind namespaces of
    // their own, which the host reaches them through.
    let routes = text(&host("ip -4 route show 10.77.31.0/24").stdout);
    assert_eq!(routes.lines().count(), 1, "one host route for the subnet: {routes}");
    for l in &copies[1..] {
        let j = lab_json(&l.name);
        assert_eq!(j["networks"][0]["gateway_netns"], l.name.as_str(), "{j}");
        let via = host(&format!("ip netns exec {} ping -c1 -W2 10.77.31.10", l.name));
        assert!(via.status.success(), "{}", show(&via));
    }
    // An address only bob's server has is out of alice's and carol's reach; so is bob's
    // gateway's uplink, and his client does not get carol's name from her server's address
    // through the host.
    copies[1].sh("server", "ip addr add 10.77.31.99/24 dev eth0");
    assert!(copies[1].exec("client", &["ping", "-c1", "-W2", "10.77.31.99"]).status.success());
    let uplink = text(&host(&format!("ip -n {} -4 -o addr show dev uplink", copies[1].name)).stdout);
    let uplink = uplink.split_whitespace().nth(3).and_then(|a| a.split('/').next()).expect("bob's uplink address");
    for other in [&copies[0], &copies[2]] {
        for target in ["10.77.31.99", uplink] {
            let got = other.exec("client", &["ping", "-c1", "-W1", target]);
            assert!(!got.status.success(), "{} reached {target} of {}:\n{}", other.name, copies[1].name, show(&got));
        }
    }
    for l in copies {
        l.down();
    }
}

#[test]
fn copies_of_one_lab_share_fixed_subnets_and_addresses_and_never_reach_each_other() {
    let _host = shared();
    // One worksheet, three students: the same file, the same addresses, no NAT.
    let worksheet = format!(
        r#"
[networks.lan]
subnet = "10.77.30.0/24"
[nodes.server]
networks = {{ lan = "10.77.30.10" }}
command = ["/probe", "serve", "7000", "hello"]
{}
[nodes.client]
networks = {{ lan = "10.77.30.20" }}
"#,
        probe_mount()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("worksheet.toml");
    std::fs::write(&file, worksheet).expect("topology");
    let copies: Vec<Lab> = ["alice", "bob", "carol"].iter().map(|who| Lab::up_file(who, &file)).collect();
    let mac = |l: &Lab| l.sh("server", "cat /sys/class/net/eth0/address").trim().to_string();
    for l in &copies {
        // Each client reaches a server at the shared address over TCP, and it is its own
        // lab's: the one whose MAC address its neighbour table learnt.
        let read = "for i in 1 2 3 4 5; do exec 3<>/dev/tcp/10.77.30.10/7000 && exec cat <&3; sleep 0.2; done";
        let out = l.exec("client", &["bash", "-c", read]);
        assert_eq!(text(&out.stdout).trim(), "hello", "{}: {}", l.name, show(&out));
        let neigh = l.sh("client", "ip neigh show 10.77.30.10");
        assert!(neigh.contains(&mac(l)), "{}'s client talked to {neigh}, not its server {}", l.name, mac(l));
        let ps = text(&lab(&["ps", &l.name]).stdout);
        assert!(ps.contains("eth0=10.77.30.10/24"), "{ps}");
    }
    assert_ne!(mac(&copies[0]), mac(&copies[1]), "each copy's nodes are its own");
    // An address only bob's server has is out of alice's reach.
    copies[1].sh("server", "ip addr add 10.77.30.99/24 dev eth0");
    assert!(copies[1].exec("client", &["ping", "-c1", "-W2", "10.77.30.99"]).status.success());
    assert!(!copies[0].exec("client", &["ping", "-c1", "-W1", "10.77.30.99"]).status.success(), "alice reaches bob");
    for l in copies {
        l.down();
    }
}
