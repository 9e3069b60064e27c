//! The node's root file system, made on the host side before its init runs: an overlay of a
//! read-only lower layer (the host's root file system, or a directory) under a writable upper
//! layer on a tmpfs of the node's own, handed to the init as a detached mount.
//!
//! A helper process of the node's monitor makes it as the host's root, in a mount namespace
//! of its own (nothing of it ever shows on the host), because only there:
//! - the lower layer of a node in a user namespace can be an idmapped mount, so that the
//!   host's (or an image's) files keep their owners inside (root's files are root's, frr's
//!   are frr's) instead of showing as nobody;
//! - the overlay keeps its metadata in trusted.* xattrs, which tmpfs has on every kernel
//!   (an overlay mounted in a user namespace needs user.* xattrs, on tmpfs only since 6.6),
//!   and the node cannot remount it;
//! - what the node must not see of the lower layer (host secrets) is covered in the upper
//!   layer itself, by whiteouts, opaque directories and locked copies: nothing in the node
//!   can unmount them to look underneath.

use crate::error::{Context, Error, Result};
use crate::spec::{BindMount, Cover, FileKind, IdMap, NodeFile, NodeSpec};
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fstat, Mode, SFlag};
use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

const OPEN_TREE_CLONE: u32 = 1;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
const AT_RECURSIVE: u32 = 0x8000;

/// struct mount_attr of <linux/mount.h>.
#[repr(C)]
pub(crate) struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

/// A made root, and what the node does without.
pub(crate) struct Root {
    /// The overlay, detached: the init attaches it in the node's mount namespace.
    pub mount: OwnedFd,
    /// Each bind mount of the spec, in order, detached, idmapped like the lower layer and
    /// read-only if asked.
    pub binds: Vec<OwnedFd>,
    pub warnings: Vec<String>,
}

/// Makes node `spec`'s root. Runs in the helper process, as the host's root, in a mount
/// namespace of its own; `userns` is the node's user namespace (its id maps written).
pub(crate) fn build(spec: &NodeSpec, userns: Option<BorrowedFd<'_>>) -> Result<Root> {
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .ctx(|| "making the helper's mounts private".into())?;
    // The kept layer (see `keep_layer`), taken along before the tmpfs below covers it. The
    // node's directory is a convenient place every host has for the mount points: the tmpfs
    // over it exists only in this mount namespace.
    let kept = open_tree(&spec.dir.join(LAYER), false).ctx(|| "opening the node's writable layer".into())?;
    let work = spec.dir.clone();
    mount(Some("tmpfs"), &work, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0755"))
        .ctx(|| "mounting a tmpfs for the node's mount points".into())?;
    let dirs = ["lower", "root", LAYER].map(|d| work.join(d));
    for d in &dirs {
        fs::DirBuilder::new().mode(0o755).create(d).ctx(|| format!("creating {}", d.display()))?;
    }
    let [lower, root, layer_dir] = dirs;
    move_to(&kept, &layer_dir).ctx(|| "attaching the node's writable layer".into())?;
    let (upper, workdir) = (layer_dir.join("upper"), layer_dir.join("work"));
    load_tun(&work);
    let mut warnings = Vec::new();
    let idmapped = attach_root(spec, &work, &lower, userns, &mut warnings)?;
    // A layer a node ran on holds what the node wrote (hostile, then): nothing of lab's is
    // written through it again; it is mounted as it is. A new one (or one whose laying out
    // failed, which no node ever saw) is laid out from scratch.
    if !layer_dir.join(LAID).exists() {
        for d in [&upper, &workdir] {
            match fs::remove_dir_all(d) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::os(format!("clearing {}", d.display()), e));
                }
                _ => {}
            }
            fs::DirBuilder::new().mode(0o755).create(d).ctx(|| format!("creating {}", d.display()))?;
        }
        let layer =
            Layer { lower: open_dir(&lower)?, upper: upper.clone(), owners: Owners { userns: spec.userns, idmapped } };
        layer.mirror_dir(Path::new(""), &upper)?;
        for cover in &spec.covers {
            layer.cover(cover).map_err(|e| Error::Other(format!("covering {} in the node: {e}", cover.path())))?;
        }
        for file in &spec.files {
            layer.write(file).map_err(|e| Error::Other(format!("writing {} in the node: {e}", file.path)))?;
        }
        fs::write(layer_dir.join(LAID), "").ctx(|| "marking the node's layer laid out".into())?;
    }
    let data = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), workdir.display());
    let mounted = mount(Some("overlay"), &root, Some("overlay"), MsFlags::empty(), Some(data.as_str()));
    match mounted {
        Ok(()) => {}
        // An overlay that cannot take an idmapped layer (before Linux 5.19): without.
        Err(nix::errno::Errno::EINVAL) if idmapped => {
            warnings.push(format!(
                "this kernel's overlayfs cannot use an idmapped layer; the host's files show as owned by nobody in node {}",
                spec.name
            ));
            nix::mount::umount2(&lower, nix::mount::MntFlags::MNT_DETACH).ctx(|| "detaching the lower layer".into())?;
            attach_root(spec, &work, &lower, None, &mut warnings)?;
            mount(Some("overlay"), &root, Some("overlay"), MsFlags::empty(), Some(data.as_str()))
                .ctx(|| format!("mounting the node's root (overlay on {})", spec.rootfs.display()))?;
        }
        Err(e) => return Err(Error::os(format!("mounting the node's root (overlay on {})", spec.rootfs.display()), e)),
    }
    let mount = open_tree(&root, false).ctx(|| "detaching the node's root".into())?;
    let binds = spec.mounts.iter().map(|m| bind(m, userns, &mut warnings)).collect::<Result<Vec<_>>>()?;
    Ok(Root { mount, binds, warnings })
}

