//! The node's root file system, built by its init inside its own mount namespace: an overlay
//! (read-only lower layer, writable upper layer on a private tmpfs), fresh /proc, /sys, /dev,
//! /tmp and /run, bind mounts, masked and read-only paths, then pivot_root.
//!
//! Every target is resolved inside the new root without following symlinks, so a rootfs cannot
//! redirect a mount onto a host path. Host paths (the lower layer, bind mount sources) are
//! opened first, as file descriptors, while they can still be reached.

use crate::error::{Context, Error, Result};
use crate::spec::NodeSpec;
use nix::fcntl::{open, openat, openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fchmodat, fstat, makedev, mkdirat, mknodat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{chdir, fchdir, pivot_root, symlinkat};
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Character devices every node gets: (path below /dev, major, minor).
const DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
    // TUN/TAP: VPN software needs it; the interfaces it makes live in the node's netns.
    ("net/tun", 10, 200),
];

const DEV_LINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

/// Paths hidden from the node (the OCI runtime spec's defaults, as runc and Docker apply
/// them): files get /dev/null over them, directories an empty read-only tmpfs.
pub const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths the node may read but not change.
pub const READ_ONLY: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Where the writable layer's tmpfs is mounted in the init's own mount namespace before the
/// pivot (a directory every host has; the mount never shows outside).
const LAYER: &str = "/tmp";

/// The init finds the host paths its root is built from on fds from here on: the lower
/// layer, then each bind mount's source, in the spec's order.
pub const SOURCES_FD: i32 = 4;

/// Host paths the root is built from, opened by the monitor's child while it could reach
/// them (before it became root of a user namespace, for which host directories may not be
/// searchable), and inherited by the init.
pub struct Sources {
    lower: OwnedFd,
    mounts: Vec<(OwnedFd, bool)>,
}

/// Opens the lower layer and every bind mount source, in the order [`Sources::inherited`]
/// expects them.
pub fn open_sources(spec: &NodeSpec) -> Result<Vec<OwnedFd>> {
    let open_path = |p: &Path| {
        open(p, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| Error::os(format!("opening {}", p.display()), e))
    };
    let mut fds = vec![open_path(&spec.rootfs)?];
    for m in &spec.mounts {
        fds.push(open_path(&m.source).map_err(|e| Error::Other(format!("mount source: {e}")))?);
    }
    Ok(fds)
}

impl Sources {
    /// Takes the fds the monitor's child left at SOURCES_FD and up.
    pub fn inherited(spec: &NodeSpec) -> Sources {
        // SAFETY: the monitor's child put exactly these fds there, one per source, for us.
        let take = |i: usize| unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(SOURCES_FD + i as i32) };
        let lower = take(0);
        let mounts = (0..spec.mounts.len())
            .map(|i| {
                let fd = take(i + 1);
                let is_dir =
                    fstat(&fd).is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR);
                (fd, is_dir)
            })
            .collect();
        Sources { lower, mounts }
    }

    /// How many fds the init inherits.
    pub fn count(spec: &NodeSpec) -> i32 {
        1 + spec.mounts.len() as i32
    }
}

fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Builds the node's root and makes it `/`. Runs in the init, in the node's new mount
/// namespace, before anything of the node's own runs.
pub fn setup(spec: &NodeSpec, sources: Sources) -> Result<()> {
    let privileged = spec.security.privileged;
    // Nothing mounted from here on may propagate back to the host.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&str>)
        .ctx(|| "making / a slave mount in the node".into())?;
    let root_path = writable_layer(spec, &sources.lower)?;
    let root = open(&root_path, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .ctx(|| format!("opening {}", root_path.display()))?;
    let noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_in(&root, "/", "proc", "proc", noexec, None)?;
    let sys_ro = if privileged { MsFlags::empty() } else { MsFlags::MS_RDONLY };
    mount_in(&root, "/", "sys", "sysfs", noexec | sys_ro, None)?;
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
    for (m, (src, is_dir)) in spec.mounts.iter().zip(&sources.mounts) {
        bind_mount(&root, src, *is_dir, &m.target, m.read_only)?;
    }
    if !privileged {
        for path in MASKED {
            mask(&root, path)?;
        }
        for path in READ_ONLY {
            read_only(&root, path)?;
        }
    }
    pivot(&root_path)
}

/// The writable layer: a tmpfs private to this mount namespace holding the overlay's upper
/// and work directories and the node's own files, so nothing of it touches the host's disk
/// or shows on the host. Returns where the overlay root is mounted.
fn writable_layer(spec: &NodeSpec, lower: &OwnedFd) -> Result<PathBuf> {
    let layer = Path::new(LAYER);
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
    let userns = spec.userns.is_some();
    match overlay(&root, &fd_path(lower), &upper, &work, userns) {
        Ok(()) => Ok(root),
        // In a user namespace every mount copied from the host is locked, and a layer with
        // locked mounts below it (the host's / has /proc, /sys, ...) is refused.
        Err(nix::errno::Errno::EINVAL) if userns => {
            composite_root(lower, &upper, &work, &root)?;
            Ok(root)
        }
        Err(e) => Err(Error::os(format!("mounting the node's root (overlay on {})", spec.rootfs.display()), e)),
    }
}

fn overlay(target: &Path, lower: &str, upper: &Path, work: &Path, userns: bool) -> nix::Result<()> {
    // In a user namespace overlayfs keeps its metadata in user.* xattrs (trusted.* needs
    // the host's CAP_SYS_ADMIN).
    let userxattr = if userns { ",userxattr" } else { "" };
    let data = format!("lowerdir={lower},upperdir={},workdir={}{userxattr}", upper.display(), work.display());
    mount(Some("overlay"), target, Some("overlay"), MsFlags::empty(), Some(data.as_str()))
}

/// Entries of the lower root that get fresh mounts of their own in every node.
const FRESH: &[&str] = &["proc", "sys", "dev", "tmp", "run"];

/// The root of a user-namespaced node on a lower layer that has mounts below it: a directory
/// of the node's tmpfs holding one overlay per top-level directory of the lower layer (each
/// with its own part of the upper layer), its symlinks, and empty directories for /proc, /sys,
/// /dev, /tmp and /run. A directory with mounts of its own below it is bound read-only.
fn composite_root(lower: &OwnedFd, upper: &Path, work: &Path, root: &Path) -> Result<()> {
    use nix::sys::stat::fstatat;
    // pivot_root needs a mount point: the directory bound onto itself.
    mount(Some(root), root, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .ctx(|| "binding the node's root onto itself".into())?;
    let listing = openat(lower, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .ctx(|| "listing the node's rootfs".into())?;
    let dir = nix::dir::Dir::from_fd(listing).ctx(|| "listing the node's rootfs".into())?;
    for entry in dir {
        let entry = entry.ctx(|| "listing the node's rootfs".into())?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "." || name == ".." {
            continue;
        }
        let st = fstatat(lower, name.as_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            .ctx(|| format!("inspecting /{name}"))?;
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        let mode = st.st_mode & 0o7777;
        let (in_root, in_upper, in_work) = (root.join(&name), upper.join(&name), work.join(&name));
        if kind == SFlag::S_IFLNK {
            let target = nix::fcntl::readlinkat(lower, name.as_str()).ctx(|| format!("reading the symlink /{name}"))?;
            std::os::unix::fs::symlink(&target, &in_root).ctx(|| format!("recreating the symlink /{name}"))?;
            continue;
        }
        if kind != SFlag::S_IFDIR {
            continue;
        }
        fs::DirBuilder::new().mode(mode).create(&in_root).ctx(|| format!("creating /{name} in the node"))?;
        if FRESH.contains(&name.as_str()) {
            continue;
        }
        for d in [&in_upper, &in_work] {
            match fs::DirBuilder::new().mode(mode).create(d) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(Error::os(format!("creating {}", d.display()), e));
                }
                _ => {}
            }
        }
        let layer = openat(
            lower,
            name.as_str(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("opening /{name} of the rootfs"))?;
        match overlay(&in_root, &fd_path(&layer), &in_upper, &in_work, true) {
            Ok(()) => {}
            Err(nix::errno::Errno::EINVAL) => {
                mount(
                    Some(fd_path(&layer).as_str()),
                    &in_root,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .ctx(|| format!("binding /{name} into the node"))?;
                let bound = open(&in_root, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
                    .ctx(|| format!("opening /{name}"))?;
                set_read_only(&bound).map_err(|e| Error::Other(format!("making /{name} read-only: {e}")))?;
            }
            Err(e) => return Err(Error::os(format!("mounting /{name} of the node (overlay)"), e)),
        }
    }
    Ok(())
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

/// Opens `path` (absolute, inside the root) without following symlinks; `None` if missing.
fn resolve_path(root: &OwnedFd, path: &str) -> Result<Option<OwnedFd>> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match openat2(root, path.trim_start_matches('/'), how) {
        Ok(fd) => Ok(Some(fd)),
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(e) => Err(Error::os(format!("opening {path} in the node's root"), e)),
    }
}

/// Mounts a file system on directory `name` of `dir`, creating it if missing.
fn mount_in(dir: &OwnedFd, shown: &str, name: &str, fstype: &str, flags: MsFlags, data: Option<&str>) -> Result<()> {
    match mkdirat(dir, name, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => return Err(Error::os(format!("creating {shown}{name} in the node's root"), e)),
    }
    let target = resolve(dir, shown, name)?;
    mount(Some(fstype), fd_path(&target).as_str(), Some(fstype), flags, data)
        .ctx(|| format!("mounting {fstype} on {shown}{name} in the node"))
}

fn make_devices(dev: &OwnedFd) -> Result<()> {
    for (path, major, minor) in DEVICES {
        let (parent, name) = match path.rsplit_once('/') {
            Some((p, n)) => {
                match mkdirat(dev, p, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                    Err(e) => return Err(Error::os(format!("creating /dev/{p} in the node"), e)),
                }
                (resolve(dev, "/dev/", p)?, n)
            }
            None => (resolve(dev, "/dev/", ".")?, *path),
        };
        let what = || format!("creating /dev/{path} in the node");
        match mknodat(&parent, name, SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), makedev(*major, *minor)) {
            // mknod applies the umask; the devices must be usable by everyone.
            Ok(()) => {
                fchmodat(&parent, name, Mode::from_bits_truncate(0o666), FchmodatFlags::NoFollowSymlink).ctx(what)?
            }
            // In a user namespace mknod is refused: bind the host's device instead.
            Err(nix::errno::Errno::EPERM) => bind_host_device(&parent, name, path)?,
            Err(e) => return Err(Error::os(what(), e)),
        }
    }
    for (name, target) in DEV_LINKS {
        symlinkat(*target, dev, *name).ctx(|| format!("creating /dev/{name} in the node"))?;
    }
    Ok(())
}

fn bind_host_device(parent: &OwnedFd, name: &str, path: &str) -> Result<()> {
    let host = format!("/dev/{path}");
    let Ok(source) = open(host.as_str(), OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()) else {
        // The host has no such device (e.g. no tun driver): the node goes without.
        return Ok(());
    };
    let file =
        openat(parent, name, OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::from_bits_truncate(0o666))
            .ctx(|| format!("creating /dev/{path} in the node"))?;
    drop(file);
    let target = openat(parent, name, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
        .ctx(|| format!("opening /dev/{path} in the node"))?;
    mount(Some(fd_path(&source).as_str()), fd_path(&target).as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .ctx(|| format!("binding the host's {host} into the node"))
}

/// Creates `target` (absolute, inside the root) as a directory or an empty file, and every
/// missing directory on the way, never following a symlink. Returns it opened O_PATH.
fn make_target(root: &OwnedFd, target: &str, is_dir: bool) -> Result<OwnedFd> {
    let parts: Vec<&str> = target.split('/').filter(|p| !p.is_empty()).collect();
    let Some((last, dirs)) = parts.split_last() else {
        return Err(Error::Other("a mount target cannot be /".into()));
    };
    let mut dir = resolve(root, "/", ".")?;
    let mut shown = String::from("/");
    for part in dirs {
        match mkdirat(&dir, *part, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(Error::os(format!("creating {shown}{part} in the node"), e)),
        }
        dir = resolve(&dir, &shown, part)?;
        shown = format!("{shown}{part}/");
    }
    if is_dir {
        match mkdirat(&dir, *last, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(Error::os(format!("creating {target} in the node"), e)),
        }
        return resolve(&dir, &shown, last);
    }
    let created = openat(
        &dir,
        *last,
        OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    );
    match created {
        Ok(_) | Err(nix::errno::Errno::EISDIR) => {}
        Err(nix::errno::Errno::ELOOP) => {
            return Err(Error::Other(format!(
                "mount target {target} in the node is a symlink; refusing to mount over it"
            )))
        }
        Err(e) => return Err(Error::os(format!("creating {target} in the node"), e)),
    }
    openat(&dir, *last, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
        .ctx(|| format!("opening {target} in the node"))
}

fn bind_mount(root: &OwnedFd, source: &OwnedFd, is_dir: bool, target: &str, ro: bool) -> Result<()> {
    let at = make_target(root, target, is_dir)?;
    mount(
        Some(fd_path(source).as_str()),
        fd_path(&at).as_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(|| format!("bind-mounting onto {target} in the node"))?;
    if ro {
        // Opened again: now it is the mount's root, which is what must turn read-only.
        let mounted = resolve_path(root, target)?.ok_or_else(|| Error::Other(format!("{target} vanished")))?;
        set_read_only(&mounted).map_err(|e| Error::Other(format!("making {target} read-only: {e}")))?;
    }
    Ok(())
}

/// struct mount_attr of <linux/mount.h>.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const AT_RECURSIVE: libc::c_int = 0x8000;

/// Makes the mount at `fd`, and every mount below it, read-only (mount_setattr).
fn set_read_only(fd: &OwnedFd) -> Result<()> {
    let attr = MountAttr { attr_set: MOUNT_ATTR_RDONLY, attr_clr: 0, propagation: 0, userns_fd: 0 };
    // SAFETY: mount_setattr on an fd we own, with a mount_attr of the size we pass.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        return Err(Error::os("mount_setattr", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Hides `path`: /dev/null over a file, an empty read-only tmpfs over a directory.
fn mask(root: &OwnedFd, path: &str) -> Result<()> {
    let Some(target) = resolve_path(root, path)? else { return Ok(()) };
    let is_dir = fstat(&target).is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR);
    let what = || format!("masking {path} in the node");
    if is_dir {
        let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        mount(Some("tmpfs"), fd_path(&target).as_str(), Some("tmpfs"), flags, Some("nr_inodes=1,mode=0555")).ctx(what)
    } else {
        let null = resolve_path(root, "/dev/null")?.ok_or_else(|| Error::Other("the node has no /dev/null".into()))?;
        mount(Some(fd_path(&null).as_str()), fd_path(&target).as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .ctx(what)
    }
}

/// Makes `path` read-only: bind it onto itself, then set the bind mount read-only.
fn read_only(root: &OwnedFd, path: &str) -> Result<()> {
    let Some(target) = resolve_path(root, path)? else { return Ok(()) };
    let p = fd_path(&target);
    mount(Some(p.as_str()), p.as_str(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .ctx(|| format!("binding {path} onto itself in the node"))?;
    let mounted = resolve_path(root, path)?.ok_or_else(|| Error::Other(format!("{path} vanished")))?;
    set_read_only(&mounted).map_err(|e| Error::Other(format!("making {path} read-only: {e}")))
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
