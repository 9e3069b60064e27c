//! What a node is made of, as the monitor and init read it, and where its files live.

use crate::caps::Cap;
use crate::error::{Context, Result};
use crate::seccomp::Bpf;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// Everything needed to start one node. Written as JSON to the node's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// For messages.
    pub name: String,
    pub hostname: String,
    /// Read-only lower layer: `/` for the host's root, or a directory.
    pub rootfs: PathBuf,
    /// An image's layers, bottom first: when there are any, they are the lower layers
    /// (stacked read-only as overlayfs stacks them) and `rootfs` is not used.
    #[serde(default)]
    pub layers: Vec<PathBuf>,
    /// The node's directory on the host: spec, log, exit status. Inside the node's mount
    /// namespace a private tmpfs is mounted over it to hold the writable layer.
    pub dir: PathBuf,
    /// `None`: the init waits for signals.
    pub command: Option<Vec<String>>,
    pub env: Vec<(String, String)>,
    /// cgroup path below each hierarchy's root.
    pub cgroup: String,
    /// Files put into the writable layer before the node starts (/etc/hosts, ...); each
    /// replaces whatever the read-only layer has at that path, symlinks included.
    pub files: Vec<NodeFile>,
    /// Parts of the read-only layer the node does not see as they are (host secrets).
    #[serde(default)]
    pub covers: Vec<Cover>,
    /// Paths of /proc and /sys hidden from the node, and those it may only read.
    #[serde(default)]
    pub masked_paths: Vec<String>,
    #[serde(default)]
    pub read_only_paths: Vec<String>,
    /// /sys mounted read-write.
    #[serde(default)]
    pub writable_sys: bool,
    pub security: Security,
    /// Run in a user namespace, root inside mapped to this host range.
    pub userns: Option<IdMap>,
    /// Host paths bind-mounted into the node.
    pub mounts: Vec<BindMount>,
    /// Working directory of the command; `None`: `/`.
    #[serde(default)]
    pub workdir: Option<String>,
    /// `uid[:gid]` or `name[:group]` the command runs as, resolved in the node's /etc files.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub restart: Restart,
    /// Shell commands the init runs as root, in order, before the command; one that fails
    /// fails the start.
    #[serde(default)]
    pub setup: Vec<String>,
    /// The most the writable layer may hold, in bytes, when it is a tmpfs (`scratch_dir` is
    /// `None`). `None`: tmpfs's own default.
    #[serde(default)]
    pub layer_size: Option<u64>,
    /// Where the writable layer lives on disk (made if missing, 0700), bind-mounted at the
    /// node's `layer`; `None`: a tmpfs of `layer_size`.
    #[serde(default)]
    pub scratch_dir: Option<PathBuf>,
    /// The signal that asks the command to stop (`lab stop`, `lab down`), besides SIGTERM,
    /// SIGINT, SIGHUP and SIGQUIT: the init forwards it and does not restart the command.
    #[serde(default)]
    pub stop_signal: Option<i32>,
}

/// When the init starts the node's command again after it exits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    #[default]
    No,
    OnFailure,
    Always,
}

/// What a node's processes may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Security {
    /// The capabilities every process keeps (bounding, permitted, effective).
    pub caps: BTreeSet<Cap>,
    /// The compiled seccomp filter; `None`: unconfined.
    pub seccomp: Option<Bpf>,
    /// Set no_new_privs: no exec may gain privileges (setuid, file capabilities).
    pub no_new_privs: bool,
}

impl Security {
    /// Drops capabilities and sets no_new_privs (if asked) on the calling thread: what the
    /// node's init keeps for its whole life.
    pub fn restrict(&self) -> Result<()> {
        crate::caps::apply(&self.caps)?;
        if self.no_new_privs {
            nix::sys::prctl::set_no_new_privs().map_err(|e| crate::Error::os("setting no_new_privs", e))?;
        }
        Ok(())
    }

    /// Loads the seccomp filter on the calling thread: the last step before the node's own
    /// software is executed. The init itself never runs under it, so that no profile can
    /// stop it from reaping, reporting or stopping the node.
    pub fn load_seccomp(&self) -> Result<()> {
        // Without no_new_privs, loading needs SYS_ADMIN (a privileged node has it).
        self.seccomp.as_ref().map_or(Ok(()), |f| f.load())
    }

    /// [`Security::restrict`], then [`Security::load_seccomp`]: for a process about to exec
    /// node software.
    pub fn apply(&self) -> Result<()> {
        self.restrict()?;
        self.load_seccomp()
    }
}

/// `0..size` inside the user namespace is `host..host+size` outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub host: u32,
    pub size: u32,
}

/// A host path mounted into the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    pub source: PathBuf,
    /// Absolute path inside the node.
    pub target: String,
    pub read_only: bool,
}

/// A file of the node's own, written into its writable layer (owned by the node's root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFile {
    /// Absolute path inside the node, plain components only.
    pub path: String,
    /// A regular file's contents, or a symlink's target.
    pub contents: String,
    pub mode: u32,
    #[serde(default)]
    pub kind: FileKind,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    #[default]
    File,
    /// An empty directory.
    Dir,
    /// A symlink to `contents`.
    Symlink,
    /// A copy of the host file at path `contents` (the topology's `files` and `startup`).
    Copy,
}

