//! The node's root file system, built by its init inside its own mount namespace: an overlay
//! (read-only lower layer, writable upper layer on a private tmpfs), fresh /proc, /sys, /dev,
//! /tmp and /run,
//! then pivot_root. Every mount target is resolved inside the new root and refused if it is a
//! symlink, so a rootfs cannot redirect a mount onto a host path.

use crate::error::{Context, Error, Result};
use crate::spec::NodeSpec;
use nix::fcntl::{open, openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fchmodat, makedev, mkdirat, mknodat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{chdir, fchdir, pivot_root, symlinkat};
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Character devices every node gets: (name, major, minor), as runc and Docker do.
const DEVICES: &[(&str, u64, u64)] =
    &[("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

const DEV_LINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

/// Builds the node's root and makes it `/`. Runs in the init, in the node's new mount
/// namespace, before anything of the node's own runs.
pub fn setup(spec: &NodeSpec) -> Result<()> {
    // Nothing mounted from here on may propagate back to the host.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&str>)
        .ctx(|| "making / a slave mount in the node".into())?;
    let root_path = writable_layer(spec)?;
    let root = open(&root_path, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .ctx(|| format!("opening {}", root_path.display()))?;
    let noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_in(&root, "/", "proc", "proc", noexec, None)?;
    mount_in(&root, "/", "sys", "sysfs", noexec | MsFlags::MS_RDONLY, None)?;
    mount_in(&root, "/", "dev", "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME, Some("mode=755,size=65536k"))?;
    let dev = resolve(&root, "/", "dev")?;
    make_devices(&dev)?;
    mount_in(
        &dev,
        "/dev/",
        "pts",
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    mount_in(&dev, "/dev/", "shm", "tmpfs", noexec, Some("mode=1777,size=65536k"))?;
    mount_in(&dev, "/dev/", "mqueue", "mqueue", noexec, None)?;
    mount_in(&root, "/", "tmp", "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=1777"))?;
    // A fresh /run: the host's may be part of its root (and hold /run/lab, /run/netns).
    mount_in(&root, "/", "run", "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=755"))?;
    pivot(&root_path)
}

/// The writable layer: a tmpfs private to this mount namespace, mounted over the node's
/// directory (so nothing of it touches the host's disk or shows on the host), holding the
/// overlay's upper and work directories and the node's own files. Returns where the overlay
/// root is mounted.
fn writable_layer(spec: &NodeSpec) -> Result<PathBuf> {
    let layer = &spec.dir;
    mount(Some("tmpfs"), layer, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0700"))
        .ctx(|| "mounting the node's writable layer (tmpfs)".into())?;
    let (upper, work, root) = (layer.join("upper"), layer.join("work"), layer.join("root"));
    for (dir, mode) in [(&upper, 0o755), (&work, 0o700), (&root, 0o755)] {
        fs::DirBuilder::new().mode(mode).create(dir).ctx(|| format!("creating {}", dir.display()))?;
    }
    for file in &spec.files {
        // A fresh tmpfs of our own: no symlink can be in the way.
        let target = upper.join(file.path.trim_start_matches('/'));
        if let Some(parent) = target.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .ctx(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&target, &file.contents).ctx(|| format!("writing {} in the node", file.path))?;
        fs::set_permissions(&target, fs::Permissions::from_mode(file.mode))
            .ctx(|| format!("setting the mode of {}", file.path))?;
    }
    let data = format!("lowerdir={},upperdir={},workdir={}", spec.rootfs.display(), upper.display(), work.display());
    mount(Some("overlay"), &root, Some("overlay"), MsFlags::empty(), Some(data.as_str()))
        .ctx(|| format!("mounting the node's root (overlay on {})", spec.rootfs.display()))?;
    Ok(root)
}

/// Opens directory `name` in `dir` without following any symlink, never leaving `dir`.
fn resolve(dir: &OwnedFd, shown: &str, name: &str) -> Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(dir, name, how).map_err(|e| match e {
        nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR => Error::Other(format!(
            "{shown}{name} in the node's root file system is not a plain directory (a symlink?); refusing to mount over it"
        )),
        e => Error::os(format!("opening {shown}{name} in the node's root"), e),
    })
}

/// Mounts a file system on directory `name` of `dir`, creating it if missing.
fn mount_in(dir: &OwnedFd, shown: &str, name: &str, fstype: &str, flags: MsFlags, data: Option<&str>) -> Result<()> {
    match mkdirat(dir, name, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => return Err(Error::os(format!("creating {shown}{name} in the node's root"), e)),
    }
    let target = resolve(dir, shown, name)?;
    let path = format!("/proc/self/fd/{}", target.as_raw_fd());
    mount(Some(fstype), path.as_str(), Some(fstype), flags, data)
        .ctx(|| format!("mounting {fstype} on {shown}{name} in the node"))
}

fn make_devices(dev: &OwnedFd) -> Result<()> {
    for (name, major, minor) in DEVICES {
        let what = || format!("creating /dev/{name} in the node");
        mknodat(dev, *name, SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), makedev(*major, *minor)).ctx(what)?;
        // mknod applies the umask; the devices must be usable by everyone.
        fchmodat(dev, *name, Mode::from_bits_truncate(0o666), FchmodatFlags::NoFollowSymlink).ctx(what)?;
    }
    for (name, target) in DEV_LINKS {
        symlinkat(*target, dev, *name).ctx(|| format!("creating /dev/{name} in the node"))?;
    }
    Ok(())
}

/// pivot_root(".", ".") into `root`, then detach the old root (runc's way: no directory for
/// the old root is needed, and nothing of it stays reachable).
fn pivot(root: &Path) -> Result<()> {
    let new_root = open(root, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .ctx(|| format!("opening {}", root.display()))?;
    fchdir(&new_root).ctx(|| "entering the node's root".into())?;
    pivot_root(".", ".").ctx(|| "pivot_root into the node's root".into())?;
    // The old root is now stacked on "."; keep its unmount from propagating, then drop it.
    mount(None::<&str>, ".", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>)
        .ctx(|| "making the old root a slave mount".into())?;
    umount2(".", MntFlags::MNT_DETACH).ctx(|| "detaching the host's root from the node".into())?;
    chdir("/").ctx(|| "chdir /".into())
}
