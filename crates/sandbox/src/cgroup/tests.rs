//! The cgroup layer on fake cgroupfs trees (plain directories): what it creates, writes and
//! reads for v2 and v1. The real thing is exercised by the end-to-end tests.

use super::devices::DEFAULT_RULES;
use super::v1::Hierarchy;
use super::*;

fn get(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()))
}

fn put(dir: &Path, file: &str, text: &str) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(file), text).unwrap();
}

#[test]
fn v2_enables_controllers_down_to_the_node_and_only_what_the_root_lacks() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    put(root, "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
    put(root, "cgroup.subtree_control", "cpu memory\n");
    let v2 = V2::new(root);
    v2.create("lab/three/n1").unwrap();
    assert!(root.join("lab/three/n1").is_dir());
    // The root is the machine's: only the missing controllers are added there.
    assert_eq!(get(root, "cgroup.subtree_control"), "+io +pids");
    assert_eq!(get(&root.join("lab"), "cgroup.subtree_control"), "+cpu +io +memory +pids");
    assert_eq!(get(&root.join("lab/three"), "cgroup.subtree_control"), "+cpu +io +memory +pids");
    assert!(!root.join("lab/three/n1/cgroup.subtree_control").exists(), "a node's own cgroup holds processes");
}

#[test]
fn v2_without_controllers_enables_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    put(tmp.path(), "cgroup.controllers", "\n");
    let v2 = V2::new(tmp.path());
    v2.create("lab/x/n").unwrap();
    assert!(!tmp.path().join("lab/cgroup.subtree_control").exists());
}

#[test]
fn v2_limits_are_written_in_v2_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab/x/n");
    put(&dir, "memory.swap.max", "max\n");
    put(&dir, "io.weight", "default 100\n");
    let v2 = V2::new(tmp.path());
    let limits = Limits { memory: Some(256 << 20), millicpus: Some(500), pids: Some(64), io_weight: Some(500) };
    v2.set_limits("lab/x/n", &limits).unwrap();
    assert_eq!(get(&dir, "memory.max"), "268435456");
    assert_eq!(get(&dir, "memory.swap.max"), "0");
    assert_eq!(get(&dir, "cpu.max"), "50000 100000");
    assert_eq!(get(&dir, "pids.max"), "64");
    // 10..1000 onto 1..10000, as runc converts --blkio-weight.
    assert_eq!(get(&dir, "io.weight"), "default 4950");
    // With BFQ, its own weight file takes the value as is.
    put(&dir, "io.bfq.weight", "100\n");
    v2.set_limits("lab/x/n", &Limits { io_weight: Some(500), ..Limits::default() }).unwrap();
    assert_eq!(get(&dir, "io.bfq.weight"), "500");
    // No limit asked: nothing written.
    let other = tmp.path().join("lab/x/m");
    fs::create_dir_all(&other).unwrap();
    v2.set_limits("lab/x/m", &Limits::default()).unwrap();
    assert_eq!(fs::read_dir(&other).unwrap().count(), 0);
    let err = v2.set_limits("lab/x/m", &Limits { io_weight: Some(100), ..Limits::default() }).unwrap_err();
    assert!(err.to_string().contains("io.weight"), "{err}");
}

#[test]
fn v2_stats_and_freezer() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab/x/n");
    put(&dir, "cpu.stat", "usage_usec 1234567\nuser_usec 1000\nsystem_usec 234\n");
    put(&dir, "memory.current", "1048576\n");
    put(&dir, "memory.max", "max\n");
    put(&dir, "pids.current", "3\n");
    put(&dir, "pids.max", "64\n");
    put(&dir, "memory.events", "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\noom_group_kill 0\n");
    let v2 = V2::new(tmp.path());
    let s = v2.stats("lab/x/n").unwrap();
    assert_eq!(
        s,
        Stats { cpu_usec: 1_234_567, memory: 1 << 20, memory_limit: None, pids: 3, pids_limit: Some(64), oom_kills: 2 }
    );
    put(&dir, "cgroup.events", "populated 1\nfrozen 1\n");
    v2.freeze("lab/x/n", true).unwrap();
    assert_eq!(get(&dir, "cgroup.freeze"), "1");
    assert!(v2.frozen("lab/x/n"));
}

fn fake_v1(root: &Path) -> V1 {
    let h = |name: &str, controllers: &[&str]| Hierarchy {
        root: root.join(name),
        controllers: controllers.iter().map(|c| c.to_string()).collect(),
    };
    V1::new(vec![
        h("cpu,cpuacct", &["cpu", "cpuacct"]),
        h("memory", &["memory"]),
        h("pids", &["pids"]),
        h("freezer", &["freezer"]),
        h("blkio", &["blkio"]),
        h("devices", &["devices"]),
    ])
}

