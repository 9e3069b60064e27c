//! Unpacking a layer (a tar stream, from an image nobody vetted) into an empty directory,
//! the way overlayfs stacks layers: a whiteout `.wh.NAME` becomes a 0/0 character device
//! `NAME`, an opaque marker `.wh..wh..opq` the `trusted.overlay.opaque` xattr on its directory.
//!
//! Nothing may land outside the directory: paths with `..` or a leading `/` are refused, and
//! every path is walked one component at a time from the layer's root with `O_NOFOLLOW`, so a
//! symlink the layer made (`etc -> /etc`) is never followed; an entry through one is refused,
//! as is a hard link to anything outside the layer. Owners, modes (set-id bits too), times,
//! hard links, device nodes and `user.*`/`security.capability` xattrs are kept; `trusted.*`
//! xattrs of the image's own are dropped (they would steer overlayfs).
//! The `tar` crate reads the stream; its own `unpack` is not used, because it writes through
//! paths (following what the archive made) and knows nothing of whiteouts.

use crate::{Error, Result};
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, futimens, mkdirat, mknodat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use tar::EntryType;

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// A path of the archive, as its components (`.` dropped); the empty list is the root.
fn components(raw: &[u8], what: &str) -> Result<Vec<Vec<u8>>> {
    let refuse = |why: &str| Error::Unsafe { entry: String::from_utf8_lossy(raw).into_owned(), why: why.to_string() };
    if raw.starts_with(b"/") {
        return Err(refuse(&format!("{what} is an absolute path")));
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(refuse(&format!("{what} has `..` in it"))),
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

/// The directory `parents` names below `root`, opened without following any symlink;
/// missing ones are made (0755, root's) when `make`.
fn walk(root: &OwnedFd, parents: &[Vec<u8>], make: bool, entry: &str) -> Result<OwnedFd> {
    let mut dir = root.try_clone().map_err(|e| Error::io("duplicating the layer's directory", e))?;
    for c in parents {
        let name = OsStr::from_bytes(c);
        let open = |d: &OwnedFd| {
            openat(d, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
        };
        let next = match open(&dir) {
            Err(nix::errno::Errno::ENOENT) if make => {
                mkdirat(&dir, name, Mode::from_bits_truncate(0o755))
                    .map_err(|e| Error::io(format!("making a parent of {entry}"), e.into()))?;
                open(&dir)
            }
            other => other,
        };
        dir = next.map_err(|e| match e {
            nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR => Error::Unsafe {
                entry: entry.to_string(),
                why: format!(
                    "it goes through {}, which is not a directory of the layer (a symlink?)",
                    name.to_string_lossy()
                ),
            },
            e => Error::io(format!("opening a parent of {entry}"), e.into()),
        })?;
    }
    Ok(dir)
}

/// Removes whatever is at `name` in `dir` (not a non-empty directory); nothing is success.
fn clear(dir: &OwnedFd, name: &OsStr, entry: &str) -> Result<()> {
    for flag in [UnlinkatFlags::NoRemoveDir, UnlinkatFlags::RemoveDir] {
        match unlinkat(dir, name, flag) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(nix::errno::Errno::EISDIR) => continue,
            Err(e) => return Err(Error::io(format!("replacing {entry}"), e.into())),
        }
    }
    Ok(())
}

/// The xattrs of a PAX header worth keeping.
fn xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Vec<(String, Vec<u8>)> {
    let Ok(Some(pax)) = entry.pax_extensions() else { return Vec::new() };
    pax.flatten()
        .filter_map(|x| {
            let key = x.key().ok()?.strip_prefix("SCHILY.xattr.")?.to_string();
            (key.starts_with("user.") || key == "security.capability").then(|| (key, x.value_bytes().to_vec()))
        })
        .collect()
}

/// What one unpacking wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub bytes: u64,
}

/// Unpacks the tar stream `reader` into the empty directory `dest`.
pub fn unpack(reader: impl Read, dest: &Path) -> Result<Stats> {
    let root = openat(
        nix::fcntl::AT_FDCWD,
        dest,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(format!("opening {}", dest.display()), e.into()))?;
    let mut archive = tar::Archive::new(reader);
    let mut stats = Stats::default();
    let entries = archive.entries().map_err(|e| Error::io("reading the layer", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::io("reading the layer", e))?;
        let raw = entry.path_bytes().into_owned();
        let label = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink
        ) {
            continue;
        }
        let mut path = components(&raw, "its path")?;
        let header = entry.header().clone();
        // Symlinks, hard links and whiteouts have no mode of their own: only read it when used.
        let mode = || -> Result<Mode> {
            let m = header.mode().map_err(|e| Error::io(format!("reading {label}"), e))?;
            Ok(Mode::from_bits_truncate(m & 0o7777))
        };
        let uid = header.uid().ok().and_then(|u| u32::try_from(u).ok()).map(Uid::from_raw);
        let gid = header.gid().ok().and_then(|g| u32::try_from(g).ok()).map(Gid::from_raw);
        let mtime = header.mtime().unwrap_or(0);
        let Some(name) = path.pop() else {
            // The layer's root itself: its owner and mode.
            if kind == EntryType::Directory {
                fchown(&root, uid, gid).map_err(|e| Error::io("setting the layer root's owner", e.into()))?;
                fchmod(&root, mode()?).map_err(|e| Error::io("setting the layer root's mode", e.into()))?;
            }
            continue;
        };
        let parent = walk(&root, &path, true, &label)?;
        let name_os = OsStr::from_bytes(&name);
        let io = |what: &str, e: nix::errno::Errno| Error::io(format!("{what} {label}"), e.into());
        // Whiteouts: overlayfs's own form of them.
        if name == OPAQUE.as_bytes() {
            let dir = File::from(parent);
            xattr::FileExt::set_xattr(&dir, "trusted.overlay.opaque", b"y")
                .map_err(|e| Error::io(format!("marking {label}'s directory opaque"), e))?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT.as_bytes()) {
            let hidden = OsStr::from_bytes(hidden);
            if hidden.is_empty() || hidden == ".." || hidden == "." {
                return Err(Error::Unsafe { entry: label, why: "a whiteout of nothing".into() });
            }
            clear(&parent, hidden, &label)?;
            mknodat(&parent, hidden, SFlag::S_IFCHR, Mode::empty(), 0).map_err(|e| io("making the whiteout", e))?;
            continue;
        }
        let xattrs = xattrs(&mut entry);
        let finish = |fd: OwnedFd| -> Result<()> {
            // Owner before mode: chown clears set-id bits.
            fchown(&fd, uid, gid).map_err(|e| io("setting the owner of", e))?;
            fchmod(&fd, mode()?).map_err(|e| io("setting the mode of", e))?;
            let file = File::from(fd);
            for (k, v) in &xattrs {
                xattr::FileExt::set_xattr(&file, k, v).map_err(|e| Error::io(format!("setting {k} on {label}"), e))?;
            }
            let t = TimeSpec::new(mtime as i64, 0);
            futimens(file.as_fd(), &t, &t).map_err(|e| io("setting the times of", e))
        };
        match kind {
            EntryType::Directory => {
                let open = || {
                    openat(
                        &parent,
                        name_os,
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                };
                let fd = match open() {
                    Ok(fd) => fd,
                    Err(nix::errno::Errno::ENOENT) => {
                        mkdirat(&parent, name_os, Mode::from_bits_truncate(0o700)).map_err(|e| io("making", e))?;
                        open().map_err(|e| io("opening", e))?
                    }
                    Err(_) => {
                        clear(&parent, name_os, &label)?;
                        mkdirat(&parent, name_os, Mode::from_bits_truncate(0o700)).map_err(|e| io("making", e))?;
                        open().map_err(|e| io("opening", e))?
                    }
                };
                finish(fd)?;
            }
            EntryType::Regular | EntryType::Continuous => {
                clear(&parent, name_os, &label)?;
                let fd = openat(
                    &parent,
                    name_os,
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| io("creating", e))?;
                let mut file = File::from(fd);
                stats.bytes +=
                    std::io::copy(&mut entry, &mut file).map_err(|e| Error::io(format!("writing {label}"), e))?;
                finish(OwnedFd::from(file))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Error::Unsafe { entry: label.clone(), why: "a symlink to nothing".into() })?;
                clear(&parent, name_os, &label)?;
                // Its target is only ever read in the node's own root; lab never follows it.
                symlinkat(OsStr::from_bytes(&target), &parent, name_os).map_err(|e| io("making the symlink", e))?;
                fchownat(&parent, name_os, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| io("setting the owner of", e))?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Error::Unsafe { entry: label.clone(), why: "a hard link to nothing".into() })?;
                let mut to = components(&target, "its hard link's target")?;
                let Some(to_name) = to.pop() else {
                    return Err(Error::Unsafe { entry: label, why: "a hard link to the layer's root".into() });
                };
                let to_parent = walk(&root, &to, false, &label)?;
                clear(&parent, name_os, &label)?;
                linkat(&to_parent, OsStr::from_bytes(&to_name), &parent, name_os, AtFlags::empty())
                    .map_err(|e| io("making the hard link", e))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (flag, dev) = match kind {
                    EntryType::Char => (SFlag::S_IFCHR, device(&header)),
                    EntryType::Block => (SFlag::S_IFBLK, device(&header)),
                    _ => (SFlag::S_IFIFO, 0),
                };
                clear(&parent, name_os, &label)?;
                mknodat(&parent, name_os, flag, mode()?, dev).map_err(|e| io("making the device node", e))?;
                fchownat(&parent, name_os, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| io("setting the owner of", e))?;
            }
            other => {
                return Err(Error::Unsafe {
                    entry: label,
                    why: format!("an entry of a kind lab does not unpack ({other:?})"),
                })
            }
        }
    }
    Ok(stats)
}

fn device(h: &tar::Header) -> nix::libc::dev_t {
    let major = h.device_major().ok().flatten().unwrap_or(0);
    let minor = h.device_minor().ok().flatten().unwrap_or(0);
    nix::sys::stat::makedev(u64::from(major), u64::from(minor))
}