/// A detached copy of bind mount `m`'s source and every mount below it: idmapped into
/// `userns` where the kernel can (the node's root is the host's root there, and files keep
/// their owners both ways), read-only if asked.
fn bind(m: &BindMount, userns: Option<BorrowedFd<'_>>, warnings: &mut Vec<String>) -> Result<OwnedFd> {
    let tree = open_tree(&m.source, true).ctx(|| format!("mount source {}", m.source.display()))?;
    let ro = if m.read_only { MOUNT_ATTR_RDONLY } else { 0 };
    let mut idmapped = false;
    if let Some(ns) = userns {
        match set_attr(&tree, MOUNT_ATTR_IDMAP | ro, Some(ns), true) {
            Ok(()) => idmapped = true,
            Err(e) => warnings.push(format!(
                "mount source {} cannot be idmapped here ({e}: its file system or this kernel does not \
                 support it); its files show as owned by nobody on {} in the node",
                m.source.display(),
                m.target
            )),
        }
    }
    if !idmapped && ro != 0 {
        set_attr(&tree, ro, None, true).ctx(|| format!("making {} read-only", m.target))?;
    }
    Ok(tree)
}

/// Has the kernel load the tun driver, if it is a module not loaded yet, by opening a device
/// node of it (on a tmpfs of this mount namespace's own): the host's /dev/net/tun then exists,
/// which the node's init binds into the node (a node in a user namespace cannot make it).
fn load_tun(work: &Path) {
    if Path::new("/dev/net/tun").exists() {
        return;
    }
    let dir = work.join("dev");
    let made = fs::DirBuilder::new().mode(0o700).create(&dir).ok().and_then(|()| {
        mount(Some("tmpfs"), &dir, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, Some("mode=0700")).ok()
    });
    if made.is_none() {
        return;
    }
    let node = dir.join("tun");
    let tun = nix::sys::stat::makedev(10, 200);
    if nix::sys::stat::mknod(&node, SFlag::S_IFCHR, Mode::from_bits_truncate(0o600), tun).is_ok() {
        drop(fs::OpenOptions::new().read(true).write(true).open(&node));
    }
    let _ = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH);
}

