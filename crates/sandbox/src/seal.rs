//! A sealed, in-memory copy of the running binary. Nodes' monitors and inits run from it, so
//! that nothing inside a node can overwrite the `lab` binary on the host through
//! /proc/PID/exe (CVE-2019-5736): the copy refuses every write.

use crate::error::{Context, Result};
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The sealed copy; it lives as long as this value or any process started from it.
pub struct SealedExe {
    fd: OwnedFd,
}

impl SealedExe {
    /// Copies the running binary (which must be `lab`).
    pub fn of_self() -> Result<SealedExe> {
        SealedExe::of(Path::new("/proc/self/exe"))
    }

    /// Copies the `lab` binary at `path` into a memfd and seals it against writes, growing
    /// and shrinking.
    pub fn of(path: &Path) -> Result<SealedExe> {
        let fd = memfd_create(c"lab", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
            .ctx(|| "creating a memfd for the sealed lab binary".into())?;
        let mut src = File::open(path).ctx(|| format!("opening the lab binary {}", path.display()))?;
        let mut dst = File::from(fd);
        std::io::copy(&mut src, &mut dst).ctx(|| "copying the lab binary into a memfd".into())?;
        let fd = above_low_fds(OwnedFd::from(dst)).ctx(|| "duplicating the sealed binary's fd".into())?;
        let seals = SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE;
        fcntl(&fd, FcntlArg::F_ADD_SEALS(seals)).ctx(|| "sealing the lab binary's memfd".into())?;
        Ok(SealedExe { fd })
    }

    /// A path that executes the copy, valid in this process and its children before exec
    /// (the fd is above those children get mapped to, 3 to 5).
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}

/// The same file on an fd of 10 or more (close-on-exec), so that mapping a child's fds 3 to
/// 5 before exec can never replace it.
pub(crate) fn above_low_fds(fd: OwnedFd) -> std::io::Result<OwnedFd> {
    crate::fd::dup_above(fd, 10)
}
