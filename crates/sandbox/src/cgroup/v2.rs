//! cgroup v2: one unified tree.

use super::{mkdir_all, rmdir, Cgroups, Version};
use crate::error::Result;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2 {
    root: PathBuf,
}

impl V2 {
    pub fn new(root: impl AsRef<Path>) -> V2 {
        V2 { root: root.as_ref().to_path_buf() }
    }
}

impl Cgroups for V2 {
    fn version(&self) -> Version {
        Version::V2
    }

    fn create(&self, path: &str) -> Result<()> {
        mkdir_all(&self.root.join(path))
    }

    fn procs_files(&self, path: &str) -> Vec<PathBuf> {
        vec![self.root.join(path).join("cgroup.procs")]
    }

    fn remove(&self, path: &str) -> Result<()> {
        rmdir(&self.root.join(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let v2 = V2::new(tmp.path());
        v2.create("lab/x/n1").unwrap();
        assert_eq!(v2.procs_files("lab/x/n1"), [tmp.path().join("lab/x/n1/cgroup.procs")]);
        std::fs::write(tmp.path().join("lab/x/n1/cgroup.procs"), "12\n34\n").unwrap();
        assert_eq!(v2.processes("lab/x/n1").unwrap(), [12, 34]);
        assert_eq!(v2.processes("lab/x/missing").unwrap(), Vec::<i32>::new());
    }
}
