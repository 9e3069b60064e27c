use super::*;
use crate::caps::effective_set;

/// Runs `probe` in a forked child under `profile` compiled for `caps`; returns the errno it
/// reports (0 for success). The filter is compiled before the fork: after it, only
/// async-signal-safe calls.
fn errno_under(profile: &Profile, caps: &BTreeSet<Cap>, probe: fn() -> i64) -> i32 {
    let bpf = profile.to_bpf(caps).expect("compiles").0;
    let prog = libc::sock_fprog { len: (bpf.len() / 8) as u16, filter: bpf.as_ptr() as *mut libc::sock_filter };
    // SAFETY: the child only makes raw syscalls and _exits.
    #[allow(clippy::multiple_unsafe_ops_per_block)]
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            if libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog) != 0 {
                libc::_exit(255);
            }
            let r = probe();
            let err = if r < 0 { *libc::__errno_location() } else { 0 };
            libc::_exit(err);
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        assert!(libc::WIFEXITED(status), "probe died: {status}");
        libc::WEXITSTATUS(status)
    }
}

/// A probe for [`errno_under`]: one raw syscall.
macro_rules! sys {
    ($($arg:expr),+) => {
        || {
            // SAFETY: in errno_under's forked child, under the filter; every pointer passed
            // is null or a C string literal.
            unsafe { libc::syscall($($arg),+) }
        }
    };
}

fn default_caps() -> BTreeSet<Cap> {
    effective_set(&[], &[], false).unwrap()
}

#[test]
fn default_profile_denies_what_docker_denies() {
    let p = docker_default();
    let caps = default_caps();
    let eperm = libc::EPERM;
    // SAFETY (all probes): raw syscalls with harmless or invalid arguments.
    assert_eq!(errno_under(&p, &caps, sys!(libc::SYS_getpid)), 0);
    assert_eq!(errno_under(&p, &caps, sys!(libc::SYS_mount, 0, 0, 0, 0, 0)), eperm);
    assert_eq!(errno_under(&p, &caps, sys!(libc::SYS_unshare, libc::CLONE_NEWNET)), eperm);
    assert_eq!(errno_under(&p, &caps, sys!(libc::SYS_keyctl, 0, 0, 0, 0, 0)), eperm);
    assert_eq!(errno_under(&p, &caps, sys!(libc::SYS_bpf, 0, 0, 0)), eperm);
    assert_eq!(errno_under(&p, &caps, sys!(libc::SYS_pivot_root, 0, 0)), eperm);
    assert_eq!(errno_under(&p, &caps, sys!(libc::SYS_userfaultfd, 0)), eperm);
    assert_eq!(errno_under(&p, &caps, sys!(libc::SYS_io_uring_setup, 1, 0)), eperm);
    // Namespace flags on clone: refused; clone3: ENOSYS so that libc falls back to clone.
    assert_eq!(errno_under(&p, &caps, sys!(libc::SYS_clone, libc::CLONE_NEWNS, 0, 0, 0, 0)), eperm);
    assert_eq!(errno_under(&p, &caps, sys!(libc::SYS_clone3, 0, 0)), libc::ENOSYS);
    // socket: AF_INET allowed, AF_VSOCK and AF_ALG refused.
    assert_eq!(errno_under(&p, &caps, sys!(libc::SYS_socket, libc::AF_VSOCK, 1, 0)), eperm);
    assert_eq!(errno_under(&p, &caps, sys!(libc::SYS_socket, libc::AF_ALG, 5, 0)), eperm);
    assert_eq!(errno_under(&p, &caps, sys!(libc::SYS_socket, libc::AF_INET, 2, 0)), 0);
    // personality: only the listed values.
    assert_eq!(errno_under(&p, &caps, sys!(libc::SYS_personality, 0xffff_ffffu64)), 0);
    assert_eq!(errno_under(&p, &caps, sys!(libc::SYS_personality, 0x0040_0000)), eperm);
}

#[test]
fn capabilities_unlock_their_calls() {
    let p = docker_default();
    let admin = effective_set(&["SYS_ADMIN".into()], &[], false).unwrap();
    // With SYS_ADMIN, mount and unshare pass the filter (and fail later for other reasons).
    assert_ne!(errno_under(&p, &admin, sys!(libc::SYS_mount, 0, 0, 0, 0, 0)), libc::EPERM);
    assert_ne!(errno_under(&p, &admin, sys!(libc::SYS_clone3, 0, 0)), libc::ENOSYS);
    let no_chroot = effective_set(&[], &["SYS_CHROOT".into()], false).unwrap();
    assert_eq!(errno_under(&p, &no_chroot, sys!(libc::SYS_chroot, c"/".as_ptr())), libc::EPERM);
}

