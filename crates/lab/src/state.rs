//! What is up, on disk: one directory per lab under /run/lab (gone at reboot, like the
//! kernel objects it describes), holding the journal of every resource made, the lab's state
//! for `exec`, `ps` and `down`, and each node's files.

use crate::plan::Plan;
use crate::topology::{IfName, Impairment, Name};
use crate::Error;
use lab_sandbox::ProcessRef;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where every lab keeps its state, one directory per lab (a tmpfs: it goes at reboot, as
/// the kernel objects do).
pub const STATE_ROOT: &str = "/run/lab";

/// Where nodes' volumes are kept: on disk, as Docker keeps them, since they may outlive the
/// lab (`lab down --keep-volumes`).
pub const VOLUME_ROOT: &str = "/var/lib/lab/volumes";

/// Where nodes' writable layers are kept on disk (`scratch = "disk"`, the default).
pub const SCRATCH_ROOT: &str = "/var/lib/lab/scratch";

/// The writable layer on disk of node `node` of lab `lab`.
pub fn scratch_dir(lab: &Name, node: &str) -> PathBuf {
    Path::new(SCRATCH_ROOT).join(lab.as_str()).join(node)
}

/// Volume `volume` of node `node` of lab `lab`.
pub fn volume_dir(lab: &Name, node: &str, volume: &str) -> PathBuf {
    Path::new(VOLUME_ROOT).join(lab.as_str()).join(node).join(volume)
}

/// One thing `lab up` made that `lab down` must undo. Recorded before it is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Resource {
    /// The lab's nftables table (family inet).
    NftTable {
        /// Its name.
        name: String,
    },
    /// A network's bridge.
    Bridge {
        /// Its name.
        name: IfName,
    },
    /// A host-side interface: a veth's host end (deleting it removes both ends), an IFB.
    Veth {
        /// Its name.
        name: IfName,
    },
    /// A name under /run/netns.
    Netns {
        /// Its name.
        name: String,
    },
    /// A cgroup path below each hierarchy's root.
    Cgroup {
        /// The path.
        path: String,
    },
    /// A volume's directory, recorded when `lab up` makes it (not when it was kept).
    Volume {
        /// Its path.
        path: PathBuf,
    },
    /// A node's processes, recorded as soon as they exist.
    Node {
        /// The node's name.
        name: String,
        /// Its init (pid 1 of its pid namespace).
        init: ProcessRef,
        /// Its monitor: the init's parent on the host, which reports how the init ended.
        monitor: ProcessRef,
    },
}

/// The lab as `exec`, `ps` and `down` see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    /// What was decided.
    pub plan: Plan,
    /// The topology file it came from.
    pub topology: PathBuf,
    /// False until every node is ready.
    pub complete: bool,
    /// The processes of its nodes that run or ran.
    pub nodes: Vec<NodeProcesses>,
    /// What `lab impair`, `lab link`, `lab partition` and `lab stop` changed since `up`.
    #[serde(default)]
    pub runtime: RuntimeChanges,
    /// What nodes do without, as their monitors said (an idmapping the kernel cannot make).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// When `lab up` made it (RFC 3339, UTC).
    #[serde(default)]
    pub created: Option<String>,
}

/// Changes made to a running lab, kept so that a node started again gets them back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeChanges {
    /// Impairments set from the command line, by node and interface; they replace the
    /// file's (an empty one clears it).
    pub impairments: Vec<(String, IfName, Impairment)>,
    /// Interfaces taken down with `lab link ... down`.
    pub links_down: BTreeSet<(String, IfName)>,
    /// Each partition: traffic between the two sets of nodes is dropped.
    pub partitions: Vec<[BTreeSet<String>; 2]>,
    /// Nodes stopped with `lab stop`.
    pub stopped: BTreeSet<String>,
}

impl RuntimeChanges {
    /// The impairment interface `ifname` of `node` has now, if any.
    pub fn impairment(&self, plan: &Plan, node: &str, ifname: &str) -> Option<Impairment> {
        let set = self.impairments.iter().find(|(n, i, _)| n == node && i.as_str() == ifname).map(|(_, _, imp)| *imp);
        let file = || plan.node(node)?.impairments.iter().find(|(i, _)| i.as_str() == ifname).map(|(_, imp)| *imp);
        set.or_else(file).filter(|i| !i.is_empty())
    }

