//! What a command-line tool is expected to do: completion, a man page, `lab version`, a clear
//! word without root, exit 2 for bad command lines, hints that fit, `exec -u`, `lab cp`
//! that stays inside the node, capture filters, and a graph that reads well.

use crate::support::*;
use std::process::{Command, Stdio};

/// Runs `lab` as nobody (uid and gid 65534, no groups).
fn as_nobody(args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", lab_bin()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("setpriv")
}

#[test]
fn completion_man_page_and_version_need_no_root_and_know_every_command() {
    let _host = shared();
    let commands = [
        "up",
        "exec",
        "cp",
        "ps",
        "inspect",
        "stats",
        "pause",
        "resume",
        "down",
        "impair",
        "link",
        "partition",
        "heal",
        "stop",
        "start",
        "restart",
        "graph",
        "capture",
        "logs",
        "completion",
        "man",
        "version",
    ];
    for shell in ["bash", "zsh", "fish"] {
        let out = as_nobody(&["completion", shell]);
        assert!(out.status.success(), "{shell}: {}", show(&out));
        for c in ["inspect", "restart", "capture"] {
            assert!(text(&out.stdout).contains(c), "{shell} completion knows {c}");
        }
    }
    let out = as_nobody(&["man"]);
    assert!(out.status.success(), "{}", show(&out));
    let page = text(&out.stdout);
    assert!(page.contains(".TH lab 1"), "{page}");
    for c in commands {
        assert!(page.contains(&format!(".SS \"lab {c}\"")), "the man page has lab {c}");
    }
    assert!(page.contains("\\fB\\-u, \\-\\-user\\fR") || page.contains("\\fB-u, --user\\fR"), "options too");
    if host("command -v groff").status.success() {
        let rendered = host(&format!("{} man | groff -man -Tutf8 2>&1 >/dev/null", lab_bin()));
        assert_eq!(text(&rendered.stdout), "", "groff reads it without a warning");
    }
    let out = as_nobody(&["version", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("version --json");
    assert_eq!(v["json_version"], 1);
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(text(&as_nobody(&["version"]).stdout).contains("cgroups:"));
}

#[test]
fn without_root_every_command_says_it_needs_root() {
    let _host = shared();
    let lab_ = Lab::up("noroot", "[nodes.a]\n");
    let a = format!("{}/a", lab_.name);
    let a_eth = format!("{a}:lo");
    let file = lab_.file.to_str().unwrap().to_string();
    let into = format!("{a}:/tmp/x");
    let commands: Vec<Vec<&str>> = vec![
        vec!["ps"],
        vec!["inspect", &lab_.name],
        vec!["stats"],
        vec!["logs", &a],
        vec!["exec", &a, "true"],
        vec!["cp", "/etc/hostname", &into],
        vec!["pause", &a],
        vec!["stop", &a],
        vec!["restart", &a],
        vec!["impair", &a_eth, "--rate", "1mbit"],
        vec!["capture", &a_eth, "-w", "/tmp/never.pcap"],
        vec!["graph", &lab_.name],
        vec!["up", &file],
        vec!["down", &lab_.name],
    ];
    for args in &commands {
        let out = as_nobody(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "lab {}: {}", args.join(" "), show(&out));
        assert!(err.contains("lab needs root") && err.contains("sudo"), "lab {}: {err}", args.join(" "));
        assert!(!err.contains("Permission denied") && !text(&out.stdout).contains("gone"), "{err}");
    }
    // Nothing was touched.
    assert_eq!(lab_.sh("a", "echo still here"), "still here\n");
    // Drawing a file needs no root.
    assert!(as_nobody(&["graph", &repo().join("topologies/three-node.toml").to_string_lossy()]).status.success());
    lab_.down();
}

#[test]
fn bad_command_lines_exit_2_and_hints_fit_the_error() {
    let _host = shared();
    let three = repo().join("topologies/three-node.toml");
    let three = three.to_str().unwrap();
    let usage: Vec<Vec<&str>> = vec![
        vec!["exec"],
        vec!["up", three, "--name", "Bad_Name"],
        vec!["stop", "x", "-t", "soon"],
        vec!["logs", "--since", "soon", "x"],
        vec!["capture", "no-interface-here"],
        vec!["cp", "a:relative", "/tmp"],
        vec!["exec", "-l", "one", "two/x", "true"],
        vec!["frobnicate"],
    ];
    for args in &usage {
        let out = lab(args);
        assert_eq!(out.status.code(), Some(2), "lab {}: {}", args.join(" "), show(&out));
        assert!(!text(&out.stderr).contains("everything made so far"), "{}", show(&out));
    }
    // A topology with no nodes is an error in the file, not an empty lab.
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "name = \"t-empty\"\n[networks.lan]\n").unwrap();
    let out = lab(&["up", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(text(&out.stderr).contains("the topology has no nodes"), "{}", show(&out));
    // Refused before anything is made: no word of removing it.
    let (l, out) = Lab::try_up("nothingmade", "[nodes.a]\nrootfs = \"/no/such/rootfs\"\n");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(!text(&out.stderr).contains("everything made so far"), "{}", show(&out));
    drop(l);
    // An exec into a node whose command ended points at its log and at start.
    let l = Lab::up("ended", "[nodes.a]\ncommand = [\"true\"]\n");
    let json = loop {
        let j = node_json(&l.name, "a");
        if j["state"] == "exited" {
            break j;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(json["exit"]["code"], 0);
    let out = l.exec("a", &["true"]);
    assert_eq!(out.status.code(), Some(125), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("lab logs {}/a", l.name)) && err.contains(&format!("lab start {}/a", l.name)),
        "{err}"
    );
    l.down();
}

#[test]
fn exec_runs_as_the_nodes_user_by_default_or_as_asked_with_its_groups() {
    let _host = shared();
    let l = Lab::up("user", "[nodes.a]\nuser = \"nobody\"\ncommand = [\"sleep\", \"infinity\"]\n");
    // A group that lists nobody, added by the node's root.
    let out = l.exec("a", &["-u", "root"]);
    assert_ne!(out.status.code(), Some(0), "-u takes a value, before the node: {}", show(&out));
    let add = crate::support::lab(&[
        "exec",
        "-u",
        "0",
        &format!("{}/a", l.name),
        "sh",
        "-c",
        "echo 'lab-extra:x:4242:nobody' >> /etc/group",
    ]);
    assert!(add.status.success(), "{}", show(&add));
    let id = |user: Option<&str>| {
        let node = format!("{}/a", l.name);
        let mut args = vec!["exec"];
        if let Some(u) = user {
            args.extend(["-u", u]);
        }
        args.extend([node.as_str(), "sh", "-c", "echo $(id -u) $(id -G) $HOME; grep CapEff /proc/self/status"]);
        let out = crate::support::lab(&args);
        assert!(out.status.success(), "{}", show(&out));
        text(&out.stdout)
    };
    let default = id(None);
    assert!(default.starts_with("65534 65534 4242 "), "as the node's user, with its groups: {default}");
    assert!(default.contains("CapEff:\t0000000000000000"), "a non-root user keeps no capabilities: {default}");
    let root = id(Some("root"));
    assert!(root.starts_with("0 0 /root"), "{root}");
    let daemon = id(Some("daemon:nogroup"));
    assert!(daemon.starts_with("1 65534"), "{daemon}");
    let out = crate::support::lab(&["exec", "-u", "no-such-user", &format!("{}/a", l.name), "true"]);
    assert_eq!(out.status.code(), Some(126), "{}", show(&out));
    assert!(text(&out.stderr).contains("no-such-user"), "{}", show(&out));
    l.down();
}

#[test]
fn cp_copies_trees_both_ways_and_never_leaves_the_node() {
    let _host = shared();
    let l = Lab::up("cp", "[nodes.r1]\ncommand = [\"sleep\", \"infinity\"]\n");
    let node = |p: &str| format!("{}/r1:{p}", l.name);
    // A host file the node must never reach, by any path it makes.
    let secret_dir = tempfile::tempdir().unwrap();
    let secret = secret_dir.path().join("host-secret");
    std::fs::write(&secret, "host only\n").unwrap();
    l.sh(
        "r1",
        &format!(
            "mkdir -p /etc/frr/sub && echo 'router ospf' > /etc/frr/frr.conf && echo deep > /etc/frr/sub/x && \
             cp /bin/true /etc/frr/suid && chmod 4755 /etc/frr/suid && ln -s frr.conf /etc/frr/link && \
             ln -s / /tmp/root && ln -s {} /tmp/abs",
            secret.display()
        ),
    );
    let out_dir = tempfile::tempdir().unwrap();
    let out = crate::support::lab(&["cp", &node("/etc/frr"), out_dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    let got = out_dir.path().join("frr");
    assert_eq!(std::fs::read_to_string(got.join("frr.conf")).unwrap(), "router ospf\n");
    assert_eq!(std::fs::read_to_string(got.join("sub/x")).unwrap(), "deep\n");
    assert_eq!(std::fs::read_link(got.join("link")).unwrap().to_str(), Some("frr.conf"), "a symlink stays one");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(got.join("suid")).unwrap().permissions());
    assert_eq!(mode & 0o7777, 0o755, "no set-user-ID file of the node's lands on the host");
    // Through the node's symlinks: its own root, never the host's.
    let through = out_dir.path().join("through");
    let out = crate::support::lab(&["cp", &node(&format!("/tmp/root{}", secret.display())), through.to_str().unwrap()]);
    assert!(!out.status.success() && !through.exists(), "the host's file came out: {}", show(&out));
    let abs = out_dir.path().join("abs");
    let out = crate::support::lab(&["cp", &node("/tmp/abs"), abs.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(std::fs::symlink_metadata(&abs).unwrap().file_type().is_symlink(), "copied as the link it is");
    // In: back again, owned by the node's root, and through a node symlink into its own tree.
    std::fs::write(got.join("frr.conf"), "router bgp 65001\n").unwrap();
    let out = crate::support::lab(&["cp", got.to_str().unwrap(), &node("/srv")]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        l.sh("r1", "cat /srv/frr/frr.conf /srv/frr/sub/x; stat -c '%u:%g' /srv/frr/frr.conf"),
        "router bgp 65001\ndeep\n0:0\n"
    );
    let planted = secret_dir.path().join("planted");
    let out = crate::support::lab(&["cp", secret.to_str().unwrap(), &node(&format!("/tmp/root{}", planted.display()))]);
    assert!(!planted.exists(), "a copy into the node landed on the host: {}", show(&out));
    l.down();
}

#[test]
fn capture_takes_a_tcpdump_filter_and_tells_the_count_when_stopped() {
    let _host = shared();
    let l = Lab::up("filter", "[networks.lan]\n[nodes.a]\nnetworks = [\"lan\"]\n[nodes.b]\nnetworks = [\"lan\"]\n");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("icmp.pcap");
    let b = format!("{}/b:eth0", l.name);
    let capture = Command::new(lab_bin())
        .args(["capture", &b, "-f", "icmp[icmptype] == icmp-echo", "-c", "5", "-w", file.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // ARP and replies go by too; only the 5 requests are kept.
    let ping = l.exec("a", &["ping", "-c", "8", "-i", "0.1", "b"]);
    assert!(ping.status.success(), "{}", show(&ping));
    let out = capture.wait_with_output().unwrap();
    assert!(out.status.success() && text(&out.stderr).contains("5 packets captured"), "{}", show(&out));
    let pcap = std::fs::read(&file).unwrap();
    let frames = crate::netem::frames(&pcap);
    assert_eq!(frames.len(), 5);
    for f in frames {
        assert!(f[12..14] == [0x08, 0x00] && f[23] == 1 && f[34] == 8, "an ICMP echo request: {f:?}");
    }
    // Ctrl-C stops it and it still says how many.
    let file2 = dir.path().join("all.pcap");
    let mut capture = Command::new(lab_bin())
        .args(["capture", &b, "-f", "arp or icmp", "-w", file2.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut started = [0u8; 9];
    std::io::Read::read_exact(capture.stderr.as_mut().unwrap(), &mut started).unwrap();
    assert!(l.exec("a", &["ping", "-c", "2", "-i", "0.1", "b"]).status.success());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(capture.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let out = capture.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let said = text(&out.stderr);
    let n: usize = said
        .lines()
        .find_map(|l| l.strip_suffix(" packets captured")?.parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    assert!(n >= 4 && crate::netem::frames(&std::fs::read(&file2).unwrap()).len() == n, "{said}");
    // A bad filter is a bad command line, and leaves no file.
    let file3 = dir.path().join("bad.pcap");
    let out = crate::support::lab(&["capture", &b, "-f", "icmp and and", "-w", file3.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(text(&out.stderr).contains("capture filter `icmp and and`"), "{}", show(&out));
    assert!(!file3.exists());
    l.down();
}

#[test]
fn the_graph_puts_routers_between_networks_shows_faults_and_no_labels_overlap() {
    let _host = shared();
    if !host("command -v dot").status.success() {
        panic!("graphviz's dot is needed (scripts/install-deps installs it)");
    }
    let l = Lab::up(
        "graph",
        r#"
[networks.left]
[networks.right]
ipv6 = true
[nodes.h1]
networks = ["left"]
[nodes.h2]
networks = ["left"]
[nodes.r]
networks = ["left", "right"]
[nodes.h3]
networks = ["right"]
[nodes.h4]
networks = ["right"]
[[links]]
endpoints = ["h3", "h4"]
[[links]]
endpoints = ["h1", "r"]
"#,
    );
    for args in [
        vec!["impair".to_string(), format!("{}/h2:eth0", l.name), "--rate".into(), "5mbit".into()],
        vec!["link".to_string(), format!("{}/h4:eth1", l.name), "down".into()],
        vec!["partition".to_string(), format!("{}/h1", l.name), "--from".into(), "h3".into()],
    ] {
        let out = crate::support::lab(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{}", show(&out));
    }
    let dot = text(&crate::support::lab(&["graph", &l.name, "--format", "dot"]).stdout);
    assert!(dot.contains("rate 5mbit") && dot.contains("DOWN") && dot.contains("partitioned"), "{dot}");
    let svg = text(&crate::support::lab(&["graph", &l.name, "--format", "svg"]).stdout);
    assert!(svg.contains("#d00000") && svg.contains("partitioned"), "faults drawn in red");
    // Laid out by Graphviz itself: positions and every label's box.
    let json = host(&format!("{} graph {} --format dot | dot -Tjson", lab_bin(), l.name));
    let j: serde_json::Value = serde_json::from_slice(&json.stdout).expect("dot -Tjson");
    let x = |name: &str| -> f64 {
        let o = j["objects"].as_array().unwrap().iter().find(|o| o["name"] == name).unwrap();
        o["pos"].as_str().unwrap().split(',').next().unwrap().parse().unwrap()
    };
    assert!(x("net_left") < x("node_r") && x("node_r") < x("net_right"), "the router sits between its networks");
    let mut boxes = Vec::new();
    for e in j["edges"].as_array().unwrap() {
        for key in ["_ldraw_", "_tldraw_", "_hldraw_"] {
            let mut size = 10.0;
            for op in e[key].as_array().into_iter().flatten() {
                if op["op"] == "F" {
                    size = op["size"].as_f64().unwrap();
                }
                if op["op"] == "T" {
                    let (px, py, w) =
                        (op["pt"][0].as_f64().unwrap(), op["pt"][1].as_f64().unwrap(), op["width"].as_f64().unwrap());
                    boxes.push((px - w / 2.0, py, px + w / 2.0, py + size, op["text"].as_str().unwrap().to_string()));
                }
            }
        }
    }
    assert!(boxes.len() > 10, "every edge is labelled: {boxes:?}");
    for (i, a) in boxes.iter().enumerate() {
        for b in &boxes[i + 1..] {
            let overlap = a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3;
            assert!(!overlap, "labels `{}` and `{}` overlap", a.4, b.4);
        }
    }
    l.down();
}

#[test]
fn down_succeeds_after_a_lab_exec_was_killed_with_sigkill() {
    let _host = shared();
    let l = Lab::up("killedexec", "[nodes.a]\n");
    // The join process outlives its `lab exec`, then dies with the node: a zombie that only
    // the host's init reaps (on cgroup v1 it keeps the node's cgroup busy until then).
    let mut exec = Command::new(lab_bin())
        .args(["exec", &format!("{}/a", l.name), "sleep", "600"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let in_node = || l.sh("a", "ps -eo comm= | grep -c '^sleep$' || true").trim().to_string();
    while in_node() != "1" {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    exec.kill().unwrap();
    exec.wait().unwrap();
    l.down();
}

/// Runs `cmd` (a shell command line) on a pseudo-terminal, as a user at a terminal would;
/// what the terminal showed.
fn on_a_terminal(cmd: &str, env: &[(&str, &str)]) -> String {
    let mut c = Command::new("script");
    c.args(["-qefc", cmd, "/dev/null"]).stdin(Stdio::null()).env_remove("NO_COLOR");
    for (k, v) in env {
        c.env(k, v);
    }
    text(&c.output().expect("script (util-linux)").stdout)
}

#[test]
fn colour_and_a_live_progress_line_on_a_terminal_only() {
    let _host = shared();
    let name = unique("tty");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tty.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"{name}\"\n[nodes.db]\ncommand = \"sleep 0.6; touch /tmp/ok; exec sleep infinity\"\n\
             healthcheck = {{ cmd = \"test -e /tmp/ok\", interval = \"100ms\", retries = 50 }}\n\
             [nodes.app]\ndepends_on = [\"db\"]\n"
        ),
    )
    .unwrap();
    let _guard = Lab::adopt(&name, &file, tempfile::tempdir().unwrap());
    let up = on_a_terminal(&format!("{} up {}", lab_bin(), file.display()), &[]);
    // One line, rewritten in place (what waits for what, each failed check), then cleared.
    assert!(up.contains("\r\x1b[Kapp waiting for db"), "{up:?}");
    assert!(up.contains("\r\x1b[Kdb: healthy after"), "{up:?}");
    assert!(up.contains("\r\x1b[K") && !up.contains("lab: app waiting"), "no log lines on a terminal: {up:?}");
    assert!(up.contains("\x1b[32mrunning\x1b[0m"), "states in colour on a terminal: {up:?}");
    let plain = on_a_terminal(&format!("{} ps {name}", lab_bin()), &[("NO_COLOR", "1")]);
    assert!(plain.contains("running") && !plain.contains('\x1b'), "NO_COLOR: {plain:?}");
    let piped = lab(&["ps", &name]);
    assert!(!text(&piped.stdout).contains('\x1b'), "piped: no colour");
    let err = on_a_terminal(&format!("{} exec {name}/nope true", lab_bin()), &[]);
    assert!(err.contains("\x1b[31merror\x1b[0m"), "errors in red on a terminal: {err:?}");
}
