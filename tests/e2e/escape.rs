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
    assert!(text(&follow.stdout).trim_end().ends_with("lab node exited: exit code 137"), "{}", show(&follow));
    assert_eq!(node_json(&lab.name, "b")["state"]["state"], "exited", "{}", node_json(&lab.name, "b"));
    // Control: a node whose monitor is killed has no record of its end; lab ps says `gone`.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("/run/lab/{}/state.json", lab.name)).unwrap()).unwrap();
    let a = state["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "a").unwrap().clone();
    kill_and_wait(a["monitor"]["pid"].as_i64().unwrap() as i32);
    kill_and_wait(a["init"]["pid"].as_i64().unwrap() as i32);
    assert_eq!(node_json(&lab.name, "a")["state"]["state"], "gone", "{}", node_json(&lab.name, "a"));
    lab.down();
}

fn lab_cmd(args: &[&str]) -> std::process::Output {
    crate::support::lab(args)
}
