//! The escape battery: from inside a node with default settings, each of these must fail,
//! checked by errno or by its effect on the host. A privileged, unconfined node runs the same
//! probes and gets past the filter, which shows that the battery can fail.

use crate::support::*;

fn run(lab: &Lab, node: &str, args: &[&str]) -> String {
    let mut all = vec!["/probe"];
    all.extend_from_slice(args);
    let out = lab.exec(node, &all);
    assert!(out.status.success(), "probe {args:?} could not run:\n{}", show(&out));
    text(&out.stdout).trim().to_string()
}

/// (probe arguments, what a default node must get).
const DENIED: &[(&[&str], &str)] = &[
    (&["mount"], "EPERM"),
    (&["umount-proc"], "EPERM"),
    (&["unshare-net"], "EPERM"),
    (&["unshare-user"], "EPERM"),
    (&["setns"], "EPERM"),
    (&["pivot-root"], "EPERM"),
    (&["kexec-load"], "EPERM"),
    (&["finit-module"], "EPERM"),
    (&["delete-module"], "EPERM"),
    (&["bpf"], "EPERM"),
    (&["perf-event-open"], "EPERM"),
    (&["open-by-handle-at"], "EPERM"),
    (&["keyctl"], "EPERM"),
    (&["request-key"], "EPERM"),
    (&["reboot"], "EPERM"),
    (&["swapon"], "EPERM"),
    (&["userfaultfd"], "EPERM"),
    (&["clone-newns"], "EPERM"),
    (&["clone3"], "ENOSYS"),
    (&["ptrace-init"], "EPERM"),
    (&["mknod-block"], "EPERM"),
    (&["sethostname"], "EPERM"),
    // In its user namespace the file belongs to the host's root: refused before the
    // read-only mount would refuse it.
    (&["open-write", "/proc/sys/kernel/hostname"], "EACCES"),
    (&["open-write", "/sys/class/net/lo/mtu"], "EROFS"),
    // The lab binary on the host, through the init's exe (a sealed copy, and out of reach).
    (&["open-write", "/proc/1/exe"], "EACCES"),
    // ... and through its own exe: a running binary cannot be opened for writing (or, where
    // the probe's bind mount cannot be idmapped, as on 9p in scripts/vm-test, it is not the
    // node's to write).
    (&["open-write", "/proc/self/exe"], "ETXTBSY|EACCES"),
    // Masked: they read as empty.
    (&["read", "/proc/keys"], "0 bytes"),
    (&["read", "/proc/timer_list"], "0 bytes"),
];

fn sha(path: &str) -> String {
    text(&host(&format!("sha256sum {path}")).stdout)
}

#[test]
fn a_default_node_cannot_escape() {
    let _host = shared();
    let lab_path = std::fs::canonicalize(lab_bin()).unwrap();
    let lab_sum = sha(lab_path.to_str().unwrap());
    let host_name = text(&host("hostname").stdout);
    let lab = Lab::up("escape", &format!("[nodes.a]\ncommand = [\"sleep\", \"infinity\"]\n{}", probe_mount()));
    let mut failures = Vec::new();
    for (args, want) in DENIED {
        let got = run(&lab, "a", args);
        if !want.split('|').any(|w| w == got) {
            failures.push(format!("{args:?}: expected {want}, got {got}"));
        }
    }
    // Where this kernel has them: /proc/kcore reads as empty, /proc/sysrq-trigger is read-only.
    // (/proc/sysrq-trigger belongs to the host's root: in the node's user namespace its
    // permission check refuses before the read-only mount does.)
    for (args, want) in [(["read", "/proc/kcore"], "0 bytes"), (["open-write", "/proc/sysrq-trigger"], "EACCES|EROFS")]
    {
        if std::path::Path::new(args[1]).exists() {
            let got = run(&lab, "a", &args);
            if !want.split('|').any(|w| w == got) {
                failures.push(format!("{args:?}: expected {want}, got {got}"));
            }
        } else {
            eprintln!("skipped {args:?}: this kernel has no {} (nothing to reach)", args[1]);
        }
    }
    // chroot is allowed (as in Docker); climbing out of it is not possible.
    let state = format!("/run/lab/{}/state.json", lab.name);
    let got = run(&lab, "a", &["chroot-escape", &state]);
    if got != "contained" {
        failures.push(format!("chroot escape: {got}"));
    }
    // Host processes are invisible and out of reach.
    let me = std::process::id().to_string();
    let got = run(&lab, "a", &["kill", &me]);
    if got != "ESRCH" {
        failures.push(format!("kill of the host pid {me}: {got}"));
    }
    // No host fd reaches the node, and its cwd is the node's.
    let fds = run(&lab, "a", &["fds"]);
    for fd in fds.split_whitespace() {
        let target = fd.split_once('=').map(|(_, t)| t).unwrap_or("");
        let ok = target == "/dev/null" || target.starts_with("pipe:") || target.starts_with("/proc/");
        if !ok {
            failures.push(format!("fd reaching {target}: {fds}"));
        }
    }
    let cwd = run(&lab, "a", &["cwd"]);
    if cwd != "/" {
        failures.push(format!("cwd {cwd}"));
    }
    // No process in the node runs the host's lab binary.
    let exes = lab.sh("a", "for p in /proc/[0-9]*; do readlink $p/exe; done 2>/dev/null; true");
    if exes.lines().any(|e| e.contains("target/") && e.ends_with("/lab")) {
        failures.push(format!("a node process runs the host's lab binary: {exes}"));
    }
    lab.down();
    assert_eq!(sha(lab_path.to_str().unwrap()), lab_sum, "the lab binary on the host changed");
    assert_eq!(text(&host("hostname").stdout), host_name, "the host's name changed");
    assert!(failures.is_empty(), "escapes from a default node:\n{}", failures.join("\n"));
}