/// Mounts what the node's root is made from at `lower`: a copy of its rootfs, or its image's
/// layers stacked read-only (each idmapped on a directory of `work` of its own, then an
/// overlay of them, top first, at `lower`). Returns whether they are idmapped.
fn attach_root(
    spec: &NodeSpec,
    work: &Path,
    lower: &Path,
    userns: Option<BorrowedFd<'_>>,
    warnings: &mut Vec<String>,
) -> Result<bool> {
    match spec.layers.as_slice() {
        [] => attach_lower(&spec.rootfs, lower, userns, warnings),
        [only] => attach_lower(only, lower, userns, warnings),
        layers => {
            let mut idmapped = true;
            let mut dirs = Vec::new();
            for (k, layer) in layers.iter().enumerate() {
                let at = work.join(format!("image-{k}"));
                match fs::DirBuilder::new().mode(0o755).create(&at) {
                    Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                        return Err(Error::os(format!("creating {}", at.display()), e))
                    }
                    _ => {}
                }
                // A retry without idmapping finds the previous try's mounts: off first.
                let _ = nix::mount::umount2(&at, nix::mount::MntFlags::MNT_DETACH);
                idmapped &= attach_lower(layer, &at, userns, warnings)?;
                dirs.push(at.display().to_string());
            }
            dirs.reverse();
            let data = format!("lowerdir={}", dirs.join(":"));
            mount(Some("overlay"), lower, Some("overlay"), MsFlags::MS_RDONLY, Some(data.as_str())).map_err(|e| {
                Error::os(format!("stacking the image's {} layers", layers.len()), std::io::Error::from(e))
            })?;
            Ok(idmapped && userns.is_some())
        }
    }
}

/// Mounts a read-only copy of the mount at `rootfs` (only that file system, none mounted
/// below it) on `at`: idmapped into `userns` where the kernel can. Returns whether it is.
fn attach_lower(rootfs: &Path, at: &Path, userns: Option<BorrowedFd<'_>>, warnings: &mut Vec<String>) -> Result<bool> {
    let tree = open_tree(rootfs, false).ctx(|| format!("cloning the mount of {}", rootfs.display()))?;
    let mut idmapped = false;
    if let Some(ns) = userns {
        match set_attr(&tree, MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY, Some(ns), false) {
            Ok(()) => idmapped = true,
            Err(e) => warnings.push(format!(
                "{} cannot be idmapped here ({e}: its file system or this kernel does not support it); \
                 its files show as owned by nobody in the node",
                rootfs.display()
            )),
        }
    }
    if !idmapped {
        set_attr(&tree, MOUNT_ATTR_RDONLY, None, false).ctx(|| format!("making {} read-only", rootfs.display()))?;
    }
    move_to(&tree, at).ctx(|| format!("attaching {}", rootfs.display()))?;
    Ok(idmapped)
}

/// Attaches detached mount `tree` on directory `at`.
fn move_to(tree: &OwnedFd, at: &Path) -> std::io::Result<()> {
    let target = cstr(at).map_err(|e| std::io::Error::other(e.to_string()))?;
    // SAFETY: move_mount of a detached mount we own onto a directory path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The node's writable layer is kept from its first start to `lab down` (or a fresh start),
/// as a container's is from `create` to `rm`, mounted on the host at `<node dir>/layer`
/// (nosuid, nodev): the directory `disk` (0700, made if missing) bound there, as Docker keeps
/// a container's layer on disk; or, without one, a tmpfs of its own (mode 0700) whose pages
/// are charged to the node's memory cgroup as it writes them and that holds at most `size`
/// bytes. Mounts it unless it is there; runs on the host's side.
pub fn keep_layer(node_dir: &Path, size: Option<u64>, disk: Option<&Path>) -> Result<()> {
    let at = node_dir.join(LAYER);
    match fs::DirBuilder::new().mode(0o700).create(&at) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::os(format!("creating {}", at.display()), e)),
    }
    let dev = |p: &Path| fs::symlink_metadata(p).map(|m| std::os::unix::fs::MetadataExt::dev(&m));
    let (outer, inner) = (dev(node_dir), dev(&at));
    if let (Ok(outer), Ok(inner)) = (&outer, &inner) {
        if outer != inner {
            return Ok(());
        }
    }
    if let Some(disk) = disk {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(disk)
            .ctx(|| format!("creating {}", disk.display()))?;
        let what = || format!("binding the node's writable layer {} on {}", disk.display(), at.display());
        mount(Some(disk), &at, None::<&str>, MsFlags::MS_BIND, None::<&str>).ctx(what)?;
        let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        return mount(None::<&str>, &at, None::<&str>, flags, None::<&str>).ctx(what);
    }
    let options = match size {
        Some(bytes) => format!("mode=0700,size={bytes}"),
        None => "mode=0700".to_string(),
    };
    mount(Some("tmpfs"), &at, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(options.as_str()))
        .ctx(|| format!("mounting the node's writable layer (tmpfs) on {}", at.display()))
}

