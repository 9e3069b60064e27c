//! The node's root file system, finished by its init inside its own mount namespace: the
//! overlay made on the host side ([`crate::layers`]) attached, fresh /proc, /sys, /dev, /tmp
//! and /run, bind mounts, masked and read-only paths, then pivot_root.
//!
//! Every target is resolved inside the new root without following symlinks, so a rootfs cannot
//! redirect a mount onto a host path. Host paths (bind mount sources) are opened first, as file
//! descriptors, while they can still be reached.

use crate::error::{Context, Error, Result};
use crate::layers::MountAttr;
use crate::spec::NodeSpec;
use nix::fcntl::{open, openat, openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fchmodat, fstat, makedev, mkdirat, mknodat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{chdir, fchdir, pivot_root, symlinkat};
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
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

/// Paths hidden from a node by default (the OCI runtime spec's defaults, as runc and Docker
/// apply them, and /proc/interrupts): files get /dev/null over them, directories an empty
/// read-only tmpfs. A component may hold a `*`. Which apply is the plan's to say.
pub const OCI_MASKED: &[&str] = &[
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
    // As current moby: CPU temperature throttling counters (a side channel), where there.
    "/sys/devices/system/cpu/cpu*/thermal_throttle",
];

/// Paths a node may read but not change, by default.
pub const OCI_READ_ONLY: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Where the node's root is attached in the init's own mount namespace before the pivot (a
/// directory every host has, with a tmpfs of the init's own over it; it never shows outside).
const LAYER: &str = "/tmp";

/// The init finds the node's root (a detached overlay mount) on this fd, and each bind
/// mount (detached too) on the fds after it, in the spec's order.
pub const SOURCES_FD: i32 = 4;

/// The node's root and the host paths bind-mounted into it, as detached mounts made on the
/// host side ([`crate::layers`]), inherited by the init.
pub struct Sources {
    root: OwnedFd,
    mounts: Vec<(OwnedFd, bool)>,
}

impl Sources {
    /// Takes the fds the monitor's child left at SOURCES_FD and up.
    pub fn inherited(spec: &NodeSpec) -> Sources {
        // SAFETY: the monitor's child put exactly these fds there, one per source, for us,
        // and this is the only place that takes them.
        let take = |i: usize| unsafe { crate::fd::inherited(SOURCES_FD + i as i32) };
        let root = take(0);
        let mounts = (0..spec.mounts.len())
            .map(|i| {
                let fd = take(i + 1);
                let is_dir =
                    fstat(&fd).is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR);
                (fd, is_dir)
            })
            .collect();
        Sources { root, mounts }
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
    // Nothing mounted from here on may propagate back to the host.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&str>)
        .ctx(|| "making / a slave mount in the node".into())?;
    let root_path = attach_root(&sources.root)?;
    let root = open(&root_path, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .ctx(|| format!("opening {}", root_path.display()))?;
    let noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_in(&root, "/", "proc", "proc", noexec, None)?;
    let sys_ro = if spec.writable_sys { MsFlags::empty() } else { MsFlags::MS_RDONLY };
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
    // /var/lock points here, as on the host (where systemd-tmpfiles makes it).
    let run = resolve(&root, "/", "run")?;
    mkdirat(&run, "lock", Mode::from_bits_truncate(0o755)).ctx(|| "creating /run/lock in the node".into())?;
    fchmodat(&run, "lock", Mode::from_bits_truncate(0o1777), FchmodatFlags::NoFollowSymlink)
        .ctx(|| "creating /run/lock in the node".into())?;
    for (m, (src, is_dir)) in spec.mounts.iter().zip(&sources.mounts) {
        bind_mount(&root, src, *is_dir, &m.target)?;
    }
    for path in &spec.masked_paths {
        mask(&root, path)?;
    }
    for path in &spec.read_only_paths {
        read_only(&root, path)?;
    }
    pivot(&root_path)
}

/// Attaches the node's root, made on the host side, in this mount namespace; returns where.
fn attach_root(root: &OwnedFd) -> Result<PathBuf> {
    let layer = Path::new(LAYER);
    mount(Some("tmpfs"), layer, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0700"))
        .ctx(|| "mounting a tmpfs to attach the node's root on".into())?;
    let at = layer.join("root");
    fs::DirBuilder::new().mode(0o755).create(&at).ctx(|| format!("creating {}", at.display()))?;
    let target = std::ffi::CString::new(at.as_os_str().as_encoded_bytes()).expect("a literal path");
    // SAFETY: move_mount of the detached mount we were handed onto a directory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            root.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r != 0 {
        return Err(Error::os("attaching the node's root", std::io::Error::last_os_error()));
    }
    Ok(at)
}

const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;

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

/// Attaches bind mount `source` (detached, already idmapped and read-only as asked) onto
/// `target`, made inside the root without following symlinks.
fn bind_mount(root: &OwnedFd, source: &OwnedFd, is_dir: bool, target: &str) -> Result<()> {
    let at = make_target(root, target, is_dir)?;
    // SAFETY: move_mount between two fds we own, both paths empty.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            source.as_raw_fd(),
            c"".as_ptr(),
            at.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if r != 0 {
        return Err(Error::os(format!("bind-mounting onto {target} in the node"), std::io::Error::last_os_error()));
    }
    Ok(())
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

/// Hides `path`, whose components may hold a `*` (every match): /dev/null over a file, an
/// empty read-only tmpfs over a directory.
fn mask(root: &OwnedFd, path: &str) -> Result<()> {
    if let Some(star) = path.find('*') {
        let (dir, rest) = path[..star].rsplit_once('/').unwrap_or(("", ""));
        let (pattern, below) = match path[star..].find('/') {
            Some(i) => (format!("{rest}{}", &path[star..star + i]), &path[star + i..]),
            None => (format!("{rest}{}", &path[star..]), ""),
        };
        let Some(parent) = resolve_path(root, if dir.is_empty() { "/" } else { dir })? else { return Ok(()) };
        let listing = openat(&parent, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .ctx(|| format!("listing {dir}"))?;
        let names: Vec<String> = nix::dir::Dir::from_fd(listing)
            .ctx(|| format!("listing {dir}"))?
            .into_iter()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "." && n != ".." && crate::layers::glob_match(&pattern, n))
            .collect();
        for name in names {
            mask(root, &format!("{dir}/{name}{below}"))?;
        }
        return Ok(());
    }
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
