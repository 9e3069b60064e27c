//! How a node runs on an image, as Docker runs a container of it: the image's Entrypoint and
//! Cmd (a node's `command` replaces Cmd; its `entrypoint` replaces Entrypoint and drops Cmd,
//! as `docker run --entrypoint` does), its Env under the node's `env`, its WorkingDir, User,
//! StopSignal and HEALTHCHECK where the node names none.

use crate::topology::{parse_signal, Healthcheck, Node, Service};
use lab_image::RunConfig;

/// Docker's health check defaults: every 30 s, 30 s to answer, 3 tries.
const HEALTH_DEFAULT_NS: u64 = 30_000_000_000;
const HEALTH_RETRIES: u32 = 3;

/// What a node on an image runs, and the image's settings the node does not override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Run {
    /// Entrypoint then Cmd; `None` when both are empty (the node idles).
    pub command: Option<Vec<String>>,
    /// The image's Env, then the node's (which wins on the same name).
    pub env: Vec<(String, String)>,
    workdir: Option<String>,
    user: Option<String>,
    stop_signal: Option<i32>,
    healthcheck: Option<Healthcheck>,
}

impl Run {
    pub fn of(node: &Node, image: &RunConfig) -> Result<Run, String> {
        let entrypoint = match &node.entrypoint {
            Some(e) => e.clone(),
            None => image.entrypoint.clone().unwrap_or_default(),
        };
        let cmd = match (&node.command, &node.entrypoint) {
            (Some(c), _) => c.clone(),
            (None, Some(_)) => Vec::new(),
            (None, None) => image.cmd.clone().unwrap_or_default(),
        };
        let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
        let mut env: Vec<(String, String)> = Vec::new();
        for kv in image.env.iter().flatten() {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            env.retain(|(key, _)| key != k);
            env.push((k.to_string(), v.to_string()));
        }
        for (k, v) in &node.env {
            env.retain(|(key, _)| key != k);
            env.push((k.clone(), v.clone()));
        }
        let stop_signal = match (&image.stop_signal, node.stop_signal_given) {
            (Some(s), false) => Some(parse_signal(s).map_err(|e| format!("its StopSignal: {e}"))?),
            _ => None,
        };
        let healthcheck = image.healthcheck.as_ref().and_then(|h| {
            let cmd = match h.test.split_first() {
                Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => rest.to_vec(),
                Some((kind, [shell])) if kind == "CMD-SHELL" => vec!["/bin/sh".into(), "-c".into(), shell.clone()],
                _ => return None,
            };
            let ms = |ns: Option<u64>| ns.filter(|n| *n > 0).unwrap_or(HEALTH_DEFAULT_NS) / 1_000_000;
            Some(Healthcheck {
                cmd,
                interval_ms: ms(h.interval),
                timeout_ms: ms(h.timeout),
                retries: h.retries.filter(|r| *r > 0).unwrap_or(HEALTH_RETRIES),
            })
        });
        let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        Ok(Run {
            command: (!argv.is_empty()).then_some(argv),
            env,
            workdir: nonempty(&image.working_dir),
            user: nonempty(&image.user),
            stop_signal,
            healthcheck,
        })
    }

    /// The image's settings on `service`, where the node has none of its own.
    pub fn apply(&self, service: &mut Service) {
        if service.workdir.is_none() {
            service.workdir = self.workdir.clone();
        }
        if service.user.is_none() {
            service.user = self.user.clone();
        }
        if let Some(s) = self.stop_signal {
            service.stop_signal = s;
        }
        if service.healthcheck.is_none() {
            service.healthcheck = self.healthcheck.clone();
        }
    }
}