/// Throws the node's kept writable layer away (`lab start --fresh`, `lab down`), and what
/// it holds on `disk`: the next start makes a new one. Already gone is success.
pub fn discard_layer(node_dir: &Path, disk: Option<&Path>) -> Result<()> {
    let at = node_dir.join(LAYER);
    loop {
        match nix::mount::umount2(&at, nix::mount::MntFlags::MNT_DETACH | nix::mount::MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => continue,
            // Not (or no longer) a mount point, or not there.
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => break,
            Err(e) => return Err(Error::os(format!("unmounting {}", at.display()), std::io::Error::from(e))),
        }
    }
    match fs::remove_dir(&at) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::os(format!("removing {}", at.display()), e)),
    }
    // What the node wrote: removed without following any symlink in it.
    match disk.map(fs::remove_dir_all) {
        Some(Err(e)) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::os(format!("removing {}", disk.unwrap_or(&at).display()), e))
        }
        _ => Ok(()),
    }
}

/// The name of the kept layer's mount point in the node's directory.
const LAYER: &str = "layer";
/// Written in the kept layer (beside, never in, its upper directory) once lab has laid its
/// files there: a layer without it never ran a node and is laid again.
const LAID: &str = "laid";

/// A detached copy of the mount at `path` (open_tree with OPEN_TREE_CLONE), with the mounts
/// below it if `recursive`.
pub(crate) fn open_tree(path: &Path, recursive: bool) -> std::io::Result<OwnedFd> {
    let p = cstr(path).map_err(|e| std::io::Error::other(e.to_string()))?;
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as u32 | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: open_tree with a valid path; the result is a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, p.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// mount_setattr on the (detached) mount `fd`, and the mounts below it if `recursive`.
fn set_attr(fd: &OwnedFd, set: u64, userns: Option<BorrowedFd<'_>>, recursive: bool) -> std::io::Result<()> {
    let attr =
        MountAttr { attr_set: set, attr_clr: 0, propagation: 0, userns_fd: userns.map_or(0, |f| f.as_raw_fd() as u64) };
    // SAFETY: mount_setattr on an fd we own, with a mount_attr of the size we pass.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | if recursive { AT_RECURSIVE as i32 } else { 0 },
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn cstr(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::Other(format!("{} contains a NUL byte", p.display())))
}

fn open_dir(p: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(p, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .ctx(|| format!("opening {}", p.display()))
}

/// Who owns what the upper layer holds, as the host sees it.
struct Owners {
    userns: Option<IdMap>,
    /// The lower layer is idmapped: its files' owners already show in the node's range.
    idmapped: bool,
}

impl Owners {
    /// The owner of an upper copy of a lower entry that `stat` shows as `uid:gid`.
    fn of_lower(&self, uid: u32, gid: u32) -> (u32, u32) {
        match self.userns {
            // Not idmapped, the host's owners mean nothing in the node: its root's own.
            Some(map) if !self.idmapped => (map.host, map.host),
            _ => (uid, gid),
        }
    }

    /// The node's root, as the host sees it.
    fn root(&self) -> (u32, u32) {
        self.userns.map_or((0, 0), |m| (m.host, m.host))
    }
}

/// The lower layer (read through, never written) and the upper layer being written.
struct Layer {
    lower: OwnedFd,
    upper: PathBuf,
    owners: Owners,
}

/// Metadata of an entry of the lower layer.
struct Entry {
    kind: SFlag,
    mode: u32,
    uid: u32,
    gid: u32,
}

fn rel(path: &str) -> &Path {
    Path::new(path.trim_start_matches('/'))
}

impl Layer {
    /// Opens `path` (relative) inside the lower layer, never leaving it, never following a
    /// symlink in its last component.
    fn open_lower(&self, path: &Path, flags: OFlag) -> Option<OwnedFd> {
        let at = if path.as_os_str().is_empty() { Path::new(".") } else { path };
        let how = OpenHow::new()
            .flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        openat2(&self.lower, at, how).ok()
    }

    fn lower_entry(&self, path: &Path) -> Option<Entry> {
        let st = fstat(&self.open_lower(path, OFlag::O_PATH)?).ok()?;
        Some(Entry {
            kind: SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
        })
    }

    fn lower_names(&self, dir: &Path) -> Vec<String> {
        let Some(fd) = self.open_lower(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY) else { return Vec::new() };
        let Ok(listing) = nix::dir::Dir::from_fd(fd) else { return Vec::new() };
        let mut names: Vec<String> = listing
            .into_iter()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "." && n != "..")
            .collect();
        names.sort();
        names
    }

    /// Gives the upper directory `at` (which exists) the mode and owner of directory `path`
    /// of the lower layer (the merged directory shows the upper one's), or the node root's.
    fn mirror_dir(&self, path: &Path, at: &Path) -> Result<()> {
        let (mode, (uid, gid)) = match self.lower_entry(path) {
            Some(e) if e.kind == SFlag::S_IFDIR => (e.mode, self.owners.of_lower(e.uid, e.gid)),
            _ => (0o755, self.owners.root()),
        };
        std::os::unix::fs::chown(at, Some(uid), Some(gid)).ctx(|| format!("chown {}", at.display()))?;
        fs::set_permissions(at, fs::Permissions::from_mode(mode)).ctx(|| format!("chmod {}", at.display()))
    }

    /// Creates the directories of upper path `path` (relative) that are missing, each as the
    /// lower layer has it. A fresh tmpfs of our own: no symlink can be in the way.
    fn parents(&self, path: &Path) -> Result<()> {
        let mut sofar = PathBuf::new();
        for part in path.parent().into_iter().flat_map(|p| p.components()) {
            sofar.push(part);
            let at = self.upper.join(&sofar);
            match fs::DirBuilder::new().mode(0o755).create(&at) {
                Ok(()) => self.mirror_dir(&sofar, &at)?,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::os(format!("creating {}", at.display()), e)),
            }
        }
        Ok(())
    }

    /// A whiteout: `path` (relative) does not show from the lower layer.
    fn whiteout(&self, path: &Path) -> Result<()> {
        self.parents(path)?;
        let at = self.upper.join(path);
        nix::sys::stat::mknod(&at, SFlag::S_IFCHR, Mode::empty(), 0)
            .ctx(|| format!("making a whiteout {}", at.display()))
    }

    fn cover(&self, cover: &Cover) -> Result<()> {
        match cover {
            Cover::Remove { path, keep } => {
                let path = rel(path);
                let (Some(dir), Some(pattern)) = (path.parent(), path.file_name()) else { return Ok(()) };
                let pattern = pattern.to_string_lossy();
                let names = if pattern.contains('*') {
                    self.lower_names(dir).into_iter().filter(|n| glob_match(&pattern, n)).collect()
                } else {
                    vec![pattern.into_owned()]
                };
                for name in names {
                    let p = dir.join(&name);
                    if self.lower_entry(&p).is_some() && !keep.iter().any(|k| rel(k) == p) {
                        self.whiteout(&p)?;
                    }
                }
                Ok(())
            }
            Cover::Empty { path, keep } => {
                let keep: Vec<&Path> = keep.iter().map(|k| rel(k)).collect();
                self.empty(rel(path), &keep)
            }
            Cover::Locked { path } => {
                let p = rel(path);
                let Some(entry) = self.lower_entry(p).filter(|e| e.kind == SFlag::S_IFREG) else { return Ok(()) };
                let fd = self.open_lower(p, OFlag::O_RDONLY).ok_or_else(|| Error::Other("cannot open it".into()))?;
                let text = std::io::read_to_string(fs::File::from(fd)).ctx(|| format!("reading /{}", p.display()))?;
                let locked: String = text.lines().map(|l| lock_line(l) + "\n").collect();
                self.parents(p)?;
                let at = self.upper.join(p);
                fs::write(&at, locked).ctx(|| format!("writing {}", at.display()))?;
                let (uid, gid) = self.owners.of_lower(entry.uid, entry.gid);
                std::os::unix::fs::chown(&at, Some(uid), Some(gid)).ctx(|| format!("chown {}", at.display()))?;
                fs::set_permissions(&at, fs::Permissions::from_mode(entry.mode))
                    .ctx(|| format!("chmod {}", at.display()))
            }
        }
    }

    /// Directory `path` (relative) shows empty but for `keep`: opaque if nothing is kept,
    /// else every entry but those on the way to a kept path whited out.
    fn empty(&self, path: &Path, keep: &[&Path]) -> Result<()> {
        match self.lower_entry(path) {
            Some(e) if e.kind == SFlag::S_IFDIR => {}
            // Nothing there to hide.
            _ => return Ok(()),
        }
        self.parents(path)?;
        let at = self.upper.join(path);
        match fs::DirBuilder::new().mode(0o755).create(&at) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::os(format!("creating {}", at.display()), e)),
        }
        self.mirror_dir(path, &at)?;
        let keep: Vec<&Path> = keep.iter().copied().filter(|k| k.starts_with(path) && *k != path).collect();
        if keep.is_empty() {
            return set_opaque(&at);
        }
        for name in self.lower_names(path) {
            let child = path.join(&name);
            if keep.contains(&child.as_path()) {
                continue;
            }
            if keep.iter().any(|k| k.starts_with(&child)) {
                self.empty(&child, &keep)?;
            } else {
                self.whiteout(&child)?;
            }
        }
        Ok(())
    }

    /// One of the node's own files, owned by its root. A directory made where a cover left
    /// a whiteout is opaque: it has nothing of the lower layer's.
    fn write(&self, file: &NodeFile) -> Result<()> {
        let p = rel(&file.path);
        self.parents(p)?;
        let at = self.upper.join(p);
        let whiteout =
            fs::symlink_metadata(&at).is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type()));
        if whiteout {
            fs::remove_file(&at).ctx(|| format!("removing the whiteout {}", at.display()))?;
        }
        match file.kind {
            FileKind::File => fs::write(&at, &file.contents).ctx(|| format!("writing {}", at.display()))?,
            FileKind::Dir => {
                match fs::DirBuilder::new().mode(0o755).create(&at) {
                    Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                        return Err(Error::os(format!("creating {}", at.display()), e));
                    }
                    _ => {}
                }
                if whiteout {
                    set_opaque(&at)?;
                }
            }
            FileKind::Symlink => {
                std::os::unix::fs::symlink(&file.contents, &at)
                    .ctx(|| format!("creating the symlink {}", at.display()))?;
            }
            FileKind::Copy => {
                // A copy in the node's own layer, not a bind mount: an editor's (or FRR's
                // `write memory`) rename over it works.
                if fs::symlink_metadata(&at).is_ok_and(|m| !m.is_dir()) {
                    fs::remove_file(&at).ctx(|| format!("replacing {}", at.display()))?;
                }
                fs::copy(&file.contents, &at).ctx(|| format!("copying {} to {}", file.contents, at.display()))?;
            }
        }
        let (uid, gid) = self.owners.root();
        std::os::unix::fs::lchown(&at, Some(uid), Some(gid)).ctx(|| format!("chown {}", at.display()))?;
        if file.kind != FileKind::Symlink {
            fs::set_permissions(&at, fs::Permissions::from_mode(file.mode))
                .ctx(|| format!("chmod {}", at.display()))?;
        }
        Ok(())
    }
}

