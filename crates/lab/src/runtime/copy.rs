//! `lab cp`: files into and out of a running node, as `docker cp`. The node's tree is hostile:
//! every path in it is resolved with openat2(RESOLVE_IN_ROOT) below the node's own root
//! (`/proc/<init>/root`), so that no symlink or `..` in it leads to the host's files, and
//! below that one name at a time with O_NOFOLLOW. What comes out loses set-user-ID and
//! set-group-ID bits; what goes in is written as the node's root (and owned by it).

use super::exec::find_node;
use crate::{Error, Name, NodeRef};
use nix::fcntl::{openat, openat2, readlinkat, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, Mode, SFlag};
use nix::unistd::{symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// One side of a copy: a path on the host, or a path in a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A path on the host.
    Host(PathBuf),
    /// An absolute path in node `node` (of lab `lab`, or of the only lab that has one).
    Node {
        /// The lab, if named.
        lab: Option<Name>,
        /// The node.
        node: String,
        /// The path in it.
        path: String,
    },
}

/// What a copy did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Files, directories and symlinks made.
    pub entries: u64,
    /// Bytes of file contents.
    pub bytes: u64,
}

/// Copies `from` to `to`, one of which is in a node: a file, a symlink (as itself) or a
/// directory tree. A destination that is an existing directory receives the source under its
/// own name; otherwise the destination is the new name.
pub fn copy(from: &Place, to: &Place) -> Result<Copied, Error> {
    super::ensure_root()?;
    match (from, to) {
        (Place::Node { lab, node, path }, Place::Host(dst)) => {
            let root = NodeRoot::open(lab.as_ref(), node)?;
            let mut c = Copied::default();
            out_of(&root, path, dst, &mut c).map_err(|e| Error::node(node, e))?;
            Ok(c)
        }
        (Place::Host(src), Place::Node { lab, node, path }) => {
            let root = NodeRoot::open(lab.as_ref(), node)?;
            let mut c = Copied::default();
            into(&root, src, path, &mut c).map_err(|e| Error::node(node, e))?;
            Ok(c)
        }
        _ => Err(Error::Usage("one side of `lab cp` is a node's path (NODE:PATH), the other the host's".into())),
    }
}

/// A running node's root directory, and who its root is on the host.
struct NodeRoot {
    dir: OwnedFd,
    uid: u32,
}

impl NodeRoot {
    fn open(lab: Option<&Name>, node: &str) -> Result<NodeRoot, Error> {
        let (lab, state) = find_node(lab, node)?;
        if state.runtime.stopped.contains(node) {
            return Err(Error::Stopped(NodeRef::new(&lab, node)));
        }
        let not_running = || Error::NotRunning(NodeRef::new(&lab, node));
        let procs = state.node(node).ok_or_else(not_running)?;
        let pidfd = procs.init.open().map_err(Error::from)?.ok_or_else(not_running)?;
        let path = format!("/proc/{}/root", procs.init.pid);
        let dir = File::open(&path).map_err(|e| Error::Io(format!("opening {path}"), e))?;
        // Opened while the pidfd pins the init: the pid was not reused in between.
        if !pidfd.is_alive() {
            return Err(not_running());
        }
        let plan = state.plan.node(node).ok_or_else(not_running)?;
        Ok(NodeRoot { dir: dir.into(), uid: plan.userns.map_or(0, |m| m.host) })
    }

    /// `path` in the node, resolved as the node would (its symlinks stay inside it).
    fn resolve(&self, path: &str, flags: OFlag) -> nix::Result<OwnedFd> {
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        openat2(self.dir.as_fd(), path, how)
    }
}

fn os(what: String, e: nix::errno::Errno) -> Error {
    Error::Io(what, e.into())
}

/// The parent directory and last name of an absolute node path.
fn split(path: &str) -> Result<(&str, &str), Error> {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some((parent, name)) if !name.is_empty() && name != "." && name != ".." => {
            Ok((if parent.is_empty() { "/" } else { parent }, name))
        }
        _ => Err(Error::Usage(format!("{path}: name a file or directory in the node, e.g. /etc/frr"))),
    }
}

// ---- out of a node ----

fn out_of(root: &NodeRoot, path: &str, dst: &Path, c: &mut Copied) -> Result<(), Error> {
    let (parent, name) = split(path)?;
    let dir =
        root.resolve(parent, OFlag::O_PATH | OFlag::O_DIRECTORY).map_err(|e| os(format!("opening {parent}"), e))?;
    let target = if dst.is_dir() { dst.join(name) } else { dst.to_path_buf() };
    copy_out(dir.as_fd(), name, &target, c).map_err(|e| match e {
        Error::Io(what, err) if err.raw_os_error() == Some(libc::ENOENT) && what.contains(name) => {
            Error::Io(format!("{path} in the node"), err)
        }
        e => e,
    })
}

