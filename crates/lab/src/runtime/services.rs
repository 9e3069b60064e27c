//! Nodes as services at bring-up: commands start in dependency order, health checks and
//! `exec` hooks run inside nodes the way `lab exec` does (by running it), and `up --wait`
//! waits for every health check.

use crate::plan::{NodePlan, Plan};
use crate::state::LabDir;
use crate::topology::Healthcheck;
use crate::Error;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `lab up` waits for, as it happens (for a progress line).
#[derive(Debug, Clone)]
pub enum Progress {
    /// These nodes' commands wait for the nodes they depend on.
    Waiting {
        /// The nodes that wait.
        nodes: Vec<String>,
        /// What they wait for.
        on: Vec<String>,
    },
    /// A node's health check failed; it runs again.
    Checking {
        /// The node.
        node: String,
        /// The check's command.
        check: String,
        /// Failures in a row so far.
        failures: u32,
        /// Since the first run.
        elapsed: Duration,
        /// What the last run said.
        why: String,
    },
    /// An image is being pulled.
    Pulling {
        /// The image, as people write it (`alpine:3.20`).
        image: String,
        /// Bytes of its layers here (downloaded, or already in the store).
        done: u64,
        /// Bytes of all its layers.
        total: u64,
    },
    /// A node passed its health check.
    Healthy {
        /// The node.
        node: String,
        /// Since the first run.
        elapsed: Duration,
    },
}

/// Told of every [`Progress`] event.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// A node's health, as its last health check found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Checked, not passed yet.
    Starting,
    /// The last check passed.
    Healthy,
    /// It failed `retries` times in a row.
    Unhealthy,
}

impl Health {
    /// The node's health as last recorded in its directory, if it was checked.
    pub(super) fn read(dir: &LabDir, node: &str) -> Option<Health> {
        let text = std::fs::read_to_string(dir.node_dir(node).join("health")).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn write(self, dir: &LabDir, node: &str) {
        if let Ok(json) = serde_json::to_string(&self) {
            // Best effort: `lab ps` shows no health rather than a wrong one.
            let _ = std::fs::write(dir.node_dir(node).join("health"), json);
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        })
    }
}