/// Marks upper directory `at` opaque: nothing of the lower layer's directory shows through.
fn set_opaque(at: &Path) -> Result<()> {
    let target = cstr(at)?;
    // SAFETY: setxattr with valid C strings and a one-byte value.
    if unsafe { libc::setxattr(target.as_ptr(), c"trusted.overlay.opaque".as_ptr(), c"y".as_ptr().cast(), 1, 0) } != 0 {
        return Err(Error::os(format!("making {} opaque", at.display()), std::io::Error::last_os_error()));
    }
    Ok(())
}

/// `name:password:...` with the password replaced by `!` (locked); other lines as they are.
fn lock_line(line: &str) -> String {
    match line.split_once(':') {
        Some((name, rest)) if !name.is_empty() && !line.starts_with('#') => {
            let after = rest.split_once(':').map_or("", |(_, a)| a);
            format!("{name}:!:{after}")
        }
        _ => line.to_string(),
    }
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return name == pattern;
    }
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_locked_lines() {
        assert!(glob_match("ssh_host_*", "ssh_host_rsa_key"));
        assert!(glob_match("ssh_host_*_key", "ssh_host_ed25519_key"));
        assert!(!glob_match("ssh_host_*_key", "ssh_host_ed25519_key.pub"));
        assert!(!glob_match("ssh_host_*", "sshd_config"));
        assert!(glob_match("exact", "exact") && !glob_match("exact", "exactly"));
        assert_eq!(lock_line("root:$y$j9T$abc:20000:0:99999:7:::"), "root:!:20000:0:99999:7:::");
        assert_eq!(lock_line("shadow:*::"), "shadow:!::");
        assert_eq!(lock_line("nobody"), "nobody");
        assert_eq!(lock_line(""), "");
    }
}