#[test]
fn docker_format_profiles_load_with_their_quirks() {
    let json = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
        "syscalls": [
            {"names": ["getpid", "no_such_syscall_anywhere", "exit_group", "exit"], "action": "SCMP_ACT_ALLOW"},
            {"name": "getppid", "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["getuid"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["gettid"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_NET_ADMIN"]}},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [
                {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}
            ], "comment": "Docker adds comments; they are ignored"}
        ]
    }"#;
    let p: Profile = serde_json::from_str(json).unwrap();
    let caps = default_caps();
    assert_eq!(errno_under(&p, &caps, sys!(libc::SYS_getpid)), 0);
    assert_eq!(errno_under(&p, &caps, sys!(libc::SYS_getppid)), 13);
    assert_eq!(errno_under(&p, &caps, sys!(libc::SYS_getuid)), libc::EPERM, "needs SYS_ADMIN");
    assert_eq!(errno_under(&p, &caps, sys!(libc::SYS_gettid)), libc::EPERM, "excluded by NET_ADMIN");
    // Two args on one index: either value.
    assert_eq!(errno_under(&p, &caps, sys!(libc::SYS_personality, 8)), 0);
    assert_eq!(errno_under(&p, &caps, sys!(libc::SYS_personality, 0)), 0);
    assert_eq!(errno_under(&p, &caps, sys!(libc::SYS_personality, 0x20000)), libc::EPERM);
}

#[test]
fn bad_profiles_say_where() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.json");
    std::fs::write(&path, "{\"defaultAction\": \"SCMP_ACT_NOPE\"}").unwrap();
    let err = Profile::load(&path).unwrap_err().to_string();
    assert!(err.contains("p.json:1:") && err.contains("SCMP_ACT_NOPE"), "{err}");
}

#[test]
fn compiled_programs_round_trip_as_json() {
    let bpf = docker_default().to_bpf(&default_caps()).unwrap();
    let json = serde_json::to_string(&bpf).unwrap();
    assert_eq!(serde_json::from_str::<Bpf>(&json).unwrap(), bpf);
    assert!(serde_json::from_str::<Bpf>("\"abc\"").is_err());
}

#[test]
fn the_default_profile_round_trips_as_json() {
    let p = docker_default();
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(serde_json::from_str::<Profile>(&json).unwrap(), p);
}

#[test]
fn null_lists_read_as_empty_as_go_writes_them() {
    // moby's default.json has `"subArchitectures": null`; Debian's copies of moby's and
    // podman's profiles have `"args": null`. Every list and condition may be null.
    let json = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": null,
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
            {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": null}
        ],
        "syscalls": [
            {"names": ["getpid", "exit_group"], "action": "SCMP_ACT_ALLOW", "args": null,
             "includes": null, "excludes": {"caps": null, "arches": null, "minKernel": null}},
            {"names": null, "name": "gettid", "action": "SCMP_ACT_ALLOW", "errnoRet": null}
        ]
    }"#;
    let p: Profile = serde_json::from_str(json).expect("nulls are empty");
    assert_eq!(p.arch_map[1].sub_architectures, Vec::<String>::new());
    assert_eq!(p.syscalls[0].args, Vec::<Arg>::new());
    assert_eq!(p.syscalls[1].name.as_deref(), Some("gettid"));
    let caps = default_caps();
    // SAFETY: raw syscalls with harmless arguments.
    assert_eq!(errno_under(&p, &caps, sys!(libc::SYS_getpid)), 0);
    assert_eq!(errno_under(&p, &caps, sys!(libc::SYS_gettid)), 0);
    assert_eq!(errno_under(&p, &caps, sys!(libc::SYS_getppid)), libc::EPERM);
    assert!(serde_json::from_str::<Profile>(r#"{"defaultAction": null}"#).is_err(), "the default action is needed");
}

#[test]
fn programs_are_evaluated_before_a_node_runs_under_them() {
    let caps = default_caps();
    let bpf = docker_default().to_bpf(&caps).unwrap();
    assert_eq!(bpf.verdict(libc::SYS_execve), Some(Verdict::Allow));
    assert_eq!(bpf.verdict(libc::SYS_getpid), Some(Verdict::Allow));
    assert_eq!(bpf.verdict(libc::SYS_keyctl), Some(Verdict::Deny));
    assert_eq!(bpf.verdict(libc::SYS_kexec_load), Some(Verdict::Deny));
    // moby's example fixture allows clone, open and close only: nothing can be executed.
    let tiny: Profile = serde_json::from_str(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"name": "clone", "action": "SCMP_ACT_ALLOW"}, {"name": "close", "action": "SCMP_ACT_LOG"}]}"#,
    )
    .unwrap();
    let bpf = tiny.to_bpf(&caps).unwrap();
    assert_eq!(bpf.verdict(libc::SYS_execve), Some(Verdict::Deny));
    assert_eq!(bpf.verdict(libc::SYS_close), Some(Verdict::Log));
    assert_eq!(Bpf(vec![0xff; 8]).verdict(libc::SYS_execve), None, "an unknown instruction: cannot tell");
}
