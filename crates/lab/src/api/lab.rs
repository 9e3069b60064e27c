//! [`RunningLab`]: a lab that is up, driven from async code.

use super::exec::{self, Exec, ExecOutput};
use super::logs::LogLine;
use super::worker;
use super::IntoImpairment;
use crate::runtime::{self, DownReport, LabStatus, NodeStatus, ProgressFn};
use crate::topology::Name;
use crate::{Error, Topology};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How [`RunningLab::up_with`] brings a lab up.
#[derive(Clone)]
pub struct UpOptions {
    /// The `lab` executable; `None` (the default): [`super::lab_binary`] finds it.
    pub lab_binary: Option<PathBuf>,
    /// Return only once every node with a health check is healthy (`lab up --wait`).
    /// Default `true`.
    pub wait: bool,
    /// Told what bring-up waits for (dependencies, health checks) as it happens.
    pub progress: Option<ProgressFn>,
}

impl Default for UpOptions {
    fn default() -> UpOptions {
        UpOptions { lab_binary: None, wait: true, progress: None }
    }
}

impl std::fmt::Debug for UpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpOptions")
            .field("lab_binary", &self.lab_binary)
            .field("wait", &self.wait)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// A lab that is up. Every method may be awaited on any runtime (a `#[tokio::test]`'s own
/// thread included): the work runs on the API's runtime. Dropping it takes the lab down:
/// outside a runtime right away; inside one, without blocking it, by a `lab down` of its
/// own that finishes even if the test process ends first. [`RunningLab::down`] takes it down
/// and waits.
///
/// Labs it brings up are owned by this process: if the process dies without taking them
/// down (SIGKILL), the next `up` from the API, or `lab down --orphans`, removes them.
pub struct RunningLab {
    name: Name,
    binary: PathBuf,
    down: bool,
}

impl std::fmt::Debug for RunningLab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningLab").field("name", &self.name.as_str()).field("lab_binary", &self.binary).finish()
    }
}

impl RunningLab {
    /// Brings up a checked topology (from [`super::LabBuilder::build`], [`Topology::parse`] or
    /// [`Topology::load`]), waiting for its health checks.
    pub async fn up(topology: &Topology) -> Result<RunningLab, Error> {
        RunningLab::up_with(topology, UpOptions::default()).await
    }

    /// Brings up the lab of a topology file.
    pub async fn up_file(path: impl AsRef<Path>) -> Result<RunningLab, Error> {
        let path = path.as_ref().to_path_buf();
        let topology = worker::blocking(move || Topology::load(&path)).await?;
        RunningLab::up(&topology).await
    }

    /// Brings up a topology, as `options` say. If the returned future is dropped before it
    /// is done, the lab is taken down once it is up: nothing is left without a handle.
    pub async fn up_with(topology: &Topology, options: UpOptions) -> Result<RunningLab, Error> {
        let topology = topology.clone();
        let name = topology.name.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let chosen = options.lab_binary.clone();
        let binary = worker::blocking(move || match chosen {
            Some(p) => super::binary::check(&p, "UpOptions::lab_binary"),
            None => super::lab_binary(),
        })
        .await?;
        let run = runtime::Options {
            lab_binary: binary.clone(),
            wait: options.wait,
            progress: options.progress,
            catch_signals: false,
            owned: true,
        };
        worker::drive(move || async move {
            // What earlier test processes left when they were killed.
            if let Err(e) = runtime::down_orphans(None).await {
                tracing::warn!("taking orphaned labs down: {e}");
            }
            let result = runtime::up(&topology, &run).await.map(drop);
            if let Err(Ok(())) = tx.send(result) {
                // Nobody waits for it any more: nobody would take it down.
                let _ = runtime::down(&topology.name, None, false).await;
            }
            Ok(())
        })
        .await?;
        rx.await.map_err(|_| Error::Io("bringing the lab up".into(), std::io::Error::other("the task ended")))??;
        Ok(RunningLab { name, binary, down: false })
    }

    /// The lab's name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The `lab` executable it runs commands with.
    pub fn lab_binary(&self) -> &Path {
        &self.binary
    }

    /// Runs `argv` in `node` and waits. `Ok` whatever the command's exit code; `Err` when lab
    /// could not run it (no such node, stopped, paused, not running).
    pub async fn exec<S: AsRef<str>>(&self, node: &str, argv: &[S]) -> Result<ExecOutput, Error> {
        self.exec_with(node, Exec::new(argv.iter().map(|s| s.as_ref().to_string()))).await
    }

    /// Runs a command as [`Exec`] says (environment, standard input, working directory,
    /// user, timeout).
    pub async fn exec_with(&self, node: &str, exec: Exec) -> Result<ExecOutput, Error> {
        worker::run(exec::run(self.binary.clone(), self.name.clone(), node.to_string(), exec)).await
    }

