//! What a node runs, as a service: working directory, user, restart policy, dependencies,
//! health check and hooks run once the node is up.

use super::raw::{RawHealthcheck, RawNode, Str};
use super::Validator;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ops::Range;
use toml::Spanned;

pub use lab_sandbox::Restart;

/// A command run in the node (as by `lab exec`) until it succeeds, every `interval`, each
/// run given `timeout`; `retries` failures in a row mean unhealthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthcheck {
    /// The command (a string is run by `/bin/sh -c`).
    pub cmd: Vec<String>,
    /// Time between runs.
    pub interval_ms: u64,
    /// Time one run may take.
    pub timeout_ms: u64,
    /// Failures in a row that mean unhealthy.
    pub retries: u32,
}

/// How a node's command is run and looked after (`[nodes.*]` service keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Working directory of the command (and of `lab exec`); `None`: `/`.
    pub workdir: Option<String>,
    /// `uid[:gid]` or `name[:group]`, resolved in the node's own /etc/passwd and /etc/group.
    pub user: Option<String>,
    /// `restart`: what the monitor does when the command ends.
    pub restart: Restart,
    /// Nodes that must be up (and healthy, if they have a health check) before this one's
    /// command starts.
    pub depends_on: Vec<String>,
    /// `healthcheck`: when the node counts as up.
    pub healthcheck: Option<Healthcheck>,
    /// Shell commands run in order once the node is up.
    pub exec: Vec<String>,
    /// Shell commands run as root in the node, in order, before its command starts.
    #[serde(default)]
    pub setup: Vec<String>,
    /// The signal that asks the command to stop (`stop_signal`, default SIGTERM).
    #[serde(default = "default_stop_signal")]
    pub stop_signal: i32,
    /// How long it has to stop before it is killed (`stop_timeout`, default 10 s, as Docker).
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout_ms: u64,
}

impl Default for Service {
    fn default() -> Self {
        Service {
            workdir: None,
            user: None,
            restart: Restart::No,
            depends_on: Vec::new(),
            healthcheck: None,
            exec: Vec::new(),
            setup: Vec::new(),
            stop_signal: default_stop_signal(),
            stop_timeout_ms: default_stop_timeout(),
        }
    }
}

fn default_stop_signal() -> i32 {
    libc::SIGTERM
}

fn default_stop_timeout() -> u64 {
    10_000
}

/// A signal by name (`SIGTERM`, `TERM`, `sigusr1`) or number (`15`), as Docker reads
/// `--stop-signal`.
pub fn parse_signal(s: &str) -> Result<i32, String> {
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) { Ok(n) } else { Err(format!("signal {n} is not between 1 and 64")) };
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| format!("`{s}` is not a signal; write e.g. SIGTERM, INT or 15"))
}

impl Validator {
    pub(super) fn service(&mut self, node: &RawNode) -> Service {
        let workdir = node.workdir.get().and_then(|w| {
            if !w.get_ref().starts_with('/') || w.get_ref().contains('\0') {
                self.err(w.span(), format!("workdir `{}` must be an absolute path", w.get_ref()));
                return None;
            }
            Some(w.get_ref().clone())
        });
        let user = node.user.get().and_then(|u| {
            let ok = !u.get_ref().is_empty()
                && u.get_ref().split(':').count() <= 2
                && u.get_ref().split(':').all(|p| !p.is_empty() && !p.contains(['\0', '/', ' ']));
            if !ok {
                self.err(
                    u.span(),
                    format!("user `{}`: write a name or uid, optionally `:group` or `:gid`", u.get_ref()),
                );
                return None;
            }
            Some(u.get_ref().clone())
        });
        let restart = match node.restart.get() {
            None => Restart::No,
            Some(r) => match r.get_ref().as_str() {
                "no" => Restart::No,
                "on-failure" => Restart::OnFailure,
                "always" => Restart::Always,
                other => {
                    self.err_hint(
                        r.span(),
                        format!("restart `{other}` is not a policy"),
                        "use \"no\", \"on-failure\" or \"always\"",
                    );
                    Restart::No
                }
            },
        };
        let healthcheck = node.healthcheck.get().and_then(|h| self.healthcheck(h));
        let mut commands = |list: Option<&Spanned<Vec<Str>>>, what: &str| {
            let mut out = Vec::new();
            for e in list.into_iter().flat_map(|e| e.get_ref()) {
                if e.get_ref().trim().is_empty() || e.get_ref().contains('\0') {
                    self.err(e.span(), format!("{what} must be a non-empty command"));
                } else {
                    out.push(e.get_ref().clone());
                }
            }
            out
        };
        let exec = commands(node.exec.get(), "an exec hook");
        let setup = commands(node.setup.get(), "a setup command");
        let depends_on =
            node.depends_on.get().into_iter().flat_map(|d| d.get_ref()).map(|d| d.get_ref().clone()).collect();
        let stop_signal = match node.stop_signal.get() {
            None => default_stop_signal(),
            Some(s) => parse_signal(s.get_ref()).unwrap_or_else(|m| {
                self.err(s.span(), m);
                default_stop_signal()
            }),
        };
        let stop_timeout_ms = match node.stop_timeout.get() {
            None => default_stop_timeout(),
            Some(t) => crate::units::parse_time(t.get_ref()).map(|us| us / 1000).unwrap_or_else(|m| {
                self.err(t.span(), m);
                default_stop_timeout()
            }),
        };
        Service { workdir, user, restart, depends_on, healthcheck, exec, setup, stop_signal, stop_timeout_ms }
    }

