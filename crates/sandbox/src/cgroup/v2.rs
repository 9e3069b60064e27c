//! cgroup v2: one unified tree.

use super::devices::{self, DeviceRule};
use super::{keyed, mkdir_all, read, read_limit, rmdir, write, Cgroups, Limits, Stats, Version, CPU_PERIOD_US};
use crate::error::{Context, Error, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Controllers lab enables for its cgroups, when the machine has them.
const CONTROLLERS: &[&str] = &["cpu", "io", "memory", "pids"];

/// How long freezing may take before it is an error.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2 {
    root: PathBuf,
}

impl V2 {
    pub fn new(root: impl AsRef<Path>) -> V2 {
        V2 { root: root.as_ref().to_path_buf() }
    }

    fn dir(&self, path: &str) -> PathBuf {
        self.root.join(path)
    }

    /// Makes the controllers the machine has available down to `path`'s parent: in the root
    /// only those missing there, in lab's own cgroups all of them.
    fn enable_controllers(&self, path: &str) -> Result<()> {
        let available = read(&self.root.join("cgroup.controllers")).unwrap_or_default();
        let wanted: Vec<&str> = CONTROLLERS.iter().copied().filter(|c| available.split(' ').any(|a| a == *c)).collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let root_enabled = read(&self.root.join("cgroup.subtree_control")).unwrap_or_default();
        let missing: Vec<String> =
            wanted.iter().filter(|c| !root_enabled.split(' ').any(|e| e == **c)).map(|c| format!("+{c}")).collect();
        if !missing.is_empty() {
            write(&self.root.join("cgroup.subtree_control"), &missing.join(" "))?;
        }
        let all: Vec<String> = wanted.iter().map(|c| format!("+{c}")).collect();
        let components: Vec<&str> = path.split('/').collect();
        for depth in 1..components.len() {
            let dir = self.root.join(components[..depth].join("/"));
            write(&dir.join("cgroup.subtree_control"), &all.join(" "))?;
        }
        Ok(())
    }

    /// Waits until cgroup.events says `frozen` is `want`; the kernel notifies each change.
    fn wait_frozen(&self, path: &str, want: bool) -> Result<()> {
        let events = self.dir(path).join("cgroup.events");
        let deadline = Instant::now() + FREEZE_TIMEOUT;
        loop {
            let file = std::fs::File::open(&events).ctx(|| format!("opening {}", events.display()))?;
            if (keyed(&events, "frozen")? == 1) == want {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Other(format!(
                    "{}: still not {}",
                    events.display(),
                    if want { "frozen" } else { "thawed" }
                )));
            }
            let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLPRI)];
            let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(Error::os("waiting for the freezer", e)),
            }
        }
    }
}

impl Cgroups for V2 {
    fn version(&self) -> Version {
        Version::V2
    }

    fn create(&self, path: &str) -> Result<()> {
        mkdir_all(&self.dir(path))?;
        self.enable_controllers(path)
    }

    fn set_limits(&self, path: &str, limits: &Limits) -> Result<()> {
        let dir = self.dir(path);
        if let Some(bytes) = limits.memory {
            write(&dir.join("memory.max"), &bytes.to_string())?;
            // The limit is the node's memory: no swapping past it.
            if dir.join("memory.swap.max").exists() {
                write(&dir.join("memory.swap.max"), "0")?;
            }
        }
        if let Some(m) = limits.millicpus {
            let quota = u64::from(m) * CPU_PERIOD_US / 1000;
            write(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
        }
        if let Some(n) = limits.pids {
            write(&dir.join("pids.max"), &n.to_string())?;
        }
        if let Some(w) = limits.io_weight {
            if dir.join("io.bfq.weight").exists() {
                write(&dir.join("io.bfq.weight"), &w.to_string())?;
            } else if dir.join("io.weight").exists() {
                // io.weight is 1..10000 where --blkio-weight is 10..1000: runc's conversion.
                let v2 = 1 + (u64::from(w) - 10) * 9999 / 990;
                write(&dir.join("io.weight"), &format!("default {v2}"))?;
            } else {
                return Err(Error::MissingFeature {
                    what: "io_weight".into(),
                    feature: format!("io.weight or io.bfq.weight in {} (the io controller)", dir.display()),
                });
            }
        }
        Ok(())
    }

    fn set_devices(&self, path: &str, rules: &[DeviceRule]) -> Result<()> {
        devices::attach(&self.dir(path), rules)
    }

    fn procs_files(&self, path: &str) -> Vec<PathBuf> {
        vec![self.dir(path).join("cgroup.procs")]
    }

    fn remove(&self, path: &str) -> Result<()> {
        rmdir(&self.dir(path))
    }

    fn stats(&self, path: &str) -> Result<Stats> {
        let dir = self.dir(path);
        let opt = |f: &str| if dir.join(f).exists() { Some(dir.join(f)) } else { None };
        Ok(Stats {
            cpu_usec: opt("cpu.stat").map(|f| keyed(&f, "usage_usec")).transpose()?.unwrap_or(0),
            memory: opt("memory.current").map(|f| read_limit(&f)).transpose()?.flatten().unwrap_or(0),
            memory_limit: opt("memory.max").map(|f| read_limit(&f)).transpose()?.flatten(),
            pids: opt("pids.current").map(|f| read_limit(&f)).transpose()?.flatten().unwrap_or(0),
            pids_limit: opt("pids.max").map(|f| read_limit(&f)).transpose()?.flatten(),
            oom_kills: opt("memory.events").map(|f| keyed(&f, "oom_kill")).transpose()?.unwrap_or(0),
        })
    }

    fn freeze(&self, path: &str, frozen: bool) -> Result<()> {
        write(&self.dir(path).join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
        self.wait_frozen(path, frozen)
    }

    fn frozen(&self, path: &str) -> bool {
        keyed(&self.dir(path).join("cgroup.events"), "frozen").is_ok_and(|f| f == 1)
    }
}