    /// Whether a partition separates nodes `a` and `b`.
    pub fn cut(&self, a: &str, b: &str) -> bool {
        self.partitions.iter().any(|[x, y]| (x.contains(a) && y.contains(b)) || (x.contains(b) && y.contains(a)))
    }
}

/// A node's processes, as recorded when they were made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeProcesses {
    /// The node's name.
    pub name: String,
    /// Its init (pid 1 of its pid namespace).
    pub init: ProcessRef,
    /// Its monitor, the init's parent on the host.
    pub monitor: ProcessRef,
}

impl LabState {
    /// The processes of node `name`, if it was started.
    pub fn node(&self, name: &str) -> Option<&NodeProcesses> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// A lab's directory.
#[derive(Debug, Clone)]
pub struct LabDir {
    /// `/run/lab/<lab>`.
    pub path: PathBuf,
}

impl LabDir {
    /// The directory of lab `name` (which may not exist).
    pub fn new(name: &Name) -> LabDir {
        LabDir { path: Path::new(STATE_ROOT).join(name.as_str()) }
    }

    /// Whether it exists.
    pub fn exists(&self) -> bool {
        self.path.is_dir()
    }

    /// The journal: what `lab up` made, one JSON line each, written before it is made.
    pub fn journal_path(&self) -> PathBuf {
        self.path.join("journal")
    }

    /// The state file, written when `lab up` is done (and by faults and stop/start).
    pub fn state_path(&self) -> PathBuf {
        self.path.join("state.json")
    }

    /// The directory of a node's files (log, hosts, resolv.conf).
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.path.join("nodes").join(node)
    }

    /// Creates the directory; fails if it exists (the lab is up, or was not taken down).
    pub fn create(&self) -> Result<(), Error> {
        fs::create_dir_all(STATE_ROOT).map_err(|e| Error::Io(format!("creating {STATE_ROOT}"), e))?;
        fs::create_dir(&self.path).map_err(|e| Error::Io(format!("creating {}", self.path.display()), e))
    }

    /// Takes the lab's lock: two `lab` commands never change one lab at once.
    pub fn lock(&self) -> Result<Lock, Error> {
        Lock::exclusive(&self.path.join("lock"))
    }

    /// The lab's lock if no other command holds it now.
    pub fn try_lock(&self) -> Result<Option<Lock>, Error> {
        Lock::try_exclusive(&self.path.join("lock"))
    }

    /// Where a `lab up` that is bringing the lab up says which process it is.
    pub fn coming_up_path(&self) -> PathBuf {
        self.path.join("coming-up")
    }

    /// Where a lab brought up for a program (the Rust API) names that program's process:
    /// once it is gone, the lab is an orphan (`lab down --orphans`).
    pub fn owner_path(&self) -> PathBuf {
        self.path.join("owner")
    }

    /// The process that owns the lab, if one does (see [`LabDir::owner_path`]).
    pub fn owner(&self) -> Option<lab_sandbox::ProcessRef> {
        serde_json::from_slice(&fs::read(self.owner_path()).ok()?).ok()
    }

    /// The directory itself (inotify watches it for [`LabDir::taken_down_path`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where `lab down` leaves word for that `lab up` that it was taken down.
    pub fn taken_down_path(&self) -> PathBuf {
        self.path.join("taken-down")
    }

    /// The lab's state, `None` if it has none (not up, or `up` did not get that far).
    pub fn read_state(&self) -> Result<Option<LabState>, Error> {
        match fs::read(self.state_path()) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Corrupt(format!("{}: {e}", self.state_path().display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io(format!("reading {}", self.state_path().display()), e)),
        }
    }

    /// Replaces the state file atomically.
    pub fn write_state(&self, state: &LabState) -> Result<(), Error> {
        let tmp = self.path.join("state.json.tmp");
        let json = serde_json::to_vec_pretty(state).map_err(|e| Error::Corrupt(e.to_string()))?;
        fs::write(&tmp, json).map_err(|e| Error::Io(format!("writing {}", tmp.display()), e))?;
        fs::rename(&tmp, self.state_path())
            .map_err(|e| Error::Io(format!("writing {}", self.state_path().display()), e))
    }