    fn healthcheck(&mut self, raw: &Spanned<RawHealthcheck>) -> Option<Healthcheck> {
        let h = raw.get_ref();
        let cmd = self.command(&h.cmd)?;
        let mut time = |v: &Option<Str>, default_ms: u64| match v {
            None => Some(default_ms),
            Some(s) => match crate::units::parse_time(s.get_ref()) {
                Ok(us) if us >= 1000 => Some(us / 1000),
                Ok(_) => {
                    self.err(s.span(), "at least 1ms");
                    None
                }
                Err(m) => {
                    self.err(s.span(), m);
                    None
                }
            },
        };
        let interval_ms = time(&h.interval, 1000)?;
        let timeout_ms = time(&h.timeout, 5000)?;
        let retries = match &h.retries {
            None => 3,
            Some(r) if (1..=1000).contains(r.get_ref()) => *r.get_ref() as u32,
            Some(r) => {
                self.err(r.span(), "retries must be between 1 and 1000");
                return None;
            }
        };
        Some(Healthcheck { cmd, interval_ms, timeout_ms, retries })
    }

    /// Every `depends_on` names another node, and there is no cycle.
    pub(super) fn dependencies(&mut self, raw: &[(Str, &RawNode)]) {
        let index: HashMap<&str, usize> = raw.iter().enumerate().map(|(i, (k, _))| (k.get_ref().as_str(), i)).collect();
        let mut edges: Vec<Vec<usize>> = vec![Vec::new(); raw.len()];
        let mut spans: Vec<Option<Range<usize>>> = vec![None; raw.len()];
        for (i, (key, node)) in raw.iter().enumerate() {
            let Some(deps) = node.depends_on.get() else { continue };
            spans[i] = Some(deps.span());
            for d in deps.get_ref() {
                match index.get(d.get_ref().as_str()) {
                    Some(j) if *j == i => {
                        self.err(d.span(), format!("node `{}` cannot depend on itself", key.get_ref()))
                    }
                    Some(j) => edges[i].push(*j),
                    None => {
                        self.err(d.span(), format!("`depends_on` names node `{}`, which is not defined", d.get_ref()))
                    }
                }
            }
        }
        // Depth-first search for a cycle: 0 unvisited, 1 on the stack, 2 done.
        let mut mark = vec![0u8; raw.len()];
        fn visit(i: usize, edges: &[Vec<usize>], mark: &mut [u8], path: &mut Vec<usize>) -> Option<Vec<usize>> {
            mark[i] = 1;
            path.push(i);
            for &j in &edges[i] {
                if mark[j] == 1 {
                    let at = path.iter().position(|&p| p == j).unwrap_or(0);
                    return Some(path[at..].to_vec());
                }
                if mark[j] == 0 {
                    if let Some(c) = visit(j, edges, mark, path) {
                        return Some(c);
                    }
                }
            }
            path.pop();
            mark[i] = 2;
            None
        }
        for i in 0..raw.len() {
            if mark[i] == 0 {
                if let Some(cycle) = visit(i, &edges, &mut mark, &mut Vec::new()) {
                    let names: Vec<&str> =
                        cycle.iter().chain(cycle.first()).map(|&n| raw[n].0.get_ref().as_str()).collect();
                    let span = spans[cycle[0]].clone().unwrap_or(0..0);
                    self.err(span, format!("`depends_on` goes round in a circle: {}", names.join(" -> ")));
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Source, Topology};

    fn parse(text: &str) -> Result<Topology, String> {
        Topology::parse(Source::new("s.toml", text)).map_err(|e| format!("{} {e}", e.location()))
    }

    #[test]
    fn services_parse_with_defaults() {
        let t = parse(
            r#"
[defaults]
restart = "on-failure"
user = "nobody"
[nodes.db]
workdir = "/var/lib/db"
healthcheck = { cmd = "test -e /tmp/ready", interval = "200ms", retries = 5 }
[nodes.app]
depends_on = ["db"]
user = "1000:1000"
restart = "always"
exec = ["ip addr", "touch /tmp/hooked"]
"#,
        )
        .unwrap();
        let db = &t.nodes[0].service;
        assert_eq!(db.workdir.as_deref(), Some("/var/lib/db"));
        assert_eq!(db.user.as_deref(), Some("nobody"));
        assert_eq!(db.restart, super::Restart::OnFailure);
        let h = db.healthcheck.as_ref().unwrap();
        assert_eq!((h.interval_ms, h.timeout_ms, h.retries), (200, 5000, 5));
        assert_eq!(h.cmd, ["/bin/sh", "-c", "test -e /tmp/ready"]);
        let app = &t.nodes[1].service;
        assert_eq!(app.depends_on, ["db"]);
        assert_eq!(app.restart, super::Restart::Always);
        assert_eq!(app.exec.len(), 2);
    }

    #[test]
    fn service_mistakes_point_at_the_file() {
        let e = parse("[nodes.a]\nrestart = \"sometimes\"\n").unwrap_err();
        assert!(e.starts_with("s.toml:2:11") && e.contains("restart `sometimes` is not a policy"), "{e}");
        let e = parse("[nodes.a]\ndepends_on = [\"b\"]\n[nodes.b]\ndepends_on = [\"a\"]\n").unwrap_err();
        assert!(e.contains("goes round in a circle: a -> b -> a"), "{e}");
        let e = parse("[nodes.a]\ndepends_on = [\"ghost\"]\n").unwrap_err();
        assert!(e.starts_with("s.toml:2:15") && e.contains("node `ghost`, which is not defined"), "{e}");
        let e = parse("[nodes.a]\nworkdir = \"srv\"\n").unwrap_err();
        assert!(e.contains("must be an absolute path"), "{e}");
    }
}
