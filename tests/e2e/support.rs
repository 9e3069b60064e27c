//! Helpers for end-to-end tests: run the real `lab` binary as root, give each test its own
//! lab name, and take every lab down again, also when a test fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Tests that compare the whole host before and after take this exclusively; the others
/// share it, so that no lab of theirs is up while the host is compared.
static HOST: RwLock<()> = RwLock::new(());

pub fn shared() -> RwLockReadGuard<'static, ()> {
    require_root();
    HOST.read().unwrap_or_else(|p| p.into_inner())
}

pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    require_root();
    HOST.write().unwrap_or_else(|p| p.into_inner())
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the end-to-end tests create namespaces, interfaces and cgroups: run `cargo test` as root"
    );
}

pub fn lab_bin() -> &'static str {
    env!("CARGO_BIN_EXE_lab")
}

/// The repository's root (topologies/, tests/).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A lab name no other test uses: `t-<what>-<pid>-<n>`.
pub fn unique(what: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("t-{what}-{}-{}", std::process::id() % 100_000, N.fetch_add(1, Ordering::Relaxed))
}

/// Runs `lab` with `args`.
pub fn lab(args: &[&str]) -> Output {
    Command::new(lab_bin()).args(args).stdin(Stdio::null()).output().expect("running the lab binary")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What a command printed, stdout then stderr.
pub fn text_of(out: &Output) -> String {
    text(&out.stdout) + &text(&out.stderr)
}

/// Runs a shell command on the host (to check the product from outside).
pub fn host(cmd: &str) -> Output {
    Command::new("sh").arg("-c").arg(cmd).output().expect("running sh")
}

pub fn show(o: &Output) -> String {
    format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), text(&o.stdout), text(&o.stderr))
}

/// A lab that is taken down when dropped, whatever happened.
pub struct Lab {
    pub name: String,
    pub file: PathBuf,
    _dir: tempfile::TempDir,
    down: bool,
}

impl Lab {
    /// Writes `topology` (without its `name`) to a file and brings it up under a unique name.
    pub fn up(what: &str, topology: &str) -> Lab {
        let (lab, out) = Lab::try_up(what, topology);
        assert!(out.status.success(), "lab up {} failed:\n{}\ntopology:\n{topology}", lab.name, show(&out));
        lab
    }

    /// Like `up`, but returns `lab up`'s output whatever it was.
    pub fn try_up(what: &str, topology: &str) -> (Lab, Output) {
        Lab::try_up_named(&unique(what), topology)
    }

    /// Like `try_up`, under exactly the name `name`.
    pub fn try_up_named(name: &str, topology: &str) -> (Lab, Output) {
        let name = name.to_string();
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(&file, format!("name = \"{name}\"\n{topology}")).expect("writing topology");
        let out = lab(&["up", file.to_str().expect("utf-8 path")]);
        (Lab { name, file, _dir: dir, down: false }, out)
    }

    /// Takes charge of a lab brought up some other way (taken down on drop).
    pub fn adopt(name: &str, file: &Path, dir: tempfile::TempDir) -> Lab {
        Lab { name: name.to_string(), file: file.to_path_buf(), _dir: dir, down: false }
    }

    /// Brings up an existing topology file under a unique name (`--name`).
    pub fn up_file(what: &str, path: &Path) -> Lab {
        Lab::up_file_named(&unique(what), path)
    }

    /// Brings up an existing topology file under exactly the name `name` (`--name`).
    pub fn up_file_named(name: &str, path: &Path) -> Lab {
        let name = name.to_string();
        let dir = tempfile::tempdir().expect("temp dir");
        let out = lab(&["up", path.to_str().expect("utf-8 path"), "--name", &name]);
        let lab = Lab { name, file: path.to_path_buf(), _dir: dir, down: false };
        assert!(out.status.success(), "lab up {} failed:\n{}", lab.name, show(&out));
        lab
    }

    pub fn exec(&self, node: &str, args: &[&str]) -> Output {
        let mut all = vec!["exec", "--lab", &self.name, node];
        all.extend_from_slice(args);
        lab(&all)
    }