    /// Runs `sh -c script` in `node`: its standard output if it exited 0, else
    /// [`Error::CommandFailed`] with its status and standard error.
    pub async fn sh(&self, node: &str, script: &str) -> Result<String, Error> {
        let out = self.exec_with(node, Exec::sh(script)).await?;
        out.ok(script).map(|o| o.stdout_text()).map_err(|e| Error::node(node, e))
    }

    /// What `lab inspect` says of node `name`: state, pid, health, interfaces with their
    /// addresses and MACs per network (see [`NodeStatus::ipv4`]).
    pub async fn node(&self, name: &str) -> Result<NodeStatus, Error> {
        let (lab, node) = (self.name.clone(), name.to_string());
        worker::blocking(move || {
            let status = runtime::inspect(Some(&lab), Some(&node))?;
            status.nodes.into_iter().next().ok_or(Error::NoSuchNode { lab: Some(lab), node })
        })
        .await
    }

    /// What `lab inspect` says of the whole lab.
    pub async fn inspect(&self) -> Result<LabStatus, Error> {
        let lab = self.name.clone();
        worker::blocking(move || runtime::inspect(Some(&lab), None)).await
    }

    /// CPU, memory and process counts of every node, CPU measured over `window`.
    pub async fn stats(&self, window: Duration) -> Result<LabStatus, Error> {
        let lab = self.name.clone();
        worker::blocking(move || {
            let labs = runtime::stats(Some(&lab), None, window)?;
            labs.into_iter().next().ok_or(Error::LabNotUp(lab))
        })
        .await
    }

    /// Drops all traffic between nodes `a` and nodes `b`, until healed.
    pub async fn partition(&self, a: &[&str], b: &[&str]) -> Result<(), Error> {
        let (lab, a, b) = (self.name.clone(), owned(a), owned(b));
        worker::drive(move || async move { runtime::partition(Some(&lab), &a, &b).await }).await
    }

    /// Ends the partition between `a` and `b` (others stay).
    pub async fn heal_partition(&self, a: &[&str], b: &[&str]) -> Result<(), Error> {
        let (lab, a, b) = (self.name.clone(), owned(a), owned(b));
        worker::drive(move || async move { runtime::heal_partition(Some(&lab), &a, &b).await }).await
    }

    /// Ends every partition.
    pub async fn heal(&self) -> Result<(), Error> {
        let lab = self.name.clone();
        worker::drive(move || async move { runtime::heal(Some(&lab)).await }).await
    }

    /// Takes interface `ifname` of `node` down or up (`lab link`).
    pub async fn set_link(&self, node: &str, ifname: &str, up: bool) -> Result<(), Error> {
        let (lab, node, ifname) = (self.name.clone(), node.to_string(), ifname.to_string());
        worker::drive(move || async move { runtime::set_link(Some(&lab), &node, &ifname, up).await }).await
    }

    /// Shapes what an interface sends (`lab impair`); an empty impairment clears it. Build
    /// one with [`super::Impair`].
    pub async fn impair(&self, node: &str, ifname: &str, impairment: impl IntoImpairment) -> Result<(), Error> {
        let (lab, node, ifname, i) =
            (self.name.clone(), node.to_string(), ifname.to_string(), impairment.into_impairment()?);
        worker::drive(move || async move { runtime::impair(Some(&lab), &node, &ifname, i).await }).await
    }

    /// Freezes every process of a node (`lab pause`).
    pub async fn pause(&self, node: &str) -> Result<(), Error> {
        self.freeze(node, true).await
    }

    /// Thaws a paused node (`lab resume`).
    pub async fn resume(&self, node: &str) -> Result<(), Error> {
        self.freeze(node, false).await
    }

    async fn freeze(&self, node: &str, frozen: bool) -> Result<(), Error> {
        let (lab, node) = (self.name.clone(), node.to_string());
        worker::blocking(move || runtime::pause(Some(&lab), &node, frozen)).await
    }

    /// Stops a node (`lab stop`): its stop signal, its `stop_timeout` to end, then SIGKILL.
    /// Its addresses stay.
    pub async fn stop(&self, node: &str) -> Result<(), Error> {
        self.stop_within(node, None).await
    }

    /// Stops a node, giving its command `grace` after the stop signal (`lab stop -t`).
    pub async fn stop_with(&self, node: &str, grace: Duration) -> Result<(), Error> {
        self.stop_within(node, Some(grace)).await
    }

    async fn stop_within(&self, node: &str, grace: Option<Duration>) -> Result<(), Error> {
        let (lab, node) = (self.name.clone(), node.to_string());
        worker::drive(move || async move { runtime::stop(Some(&lab), &node, grace).await }).await
    }