/// Copies entry `name` of node directory `dir` to host path `dst`, recursively.
fn copy_out(dir: BorrowedFd, name: &str, dst: &Path, c: &mut Copied) -> Result<(), Error> {
    let st =
        fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| os(format!("reading {name}"), e))?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    // No set-user-ID or set-group-ID file of a node's making lands on the host.
    let mode = (st.st_mode & 0o1777) as u32;
    let host = |e: io::Error| Error::Io(format!("writing {}", dst.display()), e);
    if kind == SFlag::S_IFLNK {
        let target = readlinkat(dir, name).map_err(|e| os(format!("reading the link {name}"), e))?;
        replace(dst)?;
        std::os::unix::fs::symlink(&target, dst).map_err(host)?;
        c.entries += 1;
    } else if kind == SFlag::S_IFDIR {
        let sub = open_sub(dir, name).map_err(|e| os(format!("opening {name}"), e))?;
        if !dst.is_dir() {
            std::fs::create_dir(dst).map_err(host)?;
            c.entries += 1;
        }
        for entry in names(&sub)? {
            copy_out(sub.as_fd(), &entry, &dst.join(&entry), c)?;
        }
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(mode)).map_err(host)?;
    } else if kind == SFlag::S_IFREG {
        let fd = openat(
            dir,
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| os(format!("opening {name}"), e))?;
        // It may have been swapped for something else since we looked.
        let now = fstat(&fd).map_err(|e| os(format!("reading {name}"), e))?;
        if SFlag::from_bits_truncate(now.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(Error::Io(format!("copying {name}"), io::Error::other("it changed while being copied")));
        }
        replace(dst)?;
        let mut out = std::fs::OpenOptions::new().write(true).create_new(true).mode_of(mode).open(dst).map_err(host)?;
        c.bytes += io::copy(&mut File::from(fd), &mut out).map_err(host)?;
        out.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(host)?;
        c.entries += 1;
    } else {
        tracing::warn!("lab cp: skipping {name}: not a file, directory or symlink");
    }
    Ok(())
}

/// Makes room for a new file at `dst`: an existing file or symlink there goes (as cp does).
fn replace(dst: &Path) -> Result<(), Error> {
    match std::fs::symlink_metadata(dst) {
        Ok(m) if m.is_dir() => {
            Err(Error::Io(format!("writing {}", dst.display()), io::Error::other("it is a directory")))
        }
        Ok(_) => std::fs::remove_file(dst).map_err(|e| Error::Io(format!("replacing {}", dst.display()), e)),
        Err(_) => Ok(()),
    }
}

trait ModeOf {
    fn mode_of(&mut self, mode: u32) -> &mut Self;
}

impl ModeOf for std::fs::OpenOptions {
    fn mode_of(&mut self, mode: u32) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, mode & 0o777)
    }
}

