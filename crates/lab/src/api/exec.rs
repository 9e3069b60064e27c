//! Commands in nodes, through `lab exec`: what to run and how ([`Exec`]), and how it ended
//! ([`ExecOutput`]).

use crate::runtime;
use crate::topology::Name;
use crate::Error;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// A command to run in a node, with what `lab exec` takes: environment, standard input,
/// working directory, user and a timeout.
///
/// ```
/// use lab::api::Exec;
/// use std::time::Duration;
///
/// let exec = Exec::new(["cat"]).stdin("hello").env("LANG", "C").timeout(Duration::from_secs(5));
/// assert_eq!(exec.argv(), ["cat"]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Exec {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<Vec<u8>>,
    workdir: Option<String>,
    user: Option<String>,
    timeout: Option<Duration>,
}

impl Exec {
    /// Runs `argv` (the program and its arguments).
    pub fn new<I, S>(argv: I) -> Exec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Exec { argv: argv.into_iter().map(Into::into).collect(), ..Exec::default() }
    }

    /// Runs `script` with `sh -c`.
    pub fn sh(script: &str) -> Exec {
        Exec::new(["sh", "-c", script])
    }

    /// Sets an environment variable (over the node's own).
    pub fn env(mut self, key: &str, value: &str) -> Exec {
        self.env.push((key.into(), value.into()));
        self
    }

    /// What the command reads on its standard input (else it reads nothing: /dev/null).
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Exec {
        self.stdin = Some(input.into());
        self
    }

    /// Its working directory (else the node's `workdir`, else `/`).
    pub fn workdir(mut self, dir: &str) -> Exec {
        self.workdir = Some(dir.into());
        self
    }

    /// Who it runs as: `name`, `uid`, `name:group` or `uid:gid` (else the node's `user`).
    pub fn user(mut self, user: &str) -> Exec {
        self.user = Some(user.into());
        self
    }

    /// Kills it (and its process group) once it has run this long; the call then fails with
    /// [`Error::TimedOut`], so a hung command fails a test instead of hanging it.
    pub fn timeout(mut self, after: Duration) -> Exec {
        self.timeout = Some(after);
        self
    }

    /// The program and its arguments.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    fn display(&self) -> String {
        self.argv.join(" ")
    }
}

/// How a command run in a node ended, and everything it printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Its exit code; 128 + N if signal N killed it (as a shell says).
    pub code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// What it wrote to standard output.
    pub stdout: Vec<u8>,
    /// What it wrote to standard error.
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    /// Whether it exited with code 0.
    pub fn success(&self) -> bool {
        self.code == 0 && self.signal.is_none()
    }

    /// Its standard output as text (invalid UTF-8 replaced).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Its standard error as text (invalid UTF-8 replaced).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Itself if it succeeded, else [`Error::CommandFailed`] with its status and standard
    /// error (`command` names it in the message).
    pub fn ok(self, command: &str) -> Result<ExecOutput, Error> {
        if self.success() {
            return Ok(self);
        }
        let status = match self.signal {
            Some(s) => format!("killed by signal {s}"),
            None => format!("exit {}", self.code),
        };
        Err(Error::CommandFailed { command: command.into(), status, stderr: self.stderr_text().trim().to_string() })
    }
}

impl std::fmt::Debug for ExecOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecOutput")
            .field("code", &self.code)
            .field("signal", &self.signal)
            .field("stdout", &self.stdout_text())
            .field("stderr", &self.stderr_text())
            .finish()
    }
}

/// What `lab exec --status-file` writes.
#[derive(serde::Deserialize)]
struct Status {
    code: Option<i32>,
    signal: Option<i32>,
    #[serde(default)]
    timed_out: bool,
    error: Option<String>,
}

/// A file for `lab exec` to say how the command ended, made by us first (never a name
/// someone else made in the temporary directory).
struct StatusFile(PathBuf);

impl StatusFile {
    fn new() -> Result<StatusFile, Error> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "lab-exec-{}-{}-{nanos}.json",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::Io(format!("creating {}", path.display()), e))?;
        Ok(StatusFile(path))
    }
}

impl Drop for StatusFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `exec` in `node` of `lab` through `binary`'s `lab exec`. An `Err` when lab could not
/// run it (no such node, stopped, paused, not running, or the join failed), or it timed out.
pub(super) async fn run(binary: PathBuf, lab: Name, node: String, exec: Exec) -> Result<ExecOutput, Error> {
    let (l, n) = (lab.clone(), node.clone());
    super::worker::blocking(move || runtime::runnable(Some(&l), &n).map(drop)).await?;
    let status = StatusFile::new()?;
    let mut cmd = command(&binary, &lab, &node, &exec, &status.0);
    let mut child = cmd.spawn().map_err(|e| Error::Io(format!("running {}", binary.display()), e))?;
    if let (Some(input), Some(mut pipe)) = (exec.stdin.clone(), child.stdin.take()) {
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            // The command may not read it all: a broken pipe is its business.
            let _ = pipe.write_all(&input).await;
        });
    }
    // lab exec keeps the timeout; this is the backstop if lab exec itself hangs.
    let backstop = exec.timeout.map(|t| t + Duration::from_secs(10));
    let waited = child.wait_with_output();
    let out = match backstop {
        Some(t) => tokio::time::timeout(t, waited).await.map_err(|_| timed_out(&node, &exec))?,
        None => waited.await,
    }
    .map_err(|e| Error::Io("waiting for lab exec".into(), e))?;
    let written = std::fs::read(&status.0).ok().filter(|b| !b.is_empty());
    let parsed = written.and_then(|b| serde_json::from_slice::<Status>(&b).ok());
    let failed = |why: String| Error::node(&node, Error::ExecFailed { command: exec.display(), why });
    match parsed {
        Some(Status { error: Some(why), .. }) => Err(failed(why)),
        Some(Status { timed_out: true, .. }) => Err(timed_out(&node, &exec)),
        Some(Status { code: Some(code), signal, .. }) => {
            Ok(ExecOutput { code, signal, stdout: out.stdout, stderr: out.stderr })
        }
        _ => {
            let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
            Err(failed(if said.is_empty() { format!("lab exec ended with {}", out.status) } else { said }))
        }
    }
}

fn timed_out(node: &str, exec: &Exec) -> Error {
    let after = exec.timeout.unwrap_or_default();
    Error::node(node, Error::TimedOut { what: format!("`{}`", exec.display()), after })
}

fn command(binary: &Path, lab: &Name, node: &str, exec: &Exec, status: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(binary);
    cmd.args(["exec", "--lab", lab.as_str()]).arg("--status-file").arg(status);
    if let Some(t) = exec.timeout {
        cmd.arg("--timeout").arg(format!("{}ms", t.as_millis().max(1)));
    }
    for (k, v) in &exec.env {
        cmd.arg("--env").arg(format!("{k}={v}"));
    }
    if let Some(w) = &exec.workdir {
        cmd.args(["--workdir", w]);
    }
    if let Some(u) = &exec.user {
        cmd.args(["--user", u]);
    }
    if exec.stdin.is_some() {
        cmd.arg("--interactive");
    }
    cmd.args([node, "--"]).args(&exec.argv);
    cmd.stdin(if exec.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}
