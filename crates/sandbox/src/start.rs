//! Starting a node from `lab up`: spawn its monitor from the sealed binary, learn the init's
//! pid, let the caller set up the network, then tell the init to go on and wait until it is
//! ready or says why not.

use crate::error::{Context, Error, Result};
use crate::process::ProcessRef;
use crate::seal::SealedExe;
use crate::spec::NodeSpec;
use crate::sync::{Message, SYNC_FD};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// A node whose init exists (namespaces made, cgroup joined) but waits for `go`.
pub struct StartingNode {
    name: String,
    spec: NodeSpec,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// The node's init, PID 1 inside the node.
    pub init: ProcessRef,
    /// The node's monitor, the init's parent on the host.
    pub monitor: ProcessRef,
    /// What the node does without (an idmapping this kernel cannot make, say).
    pub warnings: Vec<String>,
}

/// Spawns the node's monitor (which creates the init) and waits for the init's pid.
pub async fn start(exe: &SealedExe, spec: &NodeSpec) -> Result<StartingNode> {
    crate::layers::keep_layer(&spec.dir, spec.layer_size, spec.scratch_dir.as_deref())?;
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().ctx(|| "creating a socket pair".into())?;
    let fd = theirs.as_raw_fd();
    let mut cmd = Command::new(exe.path());
    cmd.arg0("lab-monitor")
        .arg("__monitor")
        .arg(spec.spec_file())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let before_exec = move || {
        let mut moves = [(fd, SYNC_FD)];
        // SAFETY: the child execs the monitor next; nothing of it uses SYNC_FD.
        unsafe { crate::fd::place(&mut moves) }?;
        // Its own session: the monitor outlives `lab up` and its terminal.
        nix::unistd::setsid()?;
        Ok(())
    };
    // SAFETY: only async-signal-safe calls (fcntl, dup2, setsid) between fork and exec.
    unsafe { cmd.pre_exec(before_exec) };
    let child = cmd.spawn().ctx(|| format!("starting the monitor of node {}", spec.name))?;
    drop(theirs);
    let monitor = ProcessRef::of(child.id() as i32)?;
    // Reaped by whoever outlives it: us during a rollback, the host's init otherwise.
    drop(child);
    ours.set_nonblocking(true).ctx(|| "configuring the sync socket".into())?;
    let stream = tokio::net::UnixStream::from_std(ours).ctx(|| "watching the sync socket".into())?;
    let (r, writer) = stream.into_split();
    let mut node = StartingNode {
        name: spec.name.clone(),
        spec: spec.clone(),
        reader: BufReader::new(r),
        writer,
        init: ProcessRef { pid: 0, start_time: 0 },
        monitor,
        warnings: Vec::new(),
    };
    match node.recv().await? {
        Some(Message::Started { pid, warnings }) => {
            node.init = ProcessRef::of(pid)?;
            node.warnings = warnings;
            Ok(node)
        }
        Some(Message::Failed { error }) => Err(Error::Other(error)),
        _ => Err(node.died("while being created")),
    }
}

impl StartingNode {
    /// Lets the init build the node's root and start its command; waits until it has.
    pub async fn go(&mut self) -> Result<()> {
        let line = Message::Go { spec: Box::new(self.spec.clone()) }.line();
        self.writer.write_all(line.as_bytes()).await.ctx(|| format!("telling node {} to start", self.name))?;
        match self.recv().await? {
            Some(Message::Ready) => Ok(()),
            Some(Message::Failed { error }) => Err(Error::Other(error)),
            _ => Err(self.died("while starting")),
        }
    }

    async fn recv(&mut self) -> Result<Option<Message>> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).await.ctx(|| format!("waiting for node {}", self.name))?;
        Ok(if n == 0 { None } else { Message::parse(&line) })
    }

    /// The node went away without a word: say how, from its monitor's record and log.
    fn died(&self, when: &str) -> Error {
        let how = match self.spec.exit_status() {
            Some(status) => format!("its init exited ({status})"),
            None => "its monitor or init exited".to_string(),
        };
        let mut message = format!("failed {when}: {how}");
        let log = std::fs::read_to_string(self.spec.log()).unwrap_or_default();
        if let Some(line) = log.lines().rev().find(|l| !l.contains(" lab node exited")) {
            message += &format!("; its log ends with: {line}");
        }
        Error::Other(message)
    }
}