/// Subdirectory `name` of `dir`, never through a symlink.
fn open_sub(dir: BorrowedFd, name: &str) -> nix::Result<OwnedFd> {
    openat(dir, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
}

/// The names in directory `dir`, but `.` and `..`.
fn names(dir: &OwnedFd) -> Result<Vec<String>, Error> {
    let d = nix::dir::Dir::from_fd(dir.try_clone().map_err(|e| Error::Io("reading a directory".into(), e))?)
        .map_err(|e| os("reading a directory".into(), e))?;
    let mut out = Vec::new();
    for entry in d {
        let entry = entry.map_err(|e| os("reading a directory".into(), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "." && name != ".." {
            out.push(name);
        }
    }
    Ok(out)
}

// ---- into a node ----

/// Runs `f` as the node's root for the file system (setfsuid, setfsgid): what it makes is
/// the node's own, on the node's layers and on file systems of its user namespace alike
/// (where the host's root has no id to write with). The calling thread only: `lab cp` runs
/// on one. Host files are read outside of it, as the host's root.
fn as_node<T>(root: &NodeRoot, f: impl FnOnce() -> T) -> T {
    let gid = nix::unistd::setfsgid(Gid::from_raw(root.uid));
    let uid = nix::unistd::setfsuid(Uid::from_raw(root.uid));
    let out = f();
    nix::unistd::setfsuid(uid);
    nix::unistd::setfsgid(gid);
    out
}

fn into(root: &NodeRoot, src: &Path, path: &str, c: &mut Copied) -> Result<(), Error> {
    let meta = std::fs::symlink_metadata(src).map_err(|e| Error::Io(format!("reading {}", src.display()), e))?;
    let src_name = src
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::Usage(format!("{}: name a file or directory to copy", src.display())))?;
    // An existing directory receives the source under its own name.
    let (dir, name) = match root.resolve(path, OFlag::O_PATH | OFlag::O_DIRECTORY) {
        Ok(dir) => (dir, src_name),
        Err(_) => {
            let (parent, name) = split(path)?;
            let dir = root
                .resolve(parent, OFlag::O_PATH | OFlag::O_DIRECTORY)
                .map_err(|e| os(format!("opening {parent} in the node"), e))?;
            (dir, name.to_string())
        }
    };
    copy_in(root, src, &meta, dir.as_fd(), &name, c)
}

/// Copies host path `src` to entry `name` of node directory `dir`, recursively; what it makes
/// in the node it makes as the node's root.
fn copy_in(
    root: &NodeRoot,
    src: &Path,
    meta: &std::fs::Metadata,
    dir: BorrowedFd,
    name: &str,
    c: &mut Copied,
) -> Result<(), Error> {
    let node = |e: nix::errno::Errno| os(format!("writing {name} in the node"), e);
    let host = |e: io::Error| Error::Io(format!("reading {}", src.display()), e);
    let mode = Mode::from_bits_truncate(meta.mode() & 0o7777);
    let existing = fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).ok();
    let is_dir =
        |st: &nix::sys::stat::FileStat| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
    if meta.is_dir() {
        let entries: Vec<std::fs::DirEntry> =
            std::fs::read_dir(src).map_err(host)?.collect::<Result<_, _>>().map_err(host)?;
        let sub = as_node(root, || {
            if !existing.as_ref().is_some_and(is_dir) {
                if existing.is_some() {
                    unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)?;
                }
                mkdirat(dir, name, Mode::from_bits_truncate(0o700))?;
                c.entries += 1;
            }
            open_sub(dir, name)
        })
        .map_err(node)?;
        for entry in entries {
            let m = std::fs::symlink_metadata(entry.path()).map_err(host)?;
            copy_in(root, &entry.path(), &m, sub.as_fd(), &entry.file_name().to_string_lossy(), c)?;
        }
        return as_node(root, || nix::sys::stat::fchmod(&sub, mode)).map_err(node);
    }
    if existing.as_ref().is_some_and(is_dir) {
        return Err(Error::Io(format!("writing {name} in the node"), io::Error::other("it is a directory")));
    }
    let replace = || match existing {
        Some(_) => unlinkat(dir, name, UnlinkatFlags::NoRemoveDir),
        None => Ok(()),
    };
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(src).map_err(host)?;
        as_node(root, || replace().and_then(|()| symlinkat(&target, dir, name))).map_err(node)?;
    } else if meta.is_file() {
        let mut input = File::open(src).map_err(host)?;
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = as_node(root, || replace().and_then(|()| openat(dir, name, flags, Mode::from_bits_truncate(0o600))))
            .map_err(node)?;
        let mut out = File::from(fd);
        c.bytes += io::copy(&mut input, &mut out).map_err(|e| Error::Io(format!("writing {name} in the node"), e))?;
        as_node(root, || nix::sys::stat::fchmod(&out, mode)).map_err(node)?;
    } else {
        tracing::warn!("lab cp: skipping {}: not a file, directory or symlink", src.display());
        return Ok(());
    }
    c.entries += 1;
    Ok(())
}

/// Reads `NODE:PATH`, `LAB/NODE:PATH` or a host path, as `docker cp` does: a node's side has
/// a `:` before any `/`; a host path with a `:` in its first part is written `./a:b`.
pub fn parse_place(arg: &str) -> Result<Place, String> {
    let Some((who, path)) = arg.split_once(':') else { return Ok(Place::Host(PathBuf::from(arg))) };
    let (lab, node) = match who.split_once('/') {
        Some((lab, node)) => (Some(lab), node),
        None => (None, who),
    };
    if who.starts_with('.') || node.is_empty() || Name::parse(node).is_err() {
        return Ok(Place::Host(PathBuf::from(arg)));
    }
    let lab = lab.map(Name::parse).transpose().map_err(|m| format!("{arg}: {m}"))?;
    if !path.starts_with('/') {
        return Err(format!("{arg}: a path in a node is absolute, e.g. {who}:/etc/hosts"));
    }
    Ok(Place::Node { lab, node: node.to_string(), path: path.to_string() })
}

#[cfg(test)]
mod tests {
    use super::{parse_place, split, Place};
    use std::path::PathBuf;

    #[test]
    fn places_read_as_docker_cp_reads_them() {
        let node = |lab: Option<&str>, node: &str, path: &str| Place::Node {
            lab: lab.map(|l| crate::Name::parse(l).unwrap()),
            node: node.into(),
            path: path.into(),
        };
        assert_eq!(parse_place("r1:/etc/frr"), Ok(node(None, "r1", "/etc/frr")));
        assert_eq!(parse_place("ospf/r1:/etc/frr/frr.conf"), Ok(node(Some("ospf"), "r1", "/etc/frr/frr.conf")));
        assert_eq!(parse_place("./a:b"), Ok(Place::Host(PathBuf::from("./a:b"))));
        assert_eq!(parse_place("/tmp/x"), Ok(Place::Host(PathBuf::from("/tmp/x"))));
        assert!(parse_place("r1:etc").is_err());
        assert_eq!(split("/etc/frr/").ok(), Some(("/etc", "frr")));
        assert_eq!(split("/x").ok(), Some(("/", "x")));
        assert!(split("/").is_err() && split("/a/..").is_err());
    }
}
