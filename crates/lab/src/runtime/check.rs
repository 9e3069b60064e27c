//! `lab check`: the lab's `[[checks]]` (or a checks file's), each run in the node it names as
//! `lab exec` runs commands, all at once, each retried until its deadline.

use super::locked::the_lab;
use crate::diagnostic::Source;
use crate::state::LabDir;
use crate::topology::{Check, CheckKind, Name};
use crate::Error;
use futures::future::join_all;
use serde::Serialize;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How long one try of a check may take.
const TRY_TIMEOUT: Duration = Duration::from_secs(10);
/// Time between tries, while a check has time left.
const RETRY: Duration = Duration::from_millis(500);

/// How a check went.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// The check's name.
    pub name: String,
    /// Whether it held (by its deadline).
    pub passed: bool,
    /// Tries made.
    pub attempts: u32,
    /// Seconds from the first try to the last.
    pub seconds: f64,
    /// What the last try found.
    pub detail: String,
}

/// Runs the checks of lab `lab` (or of the only lab up): its own, or those of `file`.
pub async fn check(
    lab: Option<&Name>,
    file: Option<&Path>,
    lab_binary: &Path,
) -> Result<(Name, Vec<CheckResult>), Error> {
    super::ensure_root()?;
    let name = the_lab(lab)?;
    let state = LabDir::new(&name).read_state()?.ok_or_else(|| Error::LabNotUp(name.clone()))?;
    let checks = match file {
        None => state.plan.checks.clone(),
        Some(f) => {
            let text =
                std::fs::read_to_string(f).map_err(|e| Error::Io(format!("reading checks file {}", f.display()), e))?;
            let nodes: Vec<&str> = state.plan.nodes.iter().map(|n| n.name.as_str()).collect();
            crate::topology::parse_checks(Source::new(f, text), &nodes)?
        }
    };
    if checks.is_empty() {
        return Err(Error::Usage(format!(
            "lab {name} has no checks: add [[checks]] to its topology, or name a checks file with --file"
        )));
    }
    let results = join_all(checks.iter().map(|c| run(&name, c, lab_binary))).await;
    Ok((name, results))
}

/// Tries `check` until it holds or its time is up.
async fn run(lab: &Name, check: &Check, lab_binary: &Path) -> CheckResult {
    let start = Instant::now();
    let deadline = start + Duration::from_millis(check.within_ms);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (passed, detail) = once(lab, &check.what, lab_binary).await;
        if passed || Instant::now() + RETRY > deadline {
            return CheckResult {
                name: check.name.clone(),
                passed,
                attempts,
                seconds: start.elapsed().as_secs_f64(),
                detail,
            };
        }
        // Convergence has no event to wait for: try again a little later.
        tokio::time::sleep(RETRY).await;
    }
}

/// One try: whether it held, and what it found.
async fn once(lab: &Name, what: &CheckKind, lab_binary: &Path) -> (bool, String) {
    let (node, argv): (&str, Vec<String>) = match what {
        CheckKind::Process { node, name } => return process(lab, node, name, lab_binary).await,
        CheckKind::Ping { from, to, ipv6 } => {
            let family = if *ipv6 { "-6" } else { "-4" };
            (from, ["ping", family, "-c", "1", "-W", "1", to].map(String::from).to_vec())
        }
        CheckKind::Route { node, destination } => {
            let family = if destination.contains(':') { "-6" } else { "-4" };
            (node, ["ip", family, "route", "show", destination.as_str()].map(String::from).to_vec())
        }
        CheckKind::Output { node, cmd, .. } => (node, vec!["/bin/sh".into(), "-c".into(), cmd.clone()]),
    };
    let Some((code, out)) = exec(lab, node, &argv, lab_binary).await else {
        return (false, format!("no answer within {} s", TRY_TIMEOUT.as_secs()));
    };
    let last = out.lines().last().unwrap_or_default().to_string();
    match what {
        CheckKind::Ping { .. } if code == 0 => (true, last),
        CheckKind::Ping { .. } => (false, format!("no reply (exit {code}): {last}")),
        CheckKind::Route { .. } if code == 0 && !out.trim().is_empty() => (true, out.trim().to_string()),
        CheckKind::Route { destination, .. } => (false, format!("no route to {destination}")),
        CheckKind::Output { expect, .. } => match crate::topology::expect_regex(expect) {
            Ok(re) if re.is_match(&out) => (true, re.find(&out).map(|m| m.as_str().to_string()).unwrap_or_default()),
            Ok(_) => (false, format!("exit {code}, no match for /{expect}/ in: {}", abbreviate(&out))),
            Err(e) => (false, format!("bad regex: {e}")),
        },
        CheckKind::Process { .. } => unreachable!("handled above"),
    }
}

/// Whether a process called `name` runs in `node`: every process's command name, read in the
/// node.
async fn process(lab: &Name, node: &str, name: &str, lab_binary: &Path) -> (bool, String) {
    let argv = ["/bin/sh", "-c", "cat /proc/[0-9]*/comm 2>/dev/null"].map(String::from).to_vec();
    match exec(lab, node, &argv, lab_binary).await {
        Some((_, out)) if out.lines().any(|l| l.trim() == name) => (true, format!("{name} runs")),
        Some(_) => (false, format!("no process called {name}")),
        None => (false, format!("no answer within {} s", TRY_TIMEOUT.as_secs())),
    }
}

/// Runs `argv` in `node` through `lab exec`, as the node's root; exit code and output.
async fn exec(lab: &Name, node: &str, argv: &[String], lab_binary: &Path) -> Option<(i32, String)> {
    let mut cmd = tokio::process::Command::new(lab_binary);
    cmd.args(["exec", "--user", "0", "--lab", lab.as_str(), node, "--"])
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().ok()?;
    let out = tokio::time::timeout(TRY_TIMEOUT, child.wait_with_output()).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Some((out.status.code().unwrap_or(128), text))
}

/// The first 200 characters of `s`, on one line.
fn abbreviate(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match one.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &one[..i]),
        None => one,
    }
}

/// The results as JUnit XML (what CI systems read): one test case per check.
pub fn junit(lab: &Name, results: &[CheckResult]) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
    };
    let failures = results.iter().filter(|r| !r.passed).count();
    let total: f64 = results.iter().map(|r| r.seconds).fold(0.0, f64::max);
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"lab check {}\" tests=\"{}\" failures=\"{failures}\" time=\"{total:.3}\">\n",
        esc(lab.as_str()),
        results.len()
    );
    for r in results {
        out += &format!(
            "  <testcase classname=\"lab.{}\" name=\"{}\" time=\"{:.3}\"",
            esc(lab.as_str()),
            esc(&r.name),
            r.seconds
        );
        if r.passed {
            out += "/>\n";
        } else {
            out += &format!(">\n    <failure message=\"{}\"/>\n  </testcase>\n", esc(&r.detail));
        }
    }
    out + "</testsuite>\n"
}
