//! What a node sees: its own host name, processes, mounts, interfaces and files.

use crate::support::*;
use std::path::Path;

const TWO: &str = "[networks.lan]\n[nodes.node1]\nnetworks = [\"lan\"]\n[nodes.node2]\nnetworks = [\"lan\"]\n";

#[test]
fn a_node_sees_only_itself() {
    let _host = shared();
    let lab = Lab::up("iso", TWO);
    assert_eq!(lab.sh("node1", "hostname"), "node1\n");
    assert_ne!(text(&host("hostname").stdout).trim(), "node1", "the host's name is untouched");

    // pid namespace: the init is PID 1, and only the node's processes are visible.
    assert!(lab.sh("node1", "cat /proc/1/cmdline | tr '\\0' ' '").starts_with("lab-init __init "));
    let pids = lab.sh("node1", "ls /proc | grep -c '^[0-9]'");
    assert!(pids.trim().parse::<u32>().unwrap() <= 4, "node sees host processes: {pids}");
    let ps = lab.sh("node1", "ps -eo pid=,comm=");
    assert!(!ps.contains("cargo") && !ps.contains("lab-monitor"), "{ps}");

    // network namespace: lo and its own interface only.
    let links =
        lab.sh("node1", &format!("ip -o link show | awk -F': ' '{{print $2}}' | sed 's/@.*//' | {NOT_FALLBACK}"));
    assert_eq!(links.lines().collect::<Vec<_>>(), ["lo", "eth0"], "{links}");

    // mount namespace: a fresh /proc, /sys read-only, /dev minimal, tmpfs /tmp and /run;
    // none of it appears on the host.
    let mounts = lab.sh("node1", "awk '{print $2\" \"$3}' /proc/mounts");
    for m in [
        "/ overlay",
        "/proc proc",
        "/sys sysfs",
        "/dev tmpfs",
        "/dev/pts devpts",
        "/dev/shm tmpfs",
        "/tmp tmpfs",
        "/run tmpfs",
    ] {
        assert!(mounts.lines().any(|l| l == m), "missing {m} in:\n{mounts}");
    }
    assert!(!mounts.contains("/work"), "host mounts leak into the node:\n{mounts}");
    let dev = lab.sh("node1", "ls /dev | tr '\\n' ' '");
    assert_eq!(dev.trim(), "fd full log mqueue net null ptmx pts random shm stderr stdin stdout tty urandom zero");
    assert_eq!(lab.sh("node1", "ls /dev/net"), "tun\n");
    let sys = lab.exec("node1", &["sh", "-c", "echo 1 > /sys/kernel/lab-test"]);
    assert!(!sys.status.success() && text(&sys.stderr).contains("Read-only file system"), "{}", show(&sys));
    assert_eq!(lab.sh("node1", "echo hi > /dev/null && head -c 4 /dev/zero | wc -c"), "4\n");
    assert_eq!(host_mounts_of(&lab.name), layers(&lab.name, &["node1", "node2"]), "node mounts leak to the host");

    // cgroup namespace: the node's cgroup is its root.
    let cgroup = lab.sh("node1", "cat /proc/self/cgroup");
    assert!(cgroup.lines().all(|l| l.ends_with(":/")), "{cgroup}");
    lab.down();
}

#[test]
fn nodes_live_in_their_own_cgroups() {
    let _host = shared();
    let lab = Lab::up("cg", TWO);
    let ps = ps_json();
    let node = ps
        .as_array()
        .and_then(|labs| labs.iter().find(|l| l["name"] == lab.name.as_str()))
        .and_then(|l| l["nodes"].as_array().cloned())
        .expect("the lab in ps --json");
    let pid = node[0]["pid"].as_i64().expect("node1 has a pid");
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let want = format!("/lab/{}/node1", lab.name);
    assert!(cgroups.lines().any(|l| l.ends_with(&want)), "init {pid} is not in {want}:\n{cgroups}");
    lab.down();
}

#[test]
fn writes_go_to_a_private_layer_that_down_discards() {
    let _host = shared();
    let lab = Lab::up("write", TWO);
    let file = format!("/etc/lab-write-test-{}", lab.name);
    lab.sh("node1", &format!("echo secret > {file} && echo more >> /etc/hostname"));
    assert_eq!(lab.sh("node1", &format!("cat {file}")), "secret\n");
    assert!(!Path::new(&file).exists(), "a node's write reached the host's {file}");
    let other = lab.exec("node2", &["cat", &file]);
    assert!(!other.status.success(), "node2 sees node1's file:\n{}", show(&other));
    assert_eq!(lab.sh("node2", "cat /etc/hostname"), "node2\n");
    // The host's files are there, read-only underneath.
    assert!(lab.sh("node1", "cat /etc/os-release").contains("ID="));
    // The layer is a directory of the node's own on disk, bound under the lab's state until
    // down, where only root can look (mode 0700, no setuid, no devices); nothing else of the
    // node shows.
    assert_eq!(host_mounts_of(&lab.name), layers(&lab.name, &["node1", "node2"]));
    let layer = format!("/run/lab/{}/nodes/node1/layer", lab.name);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&layer).expect("the layer").permissions());
    assert_eq!(mode & 0o777, 0o700, "{layer}");
    let on_disk = format!("/var/lib/lab/scratch/{}/node1/upper{file}", lab.name);
    assert_eq!(std::fs::read_to_string(&on_disk).expect("the write, on disk"), "secret\n");
    // Down and up again under the same name: the write is gone.
    lab.recreate();
    let gone = lab.exec("node1", &["cat", &file]);
    assert!(!gone.status.success(), "the write survived down:\n{}", show(&gone));
    lab.down();
}

