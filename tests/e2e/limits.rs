//! cgroup limits, as the kernel applies them: memory, cpus, pids, io weight; stats; pausing.

use crate::support::*;
use std::time::{Duration, Instant};

/// A node's cgroup file, on cgroup v2 or in the v1 hierarchy of `controller`.
fn cgroup_file(lab: &Lab, node: &str, controller: &str, v1: &str, v2: &str) -> String {
    let fs = text(&host("stat -f -c %T /sys/fs/cgroup").stdout);
    let path = if fs.trim() == "cgroup2fs" {
        format!("/sys/fs/cgroup/lab/{}/{node}/{v2}", lab.name)
    } else {
        let dir = text(&host(&format!("ls -d /sys/fs/cgroup/{controller} /sys/fs/cgroup/*,{controller} /sys/fs/cgroup/{controller},* 2>/dev/null | head -1")).stdout);
        format!("{}/lab/{}/{node}/{v1}", dir.trim(), lab.name)
    };
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")).trim().to_string()
}

#[test]
fn limits_reach_the_kernel() {
    let _host = shared();
    let lab_ =
        Lab::up("limits", "[nodes.a]\nmemory = \"48M\"\ncpus = 0.5\npids = 64\nio_weight = 300\nscratch = \"tmpfs\"\n");
    let v2 = text(&host("stat -f -c %T /sys/fs/cgroup").stdout).trim() == "cgroup2fs";
    assert_eq!(cgroup_file(&lab_, "a", "memory", "memory.limit_in_bytes", "memory.max"), (48u64 << 20).to_string());
    assert_eq!(cgroup_file(&lab_, "a", "pids", "pids.max", "pids.max"), "64");
    if v2 {
        assert_eq!(cgroup_file(&lab_, "a", "cpu", "", "cpu.max"), "50000 100000");
    } else {
        assert_eq!(cgroup_file(&lab_, "a", "cpu", "cpu.cfs_quota_us", ""), "50000");
        assert_eq!(cgroup_file(&lab_, "a", "blkio", "blkio.bfq.weight", ""), "300");
    }
    // What the node writes to an in-memory layer (kept across stop/start) fits its memory
    // too: the tmpfs's size, with no scratch_size of its own.
    let layer = text(&host(&format!("stat -f -c '%b %S' /run/lab/{}/nodes/a/layer", lab_.name)).stdout);
    let bytes: u64 = layer.split_whitespace().map(|n| n.parse::<u64>().unwrap_or(0)).product();
    assert_eq!(bytes, 48 << 20, "the layer's size: {layer}");
    // The devices the node may use: the standard ones, no block device.
    if !v2 {
        let devices = cgroup_file(&lab_, "a", "devices", "devices.list", "");
        assert!(devices.contains("c 1:3 rwm") && !devices.contains("b "), "{devices}");
    }
    lab_.down();
}

#[test]
fn a_node_over_its_memory_is_oom_killed_inside_it_and_ps_says_so() {
    let _host = shared();
    let lab_ = Lab::up("oom", "[nodes.a]\nmemory = \"32M\"\ncommand = [\"sleep\", \"infinity\"]\n[nodes.b]\n");
    let hog = lab_.exec("a", &["sh", "-c", "head -c 200M /dev/zero | tail > /dev/null"]);
    assert!(!hog.status.success(), "a 200M tail in 32M survived:\n{}", show(&hog));
    let a = node_json(&lab_.name, "a");
    assert!(a["oom_kills"].as_u64().unwrap() >= 1, "{a}");
    assert_eq!(a["state"], "running", "only the hog died, not the node: {a}");
    let table = text(&lab(&["ps", &lab_.name]).stdout);
    assert!(table.contains("OOM kill"), "{table}");
    assert_eq!(node_json(&lab_.name, "b")["oom_kills"], 0);
    lab_.down();
}