#[test]
fn v1_finds_controller_hierarchies_once_each() {
    let mountinfo = "\
35 24 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
37 35 0:32 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
40 35 0:35 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
41 35 0:36 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
42 35 0:37 / /sys/fs/cgroup/cpuset rw,nosuid - cgroup cgroup rw,cpuset
43 35 0:38 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
";
    let v1 = V1::from_mountinfo(mountinfo);
    let roots: Vec<&str> = v1.roots().iter().map(|p| p.to_str().unwrap()).collect();
    assert_eq!(roots, ["/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids"]);
}

#[test]
fn v1_creates_limits_devices_and_removes() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = fake_v1(tmp.path());
    v1.create("lab/x/n").unwrap();
    for h in ["cpu,cpuacct", "memory", "pids", "freezer", "blkio", "devices"] {
        assert!(tmp.path().join(h).join("lab/x/n").is_dir(), "{h}");
    }
    let mem = tmp.path().join("memory/lab/x/n");
    put(&mem, "memory.memsw.limit_in_bytes", "9223372036854771712\n");
    put(&tmp.path().join("blkio/lab/x/n"), "blkio.bfq.weight", "100\n");
    let limits = Limits { memory: Some(64 << 20), millicpus: Some(1500), pids: Some(100), io_weight: Some(300) };
    v1.set_limits("lab/x/n", &limits).unwrap();
    assert_eq!(get(&mem, "memory.limit_in_bytes"), "67108864");
    assert_eq!(get(&mem, "memory.memsw.limit_in_bytes"), "67108864");
    let cpu = tmp.path().join("cpu,cpuacct/lab/x/n");
    assert_eq!(get(&cpu, "cpu.cfs_period_us"), "100000");
    assert_eq!(get(&cpu, "cpu.cfs_quota_us"), "150000");
    assert_eq!(get(&tmp.path().join("pids/lab/x/n"), "pids.max"), "100");
    assert_eq!(get(&tmp.path().join("blkio/lab/x/n"), "blkio.bfq.weight"), "300");
    // A fake devices.allow keeps only the last write; the real one appends each rule.
    v1.set_devices("lab/x/n", DEFAULT_RULES).unwrap();
    let dev = tmp.path().join("devices/lab/x/n");
    assert_eq!(get(&dev, "devices.deny"), "a");
    assert_eq!(get(&dev, "devices.allow"), "c *:* m");
    // Removal (a fake tree can only rmdir cgroups we wrote nothing into).
    v1.create("lab/y/n").unwrap();
    v1.remove("lab/y/n").unwrap();
    v1.remove("lab/y/n").unwrap();
    v1.remove("lab/y").unwrap();
    assert!(!tmp.path().join("pids/lab/y").exists());
    assert!(v1.remove("lab/x").is_err(), "a cgroup with children stays");
}

#[test]
fn v1_freezer_states() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = fake_v1(tmp.path());
    let dir = tmp.path().join("freezer/lab/x/n");
    put(&dir, "freezer.state", "THAWED\n");
    v1.freeze("lab/x/n", true).unwrap();
    assert_eq!(get(&dir, "freezer.state"), "FROZEN");
    assert!(v1.frozen("lab/x/n"));
    v1.freeze("lab/x/n", false).unwrap();
    assert_eq!(get(&dir, "freezer.state"), "THAWED");
    assert!(!v1.frozen("lab/x/n"));
}

#[test]
fn v1_stats_read_v1_files() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = fake_v1(tmp.path());
    put(&tmp.path().join("cpu,cpuacct/lab/x/n"), "cpuacct.usage", "2000000\n");
    let mem = tmp.path().join("memory/lab/x/n");
    put(&mem, "memory.usage_in_bytes", "4096\n");
    put(&mem, "memory.limit_in_bytes", "9223372036854771712\n");
    put(&mem, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n");
    put(&tmp.path().join("pids/lab/x/n"), "pids.current", "5\n");
    put(&tmp.path().join("pids/lab/x/n"), "pids.max", "max\n");
    let s = v1.stats("lab/x/n").unwrap();
    assert_eq!(s, Stats { cpu_usec: 2000, memory: 4096, memory_limit: None, pids: 5, pids_limit: None, oom_kills: 1 });
}

#[test]
fn v1_missing_controller_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = V1::new(vec![Hierarchy { root: tmp.path().join("memory"), controllers: vec!["memory".into()] }]);
    let err = v1.set_limits("lab/x/n", &Limits { pids: Some(10), ..Limits::default() }).unwrap_err();
    assert!(err.to_string().contains("pids needs the cgroup v1 pids controller"), "{err}");
}
