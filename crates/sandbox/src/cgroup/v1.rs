//! cgroup v1: one hierarchy per controller (or per co-mounted group of them).

use super::devices::{DeviceRule, Kind};
use super::{keyed, mkdir_all, read, read_limit, rmdir, write, Cgroups, Limits, Stats, Version, CPU_PERIOD_US};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Controllers lab places nodes in. cpuset is left out: a new v1 cpuset cgroup has no CPUs
/// until configured, and lab does not pin CPUs.
const CONTROLLERS: &[&str] = &["cpu", "cpuacct", "memory", "pids", "freezer", "blkio", "devices"];

/// How long freezing may take before it is an error.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// One mounted hierarchy and the controllers it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub root: PathBuf,
    pub controllers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1 {
    hierarchies: Vec<Hierarchy>,
}

impl V1 {
    pub fn new(hierarchies: Vec<Hierarchy>) -> V1 {
        V1 { hierarchies }
    }

    /// The hierarchies of the controllers lab uses, from /proc/self/mountinfo.
    pub fn from_mountinfo(mountinfo: &str) -> V1 {
        let mut hierarchies: Vec<Hierarchy> = Vec::new();
        for line in mountinfo.lines() {
            // "... mountpoint opts - fstype source superopts"
            let Some((left, right)) = line.split_once(" - ") else { continue };
            let mut r = right.split_whitespace();
            if r.next() != Some("cgroup") {
                continue;
            }
            let superopts = r.nth(1).unwrap_or("");
            let controllers: Vec<String> =
                superopts.split(',').filter(|o| CONTROLLERS.contains(o)).map(str::to_string).collect();
            let mountpoint = left.split_whitespace().nth(4);
            if let (false, Some(mp)) = (controllers.is_empty(), mountpoint) {
                let root = PathBuf::from(unescape(mp));
                if !hierarchies.iter().any(|h| h.root == root) {
                    hierarchies.push(Hierarchy { root, controllers });
                }
            }
        }
        V1 { hierarchies }
    }

    pub fn is_empty(&self) -> bool {
        self.hierarchies.is_empty()
    }

    pub fn roots(&self) -> Vec<&Path> {
        self.hierarchies.iter().map(|h| h.root.as_path()).collect()
    }

    /// The directory of `path` in the hierarchy of `controller`, if the machine has it.
    fn dir(&self, controller: &str, path: &str) -> Option<PathBuf> {
        self.hierarchies.iter().find(|h| h.controllers.iter().any(|c| c == controller)).map(|h| h.root.join(path))
    }

