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
    (&["open-write", "/proc/sys/kernel/hostname"], "EROFS"),
    (&["open-write", "/sys/class/net/lo/mtu"], "EROFS"),
    // The lab binary on the host, through the init's exe (a sealed copy, and out of reach).
    (&["open-write", "/proc/1/exe"], "EACCES"),
    // ... and through its own exe: a running binary cannot be opened for writing.
    (&["open-write", "/proc/self/exe"], "ETXTBSY"),
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
        if got != *want {
            failures.push(format!("{args:?}: expected {want}, got {got}"));
        }
    }
    // Where this kernel has them: /proc/kcore reads as empty, /proc/sysrq-trigger is read-only.
    for (args, want) in [(["read", "/proc/kcore"], "0 bytes"), (["open-write", "/proc/sysrq-trigger"], "EROFS")] {
        if std::path::Path::new(args[1]).exists() {
            let got = run(&lab, "a", &args);
            if got != want {
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
        if got == *denied {
            still_denied.push(format!("{args:?}: {got}"));
        }
    }
    lab.down();
    assert_eq!(text(&host("hostname").stdout), host_name, "the host's name changed");
    assert!(still_denied.is_empty(), "privileged + unconfined still denied:\n{}", still_denied.join("\n"));
}
