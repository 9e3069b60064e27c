//! `lab ps`: labs, nodes, their state, and what happened to a node that died.

use crate::support::*;
use std::time::{Duration, Instant};

#[test]
fn ps_lists_labs_and_nodes_as_a_table_and_as_json() {
    let _host = shared();
    let lab_ = Lab::up(
        "ps",
        "[networks.lan]\n[nodes.a]\nnetworks = [\"lan\"]\n[nodes.b]\ncommand = [\"sleep\", \"infinity\"]\n",
    );
    let table = text(&lab(&["ps", &lab_.name]).stdout);
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with(&lab_.name)).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(rows[0].contains(" a ") && rows[0].contains("running") && rows[0].contains("eth0=10."), "{table}");
    let json = lab_json(&lab_.name);
    assert_eq!(json["complete"], true);
    let nodes = json["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[1]["name"], "b");
    assert_eq!(nodes[1]["state"], "running");
    assert!(nodes[1]["pid"].as_i64().is_some());
    let missing = lab(&["ps", "t-not-a-lab"]);
    assert_eq!(missing.status.code(), Some(1), "{}", show(&missing));
    lab_.down();
}

#[test]
fn a_node_killed_from_the_host_shows_how_it_ended_and_down_still_works() {
    let _host = shared();
    let lab_ = Lab::up("killed", "[nodes.a]\n[nodes.b]\n");
    let pid = lab_json(&lab_.name)["nodes"][0]["pid"].as_i64().expect("a runs") as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    // The monitor records the end a moment after the node is gone ("gone" until then).
    let deadline = Instant::now() + Duration::from_secs(10);
    let state = loop {
        let node = lab_json(&lab_.name)["nodes"][0].clone();
        if node["state"] == "exited" || Instant::now() > deadline {
            break node;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(state["state"], "exited", "{state}");
    assert_eq!(state["exit"]["signal"], 9, "{state}");
    let table = text(&lab(&["ps", &lab_.name]).stdout);
    assert!(table.contains("exited (killed by signal 9 (SIGKILL))"), "{table}");
    let exec = lab_.exec("a", &["true"]);
    assert_eq!(exec.status.code(), Some(125));
    assert!(text(&exec.stderr).contains("is not running"), "{}", show(&exec));
    assert!(lab_.exec("b", &["true"]).status.success(), "the other node is unaffected");
    lab_.down();
}

#[test]
fn a_node_command_gets_no_file_descriptor_of_the_host() {
    let _host = shared();
    // `lab up` gets a descriptor it did not open (fd 9, as a careless caller might leave).
    let leaked = std::fs::File::open("/etc/hostname").unwrap();
    let leaked_fd = std::os::fd::AsRawFd::as_raw_fd(&leaked);
    let name = unique("fds");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lab.toml");
    std::fs::write(&file, format!("name = \"{name}\"\n[nodes.a]\ncommand = [\"sleep\", \"infinity\"]\n")).unwrap();
    let mut up = std::process::Command::new(lab_bin());
    up.args(["up", file.to_str().unwrap()]);
    // SAFETY: dup2 between fork and exec, onto a number the child does not otherwise use.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut up, move || {
            libc::dup2(leaked_fd, 9);
            Ok(())
        });
    }
    let out = up.output().unwrap();
    let lab_ = Lab::adopt(&name, &file, dir);
    assert!(out.status.success(), "{}", show(&out));
    // sleep opens nothing itself: whatever it has, it inherited. It is PID 2 of the node.
    assert_eq!(lab_.sh("a", "cat /proc/2/comm"), "sleep\n");
    let fds = lab_.sh("a", "ls /proc/2/fd | tr '\\n' ' '");
    assert_eq!(fds.trim(), "0 1 2", "the node's command inherited more than stdio: {fds}");
    // The init, seen from the host: stdio, its signalfd, pipes to its monitor, the node's
    // /dev/log socket; no host file.
    let pid = lab_json(&lab_.name)["nodes"][0]["pid"].as_i64().expect("a runs");
    let unix = std::fs::read_to_string(format!("/proc/{pid}/net/unix")).unwrap();
    let devlog: Vec<String> = unix
        .lines()
        .filter(|l| l.ends_with(" /dev/log"))
        .filter_map(|l| l.split_whitespace().nth(6).map(|inode| format!("socket:[{inode}]")))
        .collect();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let target = std::fs::read_link(fd.path()).unwrap().to_string_lossy().into_owned();
        let ok = target == "/dev/null"
            || target.starts_with("pipe:")
            || target.starts_with("anon_inode:")
            || devlog.contains(&target);
        assert!(ok, "the init holds {target} as fd {:?}", fd.file_name());
    }
    // And from inside, the init is not dumpable: its exe and fds are out of reach.
    let peek = lab_.exec("a", &["readlink", "/proc/1/exe"]);
    assert!(!peek.status.success(), "a node process can reach the init's exe:\n{}", show(&peek));
    lab_.down();
}

#[test]
fn a_node_command_runs_under_the_init_and_its_output_is_logged() {
    let _host = shared();
    let lab_ = Lab::up("log", "[nodes.a]\ncommand = \"echo hello from a; echo oops >&2; exec sleep infinity\"\n");
    let node = lab_json(&lab_.name)["nodes"][0].clone();
    let log = std::path::PathBuf::from(node["log"].as_str().unwrap());
    // The command wrote before `up` returned, but its monitor writes the log a moment later.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        if t.contains("oops") || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let lines: Vec<&str> = text.lines().collect();
    let out = lines.iter().find(|l| l.ends_with(" stdout hello from a")).unwrap_or_else(|| panic!("{text}"));
    assert!(lines.iter().any(|l| l.ends_with(" stderr oops")), "{text}");
    // RFC 3339 timestamp first.
    assert!(out.len() > 24 && out.as_bytes()[4] == b'-' && out.as_bytes()[23] == b'Z', "{out}");
    let tree = lab_.sh("a", "ps -eo pid=,ppid=,comm=");
    assert!(tree.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["2", "1", "sleep"]), "{tree}");
    lab_.down();
    assert!(!log.exists(), "the log goes with the lab");
}