/// The host's mounts under lab `name`'s state directory: mount point, type and options.
fn host_mounts_of(name: &str) -> Vec<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("/proc/self/mounts");
    let state = format!("/run/lab/{name}/");
    let mut out: Vec<String> = mounts
        .lines()
        .filter(|l| l.contains(&state))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let opts: Vec<&str> =
                f[3].split(',').filter(|o| ["rw", "nosuid", "nodev", "mode=700"].contains(o)).collect();
            format!("{} {} {}", f[1], f[2], opts.join(","))
        })
        .collect();
    out.sort();
    out
}

/// What `host_mounts_of` shows for the kept writable layers of `nodes`: on disk, in the file
/// system of /var/lib.
pub(crate) fn layers(name: &str, nodes: &[&str]) -> Vec<String> {
    let fs = text(&host("findmnt -n -o FSTYPE --target /var/lib").stdout).trim().to_string();
    nodes.iter().map(|n| format!("/run/lab/{name}/nodes/{n}/layer {fs} rw,nosuid,nodev")).collect()
}

#[test]
fn a_tmpfs_scratch_holds_at_most_its_size_and_a_disk_one_goes_with_down() {
    let _host = shared();
    let lab = Lab::up("scratch", "[nodes.fast]\nscratch = \"tmpfs\"\nscratch_size = \"2M\"\n[nodes.disk]\n");
    let mounts = host_mounts_of(&lab.name);
    assert!(
        mounts.contains(&format!("/run/lab/{}/nodes/fast/layer tmpfs rw,nosuid,nodev,mode=700", lab.name)),
        "{mounts:?}"
    );
    // Past its size, a write fails inside the node with ENOSPC; the host's memory is not it.
    // (Not in /tmp, which is a tmpfs of the node's own.)
    let full = lab.exec("fast", &["sh", "-c", "dd if=/dev/zero of=/var/big bs=1M count=4 2>&1"]);
    assert!(!full.status.success() && text_of(&full).contains("No space left on device"), "{}", show(&full));
    lab.sh("disk", "dd if=/dev/zero of=/var/big bs=1M count=4 2>/dev/null");
    let scratch = format!("/var/lib/lab/scratch/{}", lab.name);
    assert!(Path::new(&format!("{scratch}/disk/upper/var/big")).exists());
    // A size cap on disk is refused at its line.
    let (bad, out) = Lab::try_up("scratchbad", "[nodes.a]\nscratch_size = \"1G\"\n");
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(text(&out.stderr).contains(&format!("{}.toml:3:16", bad.name)), "{}", show(&out));
    let name = lab.name.clone();
    lab.down();
    assert!(!Path::new(&scratch).exists(), "down removes the nodes' layers on disk");
    assert_eq!(leftovers(&name), Vec::<String>::new());
}

/// Copies `binaries` and the libraries they load into `root`, at the same paths.
pub(crate) fn make_rootfs(root: &Path, binaries: &[&str]) {
    let mut files: Vec<String> = Vec::new();
    for b in binaries {
        files.push(b.to_string());
        let ldd = text(&host(&format!("ldd {b}")).stdout);
        for line in ldd.lines() {
            let path = line.split("=>").last().unwrap_or("").split_whitespace().next().unwrap_or("");
            if path.starts_with('/') {
                files.push(path.to_string());
            }
        }
    }
    for f in files {
        let dest = root.join(f.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&f, &dest).unwrap_or_else(|e| panic!("copying {f}: {e}"));
    }
}

#[test]
fn a_directory_can_be_the_rootfs() {
    let _host = shared();
    let rootfs = tempfile::tempdir().unwrap();
    make_rootfs(rootfs.path(), &["/bin/sh", "/bin/cat", "/bin/ls"]);
    std::fs::write(rootfs.path().join("marker"), "from the rootfs\n").unwrap();
    let lab = Lab::up("rootfs", &format!("[nodes.box]\nrootfs = \"{}\"\n", rootfs.path().display()));
    assert_eq!(lab.sh("box", "cat /marker"), "from the rootfs\n");
    assert_eq!(lab.sh("box", "test -e /usr/bin/apt-get && echo host || echo own"), "own\n");
    assert_eq!(lab.sh("box", "cat /proc/sys/kernel/hostname"), "box\n");
    lab.sh("box", "echo changed > /marker; echo new > /new");
    assert_eq!(std::fs::read_to_string(rootfs.path().join("marker")).unwrap(), "from the rootfs\n");
    assert!(!rootfs.path().join("new").exists(), "the rootfs directory stays read-only");
    lab.down();
}

#[test]
fn zombies_are_reaped_by_the_init() {
    let _host = shared();
    let lab = Lab::up("zombie", "[nodes.a]\n");
    // The subshell exits at once: its `sleep` is orphaned to the node's init, which must
    // reap it when it exits.
    let out = lab.sh("a", "(sleep 0.2 &); sleep 1; ps -eo stat=,pid=,comm= | grep '^Z' | wc -l");
    assert_eq!(out.trim(), "0", "unreaped zombies in the node");
    lab.down();
}

#[test]
fn point_to_point_links_carry_addresses_and_names() {
    let _host = shared();
    let lab = Lab::up(
        "p2p",
        r#"
[nodes.r1]
[nodes.r2]
[[links]]
endpoints = ["r1:eth1", "r2:eth7"]
addresses = ["10.255.12.1/30", "10.255.12.2/30"]
"#,
    );
    assert!(lab.sh("r2", "ip -o -4 addr show eth7").contains("10.255.12.2/30"));
    let out = lab.exec("r1", &["ping", "-c1", "-W2", "r2"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(text(&out.stdout).contains("(10.255.12.2)"), "{}", show(&out));
    lab.down();
}
