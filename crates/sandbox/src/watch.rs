//! Waiting on a directory with inotify (no polling): for a file to appear there (how a
//! `lab up` hears that a `lab down` of the same lab wants it to stop), or for anything in it
//! to change (a node's log growing).

use crate::error::{Error, Result};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::os::fd::AsFd;
use std::path::Path;

/// A watch on one directory: files made, moved in, or written there.
pub struct DirWatch {
    inotify: Inotify,
}

impl DirWatch {
    /// Starts watching `dir`; whatever happens there from now on is seen.
    pub fn new(dir: &Path) -> Result<DirWatch> {
        let what = || format!("watching {}", dir.display());
        let inotify =
            Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).map_err(|e| Error::os(what(), e))?;
        let flags = AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_MODIFY;
        inotify.add_watch(dir, flags).map_err(|e| Error::os(what(), e))?;
        Ok(DirWatch { inotify })
    }

    /// Returns once something changed in the directory since the last call (or since `new`).
    pub async fn changed(&self) -> Result<()> {
        // SAFETY: the inotify fd is ours and stays open, unchanged, for as long as `afd`
        // exists (it borrows `self`).
        let afd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(self.inotify.as_fd(), tokio::io::Interest::READABLE)
        }
        .map_err(|e| Error::os("watching with inotify", e))?;
        loop {
            let mut ready = afd.readable().await.map_err(|e| Error::os("waiting on inotify", e))?;
            let mut any = false;
            while self.inotify.read_events().is_ok_and(|e| !e.is_empty()) {
                any = true;
            }
            ready.clear_ready();
            if any {
                return Ok(());
            }
        }
    }

    /// Returns once `path` (a file in the directory) exists.
    pub async fn exists(&self, path: &Path) -> Result<()> {
        while !path.exists() {
            self.changed().await?;
        }
        Ok(())
    }
}
