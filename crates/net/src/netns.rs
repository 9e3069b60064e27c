//! Network namespace names under /run/netns, as iproute2 keeps them, so that `ip netns exec`,
//! `ip netns list`, tcpdump and Wireshark work on lab nodes.

use crate::{Error, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;
use std::fs;
use std::io;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

pub const NETNS_DIR: &str = "/run/netns";

/// Path of the namespace called `name`.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// What [`prepare_dir`] had to do, so that it can be undone when no name is left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prepared {
    pub created_dir: bool,
    pub mounted: bool,
}

/// What [`prepare_dir`] would do now: create /run/netns, make it a mount point. For callers
/// that must record it before it is done (a crash in between must leave nothing unknown).
pub fn preparation() -> Prepared {
    let dir = Path::new(NETNS_DIR);
    let mounted = fs::read_to_string("/proc/self/mountinfo")
        .map(|m| m.lines().any(|l| l.split_whitespace().nth(4) == Some(NETNS_DIR)))
        .unwrap_or(false);
    Prepared { created_dir: !dir.is_dir(), mounted: !mounted }
}

/// Makes /run/netns a shared mount point, as `ip netns add` does, so that names removed on
/// the host also disappear from every mount namespace that copied them.
pub fn prepare_dir() -> Result<Prepared> {
    let dir = Path::new(NETNS_DIR);
    let created_dir = !dir.is_dir();
    fs::create_dir_all(dir).map_err(|e| Error::os(format!("creating {NETNS_DIR}"), e))?;
    let what = || format!("making {NETNS_DIR} a shared mount");
    let shared = |flags| mount(None::<&str>, dir, None::<&str>, flags, None::<&str>);
    match shared(MsFlags::MS_SHARED | MsFlags::MS_REC) {
        Ok(()) => Ok(Prepared { created_dir, mounted: false }),
        Err(nix::errno::Errno::EINVAL) => {
            // Not a mount point yet: bind it onto itself, then share it.
            mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .and_then(|()| shared(MsFlags::MS_SHARED | MsFlags::MS_REC))
                .map_err(|e| Error::os(what(), e.into()))?;
            Ok(Prepared { created_dir, mounted: true })
        }
        Err(e) => Err(Error::os(what(), e.into())),
    }
}

/// Undoes what [`prepare_dir`] did, if no name is left in /run/netns. Returns whether it did.
pub fn release_dir(prepared: Prepared) -> Result<bool> {
    if !list().is_empty() {
        return Ok(false);
    }
    if prepared.mounted {
        match umount2(NETNS_DIR, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(Error::os(format!("unmounting {NETNS_DIR}"), e.into())),
        }
    }
    if prepared.created_dir {
        match fs::remove_dir(NETNS_DIR) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::os(format!("removing {NETNS_DIR}"), e)),
        }
    }
    Ok(true)
}

/// Gives the namespace at `source` (e.g. /proc/PID/ns/net) the name `name`.
pub fn persist(source: &Path, name: &str) -> Result<PathBuf> {
    let target = path(name);
    let what = || format!("naming network namespace {}", target.display());
    match fs::OpenOptions::new().write(true).create_new(true).open(&target) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(Error::os(format!("{}: the name is taken (by another lab, or by `ip netns add`)", what()), e))
        }
        Err(e) => return Err(Error::os(what(), e)),
    }
    if let Err(e) = mount(Some(source), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>) {
        let _ = fs::remove_file(&target);
        return Err(Error::os(what(), e.into()));
    }
    Ok(target)
}

/// Creates a new, empty network namespace named `name` (as `ip netns add` does): a thread
/// of its own unshares it and names it, then ends; the name keeps it.
pub fn create(name: &str) -> Result<PathBuf> {
    std::thread::scope(|s| {
        let worker = s.spawn(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::os(format!("creating network namespace {name}"), e.into()))?;
            persist(Path::new("/proc/thread-self/ns/net"), name)
        });
        worker.join().unwrap_or_else(|_| Err(Error::Thread { what: format!("creating network namespace {name}") }))
    })
}

/// Removes the name `name`; the namespace itself goes when nothing else holds it.
/// Already gone is success.
pub fn remove(name: &str) -> Result<()> {
    let target = path(name);
    match umount2(&target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(Error::os(format!("unmounting {}", target.display()), e.into())),
    }
    match fs::remove_file(&target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::os(format!("removing {}", target.display()), e)),
    }
}

/// Names under /run/netns.
pub fn list() -> Vec<String> {
    let Ok(dir) = fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    names.sort();
    names
}

/// Runs `f` on a thread of its own that first enters the network namespace `netns`: the
/// sockets it opens and the /proc/sys/net files it writes are that namespace's. setns only
/// moves the calling thread, so no other thread of the process ever changes namespace.
/// `label` names the namespace in errors.
pub fn run_in<T: Send>(netns: BorrowedFd<'_>, label: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        let worker = s.spawn(|| {
            nix::sched::setns(netns, CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::os(format!("entering the network namespace of {label}"), e.into()))?;
            f()
        });
        worker.join().unwrap_or_else(|_| Err(Error::Thread { what: format!("working in {label}") }))
    })
}
