//! `lab-probe OPERATION [ARG]`: attempts one operation that a node should (or, privileged,
//! may) not be able to do, and prints `ok` or the errno's name. The end-to-end escape tests
//! run it inside nodes. Where an operation is allowed, its arguments make it fail harmlessly
//! after the seccomp filter and capability checks (a bad fd, an invalid flag, a missing path),
//! so that a privileged run changes nothing on the host.
//!
//! Raw syscalls are the point of this program, many to a block (each block says why its
//! arguments are sound): it is exempt from one-unsafe-operation-per-block, not from saying so.

#![allow(clippy::multiple_unsafe_ops_per_block)]

use std::ffi::CString;

fn errno_name(e: i32) -> String {
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EBADF => "EBADF",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EINVAL => "EINVAL",
        libc::ETXTBSY => "ETXTBSY",
        libc::EROFS => "EROFS",
        libc::ENOSYS => "ENOSYS",
        libc::ENOKEY => "ENOKEY",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENOEXEC => "ENOEXEC",
        libc::E2BIG => "E2BIG",
        libc::ENXIO => "ENXIO",
        libc::ENODEV => "ENODEV",
        libc::ENOTTY => "ENOTTY",
        libc::EIO => "EIO",
        other => return format!("errno {other}"),
    };
    name.to_string()
}

fn outcome(r: i64) -> String {
    if r < 0 {
        errno_name(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        "ok".to_string()
    }
}

fn c(s: &str) -> CString {
    CString::new(s).expect("no NUL")
}

/// open(path, flags) and close; the outcome.
fn try_open(path: &str, flags: i32) -> String {
    let p = c(path);
    // SAFETY: open/close with a valid C string.
    let fd = unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC) };
    let r = outcome(fd as i64);
    if fd >= 0 {
        // SAFETY: the fd just opened, closed once.
        unsafe { libc::close(fd) };
    }
    r
}

/// Network helpers for the end-to-end tests, run inside nodes:
///   serve PORT TEXT         answer every TCP connection on PORT with TEXT, forever
///   sink PORT               take one TCP connection, read it to the end, print
///                           "BYTES SECONDS" (first byte to last)
///   send HOST:PORT BYTES    connect and send BYTES bytes
fn network(op: &str, args: &[String]) -> Option<String> {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match op {
        "serve" => {
            let listener = TcpListener::bind(("::", arg(0).parse().ok()?)).ok()?;
            for mut conn in listener.incoming().flatten() {
                let _ = conn.write_all(format!("{}\n", arg(1)).as_bytes());
            }
            None
        }
        "sink" => {
            let listener = TcpListener::bind(("::", arg(0).parse().ok()?)).ok()?;
            println!("listening");
            let (mut conn, _) = listener.accept().ok()?;
            let mut buf = vec![0u8; 1 << 16];
            let (mut total, mut first) = (0u64, None);
            let mut last = std::time::Instant::now();
            loop {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        first.get_or_insert_with(std::time::Instant::now);
                        last = std::time::Instant::now();
                        total += n as u64;
                    }
                }
            }
            let secs = first.map_or(0.0, |f| (last - f).as_secs_f64());
            Some(format!("{total} {secs}"))
        }
        "send" => {
            let mut conn = TcpStream::connect(arg(0)).ok()?;
            let chunk = vec![0x5au8; 1 << 16];
            let mut left: u64 = arg(1).parse().ok()?;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                conn.write_all(&chunk[..n]).ok()?;
                left -= n as u64;
            }
            Some("sent".into())
        }
        _ => None,
    }
}

/// rtnetlink through another network namespace by its id (IFLA_TARGET_NETNSID), as a node
/// whose veth peers live elsewhere could try: list its interfaces, delete one (a name that does
/// not exist: ENODEV means it was allowed), create a veth pair there (deleted again at once).
/// Prints `list=COUNT|ERRNO del=ERRNO add=ok|ERRNO`.
mod netnsid {
    use super::errno_name;