/// Whether `path` is absolute with plain components only (no `.`, `..` or empty ones).
pub fn is_plain_path(path: &str) -> bool {
    path.strip_prefix('/').is_some_and(|rest| rest.split('/').all(|s| !s.is_empty() && s != "." && s != ".."))
}

impl NodeFile {
    pub fn new(path: &str, contents: impl Into<String>, mode: u32) -> Result<NodeFile> {
        NodeFile::of_kind(FileKind::File, path, contents, mode)
    }

    pub fn dir(path: &str, mode: u32) -> Result<NodeFile> {
        NodeFile::of_kind(FileKind::Dir, path, "", mode)
    }

    pub fn symlink(path: &str, target: &str) -> Result<NodeFile> {
        NodeFile::of_kind(FileKind::Symlink, path, target, 0o777)
    }

    fn of_kind(kind: FileKind, path: &str, contents: impl Into<String>, mode: u32) -> Result<NodeFile> {
        if !is_plain_path(path) {
            return Err(crate::Error::Other(format!("{path:?} is not a plain absolute path")));
        }
        Ok(NodeFile { path: path.to_string(), contents: contents.into(), mode, kind })
    }
}

/// How a part of the read-only layer shows in the node. Paths are plain absolute paths; the
/// last component of a [`Cover::Remove`] may hold `*` wildcards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "cover")]
pub enum Cover {
    /// The path is not there (`/etc/ssh/ssh_host_*`: every host key).
    Remove { path: String, keep: Vec<String> },
    /// The directory is empty but for `keep` (paths below it that show as the layer has
    /// them), with the layer's mode and owner.
    Empty { path: String, keep: Vec<String> },
    /// A copy of the file with every line's second `:`-separated field (a password hash in
    /// /etc/shadow and /etc/gshadow) replaced by `!`: every account locked.
    Locked { path: String },
}

impl Cover {
    pub fn path(&self) -> &str {
        match self {
            Cover::Remove { path, .. } | Cover::Empty { path, .. } | Cover::Locked { path } => path,
        }
    }
}

impl NodeSpec {
    pub fn spec_file(&self) -> PathBuf {
        self.dir.join("spec.json")
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
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .ctx(|| format!("creating {}", self.dir.display()))?;
        let json = serde_json::to_vec(self).map_err(|e| crate::Error::Other(e.to_string()))?;
        fs::write(self.spec_file(), json).ctx(|| format!("writing {}", self.spec_file().display()))
    }

    pub fn load(path: &Path) -> Result<NodeSpec> {
        let text = fs::read(path).ctx(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&text).map_err(|e| crate::Error::Other(format!("parsing {}: {e}", path.display())))
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
    fn spec_round_trips_and_files_must_be_plain_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = NodeSpec {
            name: "n1".into(),
            hostname: "n1".into(),
            rootfs: "/".into(),
            layers: Vec::new(),
            dir: tmp.path().join("n1"),
            command: None,
            env: vec![],
            cgroup: "lab/x/n1".into(),
            files: vec![NodeFile::new("/etc/hosts", "127.0.0.1\tlocalhost\n", 0o644).unwrap()],
            covers: vec![Cover::Locked { path: "/etc/shadow".into() }],
            masked_paths: vec!["/proc/kcore".into()],
            read_only_paths: vec!["/proc/sys".into()],
            writable_sys: false,
            security: Security {
                caps: crate::caps::effective_set(&[], &[], false).unwrap(),
                seccomp: Some(
                    crate::seccomp::docker_default()
                        .to_bpf(&crate::caps::effective_set(&[], &[], false).unwrap())
                        .unwrap(),
                ),
                no_new_privs: true,
            },
            userns: Some(IdMap { host: 1 << 30, size: 65536 }),
            mounts: vec![BindMount { source: "/srv/data".into(), target: "/data".into(), read_only: true }],
            workdir: Some("/srv".into()),
            user: Some("nobody".into()),
            restart: Restart::OnFailure,
            setup: Vec::new(),
            layer_size: None,
            scratch_dir: None,
            stop_signal: None,
        };
        spec.prepare().unwrap();
        assert_eq!(NodeSpec::load(&spec.spec_file()).unwrap(), spec);
        for bad in ["etc/hosts", "/etc/../../escape", "/etc/./x", "/"] {
            assert!(NodeFile::new(bad, "", 0o644).is_err(), "{bad}");
        }
        assert_eq!(spec.exit_status(), None);
        fs::write(spec.status_file(), r#"{"signal":9}"#).unwrap();
        assert_eq!(spec.exit_status(), Some(ExitStatus::Signal(9)));
        assert_eq!(ExitStatus::Signal(9).to_string(), "killed by signal 9 (SIGKILL)");
        assert_eq!(ExitStatus::Signal(9).code(), 137);
    }
}
