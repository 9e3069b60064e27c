//! Per-node isolation settings: seccomp profiles, capabilities, bind mounts, user namespaces.

use crate::support::*;
use std::os::unix::fs::MetadataExt;

/// The CapEff mask of a process in the node, as a number.
fn cap_eff(lab: &Lab, node: &str, pid: &str) -> u64 {
    let line = lab.sh(node, &format!("grep CapEff /proc/{pid}/status"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

/// Docker's 14 default capabilities: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID,
/// SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP.
const DOCKER_DEFAULT: u64 = 0xa804_25fb;
const NET_RAW: u64 = 1 << 13;
const NET_ADMIN: u64 = 1 << 12;
const SYS_TIME: u64 = 1 << 25;
const SYS_ADMIN: u64 = 1 << 21;

#[test]
fn capabilities_are_dockers_plus_net_admin_and_can_be_changed() {
    let _host = shared();
    let lab = Lab::up(
        "caps",
        r#"
[defaults]
command = ["sleep", "infinity"]
[nodes.plain]
[nodes.tuned]
cap_add = ["SYS_TIME"]
cap_drop = ["NET_RAW"]
[nodes.minimal]
cap_drop = ["ALL"]
cap_add = ["NET_ADMIN"]
"#,
    );
    // The command (PID 2, under the init) and a `lab exec` get the same set.
    for pid in ["2", "self"] {
        let plain = cap_eff(&lab, "plain", pid);
        assert_eq!(plain, DOCKER_DEFAULT | NET_ADMIN, "Docker's 14 plus NET_ADMIN for pid {pid}: {plain:#x}");
        assert_eq!(plain & SYS_ADMIN, 0);
        let tuned = cap_eff(&lab, "tuned", pid);
        assert_eq!(tuned, (plain | SYS_TIME) & !NET_RAW, "{tuned:#x}");
        assert_eq!(cap_eff(&lab, "minimal", pid), NET_ADMIN);
    }
    let status = lab.sh("plain", "grep -E '^(CapInh|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status");
    assert!(status.contains("CapInh:\t0000000000000000") && status.contains("CapAmb:\t0000000000000000"), "{status}");
    assert!(status.contains("NoNewPrivs:\t1") && status.contains("Seccomp:\t2"), "{status}");
    // NET_ADMIN is what a network lab needs: its own interfaces and routes.
    lab.sh("minimal", "ip link add dummy0 type dummy 2>/dev/null || ip link set lo mtu 65000");
    lab.down();
}

#[test]
fn a_custom_seccomp_profile_in_docker_format_is_applied() {
    let _host = shared();
    let dir = tempfile::tempdir().unwrap();
    // Relative to the topology file: profiles/deny-mkdir.json.
    std::fs::create_dir(dir.path().join("profiles")).unwrap();
    std::fs::write(
        dir.path().join("profiles/deny-mkdir.json"),
        r#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "comment": "EACCES"}
            ]
        }"#,
    )
    .unwrap();
    let name = unique("profile");
    let file = dir.path().join("lab.toml");
    std::fs::write(&file, format!("name = \"{name}\"\n[nodes.a]\nseccomp = \"profiles/deny-mkdir.json\"\n")).unwrap();
    let out = lab(&["up", file.to_str().unwrap()]);
    let lab_ = Lab::adopt(&name, &file, dir);
    assert!(out.status.success(), "{}", show(&out));
    let denied = lab_.exec("a", &["mkdir", "/tmp/x"]);
    assert!(!denied.status.success() && text(&denied.stderr).contains("Permission denied"), "{}", show(&denied));
    // Everything else is allowed by this profile, including what the default denies.
    assert!(lab_.exec("a", &["sh", "-c", "touch /tmp/y && unshare -n true || true"]).status.success());
    lab_.down();
}

#[test]
fn a_broken_seccomp_profile_is_an_error_before_anything_is_made() {
    let _host = shared();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.json"), "{\n  \"defaultAction\": \"SCMP_ACT_SOMETIMES\"\n}\n").unwrap();
    let name = unique("badprofile");
    let file = dir.path().join("lab.toml");
    std::fs::write(&file, format!("name = \"{name}\"\n[nodes.a]\nseccomp = \"bad.json\"\n")).unwrap();
    let out = lab(&["up", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains("node a: seccomp profile") && err.contains("bad.json:2:") && err.contains("SCMP_ACT_SOMETIMES"),
        "{err}"
    );
    assert_eq!(leftovers(&name), Vec::<String>::new());
}

#[test]
fn bind_mounts_read_only_and_read_write() {
    let _host = shared();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("shared.txt"), "from the host\n").unwrap();
    let s = src.path().display();
    let lab = Lab::up("mounts", &format!("[nodes.a]\nmounts = [\"{s}:/srv/ro:ro\", \"{s}:/srv/rw\"]\n"));
    assert_eq!(lab.sh("a", "cat /srv/ro/shared.txt"), "from the host\n");
    let ro = lab.exec("a", &["sh", "-c", "echo x > /srv/ro/new"]);
    assert!(text(&ro.stderr).contains("Read-only file system"), "{}", show(&ro));
    lab.sh("a", "echo from the node > /srv/rw/new");
    assert_eq!(std::fs::read_to_string(src.path().join("new")).unwrap(), "from the node\n");
    lab.down();
}

#[test]
fn a_missing_mount_source_is_refused_before_anything_is_made() {
    let _host = shared();
    let (lab_, out) = Lab::try_up("nosrc", "[nodes.a]\nmounts = [\"/no/such/dir:/data\"]\n");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("node a: mount source /no/such/dir does not exist on this host"),
        "{}",
        show(&out)
    );
    assert_eq!(leftovers(&lab_.name), Vec::<String>::new());
}