    fn needs(&self, controller: &str, path: &str, what: &str) -> Result<PathBuf> {
        self.dir(controller, path).ok_or_else(|| Error::MissingFeature {
            what: what.into(),
            feature: format!("the cgroup v1 {controller} controller"),
        })
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

impl Cgroups for V1 {
    fn version(&self) -> Version {
        Version::V1
    }

    fn create(&self, path: &str) -> Result<()> {
        self.hierarchies.iter().try_for_each(|h| mkdir_all(&h.root.join(path)))
    }

    fn set_limits(&self, path: &str, limits: &Limits) -> Result<()> {
        if let Some(bytes) = limits.memory {
            let dir = self.needs("memory", path, "memory")?;
            write(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
            // The limit is the node's memory: no swapping past it (memory+swap = memory).
            if dir.join("memory.memsw.limit_in_bytes").exists() {
                write(&dir.join("memory.memsw.limit_in_bytes"), &bytes.to_string())?;
            }
        }
        if let Some(m) = limits.millicpus {
            let dir = self.needs("cpu", path, "cpus")?;
            write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
            write(&dir.join("cpu.cfs_quota_us"), &(u64::from(m) * CPU_PERIOD_US / 1000).to_string())?;
        }
        if let Some(n) = limits.pids {
            write(&self.needs("pids", path, "pids")?.join("pids.max"), &n.to_string())?;
        }
        if let Some(w) = limits.io_weight {
            let dir = self.needs("blkio", path, "io_weight")?;
            let file = ["blkio.bfq.weight", "blkio.weight"].iter().map(|f| dir.join(f)).find(|f| f.exists());
            match file {
                Some(f) => write(&f, &w.to_string())?,
                None => {
                    return Err(Error::Other(format!(
                    "io_weight: {} has no blkio.weight or blkio.bfq.weight (the kernel needs the BFQ I/O scheduler)",
                    dir.display()
                )))
                }
            }
        }
        Ok(())
    }

    fn set_devices(&self, path: &str, rules: &[DeviceRule]) -> Result<()> {
        let dir = self.needs("devices", path, "the device filter")?;
        // A new cgroup inherits its parent's list; allowing everything needs nothing more.
        if rules.iter().any(|r| r.kind == Kind::Any && r.major.is_none() && r.read && r.write && r.mknod) {
            return Ok(());
        }
        write(&dir.join("devices.deny"), "a")?;
        rules.iter().try_for_each(|r| write(&dir.join("devices.allow"), &r.v1_line()))
    }

    fn procs_files(&self, path: &str) -> Vec<PathBuf> {
        self.hierarchies.iter().map(|h| h.root.join(path).join("cgroup.procs")).collect()
    }

    fn remove(&self, path: &str) -> Result<()> {
        self.hierarchies.iter().try_for_each(|h| rmdir_after_zombies(&h.root.join(path)))
    }

    fn stats(&self, path: &str) -> Result<Stats> {
        let file = |c: &str, f: &str| self.dir(c, path).map(|d| d.join(f)).filter(|p| p.exists());
        Ok(Stats {
            cpu_usec: file("cpuacct", "cpuacct.usage").map(|f| read_limit(&f)).transpose()?.flatten().unwrap_or(0)
                / 1000,
            memory: file("memory", "memory.usage_in_bytes").map(|f| read_limit(&f)).transpose()?.flatten().unwrap_or(0),
            memory_limit: file("memory", "memory.limit_in_bytes").map(|f| read_limit(&f)).transpose()?.flatten(),
            pids: file("pids", "pids.current").map(|f| read_limit(&f)).transpose()?.flatten().unwrap_or(0),
            pids_limit: file("pids", "pids.max").map(|f| read_limit(&f)).transpose()?.flatten(),
            oom_kills: file("memory", "memory.oom_control").map(|f| keyed(&f, "oom_kill")).transpose()?.unwrap_or(0),
        })
    }

    fn freeze(&self, path: &str, frozen: bool) -> Result<()> {
        let state = self.needs("freezer", path, "pausing")?.join("freezer.state");
        if !frozen {
            return write(&state, "THAWED");
        }
        // The v1 freezer sends no notification, and it can stay FREEZING while processes keep
        // forking. As runc does: write FROZEN again and again (each write also catches new
        // children), thaw for a moment now and then, and read the state in between.
        let deadline = Instant::now() + FREEZE_TIMEOUT;
        for attempt in 1.. {
            if attempt % 50 == 0 {
                write(&state, "THAWED")?;
                std::thread::sleep(Duration::from_millis(10));
            }
            write(&state, "FROZEN")?;
            if read(&state)? == "FROZEN" {
                return Ok(());
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        write(&state, "THAWED")?;
        Err(Error::Other(format!("{}: could not freeze (processes keep forking?); left thawed", state.display())))
    }

    fn frozen(&self, path: &str) -> bool {
        self.dir("freezer", path).is_some_and(|d| read(&d.join("freezer.state")).is_ok_and(|s| s == "FROZEN"))
    }
}

/// How long a v1 cgroup with no process left may stay busy: its last tasks are zombies that
/// their parent (the host's init, when a `lab exec` was killed) has yet to reap; some inits
/// reap only every few seconds.
const ZOMBIE_GRACE: Duration = Duration::from_secs(10);

/// rmdir, waiting out EBUSY for a while (the caller has killed and waited for every process
/// it found). On v1 a dead task keeps its cgroup busy until it is reaped, and nothing tells us
/// when that is (v2 has cgroup.events and no such wait): a bounded retry is the only way.
fn rmdir_after_zombies(dir: &Path) -> Result<()> {
    let deadline = Instant::now() + ZOMBIE_GRACE;
    loop {
        match rmdir(dir) {
            Err(e) if e.errno() == Some(libc::EBUSY) && Instant::now() < deadline => {
                // A child cgroup is not a zombie: that is busy for good.
                if std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| e.path().is_dir()) {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r,
        }
    }
}