    /// The journal's entries, oldest first; a torn last line (a crash mid-write) is skipped.
    pub fn read_journal(&self) -> Vec<Resource> {
        let Ok(text) = fs::read_to_string(self.journal_path()) else { return Vec::new() };
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// Removes the directory and everything in it, the nodes' kept writable layers (tmpfs
    /// mounts in it) unmounted first. Already gone is success.
    pub fn remove(&self) -> Result<(), Error> {
        for at in self.mounts() {
            if let Err(e) = nix::mount::umount2(&at, nix::mount::MntFlags::MNT_DETACH) {
                return Err(Error::Io(format!("unmounting {}", at.display()), e.into()));
            }
        }
        // The nodes' writable layers on disk: what they wrote, removed without following any
        // symlink in it.
        if let Some(name) = self.path.file_name() {
            let scratch = Path::new(SCRATCH_ROOT).join(name);
            match fs::remove_dir_all(&scratch) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(Error::Io(format!("removing {}", scratch.display()), e));
                }
                _ => {
                    // Shared by every lab: goes when the last one's do.
                    let _ = fs::remove_dir(SCRATCH_ROOT);
                }
            }
        }
        match fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Io(format!("removing {}", self.path.display()), e)),
        }
    }
}

impl LabDir {
    /// The mount points in the directory, deepest first.
    fn mounts(&self) -> Vec<PathBuf> {
        let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
        let mut out: Vec<PathBuf> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(PathBuf::from)
            .filter(|p| p.starts_with(&self.path) && *p != self.path)
            .collect();
        out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        out
    }
}

/// Appends to a lab's journal; each call is one write, so entries are never interleaved.
pub struct Journal {
    file: Mutex<File>,
}

impl Journal {
    /// Opens (creating) the journal of `dir`.
    pub fn open(dir: &LabDir) -> Result<Journal, Error> {
        let path = dir.journal_path();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::Io(format!("opening {}", path.display()), e))?;
        Ok(Journal { file: Mutex::new(file) })
    }

    /// Records resources about to be made.
    pub fn record(&self, resources: &[Resource]) -> Result<(), Error> {
        let mut buf = String::new();
        for r in resources {
            buf += &serde_json::to_string(r).map_err(|e| Error::Corrupt(e.to_string()))?;
            buf.push('\n');
        }
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(buf.as_bytes()).map_err(|e| Error::Io("writing the lab's journal".into(), e))
    }
}

/// An flock held until dropped.
pub struct Lock {
    _file: nix::fcntl::Flock<File>,
}

impl Lock {
    /// Waits for an exclusive lock on `path` (created if missing).
    pub fn exclusive(path: &Path) -> Result<Lock, Error> {
        Lock::take(path, nix::fcntl::FlockArg::LockExclusive)?
            .ok_or_else(|| Error::Io(format!("locking {}", path.display()), io::Error::other("not taken")))
    }

    /// An exclusive lock on `path` if nobody else holds one.
    pub fn try_exclusive(path: &Path) -> Result<Option<Lock>, Error> {
        Lock::take(path, nix::fcntl::FlockArg::LockExclusiveNonblock)
    }

    fn take(path: &Path, how: nix::fcntl::FlockArg) -> Result<Option<Lock>, Error> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| Error::Io(format!("opening lock {}", path.display()), e))?;
        match nix::fcntl::Flock::lock(file, how) {
            Ok(file) => Ok(Some(Lock { _file: file })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(Error::Io(format!("locking {}", path.display()), e.into())),
        }
    }

    /// The lock that serializes choosing subnets and ids across all labs.
    pub fn global() -> Result<Lock, Error> {
        fs::create_dir_all(STATE_ROOT).map_err(|e| Error::Io(format!("creating {STATE_ROOT}"), e))?;
        Lock::exclusive(&Path::new(STATE_ROOT).join(".lock"))
    }
}

/// Names of the labs that have a directory.
pub fn lab_names() -> Vec<Name> {
    let Ok(dir) = fs::read_dir(STATE_ROOT) else { return Vec::new() };
    let mut names: Vec<Name> = dir
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| Name::parse(&e.file_name().to_string_lossy()).ok())
        .collect();
    names.sort();
    names
}

/// Every lab's state that can be read.
pub fn all_states() -> Vec<(Name, Option<LabState>)> {
    lab_names()
        .into_iter()
        .map(|n| {
            let state = LabDir::new(&n).read_state().ok().flatten();
            (n, state)
        })
        .collect()
}