#[test]
fn a_symlink_in_the_rootfs_cannot_redirect_a_mount_onto_the_host() {
    let _host = shared();
    let rootfs = tempfile::tempdir().unwrap();
    // /evil -> / : a mount on /evil/x would land on the host's /x if it were followed.
    std::os::unix::fs::symlink("/", rootfs.path().join("evil")).unwrap();
    let src = tempfile::tempdir().unwrap();
    let (lab_, out) = Lab::try_up(
        "symlink",
        &format!(
            "[nodes.a]\nrootfs = \"{}\"\nmounts = [\"{}:/evil/lab-mounted\"]\n",
            rootfs.path().display(),
            src.path().display()
        ),
    );
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("/evil in the node's root file system is not a plain directory (a symlink?)"),
        "{}",
        show(&out)
    );
    assert!(!std::path::Path::new("/lab-mounted").exists(), "the mount went to the host");
    assert_eq!(leftovers(&lab_.name), Vec::<String>::new());
}

#[test]
fn every_node_has_a_user_namespace_of_its_own_unless_told_otherwise() {
    let _host = shared();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("hosts-file"), "from the host\n").unwrap();
    std::os::unix::fs::chown(data.path().join("hosts-file"), Some(4321), Some(4321)).unwrap();
    let d = data.path().display();
    let lab = Lab::up(
        "userns",
        &format!(
            "[defaults]\nmounts = [\"{d}:/data\"]\n[networks.lan]\n[nodes.a]\nnetworks = [\"lan\"]\n[nodes.b]\nnetworks = [\"lan\"]\n[nodes.c]\nuserns = false\n"
        ),
    );
    assert_eq!(lab.sh("a", "id -u"), "0\n");
    let map = |n: &str| -> Vec<u64> {
        lab.sh(n, "cat /proc/self/uid_map").split_whitespace().map(|w| w.parse().unwrap()).collect()
    };
    let (ma, mb) = (map("a"), map("b"));
    assert!(ma[1] >= 1 << 30 && mb[1] >= 1 << 30 && ma[2] == 65536, "mapped far from host users: {ma:?} {mb:?}");
    assert_ne!(ma[1], mb[1], "each node has its own range");
    assert_eq!(map("c"), [0, 0, 4294967295], "userns = false: the host's ids");
    // Bind mounts are idmapped like the node's root: files keep their owners both ways.
    assert_eq!(lab.sh("a", "stat -c %u:%g /data/hosts-file"), "4321:4321\n");
    lab.sh("a", "touch /data/made-by-a && touch /data/given && chown 1234:1235 /data/given");
    let meta = |f: &str| std::fs::metadata(data.path().join(f)).unwrap();
    assert_eq!((meta("made-by-a").uid(), meta("made-by-a").gid()), (0, 0), "the node's root is the host's root here");
    assert_eq!((meta("given").uid(), meta("given").gid()), (1234, 1235));
    // A node in a user namespace still has a network lab's powers over its own namespaces.
    assert!(lab.exec("a", &["ping", "-c1", "-W2", "b"]).status.success());
    lab.sh("a", "echo changed >> /etc/hostname && touch /etc/new-file");
    assert_eq!(lab.sh("a", "hostname"), "a\n");
    lab.down();
}

