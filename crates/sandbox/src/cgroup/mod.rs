//! Control groups, v1 (one hierarchy per controller, as on hybrid hosts) and v2 (one unified
//! tree), behind one trait. Which one is detected at run time. Paths given to the trait are
//! relative to each hierarchy's root, e.g. `lab/three-node/node1`; lab only ever creates and
//! removes cgroups below `lab/`.

pub mod devices;
mod v1;
mod v2;

pub use devices::DeviceRule;
pub use v1::V1;
pub use v2::V2;

use crate::error::{Context, Error, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// CFS period for CPU limits: 100 ms, the kernel's default.
pub const CPU_PERIOD_US: u64 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// Resource limits of one node. `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Bytes of memory (and no swap beyond it).
    pub memory: Option<u64>,
    /// CPU time, in thousandths of a CPU (500 = half a CPU).
    pub millicpus: Option<u32>,
    pub pids: Option<u64>,
    /// Block I/O weight, 10 to 1000 (Docker's --blkio-weight range).
    pub io_weight: Option<u16>,
}

/// What a node uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub cpu_usec: u64,
    pub memory: u64,
    pub memory_limit: Option<u64>,
    pub pids: u64,
    pub pids_limit: Option<u64>,
    /// Processes the OOM killer killed in the node.
    pub oom_kills: u64,
}

/// The cgroup hierarchies of this machine.
pub trait Cgroups: Send + Sync {
    fn version(&self) -> Version;

    /// Creates `path` (and its parents) in every hierarchy lab uses.
    fn create(&self, path: &str) -> Result<()>;

    /// Sets `limits` on `path`.
    fn set_limits(&self, path: &str, limits: &Limits) -> Result<()>;

    /// Lets `path` create and use only the devices `rules` allow.
    fn set_devices(&self, path: &str, rules: &[DeviceRule]) -> Result<()>;

    /// The `cgroup.procs` files of `path`, one per hierarchy: writing a pid there moves it in.
    fn procs_files(&self, path: &str) -> Vec<PathBuf>;

    /// Removes `path` from every hierarchy. Already gone is success; a cgroup that still has
    /// children or processes is an error.
    fn remove(&self, path: &str) -> Result<()>;

    fn stats(&self, path: &str) -> Result<Stats>;

    /// Freezes (or thaws) every process in `path`; returns once they are.
    fn freeze(&self, path: &str, frozen: bool) -> Result<()>;

    fn frozen(&self, path: &str) -> bool;

    /// Moves process `pid` into `path` in every hierarchy.
    fn add_process(&self, path: &str, pid: i32) -> Result<()> {
        for f in self.procs_files(path) {
            fs::write(&f, pid.to_string()).ctx(|| format!("moving process {pid} into {}", f.display()))?;
        }
        Ok(())
    }

    /// Processes in `path` (in any hierarchy). Missing cgroup: none.
    fn processes(&self, path: &str) -> Result<Vec<i32>> {
        let mut out = Vec::new();
        for f in self.procs_files(path) {
            match fs::read_to_string(&f) {
                Ok(s) => out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::os(format!("reading {}", f.display()), e)),
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Names of the cgroups directly below `path`, in any hierarchy.
    fn children(&self, path: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .procs_files(path)
            .iter()
            .filter_map(|f| f.parent().and_then(|d| fs::read_dir(d).ok()))
            .flat_map(|d| d.filter_map(|e| e.ok()))
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Whether `path` exists in any hierarchy.
    fn exists(&self, path: &str) -> bool {
        self.procs_files(path).iter().any(|f| f.exists())
    }
}

/// Detects the machine's cgroup layout: a cgroup2 file system at /sys/fs/cgroup means v2;
/// otherwise (legacy, or hybrid with an empty unified tree) the v1 controller hierarchies.
pub fn detect() -> Result<Box<dyn Cgroups>> {
    let fs = nix::sys::statfs::statfs("/sys/fs/cgroup").ctx(|| "statfs /sys/fs/cgroup".into())?;
    if fs.filesystem_type().0 as i64 == CGROUP2_SUPER_MAGIC {
        return Ok(Box::new(V2::new("/sys/fs/cgroup")));
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ctx(|| "reading /proc/self/mountinfo".into())?;
    let v1 = V1::from_mountinfo(&mountinfo);
    if v1.is_empty() {
        return Err(Error::Other(
            "no usable cgroup hierarchy: /sys/fs/cgroup is neither cgroup2 nor a set of v1 controllers".into(),
        ));
    }
    Ok(Box::new(v1))
}

/// rmdir that treats "already gone" as success.
fn rmdir(dir: &Path) -> Result<()> {
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::os(format!("removing cgroup {}", dir.display()), e)),
    }
}

/// mkdir -p that tolerates a concurrent rmdir of a shared parent by another lab.
fn mkdir_all(dir: &Path) -> Result<()> {
    for _ in 0..3 {
        match fs::create_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::os(format!("creating cgroup {}", dir.display()), e)),
        }
    }
    fs::create_dir_all(dir).ctx(|| format!("creating cgroup {}", dir.display()))
}

fn write(file: &Path, value: &str) -> Result<()> {
    fs::write(file, value).ctx(|| format!("writing {value:?} to {}", file.display()))
}

fn read(file: &Path) -> Result<String> {
    fs::read_to_string(file).map(|s| s.trim().to_string()).ctx(|| format!("reading {}", file.display()))
}

/// A number, or `None` for "max" (v2) and v1's "unlimited" (a value near 2^63).
fn read_limit(file: &Path) -> Result<Option<u64>> {
    let s = read(file)?;
    if s == "max" {
        return Ok(None);
    }
    let n: u64 = s.parse().map_err(|_| Error::Other(format!("{}: not a number: {s:?}", file.display())))?;
    Ok((n < 1 << 62).then_some(n))
}

/// The number after `key` in a "key value" file (cpu.stat, memory.events, oom_control).
fn keyed(file: &Path, key: &str) -> Result<u64> {
    let text = read(file)?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

#[cfg(test)]
mod tests;
