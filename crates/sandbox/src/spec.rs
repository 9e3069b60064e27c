//! What a node is made of, as the monitor and init read it, and where its files live.

use crate::error::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Everything needed to start one node. Written as JSON to the node's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// For messages.
    pub name: String,
    pub hostname: String,
    /// Read-only lower layer: `/` for the host's root, or a directory.
    pub rootfs: PathBuf,
    /// The node's directory: writable layer, mount point, log, exit status.
    pub dir: PathBuf,
    /// `None`: the init waits for signals.
    pub command: Option<Vec<String>>,
    pub env: Vec<(String, String)>,
    /// cgroup path below each hierarchy's root.
    pub cgroup: String,
}

impl NodeSpec {
    pub fn spec_file(&self) -> PathBuf {
        self.dir.join("spec.json")
    }
    /// Writable layer: everything the node writes, discarded with the lab.
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    /// Where the node's root is mounted (visible only in the node's mount namespace).
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }
    /// The node command's stdout and stderr, with timestamps.
    pub fn log(&self) -> PathBuf {
        self.dir.join("log")
    }
    /// How the node's init ended, written by its monitor.
    pub fn status_file(&self) -> PathBuf {
        self.dir.join("exit.json")
    }

    /// Creates the node's directory and writes the spec into it.
    pub fn prepare(&self) -> Result<()> {
        for d in [&self.dir, &self.upper(), &self.work(), &self.root()] {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(d).ctx(|| format!("creating {}", d.display()))?;
        }
        // The upper layer's root becomes the node's `/`: it must look like one.
        fs::set_permissions(self.upper(), fs::Permissions::from_mode(0o755))
            .ctx(|| format!("setting permissions of {}", self.upper().display()))?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| crate::Error::Other(e.to_string()))?;
        fs::write(self.spec_file(), json).ctx(|| format!("writing {}", self.spec_file().display()))
    }

    pub fn load(path: &Path) -> Result<NodeSpec> {
        let text = fs::read(path).ctx(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&text).map_err(|e| crate::Error::Other(format!("parsing {}: {e}", path.display())))
    }

    /// Puts a file into the node's writable layer before it starts (e.g. /etc/hosts). It
    /// replaces whatever the read-only layer has at that path, symlinks included.
    pub fn add_file(&self, path_in_node: &str, contents: &str, mode: u32) -> Result<()> {
        let rel = Path::new(path_in_node.trim_start_matches('/'));
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(crate::Error::Other(format!("{path_in_node:?} is not a plain absolute path")));
        }
        let target = self.upper().join(rel);
        if let Some(parent) = target.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .ctx(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&target, contents).ctx(|| format!("writing {}", target.display()))?;
        fs::set_permissions(&target, fs::Permissions::from_mode(mode))
            .ctx(|| format!("setting permissions of {}", target.display()))
    }

    /// How the node's init ended, if it has.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let text = fs::read(self.status_file()).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    /// The shell's convention: the code, or 128 + the signal.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => {
                let name = nix::sys::signal::Signal::try_from(*s).map(|s| s.as_str()).unwrap_or("?");
                write!(f, "killed by signal {s} ({name})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_land_in_the_upper_layer() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = NodeSpec {
            name: "n1".into(),
            hostname: "n1".into(),
            rootfs: "/".into(),
            dir: tmp.path().join("n1"),
            command: None,
            env: vec![],
            cgroup: "lab/x/n1".into(),
        };
        spec.prepare().unwrap();
        spec.add_file("/etc/hosts", "127.0.0.1\tlocalhost\n", 0o644).unwrap();
        assert_eq!(fs::read_to_string(tmp.path().join("n1/upper/etc/hosts")).unwrap(), "127.0.0.1\tlocalhost\n");
        assert!(spec.add_file("/etc/../../escape", "", 0o644).is_err());
        assert_eq!(NodeSpec::load(&spec.spec_file()).unwrap(), spec);
        assert_eq!(spec.exit_status(), None);
        fs::write(spec.status_file(), r#"{"signal":9}"#).unwrap();
        assert_eq!(spec.exit_status(), Some(ExitStatus::Signal(9)));
        assert_eq!(ExitStatus::Signal(9).to_string(), "killed by signal 9 (SIGKILL)");
        assert_eq!(ExitStatus::Signal(9).code(), 137);
    }
}