    /// `sh -c script` in `node`; panics unless it succeeds; returns stdout.
    pub fn sh(&self, node: &str, script: &str) -> String {
        let out = self.exec(node, &["sh", "-c", script]);
        assert!(out.status.success(), "in {node} of {}: `{script}` failed:\n{}", self.name, show(&out));
        text(&out.stdout)
    }

    /// Takes the lab down (checking nothing is left) and brings it up again from its file.
    pub fn recreate(&self) {
        let out = lab(&["down", &self.name]);
        assert!(out.status.success(), "lab down {} failed:\n{}", self.name, show(&out));
        assert_eq!(leftovers(&self.name), Vec::<String>::new());
        let out = lab(&["up", self.file.to_str().expect("utf-8 path"), "--name", &self.name]);
        assert!(out.status.success(), "lab up {} again failed:\n{}", self.name, show(&out));
    }

    /// Takes the lab down and checks that nothing of it is left on the host.
    pub fn down(mut self) {
        let out = lab(&["down", &self.name]);
        self.down = true;
        assert!(out.status.success(), "lab down {} failed:\n{}", self.name, show(&out));
        assert_eq!(leftovers(&self.name), Vec::<String>::new(), "lab down {} left these behind", self.name);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.down {
            let _ = lab(&["down", &self.name]);
        }
    }
}