/// Nodes in waves: each node comes after every node it depends on. The topology has no
/// cycles, so every node is placed.
pub(super) fn waves(plan: &Plan) -> Vec<Vec<usize>> {
    let index = |name: &str| plan.nodes.iter().position(|n| n.name.as_str() == name);
    let mut level: Vec<Option<usize>> = vec![None; plan.nodes.len()];
    // Relax until stable: at most one pass per node.
    for _ in 0..=plan.nodes.len() {
        let mut changed = false;
        for (i, node) in plan.nodes.iter().enumerate() {
            let deps: Option<Vec<usize>> =
                node.service.depends_on.iter().map(|d| index(d).and_then(|j| level[j])).collect();
            if let Some(deps) = deps {
                let l = deps.into_iter().map(|d| d + 1).max().unwrap_or(0);
                if level[i] != Some(l) {
                    level[i] = Some(l);
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let depth = level.iter().flatten().max().map_or(0, |m| m + 1);
    let mut out = vec![Vec::new(); depth];
    for (i, l) in level.iter().enumerate() {
        out[l.unwrap_or(0)].push(i);
    }
    out
}

/// Whether some node waits for `node` to be healthy.
pub(super) fn depended_on(plan: &Plan, node: &NodePlan) -> bool {
    plan.nodes.iter().any(|n| n.service.depends_on.iter().any(|d| d == node.name.as_str()))
}

/// Runs `argv` in `node` through `lab exec` (as `user`, else the node's user); its exit code
/// and output, or `None` if it ran past `timeout` (it is killed).
async fn run(
    lab_binary: &Path,
    plan: &Plan,
    node: &str,
    user: Option<&str>,
    argv: &[String],
    timeout: Duration,
) -> Result<Option<(i32, String)>, Error> {
    let mut cmd = tokio::process::Command::new(lab_binary);
    // lab exec kills it (and what it started) at the timeout; ours is the backstop.
    let ms = timeout.as_millis();
    cmd.args(["exec", "--lab", plan.lab.as_str(), "--timeout", &format!("{ms}ms")]);
    if let Some(u) = user {
        cmd.args(["--user", u]);
    }
    cmd.args([node, "--"])
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| Error::Io(format!("running {}", lab_binary.display()), e))?;
    match tokio::time::timeout(timeout + Duration::from_secs(1), child.wait_with_output()).await {
        Err(_) => Ok(None),
        Ok(out) => {
            let out = out.map_err(|e| Error::Io("waiting for lab exec".into(), e))?;
            if out.status.code() == Some(124) {
                return Ok(None);
            }
            let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            Ok(Some((out.status.code().unwrap_or(128), text.trim().to_string())))
        }
    }
}

/// Runs the node's health check until it passes; `retries` failures in a row are an error
/// that says what the check printed. Its health is recorded for `lab ps` as it goes.
pub(super) async fn wait_healthy(
    lab_binary: &Path,
    plan: &Plan,
    dir: &LabDir,
    progress: Option<&ProgressFn>,
    node: &NodePlan,
    hc: &Healthcheck,
) -> Result<(), Error> {
    let name = node.name.as_str();
    let started = Instant::now();
    Health::Starting.write(dir, name);
    let mut failures = 0;
    let mut interval = tokio::time::interval(Duration::from_millis(hc.interval_ms));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let why = match run(lab_binary, plan, name, None, &hc.cmd, Duration::from_millis(hc.timeout_ms)).await? {
            Some((0, _)) => {
                Health::Healthy.write(dir, name);
                if let Some(p) = progress {
                    p(&Progress::Healthy { node: name.to_string(), elapsed: started.elapsed() });
                }
                return Ok(());
            }
            Some((code, out)) => {
                format!("exit {code}{}", if out.is_empty() { String::new() } else { format!(": {out}") })
            }
            None => format!("no answer within {} ms", hc.timeout_ms),
        };
        failures += 1;
        tracing::debug!(node = name, failures, why, "health check failed");
        if let Some(p) = progress {
            p(&Progress::Checking {
                node: name.to_string(),
                check: hc.cmd.join(" "),
                failures,
                elapsed: started.elapsed(),
                why: why.clone(),
            });
        }
        if failures >= hc.retries {
            Health::Unhealthy.write(dir, name);
            return Err(Error::node(
                name,
                Error::Service(format!(
                    "unhealthy: `{}` failed {failures} times in a row; last: {why}",
                    hc.cmd.join(" ")
                )),
            ));
        }
    }
}

/// Runs node `node`'s health check (at its interval) until it passes, for at most `timeout`;
/// fails if it fails `retries` times in a row first, or if the node has no health check.
/// Its health is recorded for `lab ps` as it goes.
pub async fn wait_until_healthy(
    lab: Option<&crate::topology::Name>,
    node: &str,
    lab_binary: &Path,
    timeout: Duration,
) -> Result<(), Error> {
    let (lab, state) = super::exec::runnable(lab, node)?;
    let plan = &state.plan;
    let node_plan = plan.node(node).ok_or_else(|| Error::NoSuchNode { lab: Some(lab.clone()), node: node.into() })?;
    let hc = node_plan
        .service
        .healthcheck
        .as_ref()
        .ok_or_else(|| Error::node(node, Error::Usage("it has no healthcheck to wait for".into())))?;
    let dir = LabDir::new(&lab);
    let waiting = wait_healthy(lab_binary, plan, &dir, None, node_plan, hc);
    tokio::time::timeout(timeout, waiting)
        .await
        .map_err(|_| Error::node(node, Error::TimedOut { what: "waiting until healthy".into(), after: timeout }))?
}

/// Runs the node's `exec` hooks in order, each by `/bin/sh -c` as the node's root (they set
/// the node up, whoever its command runs as); the first failure is an error.
pub(super) async fn hooks(lab_binary: &Path, plan: &Plan, node: &NodePlan) -> Result<(), Error> {
    for hook in &node.service.exec {
        let argv = ["/bin/sh".to_string(), "-c".to_string(), hook.clone()];
        match run(lab_binary, plan, node.name.as_str(), Some("0"), &argv, Duration::from_secs(300)).await? {
            Some((0, _)) => {}
            Some((code, out)) => {
                return Err(Error::node(
                    node.name.as_str(),
                    Error::Service(format!("exec hook `{hook}` failed (exit {code}): {out}")),
                ))
            }
            None => {
                return Err(Error::node(
                    node.name.as_str(),
                    Error::Service(format!("exec hook `{hook}` ran for over 300 s")),
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::plan::{Facts, Plan};
    use crate::{Source, Topology};

    #[test]
    fn waves_follow_dependencies() {
        let t = Topology::parse(Source::new(
            "w.toml",
            "[nodes.app]\ndepends_on = [\"db\", \"cache\"]\n[nodes.db]\n[nodes.cache]\ndepends_on = [\"db\"]\n[nodes.lone]\n",
        ))
        .unwrap();
        let plan = Plan::new(&t, &Facts::default()).unwrap();
        let names = |w: &Vec<usize>| w.iter().map(|i| plan.nodes[*i].name.to_string()).collect::<Vec<_>>();
        let waves: Vec<Vec<String>> = super::waves(&plan).iter().map(names).collect();
        assert_eq!(waves, [vec!["db", "lone"], vec!["cache"], vec!["app"]]);
    }
}
