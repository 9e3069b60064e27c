//! `[[checks]]`: what must hold in a lab that is up, for `lab check` (a teacher's grading, a
//! CI job's gate): a node pings another, a route is there, a command's output matches, a
//! process runs; each may be retried until a deadline, for convergence.

use super::raw::Str;
use super::Validator;
use crate::diagnostic::Source;
use crate::TopologyError;
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// `[[checks]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    name: Option<Str>,
    from: Option<Str>,
    ping: Option<Str>,
    ipv6: Option<Spanned<bool>>,
    node: Option<Str>,
    route: Option<Str>,
    cmd: Option<Str>,
    expect: Option<Str>,
    process: Option<Str>,
    within: Option<Str>,
}

/// A file of checks alone (`lab check --file`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChecks {
    #[serde(default)]
    checks: Vec<Spanned<RawCheck>>,
}

/// One check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// As `lab check` names it: the `name` given, or what it checks (`a pings c`).
    pub name: String,
    /// What it checks.
    pub what: CheckKind,
    /// Keep trying for this long before it fails (0: once).
    pub within_ms: u64,
}

/// What a check checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum CheckKind {
    /// `from` reaches `to` (a node's name or an address) by ping.
    Ping {
        /// The node that pings.
        from: String,
        /// What it pings.
        to: String,
        /// Over IPv6.
        ipv6: bool,
    },
    /// `node` has a route to `destination`.
    Route {
        /// The node.
        node: String,
        /// A prefix (`10.0.0.0/24`, `default`).
        destination: String,
    },
    /// `cmd`, run in `node` by `/bin/sh -c`, prints something `expect` (a regex) matches.
    Output {
        /// The node.
        node: String,
        /// The command.
        cmd: String,
        /// The regex.
        expect: String,
    },
    /// A process of `name` runs in `node`.
    Process {
        /// The node.
        node: String,
        /// Its command name (`/proc/PID/comm`).
        name: String,
    },
}

impl Validator {
    /// The checks of a topology, or of a checks file, against these node names.
    pub(super) fn checks(&mut self, raw: &[Spanned<RawCheck>], nodes: &[&str]) -> Vec<Check> {
        raw.iter().filter_map(|c| self.check(c, nodes)).collect()
    }

    fn check(&mut self, raw: &Spanned<RawCheck>, nodes: &[&str]) -> Option<Check> {
        let c = raw.get_ref();
        let node = |v: &Option<Str>, key: &str, this: &mut Validator| -> Option<String> {
            match v {
                Some(n) if nodes.contains(&n.get_ref().as_str()) => Some(n.get_ref().clone()),
                Some(n) => {
                    this.err(n.span(), format!("`{key}`: there is no node `{}`", n.get_ref()));
                    None
                }
                None => {
                    this.err(raw.span(), format!("this check needs `{key}`: the node it runs in"));
                    None
                }
            }
        };
        let kinds = [c.ping.is_some(), c.route.is_some(), c.cmd.is_some(), c.process.is_some()];
        if kinds.iter().filter(|k| **k).count() != 1 {
            self.err_hint(
                raw.span(),
                "a check is one of `ping`, `route`, `cmd` (with `expect`) or `process`",
                "e.g. { from = \"a\", ping = \"c\" } or { node = \"r1\", cmd = \"...\", expect = \"Full\" }",
            );
            return None;
        }
        let what = if let Some(to) = &c.ping {
            let from = node(&c.from, "from", self)?;
            let to_s = to.get_ref().clone();
            if !nodes.contains(&to_s.as_str()) && to_s.parse::<std::net::IpAddr>().is_err() {
                self.err(to.span(), format!("`ping`: `{to_s}` is neither a node nor an address"));
                return None;
            }
            CheckKind::Ping { from, to: to_s, ipv6: c.ipv6.as_ref().is_some_and(|v| *v.get_ref()) }
        } else if let Some(dest) = &c.route {
            let n = node(&c.node, "node", self)?;
            let d = dest.get_ref();
            if d != "default" && d.parse::<ipnetwork::IpNetwork>().is_err() {
                self.err(dest.span(), format!("`route`: `{d}` is not a prefix such as 10.0.0.0/24, or `default`"));
                return None;
            }
            CheckKind::Route { node: n, destination: d.clone() }
        } else if let Some(cmd) = &c.cmd {
            let n = node(&c.node, "node", self)?;
            let Some(expect) = &c.expect else {
                self.err(cmd.span(), "a `cmd` check needs `expect`: a regex its output must match");
                return None;
            };
            if let Err(e) = expect_regex(expect.get_ref()) {
                self.err(expect.span(), format!("`expect` is not a regex: {e}"));
                return None;
            }
            CheckKind::Output { node: n, cmd: cmd.get_ref().clone(), expect: expect.get_ref().clone() }
        } else {
            let n = node(&c.node, "node", self)?;
            let p = c.process.as_ref()?;
            CheckKind::Process { node: n, name: p.get_ref().clone() }
        };
        let within_ms = match &c.within {
            None => 0,
            Some(w) => match crate::units::parse_time(w.get_ref()) {
                Ok(us) => us / 1000,
                Err(m) => {
                    self.err(w.span(), m);
                    return None;
                }
            },
        };
        let name = c.name.as_ref().map(|n| n.get_ref().clone()).unwrap_or_else(|| describe(&what));
        Some(Check { name, what, within_ms })
    }
}

/// An `expect` regex, line by line as grep reads output: `^` and `$` match at every line.
pub fn expect_regex(expect: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(expect).multi_line(true).build()
}

/// What a check checks, in a few words.
fn describe(what: &CheckKind) -> String {
    match what {
        CheckKind::Ping { from, to, ipv6: false } => format!("{from} pings {to}"),
        CheckKind::Ping { from, to, ipv6: true } => format!("{from} pings {to} over IPv6"),
        CheckKind::Route { node, destination } => format!("{node} has a route to {destination}"),
        CheckKind::Output { node, cmd, expect } => format!("{node}: `{cmd}` matches /{expect}/"),
        CheckKind::Process { node, name } => format!("{node} runs {name}"),
    }
}

/// The checks of a checks file (`[[checks]]` alone), against a lab's node names.
pub fn parse_checks(source: Source, nodes: &[&str]) -> Result<Vec<Check>, TopologyError> {
    let raw: RawChecks = match toml::from_str(&source.text) {
        Ok(r) => r,
        Err(e) => {
            let diag = crate::diagnostic::Diagnostic::new(e.span().unwrap_or(0..0), e.message().trim_end().to_string());
            return Err(TopologyError::new(source, vec![diag]));
        }
    };
    let mut v = Validator::default();
    let checks = v.checks(&raw.checks, nodes);
    if v.diags.is_empty() {
        Ok(checks)
    } else {
        Err(TopologyError::new(source, v.diags))
    }
}
