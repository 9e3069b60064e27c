//! `lab-sandbox`: one isolated process and everything around it.
//!
//! A node is a tree of processes under its own init (PID 1) in new pid, mount, network, UTS,
//! IPC and cgroup namespaces, with a root built from an overlay of a read-only layer and a
//! private writable one, in its own cgroup. Outside it, a small monitor records its output
//! and how it ended. [`start`] creates a node from `lab up`; [`join::exec`] runs a command in
//! a running one. Knows nothing of networks or topology files.
//!
//! The `lab` binary runs as monitor and init too (`lab __monitor`, `lab-init __init`), always
//! from a [`SealedExe`] copy, so that a node cannot write to the binary on the host.

pub mod caps;
pub mod cgroup;
mod clone;
mod error;
mod fd;
pub mod init;
pub mod join;
mod layers;
pub mod monitor;
pub mod process;
mod relay;
pub mod rootfs;
mod seal;
pub mod seccomp;
pub mod spec;
mod start;
pub mod sync;
mod syslog;
mod user;
pub mod watch;

pub use error::{Error, Result};
pub use layers::{discard_layer, keep_layer};
pub use process::{PidFd, ProcessRef};
pub use seal::SealedExe;
pub use spec::{BindMount, Cover, ExitStatus, FileKind, IdMap, NodeFile, NodeSpec, Restart, Security};
pub use start::{start, StartingNode};