#[test]
fn a_privileged_unconfined_node_gets_past_the_same_checks() {
    let _host = shared();
    let host_name = text(&host("hostname").stdout);
    let lab =
        Lab::up("unconfined", &format!("[nodes.p]\nprivileged = true\nseccomp = \"unconfined\"\n{}", probe_mount()));
    // Every capability lab itself has (this test runs with the same set as lab).
    let caps = lab.sh("p", "grep CapEff /proc/self/status");
    let ours = std::fs::read_to_string("/proc/self/status").unwrap();
    let ours = ours.lines().find(|l| l.starts_with("CapEff")).unwrap().to_string();
    assert_eq!(caps.trim(), ours.trim(), "a privileged node has every capability lab has");
    assert!(lab.sh("p", "grep -E 'NoNewPrivs|Seccomp:' /proc/self/status").contains("NoNewPrivs:\t0"));
    let mut still_denied = Vec::new();
    for (args, denied) in DENIED {
        // Reading masked files and opening the init's exe are not seccomp's doing.
        if args[0] == "read" || args.get(1).is_some_and(|p| p.ends_with("/exe")) {
            continue;
        }
        let got = run(&lab, "p", args);
        if denied.split('|').any(|d| d == got) {
            still_denied.push(format!("{args:?}: {got}"));
        }
    }
    lab.down();
    assert_eq!(text(&host("hostname").stdout), host_name, "the host's name changed");
    assert!(still_denied.is_empty(), "privileged + unconfined still denied:\n{}", still_denied.join("\n"));
}

/// What the probe reports of a process no terminal reaches.
const NO_TERMINAL: &str = "fd0=notty fd1=notty fd2=notty devtty=ENXIO tiocsti=none";

#[test]
fn lab_exec_never_hands_the_callers_terminal_to_a_node() {
    let _host = shared();
    let probe = std::path::PathBuf::from(lab_bin()).with_file_name("lab-probe");
    let probe = probe.to_str().unwrap();
    // Control: on the host, the probe sees the terminal it runs on, so it can tell.
    let (code, seen) = on_terminal(&[probe, "tty"], b"");
    assert_eq!(code, Some(0), "{seen}");
    // (Its TIOCSTI pushed a NUL into the terminal, which echoes it as ^@.)
    assert!(seen.contains("fd0=tty fd1=tty fd2=tty devtty=ok"), "the probe detects a terminal: {seen}");

    let lab = Lab::up("tty", &format!("[nodes.a]\n{}", probe_mount()));
    // From a terminal, without -t: pipes, no controlling terminal, a session of its own.
    let (code, seen) = on_terminal(&[lab_bin(), "exec", "--lab", &lab.name, "a", "/probe", "tty"], b"");
    // (The probe is the command: it leads the session lab exec made for it.)
    assert_eq!((code, seen.trim()), (Some(0), format!("{NO_TERMINAL} session=own").as_str()), "exec without -t");
    // With -i, what is typed reaches the command through a pipe, and it ends with ^D.
    let script = "read line; echo got:$line; cat >/dev/null; /probe tty";
    let (code, seen) =
        on_terminal(&[lab_bin(), "exec", "-i", "--lab", &lab.name, "a", "sh", "-c", script], b"hello\n\x04");
    assert_eq!(code, Some(0), "{seen}");
    assert!(seen.contains("got:hello") && seen.contains(NO_TERMINAL), "exec -i: {seen}");
    // Files and pipes pass straight through.
    let out = lab.exec("a", &["/probe", "tty"]);
    assert_eq!(text(&out.stdout).trim(), format!("{NO_TERMINAL} session=own"));
    // With -t, the command's terminal is a pty of the node's own (what it pushes into it
    // stays there).
    let (code, seen) =
        on_terminal(&[lab_bin(), "exec", "-t", "--lab", &lab.name, "a", "sh", "-c", "tty; /probe tty"], b"");
    assert_eq!(code, Some(0), "{seen}");
    assert!(seen.contains("/dev/pts/0") && seen.contains("fd0=tty fd1=tty fd2=tty devtty=ok"), "exec -t: {seen}");
    lab.down();
}