    /// Starts a stopped node again (`lab start`), with the same addresses, links and faults.
    pub async fn start(&self, node: &str) -> Result<(), Error> {
        let (lab, node) = (self.name.clone(), node.to_string());
        let options = runtime::Options { lab_binary: self.binary.clone(), ..runtime::Options::default() };
        worker::drive(move || async move { runtime::start(Some(&lab), &node, false, &options).await }).await
    }

    /// Runs the node's health check until it passes, for at most `timeout`.
    pub async fn wait_healthy(&self, node: &str, timeout: Duration) -> Result<(), Error> {
        let (lab, node, binary) = (self.name.clone(), node.to_string(), self.binary.clone());
        worker::drive(move || async move { runtime::wait_until_healthy(Some(&lab), &node, &binary, timeout).await })
            .await
    }

    /// Waits (on inotify, as `lab logs -f`) until a line the node's command wrote matches
    /// `pattern` (a regex), for at most `timeout`; returns that line. Lines written before the
    /// call count too.
    pub async fn wait_for_log(&self, node: &str, pattern: &str, timeout: Duration) -> Result<LogLine, Error> {
        let regex = regex::Regex::new(pattern).map_err(|e| Error::Usage(format!("pattern {pattern:?}: {e}")))?;
        let (lab, node) = (self.name.clone(), node.to_string());
        worker::run(super::logs::wait_for(lab, node, regex, timeout)).await
    }

    /// Waits until a process in the node listens on TCP `port` (IPv4 or IPv6), for at most
    /// `timeout`. The kernel has no event for a socket starting to listen: this looks at the
    /// node's /proc/net/tcp every 10 ms to 100 ms.
    pub async fn wait_for_port(&self, node: &str, port: u16, timeout: Duration) -> Result<(), Error> {
        let (lab, node) = (self.name.clone(), node.to_string());
        worker::run(super::logs::wait_for_port(lab, node, port, timeout)).await
    }

    /// What the node's command wrote so far, line by line, with times and streams (as
    /// `lab logs -t` shows them), lab's own lines (how a run ended) included.
    pub async fn log_lines(&self, node: &str) -> Result<Vec<LogLine>, Error> {
        let (lab, node) = (self.name.clone(), node.to_string());
        worker::blocking(move || super::logs::read(&lab, &node)).await
    }

    /// The node's log as `lab logs -t` prints it: one timestamped line per line.
    pub async fn logs(&self, node: &str) -> Result<String, Error> {
        let lines = self.log_lines(node).await?;
        Ok(lines.iter().map(|l| format!("{l}\n")).collect())
    }

    /// Takes the lab down now, and says what was removed. If it fails, dropping the handle
    /// tries again.
    pub async fn down(mut self) -> Result<DownReport, Error> {
        let lab = self.name.clone();
        let report = worker::drive(move || async move { runtime::down(&lab, None, false).await }).await?;
        self.down = true;
        Ok(report)
    }

    /// The handle forgets the lab: it stays up (`lab down` removes it, and so does
    /// `lab down --orphans` once this process is gone).
    pub fn leak(mut self) -> Name {
        self.down = true;
        self.name.clone()
    }
}

fn owned(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl Drop for RunningLab {
    fn drop(&mut self) {
        if !self.down {
            teardown(&self.name, &self.binary);
        }
    }
}

/// Takes lab `name` down from a `Drop`: never panics, never blocks an async runtime.
pub(super) fn teardown(name: &Name, binary: &Path) {
    if tokio::runtime::Handle::try_current().is_err() {
        // No runtime on this thread: waiting here is what a sync caller expects.
        let lab = name.clone();
        if let Err(e) = worker::block_on(worker::drive(move || async move { runtime::down(&lab, None, false).await })) {
            eprintln!("lab: taking lab {name} down: {e}");
        }
        return;
    }
    // On a runtime's thread: `lab down` as a process of its own (in its own process group, so
    // a ^C meant for the tests does not stop it halfway), which finishes even if this
    // process exits first; a thread of ours reaps it.
    use std::os::unix::process::CommandExt;
    let spawned = std::process::Command::new(binary)
        .args(["down", "--name", name.as_str()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn();
    match spawned {
        Ok(child) => {
            // What it says is told only if it failed.
            let reaper =
                std::thread::Builder::new().name("lab-down".into()).spawn(move || match child.wait_with_output() {
                    Ok(out) if !out.status.success() => eprint!("{}", String::from_utf8_lossy(&out.stderr)),
                    Ok(_) => {}
                    Err(e) => eprintln!("lab: waiting for lab down: {e}"),
                });
            if let Err(e) = reaper {
                eprintln!("lab: waiting for lab down: {e}");
            }
        }
        Err(e) => eprintln!("lab: taking lab {name} down with {}: {e}", binary.display()),
    }
}