/// Everything on the host that still carries lab `name`: interfaces (by alias), network
/// namespace names, its nft table, mounts, cgroups, state, processes.
pub fn leftovers(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let alias_prefix = format!("lab/{name}/");
    for e in std::fs::read_dir("/sys/class/net").expect("/sys/class/net").flatten() {
        let alias = std::fs::read_to_string(e.path().join("ifalias")).unwrap_or_default();
        if alias.starts_with(&alias_prefix) {
            out.push(format!("interface {} ({})", e.file_name().to_string_lossy(), alias.trim()));
        }
    }
    // Its nodes' namespaces, and its gateway namespace (named as the lab).
    let netns_prefix = format!("{name}.");
    for e in std::fs::read_dir("/run/netns").into_iter().flatten().flatten() {
        let ns = e.file_name().to_string_lossy().into_owned();
        if ns.starts_with(&netns_prefix) || ns == name {
            out.push(format!("netns {ns}"));
        }
    }
    let tables = text(&host("nft list tables").stdout);
    for family in ["inet", "bridge"] {
        if tables.lines().any(|l| l.trim() == format!("table {family} lab-{name}")) {
            out.push(format!("nft table {family} lab-{name}"));
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("/proc/self/mounts");
    let state = format!("/run/lab/{name}/");
    let named = |l: &str| {
        l.contains(&format!("/run/netns/{netns_prefix}"))
            || l.split_whitespace().nth(1) == Some(&format!("/run/netns/{name}"))
    };
    for m in mounts.lines().filter(|l| l.contains(&state) || named(l)) {
        out.push(format!("mount {m}"));
    }
    let cgroups = text(&host(&format!("find /sys/fs/cgroup -type d -path '*/lab/{name}*' 2>/dev/null")).stdout);
    out.extend(cgroups.lines().map(|c| format!("cgroup {c}")));
    if Path::new(&state).exists() {
        out.push(format!("state {state}"));
    }
    let scratch = format!("/var/lib/lab/scratch/{name}");
    if Path::new(&scratch).exists() {
        out.push(format!("scratch {scratch}"));
    }
    let volumes = format!("/var/lib/lab/volumes/{name}");
    if Path::new(&volumes).exists() {
        out.push(format!("volumes {volumes}"));
    }
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if text(&cmdline).contains(&state) {
            out.push(format!("process {} {}", e.file_name().to_string_lossy(), text(&cmdline).replace('\0', " ")));
        }
    }
    out
}

/// The host end of interface `ifname` of node `node` of lab `lab`: the host interface whose
/// alias names it.
pub fn host_end(lab: &str, node: &str, ifname: &str) -> String {
    let alias = format!("lab/{lab}/{node}/{ifname}");
    for e in std::fs::read_dir("/sys/class/net").expect("/sys/class/net").flatten() {
        if std::fs::read_to_string(e.path().join("ifalias")).unwrap_or_default().trim() == alias {
            return e.file_name().to_string_lossy().into_owned();
        }
    }
    panic!("no host interface has the alias {alias}")
}

/// A filter (`grep -v`) of interface names that leaves out the fallback devices the kernel
/// puts into every network namespace once an IP tunnel module is loaded (a test that makes a
/// GRE tunnel loads one): they are the kernel's, not a leak.
pub const NOT_FALLBACK: &str = "grep -vxE '(gre|gretap|erspan|tunl|sit|ip6tnl|ip6gre|ip_vti|ip6_vti)0'";

/// The labs of `lab ps --json` (`{"version": 1, "labs": [...]}`).
pub fn ps_json() -> serde_json::Value {
    let out = lab(&["ps", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ps --json prints JSON");
    assert_eq!(report["version"], 1, "{report}");
    report["labs"].clone()
}

/// The first IPv4 address of a node's JSON, as `10.42.0.2/24`.
pub fn first_address(node: &serde_json::Value) -> Option<String> {
    let a = &node["interfaces"][0]["addresses"][0];
    Some(format!("{}/{}", a["address"].as_str()?, a["prefix"].as_u64()?))
}

/// Lab `name` as `lab ps --json` shows it.
pub fn lab_json(name: &str) -> serde_json::Value {
    let all = ps_json();
    all.as_array()
        .and_then(|l| l.iter().find(|l| l["name"] == name).cloned())
        .unwrap_or_else(|| panic!("{name} not in {all}"))
}

/// Node `node` of lab `lab` as `lab ps --json` shows it.
pub fn node_json(lab: &str, node: &str) -> serde_json::Value {
    let l = lab_json(lab);
    l["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["name"] == node).cloned())
        .unwrap_or_else(|| panic!("{node} not in {l}"))
}

/// The probe binary (tests/probe), built by `cargo test --workspace` next to `lab`. Nodes get
/// it bind-mounted at /probe: the checkout may be anywhere (under /tmp, say, and nodes have a
/// /tmp of their own).
pub fn probe_mount() -> String {
    let p = PathBuf::from(lab_bin()).with_file_name("lab-probe");
    assert!(
        p.exists(),
        "{} is missing: build it with `cargo build -p lab-probe` (cargo test --workspace does)",
        p.display()
    );
    format!("mounts = [\"{}:/probe:ro\"]\n", p.display())
}

/// Runs `argv` with a new pseudo-terminal as its controlling terminal and stdin, stdout and
/// stderr, as from an interactive shell; writes `input` to the terminal. Returns the exit code
/// and everything that appeared on the terminal.
pub fn on_terminal(argv: &[&str], input: &[u8]) -> (Option<i32>, String) {
    use std::os::unix::process::CommandExt;
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let slave = std::fs::File::from(pty.slave);
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..])
        .stdin(slave.try_clone().expect("dup"))
        .stdout(slave.try_clone().expect("dup"))
        .stderr(slave.try_clone().expect("dup"));
    // SAFETY: setsid and an ioctl on fd 0 between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawning on a terminal");
    // Our copies of the terminal's other end go, so that it closes when the last user does.
    drop((cmd, slave));
    let mut master = std::fs::File::from(pty.master);
    std::io::Write::write_all(&mut master, input).expect("typing on the terminal");
    // Read until the last holder of the terminal closes it (EIO), on a thread, so that a
    // process that kept it open fails the test instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = std::io::Read::read_to_end(&mut master, &mut out);
        let _ = tx.send(text(&out));
    });
    let status = child.wait().expect("waiting");
    let output = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{argv:?}: something still holds the terminal open after it exited"));
    (status.code(), output)
}

/// SIGKILLs host process `pid` and returns once it has exited (its pidfd turns readable).
pub fn kill_and_wait(pid: i32) {
    // SAFETY: pidfd_open, kill through it, poll and close, on an fd we own.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        assert!(fd >= 0, "no process {pid}");
        libc::syscall(libc::SYS_pidfd_send_signal, fd, libc::SIGKILL, std::ptr::null::<libc::siginfo_t>(), 0);
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        libc::poll(&mut pfd, 1, 10_000);
        libc::close(fd);
    }
}