#[test]
fn a_fork_bomb_stops_at_pids_and_the_host_stays_responsive() {
    let _host = shared();
    let lab_ = Lab::up("bomb", "[nodes.a]\npids = 50\n[nodes.b]\n");
    let bomb = std::process::Command::new(lab_bin())
        // Each process forks two more and then holds on: the node fills up to its limit and
        // stays there for a while.
        .args(["exec", "--lab", &lab_.name, "a", "sh", "-c", "bomb() { bomb & bomb & sleep 3; }; bomb"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // While it rages: the node never has more than 50 processes, and the host and other
    // nodes answer at once.
    let start = Instant::now();
    let mut peak = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        let n: u64 = cgroup_file(&lab_, "a", "pids", "pids.current", "pids.current").parse().unwrap();
        peak = peak.max(n);
        let t = Instant::now();
        assert!(lab_.exec("b", &["true"]).status.success(), "another node stopped answering");
        assert!(t.elapsed() < Duration::from_secs(5), "exec into another node took {:?}", t.elapsed());
    }
    let out = bomb.wait_with_output().unwrap();
    assert!(peak <= 50, "the node had {peak} processes");
    // The limit is what stopped it: forks were refused.
    let err = text(&out.stderr);
    assert!(err.contains("Cannot fork") || err.contains("Resource temporarily unavailable"), "peak {peak}; {err}");
    lab_.down();
}

#[test]
fn stats_show_use_against_limits() {
    let _host = shared();
    let lab_ =
        Lab::up("stats", "[nodes.a]\nmemory = \"64M\"\npids = 30\ncommand = [\"sleep\", \"infinity\"]\n[nodes.b]\n");
    let out = lab(&["stats", "--lab", &lab_.name, "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["version"], 1, "{stats}");
    let usage = |node: &str| {
        let nodes = stats["labs"][0]["nodes"].as_array().unwrap();
        nodes.iter().find(|s| s["name"] == node).unwrap()["usage"].clone()
    };
    let a = usage("a");
    assert_eq!(a["memory_limit_bytes"], 64u64 << 20, "{a}");
    assert_eq!(a["pids_limit"], 30, "{a}");
    assert!(a["pids"].as_u64().unwrap() >= 2, "init and sleep: {a}");
    assert!(a["memory_bytes"].as_u64().unwrap() > 0, "{a}");
    let b = usage("b");
    assert!(b["memory_limit_bytes"].is_null(), "no limit: {b}");
    let table = text(&lab(&["stats", "a", "--lab", &lab_.name]).stdout);
    assert!(table.contains("/ 64.0MiB") && table.contains("/ 30"), "{table}");
    lab_.down();
}

#[test]
fn pause_freezes_a_node_and_resume_thaws_it() {
    let _host = shared();
    let lab_ = Lab::up(
        "pause",
        "[nodes.a]\ncommand = \"i=0; while :; do i=$((i+1)); echo $i > /tmp/t; mv /tmp/t /tmp/tick; done\"\n",
    );
    let tick = || lab_.sh("a", "cat /tmp/tick");
    // The loop has started once the counter exists.
    lab_.sh("a", "until [ -s /tmp/tick ]; do sleep 0.01; done");
    let out = lab(&["pause", "a", "--lab", &lab_.name]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(node_json(&lab_.name, "a")["state"], "paused");
    let exec = lab_.exec("a", &["true"]);
    assert_eq!(exec.status.code(), Some(125));
    assert!(text(&exec.stderr).contains("is paused"), "{}", show(&exec));
    // Frozen: the loop does not move. (Read from the host: the node cannot run anything.)
    let pid = node_json(&lab_.name, "a")["pid"].as_i64().unwrap();
    let file = format!("/proc/{pid}/root/tmp/tick");
    let before = std::fs::read_to_string(&file).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before, "a paused node kept running");
    assert!(lab(&["resume", "a", "--lab", &lab_.name]).status.success());
    assert_eq!(node_json(&lab_.name, "a")["state"], "running");
    let first = tick();
    std::thread::sleep(Duration::from_millis(50));
    assert_ne!(tick(), first, "a resumed node does not run");
    // A paused node can still be taken down.
    assert!(lab(&["pause", "a", "--lab", &lab_.name]).status.success());
    lab_.down();
}