#[test]
fn nothing_in_a_node_can_signal_a_host_process_group() {
    let _host = shared();
    // Each shell script runs in a session of its own (setsid), so that a failure here could
    // only kill the script, never the test.
    // Control: a command in the script's process group that signals it kills the script.
    let out = host("setsid -w sh -c 'sh -c \"kill -TERM 0\"; echo survived'");
    assert!(!text(&out.stdout).contains("survived"), "control: kill 0 reaches the caller's group: {}", show(&out));

    let lab = Lab::up("pgrp", "[nodes.a]\n[nodes.b]\ncommand = \"sleep 0.5; kill -KILL 0; sleep 10\"\n");
    let script = format!(
        "setsid -w sh -c '{} exec --lab {} a sh -c \"kill -TERM 0; kill -KILL -1\"; echo survived'",
        lab_bin(),
        lab.name
    );
    let out = host(&script);
    assert!(
        text(&out.stdout).contains("survived"),
        "a node's kill 0 reached the script that ran lab exec: {}",
        show(&out)
    );
    // Node b's command kills its whole process group: itself (its init exits 128 + 9, as a
    // shell would say), and not its monitor, which records how it ended.
    let follow = lab_cmd(&["logs", "--lab", &lab.name, "-f", "b"]);
    assert!(text(&follow.stderr).trim_end().ends_with("lab: node exited: exit code 137"), "{}", show(&follow));
    assert_eq!(node_json(&lab.name, "b")["state"], "exited", "{}", node_json(&lab.name, "b"));
    // Control: a node whose monitor is killed has no record of its end; lab ps says `gone`.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("/run/lab/{}/state.json", lab.name)).unwrap()).unwrap();
    let a = state["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "a").unwrap().clone();
    kill_and_wait(a["monitor"]["pid"].as_i64().unwrap() as i32);
    kill_and_wait(a["init"]["pid"].as_i64().unwrap() as i32);
    assert_eq!(node_json(&lab.name, "a")["state"], "gone", "{}", node_json(&lab.name, "a"));
    lab.down();
}

fn lab_cmd(args: &[&str]) -> std::process::Output {
    crate::support::lab(args)
}

/// The network namespace ids node `node` holds for other namespaces (its veth peers').
fn netnsids(lab: &Lab, node: &str) -> Vec<String> {
    let links = lab.sh(node, "ip -d -o link show");
    let mut ids: Vec<String> = links
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "link-netnsid")
        .map(|w| w[1].to_string())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

#[test]
fn a_default_node_cannot_reach_any_interface_outside_itself_by_nsid() {
    let _host = shared();
    let other = Lab::up("nsidother", "[networks.lan]\n[nodes.x]\nnetworks = [\"lan\"]\n");
    let lab = Lab::up(
        "nsid",
        &format!(
            "[defaults]\n{}[networks.lan]\n[nodes.a]\nnetworks = [\"lan\"]\n[nodes.b]\nnetworks = [\"lan\"]\n\
             [nodes.p]\nnetworks = [\"lan\"]\nprivileged = true\nseccomp = \"unconfined\"\n\
             [[links]]\nendpoints = [\"a:eth1\", \"b:eth1\"]\n",
            probe_mount()
        ),
    );
    // The node's veth peers live elsewhere, so it holds ids for those namespaces.
    let ids = netnsids(&lab, "a");
    assert!(!ids.is_empty(), "node a has a veth whose peer is outside it");
    // Control: a privileged node (the host's user namespace) lists, deletes and creates
    // interfaces in the namespace behind the same kind of id: the probe can tell.
    for id in netnsids(&lab, "p") {
        let got = run(&lab, "p", &["netnsid", &id]);
        assert!(got.starts_with("list=") && got.ends_with(" del=ENODEV add=ok"), "control, nsid {id}: {got}");
        assert_ne!(got, "list=0 del=ENODEV add=ok");
    }
    // A default node: its NET_ADMIN stops at its own namespaces, whatever the id (and ids
    // that name nothing are refused too).
    for id in ids.iter().map(String::as_str).chain(["0", "1", "2", "3"]) {
        let got = run(&lab, "a", &["netnsid", id]);
        let denied =
            got.split_whitespace().all(|w| w.ends_with("=EACCES") || w.ends_with("=EPERM") || w.ends_with("=EINVAL"));
        assert!(denied, "node a through nsid {id}: {got}");
    }
    // What it sees of interfaces: its own.
    let links = lab.sh("a", &format!("ip -o link show | awk -F': ' '{{print $2}}' | sed 's/@.*//' | {NOT_FALLBACK}"));
    assert_eq!(links.lines().collect::<Vec<_>>(), ["lo", "eth0", "eth1"], "{links}");
    lab.down();
    other.down();
}

#[test]
fn a_default_node_sees_the_host_system_but_none_of_its_secrets() {
    let _host = shared();
    let tag = unique("secret");
    // Things of the host's that no node may see, made by this test and removed again.
    let planted = [
        format!("/root/.{tag}"),
        format!("/home/{tag}"),
        format!("/var/lib/{tag}"),
        format!("/var/log/{tag}.log"),
        format!("/etc/ssl/private/{tag}.key"),
        format!("/etc/ssh/ssh_host_{tag}_key"),
    ];
    struct Planted<'a>(&'a [String]);
    impl Drop for Planted<'_> {
        fn drop(&mut self) {
            for p in self.0 {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    let _planted = Planted(&planted);
    for p in &planted {
        std::fs::create_dir_all(std::path::Path::new(p).parent().unwrap()).unwrap();
        std::fs::write(p, "host secret\n").unwrap();
    }
    let lab = Lab::up(
        "secrets",
        &format!(
            "[nodes.a]\n[nodes.r]\nreveal = [\"/root\", \"/home\", \"/var\", \"/etc/shadow\", \"/etc/ssh\", \"/etc/ssl\"]\n{}",
            probe_mount()
        ),
    );
    for p in &planted {
        let seen = lab.exec("a", &["cat", p]);
        assert!(!seen.status.success(), "a default node reads the host's {p}:\n{}", show(&seen));
        // Control: revealed, the same files are there.
        assert_eq!(lab.sh("r", &format!("cat {p}")), "host secret\n", "revealed {p}");
    }
    // Locked copies of the password files: every account there, no hash.
    let shadow = lab.sh("a", "cat /etc/shadow");
    assert!(shadow.starts_with("root:!:") && shadow.lines().all(|l| l.split(':').nth(1) == Some("!")), "{shadow}");
    let host_shadow = std::fs::read_to_string("/etc/shadow").unwrap();
    assert_eq!(shadow.lines().count(), host_shadow.lines().count());
    assert_eq!(lab.sh("r", "head -1 /etc/shadow"), host_shadow.lines().next().unwrap().to_string() + "\n");
    assert!(lab.sh("a", "cut -d: -f2 /etc/gshadow | sort -u").trim() == "!");
    // Empty /root and /home, a fresh /var that works, the host's system as it is.
    assert_eq!(lab.sh("a", "ls -A /root /home | grep -v : | grep -c . || true"), "0\n");
    assert_eq!(lab.sh("a", "stat -c %a /root"), "700\n");
    lab.sh("a", "echo ok > /var/tmp/x && echo ok > /var/log/x && test -d /var/lib && test -L /var/run");
    assert_eq!(lab.sh("a", "readlink /var/run; ls -ld /run/lock | cut -c1-10"), "/run\ndrwxrwxrwt\n");
    assert_eq!(lab.sh("a", "ls /var/lib | wc -l"), "0\n");
    assert!(lab.sh("a", "cat /etc/os-release").contains("ID="));
    assert_eq!(lab.sh("a", "stat -c %u:%g /usr/bin/env /etc/passwd"), "0:0\n0:0\n");
    lab.down();
}

#[test]
fn host_files_keep_their_owners_in_a_node_and_mode_0750_still_works() {
    let _host = shared();
    // Like /etc/frr on a host with FRR: frr:frr 0750. Uids 100 and 101 are made up here.
    let dir = format!("/etc/{}", unique("frrlike"));
    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _gone = Gone(dir.clone());
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(format!("{dir}/daemons"), "zebra=yes\n").unwrap();
    for p in [dir.clone(), format!("{dir}/daemons")] {
        std::os::unix::fs::chown(&p, Some(100), Some(101)).unwrap();
    }
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
    let lab = Lab::up("owners", "[nodes.a]\n");
    assert_eq!(lab.sh("a", &format!("stat -c '%u:%g %a' {dir}")), "100:101 750\n");
    assert_eq!(
        lab.sh("a", &format!("setpriv --reuid 100 --regid 101 --clear-groups cat {dir}/daemons")),
        "zebra=yes\n"
    );
    let other = lab.exec(
        "a",
        &["setpriv", "--reuid", "102", "--regid", "102", "--clear-groups", "cat", &format!("{dir}/daemons")],
    );
    assert!(!other.status.success(), "another user reads a 0750 directory:\n{}", show(&other));
    // Root of the node is root of its files: it reads them, and its writes stay in the node.
    assert_eq!(
        lab.sh("a", &format!("cat {dir}/daemons && echo ospfd=yes >> {dir}/daemons && tail -1 {dir}/daemons")),
        "zebra=yes\nospfd=yes\n"
    );
    assert_eq!(std::fs::read_to_string(format!("{dir}/daemons")).unwrap(), "zebra=yes\n");
    lab.down();
}

#[test]
fn each_node_has_a_time_namespace_and_thermal_counters_are_masked() {
    let _host = shared();
    let lab = Lab::up("timens", "[nodes.a]\n[nodes.b]\n");
    let host_ns = std::fs::read_link("/proc/self/ns/time").unwrap().display().to_string();
    let (a, b) = (lab.sh("a", "readlink /proc/self/ns/time"), lab.sh("b", "readlink /proc/self/ns/time"));
    // Control: the check tells namespaces apart (this process is in the host's).
    assert!(host_ns.starts_with("time:["), "{host_ns}");
    assert_ne!(a.trim(), host_ns, "node a is in the host's time namespace");
    assert_ne!(a.trim(), b.trim(), "nodes share a time namespace");
    let throttle = "/sys/devices/system/cpu/cpu0/thermal_throttle";
    if std::path::Path::new(throttle).exists() {
        assert_eq!(lab.sh("a", &format!("ls -A {throttle} | wc -l")), "0\n", "{throttle} is masked");
    } else {
        eprintln!("skipped the thermal_throttle mask: this machine has no {throttle}");
    }
    lab.down();
}

/// What a network lab commonly does inside a node, needing a kernel module on a stock kernel.
const NODE_FEATURES: &[(&str, &str)] = &[
    ("dummy interfaces", "ip link add d0 type dummy"),
    ("VLANs (8021q)", "ip link add link eth0 name eth0.10 type vlan id 10"),
    ("VXLAN", "ip link add vx0 type vxlan id 42 dstport 4789 dev eth0"),
    ("GRE", "ip link add g0 type gre remote 192.0.2.1"),
    ("bonding", "ip link add b0 type bond"),
    ("VRF", "ip link add v0 type vrf table 10"),
    ("htb", "tc qdisc add dev eth0 root handle 1: htb"),
    ("netem", "tc qdisc replace dev eth0 root netem delay 1ms"),
    ("nftables ct and NAT", "nft add table inet t && nft add chain inet t c '{ type filter hook input priority 0; }' && nft add rule inet t c ct state established accept && nft add chain inet t n '{ type nat hook postrouting priority 100; }' && nft add rule inet t n masquerade"),
];

#[test]
fn a_default_node_uses_what_a_network_lab_needs_from_the_kernel() {
    let _host = shared();
    // lab has the kernel load these before the nodes start: a node in a user namespace
    // cannot have modules loaded for it.
    let lab = Lab::up("kernelfeatures", "[networks.lan]\n[nodes.a]\nnetworks = [\"lan\"]\n");
    let mut missing = Vec::new();
    for (what, cmd) in NODE_FEATURES {
        let out = lab.exec("a", &["sh", "-c", cmd]);
        if out.status.success() {
            continue;
        }
        // Not lab's doing if the kernel cannot do it for the host's root either.
        let on_host = host(&format!(
            "unshare -n sh -c 'ip link add eth0 type veth peer name peer0 && ip link set eth0 up && {}'",
            cmd.replace('\'', "'\\''")
        ));
        if on_host.status.success() {
            missing.push(format!("{what}: `{cmd}` fails in the node but works on the host:\n{}", show(&out)));
        } else {
            eprintln!("skipped {what}: this kernel cannot do it at all ({})", text(&on_host.stderr).trim());
        }
    }
    lab.down();
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
