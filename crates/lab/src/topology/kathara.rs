//! Kathará labs as they are: a directory with `lab.conf` (`dev[N]=domain`, `dev[image]`,
//! `dev[mem]`, `dev[cpus]`, `dev[sysctl]`, `dev[bridged]`, `dev[port]`, `dev[env]`,
//! `dev[exec]`), a folder per device laid over its root, `dev.startup` scripts, `shared/`
//! and `lab.dep`. It becomes the topology a `lab.toml` would say, every value spanned in
//! lab.conf, so that errors point at its lines.

use super::raw::{Opt, RawAttachments, RawNetwork, RawNode, RawScalar, RawTopology, Str};
use crate::diagnostic::{Diagnostic, Source};
use indexmap::IndexMap;
use std::ops::Range;
use std::path::Path;
use toml::Spanned;

/// The network a `dev[bridged]=true` device is on: NAT to the host's uplink, as Kathará's
/// bridged devices are on Docker's bridge.
const BRIDGED: &str = "bridged";

/// Keys Kathará has that lab does without, said once each.
const IGNORED: &[&str] = &["shell", "num_terms", "hosthome", "ipv6", "ulimit", "entrypoint", "args", "envs"];

/// The topology of lab.conf `source`, in directory `dir`; warnings for what lab maps
/// differently (images, ignored keys).
pub(super) fn raw(source: &Source, dir: &Path) -> Result<(RawTopology, Vec<String>), Vec<Diagnostic>> {
    let text = &source.text;
    let mut nodes: IndexMap<Str, RawNode> = IndexMap::new();
    let mut domains: IndexMap<String, Range<usize>> = IndexMap::new();
    let mut attachments: IndexMap<String, Vec<(usize, Str)>> = IndexMap::new();
    let mut diags = Vec::new();
    let mut warnings = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let body = line.trim_end_matches(['\n', '\r']);
        let content = body.split('#').next().unwrap_or("").trim_end();
        if content.trim().is_empty() {
            continue;
        }
        let lead = content.len() - content.trim_start().len();
        let content = content.trim_start();
        let at = |from: usize, len: usize| start + lead + from..start + lead + from + len;
        // LAB_NAME="..." and the other LAB_* metadata.
        if content.starts_with("LAB_") && !content.contains('[') {
            continue;
        }
        let Some((device, rest)) = content.split_once('[') else {
            diags.push(
                Diagnostic::new(at(0, content.len()), "not a `device[key]=value` line")
                    .hint("lab.conf lines are like r1[0]=\"A\" or r1[image]=\"kathara/frr\""),
            );
            continue;
        };
        let Some((key, value)) = rest.split_once(']').and_then(|(k, v)| Some((k, v.trim_start().strip_prefix('=')?)))
        else {
            diags.push(Diagnostic::new(at(0, content.len()), "not a `device[key]=value` line"));
            continue;
        };
        let value_from = content.len() - value.len();
        let raw_value = value.trim();
        let value_from = value_from + (value.len() - value.trim_start().len());
        let (value, value_span) = match unquote(raw_value) {
            Some(v) => (v.to_string(), at(value_from + 1, v.len())),
            None => (raw_value.to_string(), at(value_from, raw_value.len())),
        };
        let device_name = device.trim();
        let dev_span = at(0, device_name.len());
        let key_span = at(device.len() + 1, key.len());
        let s = |v: &str| Spanned::new(value_span.clone(), v.to_string());
        let node = nodes.entry(Spanned::new(dev_span.clone(), device_name.to_string())).or_default();
        match key.trim() {
            k if k.parse::<usize>().is_ok() => {
                let index: usize = k.parse().unwrap_or(0);
                // `A` or `A/02:42:ac:11:00:02` (a MAC lab does not take: it picks its own).
                // Domains are often capitals: a network's name is a DNS label.
                let domain = network_name(value.split('/').next().unwrap_or(""));
                if domain.is_empty() {
                    diags.push(Diagnostic::new(value_span.clone(), "a collision domain's name is empty"));
                    continue;
                }
                domains.entry(domain.clone()).or_insert(value_span.clone());
                attachments
                    .entry(device_name.to_string())
                    .or_default()
                    .push((index, Spanned::new(value_span.clone(), domain)));
            }
            "image" => {
                if !warnings.iter().any(|w: &String| w.starts_with("lab.conf names images")) {
                    warnings.push(format!(
                        "lab.conf names images ({value} for {device_name}); lab runs every device on the host's root \
                         file system until it runs images"
                    ));
                }
            }
            "mem" => node.memory = Opt::Set(Spanned::new(value_span.clone(), RawScalar::Str(value.clone()))),
            "cpus" => {
                let cpus = value.parse::<f64>().map(RawScalar::Float).unwrap_or(RawScalar::Str(value.clone()));
                node.cpus = Opt::Set(Spanned::new(value_span.clone(), cpus));
            }
            "sysctl" => match value.split_once('=') {
                Some((k, v)) => {
                    node.sysctls
                        .insert(s(k.trim()), Spanned::new(value_span.clone(), RawScalar::Str(v.trim().to_string())));
                }
                None => diags.push(Diagnostic::new(value_span.clone(), format!("sysctl `{value}` is not key=value"))),
            },
            "env" => match value.split_once('=') {
                Some((k, v)) => {
                    node.env.insert(s(k), s(v));
                }
                None => diags.push(Diagnostic::new(value_span.clone(), format!("env `{value}` is not NAME=value"))),
            },
            "bridged" => {
                if value.eq_ignore_ascii_case("true") {
                    domains.entry(BRIDGED.to_string()).or_insert(value_span.clone());
                    attachments
                        .entry(device_name.to_string())
                        .or_default()
                        .push((usize::MAX, Spanned::new(value_span.clone(), BRIDGED.to_string())));
                }
            }
            "port" => {
                // Kathará: HOST:GUEST[/PROTOCOL], tcp by default.
                let port = value.strip_suffix("/tcp").unwrap_or(&value).to_string();
                push(&mut node.ports, Spanned::new(value_span.clone(), port), &value_span);
            }
            "exec" => push(&mut node.exec, s(&value), &value_span),
            "privileged" => {
                node.privileged = Some(Spanned::new(value_span.clone(), value.eq_ignore_ascii_case("true")))
            }
            k if IGNORED.contains(&k) => {
                warnings.push(format!("lab.conf: {device_name}[{k}] means nothing to lab; ignored"))
            }
            other => diags
                .push(Diagnostic::new(key_span, format!("`{other}` is not a device key lab knows")).hint(
                    "lab reads N (an interface), image, mem, cpus, sysctl, env, bridged, port, exec, privileged",
                )),
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let deps = dependencies(dir, &nodes);
    for (key, node) in nodes.iter_mut() {
        let name = key.get_ref();
        let span = key.span();
        let path = |p: String| Opt::Set(Spanned::new(span.clone(), p));
        // Interfaces in index order (`bridged` last); each ethN as Kathará numbers them.
        let mut mine = attachments.shift_remove(name).unwrap_or_default();
        mine.sort_by_key(|(i, _)| *i);
        let mut table = Vec::new();
        for (i, domain) in mine {
            let ifname = if i == usize::MAX { None } else { Some(Spanned::new(domain.span(), format!("eth{i}"))) };
            let attach = super::raw::RawAttach::Table { ifname, addresses: Vec::new(), vlan: None, vlans: None };
            table.push((domain.clone(), Spanned::new(domain.span(), attach)));
        }
        if !table.is_empty() {
            node.networks = Some(Spanned::new(span.clone(), RawAttachments::Table(table)));
        }
        if dir.join(name).is_dir() {
            node.files = path(name.clone());
        }
        if dir.join(format!("{name}.startup")).is_file() {
            node.startup = path(format!("{name}.startup"));
        }
        if dir.join("shared").is_dir() {
            node.shared = path("shared".into());
        }
        if let Some(d) = deps.get(name) {
            node.depends_on = Opt::Set(Spanned::new(span.clone(), d.clone()));
        }
        // Kathará runs every device privileged; lab gives each what a router needs instead,
        // and services started as on a system with systemd.
        node.preset = Opt::Set(Spanned::new(span.clone(), "router".into()));
        node.systemd = true;
    }
    let networks = domains
        .into_iter()
        .map(|(name, span)| {
            let nat = name == BRIDGED;
            let net =
                RawNetwork { subnet: None, subnet6: None, ipv6: None, mtu: None, nat, stp: false, addresses: nat };
            (Spanned::new(span, name), net)
        })
        .collect();
    let raw = RawTopology {
        name: None,
        defaults: RawNode::default(),
        networks,
        nodes,
        links: Vec::new(),
        checks: Vec::new(),
    };
    Ok((raw, warnings))
}

/// `lab.dep`: `r1: r2 r3` (r1 starts after r2 and r3), Make style.
fn dependencies(dir: &Path, nodes: &IndexMap<Str, RawNode>) -> IndexMap<String, Vec<Str>> {
    let mut out: IndexMap<String, Vec<Str>> = IndexMap::new();
    let Ok(text) = std::fs::read_to_string(dir.join("lab.dep")) else { return out };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let Some((dev, deps)) = line.split_once(':') else { continue };
        // Spans point at the device in lab.conf: lab.dep is not the file errors show.
        let Some((key, _)) = nodes.get_key_value(dev.trim()) else { continue };
        let entry = out.entry(dev.trim().to_string()).or_default();
        entry.extend(deps.split_whitespace().map(|d| Spanned::new(key.span(), d.to_string())));
    }
    out
}

fn push(list: &mut Opt<Vec<Str>>, item: Str, span: &Range<usize>) {
    match list {
        Opt::Set(l) => {
            let mut items = l.get_ref().clone();
            items.push(item);
            *l = Spanned::new(l.span(), items);
        }
        _ => *list = Opt::Set(Spanned::new(span.clone(), vec![item])),
    }
}

/// A collision domain's name as a network's: lowercase, `-` for what a DNS label cannot hold.
fn network_name(domain: &str) -> String {
    domain
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .to_string()
}

/// `"x"` or `'x'` without its quotes.
fn unquote(v: &str) -> Option<&str> {
    ['"', '\''].iter().find_map(|q| v.strip_prefix(*q)?.strip_suffix(*q))
}