    const RTM_NEWLINK: u16 = 16;
    const RTM_DELLINK: u16 = 17;
    const RTM_GETLINK: u16 = 18;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const F_REQUEST: u16 = 1;
    const F_ACK: u16 = 4;
    const F_DUMP: u16 = 0x300;
    const F_CREATE_EXCL: u16 = 0x600;
    const IFLA_IFNAME: u16 = 3;
    const IFLA_LINKINFO: u16 = 18;
    const IFLA_INFO_KIND: u16 = 1;
    const IFLA_INFO_DATA: u16 = 2;
    const VETH_INFO_PEER: u16 = 1;
    const IFLA_TARGET_NETNSID: u16 = 46;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let len = 4 + value.len();
        let mut out = Vec::new();
        out.extend_from_slice(&(len as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize((len + 3) & !3, 0);
        out
    }

    fn name(n: &str) -> Vec<u8> {
        let mut v = n.as_bytes().to_vec();
        v.push(0);
        attr(IFLA_IFNAME, &v)
    }

    /// A request: header, an empty ifinfomsg, attributes.
    fn message(kind: u16, flags: u16, attrs: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = [vec![0u8; 16]].iter().chain(attrs).flatten().copied().collect();
        let mut out = Vec::new();
        out.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&(flags | F_REQUEST).to_ne_bytes());
        out.extend_from_slice(&1u32.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend(body);
        out
    }

    /// Sends `msg`; the count of link messages until done, or the errno of the answer.
    fn ask(msg: &[u8]) -> Result<usize, i32> {
        // SAFETY: a netlink socket of our own, plain buffers.
        unsafe {
            let fd = libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE);
            if fd < 0 {
                return Err(*libc::__errno_location());
            }
            if libc::send(fd, msg.as_ptr().cast(), msg.len(), 0) < 0 {
                let e = *libc::__errno_location();
                libc::close(fd);
                return Err(e);
            }
            let mut count = 0;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
                if n <= 0 {
                    libc::close(fd);
                    return Err(*libc::__errno_location());
                }
                let mut at = 0usize;
                while at + 16 <= n as usize {
                    let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
                    let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap());
                    match kind {
                        NLMSG_ERROR => {
                            let code = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().unwrap());
                            libc::close(fd);
                            return if code == 0 { Ok(count) } else { Err(-code) };
                        }
                        NLMSG_DONE => {
                            // A dump that failed says so in its end message.
                            let code = if len >= 20 {
                                i32::from_ne_bytes(buf[at + 16..at + 20].try_into().unwrap())
                            } else {
                                0
                            };
                            libc::close(fd);
                            return if code < 0 { Err(-code) } else { Ok(count) };
                        }
                        RTM_NEWLINK => count += 1,
                        _ => {}
                    }
                    if len < 16 {
                        break;
                    }
                    at += (len + 3) & !3;
                }
            }
        }
    }

    pub fn run(nsid: i32) -> String {
        let target = attr(IFLA_TARGET_NETNSID, &nsid.to_ne_bytes());
        let list = match ask(&message(RTM_GETLINK, F_DUMP, std::slice::from_ref(&target))) {
            Ok(n) => n.to_string(),
            Err(e) => errno_name(e),
        };
        let del = match ask(&message(RTM_DELLINK, F_ACK, &[target.clone(), name("lab-probe-none")])) {
            Ok(_) => "ok".to_string(),
            Err(e) => errno_name(e),
        };
        let mut peer = vec![0u8; 16];
        peer.extend(name("lpv-peer"));
        let data = attr(IFLA_INFO_DATA, &attr(VETH_INFO_PEER, &peer));
        let info = attr(IFLA_LINKINFO, &[attr(IFLA_INFO_KIND, b"veth\0"), data].concat());
        let add = match ask(&message(RTM_NEWLINK, F_ACK | F_CREATE_EXCL, &[target.clone(), name("lpv-probe"), info])) {
            Ok(_) => {
                let _ = ask(&message(RTM_DELLINK, F_ACK, &[target, name("lpv-probe")]));
                "ok".to_string()
            }
            Err(e) => errno_name(e),
        };
        format!("list={list} del={del} add={add}")
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let op = args.get(1).map(String::as_str).unwrap_or("");
    if ["serve", "sink", "send"].contains(&op) {
        match network(op, &args[2..]) {
            Some(out) => println!("{out}"),
            None => {
                eprintln!("lab-probe {op}: failed: {}", std::io::Error::last_os_error());
                std::process::exit(1);
            }
        }
        return;
    }
    let arg = args.get(2).cloned().unwrap_or_default();
    // SAFETY: raw syscalls (every arm) whose pointer arguments are valid C strings, buffers
    // of the size given, or null.
    let result = unsafe {
        match op {
            "mount" => {
                let dir = c("/tmp/lab-probe-mnt");
                libc::mkdir(dir.as_ptr(), 0o755);
                let r = outcome(
                    libc::mount(c("none").as_ptr(), dir.as_ptr(), c("tmpfs").as_ptr(), 0, std::ptr::null()) as i64,
                );
                libc::umount2(dir.as_ptr(), libc::MNT_DETACH);
                r
            }
            "umount-proc" => outcome(libc::umount2(c("/proc").as_ptr(), libc::MNT_DETACH) as i64),
            "unshare-net" => outcome(libc::unshare(libc::CLONE_NEWNET) as i64),
            "unshare-user" => outcome(libc::unshare(libc::CLONE_NEWUSER) as i64),
            "setns" => {
                let fd = libc::open(c("/proc/self/ns/net").as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                outcome(libc::setns(fd, libc::CLONE_NEWNET) as i64)
            }
            "pivot-root" => outcome(libc::syscall(
                libc::SYS_pivot_root,
                c("/lab-probe-none").as_ptr(),
                c("/lab-probe-none").as_ptr(),
            )),
            "kexec-load" => outcome(libc::syscall(libc::SYS_kexec_load, 0, 0, std::ptr::null::<u8>(), 0xdead_0000u64)),
            "finit-module" => outcome(libc::syscall(libc::SYS_finit_module, -1, c("").as_ptr(), 0)),
            "delete-module" => outcome(libc::syscall(
                libc::SYS_delete_module,
                c("lab_probe_no_such_module").as_ptr(),
                libc::O_NONBLOCK,
            )),
            "bpf" => outcome(libc::syscall(libc::SYS_bpf, 0xffff, std::ptr::null::<u8>(), 0)),
            "perf-event-open" => {
                outcome(libc::syscall(libc::SYS_perf_event_open, std::ptr::null::<u8>(), 0, -1, -1, 0))
            }
            "open-by-handle-at" => outcome(libc::syscall(libc::SYS_open_by_handle_at, -1, std::ptr::null::<u8>(), 0)),
            "keyctl" => outcome(libc::syscall(libc::SYS_keyctl, 0xffff, 0, 0, 0, 0)),
            "request-key" => outcome(libc::syscall(
                libc::SYS_request_key,
                c("user").as_ptr(),
                c("lab-probe-none").as_ptr(),
                std::ptr::null::<u8>(),
                0,
            )),
            // In a pid namespace other than the host's, CAD_OFF is EINVAL once allowed.
            "reboot" => outcome(libc::syscall(
                libc::SYS_reboot,
                libc::LINUX_REBOOT_MAGIC1,
                libc::LINUX_REBOOT_MAGIC2,
                libc::LINUX_REBOOT_CMD_CAD_OFF,
                0,
            )),
            "swapon" => outcome(libc::syscall(libc::SYS_swapon, c("/lab-probe-no-swap").as_ptr(), 0)),
            "userfaultfd" => outcome(libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC)),
            "ptrace-init" => outcome(libc::ptrace(libc::PTRACE_ATTACH, 1, 0, 0) as i64),
            "clone-newns" => {
                let r = libc::syscall(libc::SYS_clone, (libc::CLONE_NEWNS | libc::SIGCHLD) as u64, 0, 0, 0, 0);
                if r == 0 {
                    libc::_exit(0);
                }
                if r > 0 {
                    libc::waitpid(r as i32, std::ptr::null_mut(), 0);
                }
                outcome(r)
            }
            "clone3" => outcome(libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0)),
            "mknod-block" => {
                let p = c("/tmp/lab-probe-sda");
                let r = outcome(libc::mknod(p.as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(8, 0)) as i64);
                libc::unlink(p.as_ptr());
                r
            }
            "sethostname" => outcome(libc::sethostname(c("lab-probe").as_ptr(), 9) as i64),
            // Opened for writing only; nothing is written.
            "open-write" => try_open(&arg, libc::O_WRONLY),
            "read" => match std::fs::read(&arg) {
                Ok(bytes) => format!("{} bytes", bytes.len()),
                Err(e) => errno_name(e.raw_os_error().unwrap_or(0)),
            },
            // The classic chroot escape: chroot into a subdirectory, climb out with "..",
            // chroot("."). `arg` exists only on the host: prints whether it became visible.
            "chroot-escape" => {
                let dir = c("/tmp/lab-probe-jail");
                libc::mkdir(dir.as_ptr(), 0o755);
                let mut r = outcome(libc::chroot(dir.as_ptr()) as i64);
                if r == "ok" {
                    for _ in 0..64 {
                        libc::chdir(c("..").as_ptr());
                    }
                    libc::chroot(c(".").as_ptr());
                    r = if std::path::Path::new(&arg).exists() { "escaped".into() } else { "contained".into() };
                }
                r
            }
            "kill" => outcome(libc::kill(arg.parse().unwrap_or(-2), libc::SIGTERM) as i64),
            // Every fd of this process and where it points.
            "fds" => {
                let mut out = Vec::new();
                for e in std::fs::read_dir("/proc/self/fd").into_iter().flatten().flatten() {
                    let target = std::fs::read_link(e.path()).map(|p| p.display().to_string()).unwrap_or_default();
                    out.push(format!("{}={target}", e.file_name().to_string_lossy()));
                }
                out.join(" ")
            }
            // Whether a terminal reaches this process: which of fds 0-2 is one, whether
            // /dev/tty opens (a controlling terminal), whether TIOCSTI could push a key into
            // one, whether this process leads its own session.
            "tty" => {
                let mut out = Vec::new();
                let mut tty_fd = None;
                for fd in 0..3 {
                    let is = libc::isatty(fd) == 1;
                    if is && tty_fd.is_none() {
                        tty_fd = Some(fd);
                    }
                    out.push(format!("fd{fd}={}", if is { "tty" } else { "notty" }));
                }
                out.push(format!("devtty={}", try_open("/dev/tty", libc::O_RDWR | libc::O_NOCTTY)));
                // A NUL byte: were it pushed, it would do nothing to a shell.
                let sti = match tty_fd {
                    Some(fd) => outcome(libc::ioctl(fd, libc::TIOCSTI, c"".as_ptr()) as i64),
                    None => "none".to_string(),
                };
                out.push(format!("tiocsti={sti}"));
                let own = libc::getsid(0) == libc::getpid();
                out.push(format!("session={}", if own { "own" } else { "inherited" }));
                out.join(" ")
            }
            "netnsid" => netnsid::run(arg.parse().unwrap_or(0)),
            "cwd" => std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_else(|e| e.to_string()),
            _ => {
                eprintln!("usage: lab-probe OPERATION [ARG]");
                std::process::exit(2);
            }
        }
    };
    println!("{result}");
}
