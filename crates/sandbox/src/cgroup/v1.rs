//! cgroup v1: one hierarchy per controller (or per co-mounted group of them).

use super::{mkdir_all, rmdir, Cgroups, Version};
use crate::error::Result;
use std::path::{Path, PathBuf};

/// Controllers lab places nodes in. cpuset is left out: a new v1 cpuset cgroup has no CPUs
/// until configured, and lab does not pin CPUs.
const CONTROLLERS: &[&str] = &["cpu", "cpuacct", "memory", "pids", "freezer", "blkio", "devices"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1 {
    /// Mount point of each hierarchy lab uses, each once even if co-mounted.
    roots: Vec<PathBuf>,
}

impl V1 {
    pub fn new(roots: Vec<PathBuf>) -> V1 {
        V1 { roots }
    }

    /// The hierarchies of the controllers lab uses, from /proc/self/mountinfo.
    pub fn from_mountinfo(mountinfo: &str) -> V1 {
        let mut roots: Vec<PathBuf> = Vec::new();
        for line in mountinfo.lines() {
            // "... mountpoint opts - fstype source superopts"
            let Some((left, right)) = line.split_once(" - ") else { continue };
            let mut r = right.split_whitespace();
            if r.next() != Some("cgroup") {
                continue;
            }
            let superopts = r.nth(1).unwrap_or("");
            let wanted = superopts.split(',').any(|o| CONTROLLERS.contains(&o));
            let mountpoint = left.split_whitespace().nth(4);
            if let (true, Some(mp)) = (wanted, mountpoint) {
                let mp = PathBuf::from(unescape(mp));
                if !roots.contains(&mp) {
                    roots.push(mp);
                }
            }
        }
        V1 { roots }
    }

    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
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
        self.roots.iter().try_for_each(|r| mkdir_all(&r.join(path)))
    }

    fn procs_files(&self, path: &str) -> Vec<PathBuf> {
        self.roots.iter().map(|r| r.join(path).join("cgroup.procs")).collect()
    }

    fn remove(&self, path: &str) -> Result<()> {
        self.roots.iter().try_for_each(|r| rmdir(&r.join(Path::new(path))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
35 24 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
37 35 0:32 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
40 35 0:35 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
41 35 0:36 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
42 35 0:37 / /sys/fs/cgroup/cpuset rw,nosuid - cgroup cgroup rw,cpuset
43 35 0:38 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
";

    #[test]
    fn picks_controller_hierarchies_once_each() {
        let v1 = V1::from_mountinfo(HYBRID);
        let roots: Vec<&str> = v1.roots().iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(roots, ["/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids"]);
    }

    #[test]
    fn creates_and_removes_in_every_hierarchy() {
        let tmp = tempfile::tempdir().unwrap();
        let roots = vec![tmp.path().join("memory"), tmp.path().join("pids")];
        let v1 = V1::new(roots.clone());
        v1.create("lab/x/n1").unwrap();
        for r in &roots {
            assert!(r.join("lab/x/n1").is_dir());
        }
        assert_eq!(v1.procs_files("lab/x/n1")[1], roots[1].join("lab/x/n1/cgroup.procs"));
        v1.remove("lab/x/n1").unwrap();
        v1.remove("lab/x/n1").unwrap();
        assert!(!roots[0].join("lab/x/n1").exists());
        assert!(v1.remove("lab").is_err(), "a cgroup with children is not removed");
    }
}