/// Where scripts/install-deps unpacks the seccomp profiles Debian ships with moby and podman.
const REAL_PROFILES: &str = "/var/cache/lab-test/profiles";

fn real_profile(name: &str) -> String {
    let path = format!("{REAL_PROFILES}/{name}.json");
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing: run scripts/install-deps (it unpacks Debian's profiles)"
    );
    path
}

#[test]
fn the_profiles_docker_and_podman_ship_load_as_they_are() {
    let _host = shared();
    // Debian's copies of moby's default.json and podman's seccomp.json have `"args": null`;
    // the old-format fixture has one `name` per rule and `architectures` instead of archMap.
    let profiles = ["moby-default", "moby-fixture-default-old-format", "podman-seccomp"];
    let mut topology = format!("[defaults]\n{}", probe_mount());
    for (i, p) in profiles.iter().enumerate() {
        topology += &format!("[nodes.n{i}]\nseccomp = \"{}\"\n", real_profile(p));
    }
    let lab = Lab::up("realprofiles", &topology);
    let probe = |node: &str, op: &str| text(&lab.exec(node, &["/probe", op]).stdout).trim().to_string();
    for (i, p) in profiles.iter().enumerate() {
        let node = format!("n{i}");
        // Ordinary tools run (`ls` of today's coreutils needs statx, which the old format
        // predates: that profile denies it, as Docker would under it).
        assert_eq!(lab.sh(&node, "cat /etc/hostname && ip -o link show lo | wc -l"), format!("{node}\n1\n"), "{p}");
        // What the profile denies is denied.
        for op in ["kexec-load", "bpf", "open-by-handle-at"] {
            assert_eq!(probe(&node, op), "EPERM", "{op} under {p}");
        }
    }
    // keyctl: moby's profiles deny it; podman's allows it (the kernel then refuses the
    // made-up operation itself), so each node runs under its file's profile, not lab's.
    assert_eq!(probe("n0", "keyctl"), "EPERM");
    assert_eq!(probe("n1", "keyctl"), "EPERM");
    let podman = probe("n2", "keyctl");
    assert!(podman != "EPERM" && !podman.is_empty(), "keyctl under podman's profile: {podman}");
    lab.down();
}

#[test]
fn a_profile_that_lets_nothing_start_is_refused_before_anything_is_made() {
    let _host = shared();
    // moby's fixtures allow a handful of calls (chmod, clone, open, close), and not execve.
    for fixture in ["moby-fixture-example", "moby-fixture-conditional_include"] {
        let (lab, out) = Lab::try_up("tinyprofile", &format!("[nodes.a]\nseccomp = \"{}\"\n", real_profile(fixture)));
        assert_eq!(out.status.code(), Some(1), "{}", show(&out));
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("node a: seccomp profile {}", real_profile(fixture)))
                && err.contains("denies execve"),
            "{err}"
        );
        assert_eq!(leftovers(&lab.name), Vec::<String>::new());
    }
}
