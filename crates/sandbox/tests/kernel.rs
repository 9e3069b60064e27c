//! lab-sandbox against the real kernel (root): the v2 device filter attached to a cgroup of
//! the unified hierarchy (on a hybrid host, /sys/fs/cgroup/unified), with a process in it.
//!
//! A forked child of the (threaded) test runner may only make raw syscalls, many to a block.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use lab_sandbox::cgroup::devices::{attach, DEFAULT_RULES};
use std::ffi::CString;
use std::path::PathBuf;

fn unified_root() -> PathBuf {
    let fs_type = |p: &str| nix::sys::statfs::statfs(p).map(|s| s.filesystem_type().0);
    const CGROUP2: i64 = 0x6367_7270;
    for candidate in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if fs_type(candidate) == Ok(CGROUP2) {
            return PathBuf::from(candidate);
        }
    }
    panic!("no cgroup2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified: cannot test the v2 device filter");
}

/// A cgroup of the unified hierarchy, removed when dropped.
struct TestCgroup(PathBuf);
impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn v2_device_filter_allows_standard_devices_and_no_block_device() {
    assert!(nix::unistd::geteuid().is_root(), "needs root: run cargo test as root");
    let cg = TestCgroup(unified_root().join(format!("labtest-devices-{}", std::process::id())));
    std::fs::create_dir(&cg.0).unwrap();
    attach(&cg.0, DEFAULT_RULES).expect("the kernel accepts and attaches the program");

    let tmp = tempfile::tempdir().unwrap();
    let procs = CString::new(cg.0.join("cgroup.procs").to_str().unwrap()).unwrap();
    let blk = CString::new(tmp.path().join("blk").to_str().unwrap()).unwrap();
    let mem = CString::new(tmp.path().join("mem").to_str().unwrap()).unwrap();
    // The child reports each check as one bit of its exit code; after fork, raw syscalls only.
    // SAFETY: the child makes async-signal-safe calls and _exits.
    let status = unsafe {
        let pid = libc::fork();
        if pid == 0 {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                libc::_exit(100);
            }
            libc::close(fd);
            let mut bits = 0;
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if null >= 0 {
                bits |= 1;
            }
            if libc::mknod(blk.as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(8, 0)) != 0
                && *libc::__errno_location() == libc::EPERM
            {
                bits |= 2;
            }
            if libc::mknod(mem.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 1)) == 0 {
                bits |= 4;
                if libc::open(mem.as_ptr(), libc::O_RDONLY) < 0 && *libc::__errno_location() == libc::EPERM {
                    bits |= 8;
                }
            }
            libc::_exit(bits);
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        status
    };
    assert!(libc::WIFEXITED(status));
    let bits = libc::WEXITSTATUS(status);
    assert_ne!(bits, 100, "could not move the test process into {}", cg.0.display());
    assert_eq!(bits & 1, 1, "/dev/null must open");
    assert_eq!(bits & 2, 2, "mknod of a block device must fail with EPERM");
    assert_eq!(bits & 4, 4, "mknod of a character device is allowed (as in Docker)");
    assert_eq!(bits & 8, 8, "but opening /dev/mem's twin must fail with EPERM");
}

#[test]
fn v2_device_filter_of_a_privileged_node_attaches() {
    // Allow-all used to end in an unreachable deny, which the verifier refuses.
    assert!(nix::unistd::geteuid().is_root(), "needs root: run cargo test as root");
    let cg = TestCgroup(unified_root().join(format!("labtest-devices-all-{}", std::process::id())));
    std::fs::create_dir(&cg.0).unwrap();
    attach(&cg.0, lab_sandbox::cgroup::devices::ALLOW_ALL).expect("the kernel accepts the allow-all program");
}
