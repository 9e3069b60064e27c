//! Kathará labs as they are: a directory with `lab.conf` (`dev[N]=domain`, `dev[image]`,
//! `dev[mem]`, `dev[cpus]`, `dev[sysctl]`, `dev[bridged]`, `dev[port]`, `dev[env]`,
//! `dev[exec]`), a folder per device laid over its root, `dev.startup` scripts, `shared/`
//! and `lab.dep`. It becomes the topology a `lab.toml` would say, every value spanned in
//! lab.conf, so that errors point at its lines.

use super::raw::{OneOrList, Opt, RawAttachments, RawNetwork, RawNode, RawScalar, RawTopology, Str};
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
            "image" => warn_once(
                &mut warnings,
                "lab.conf names images",
                format!(
                    "lab.conf names images ({value} for {device_name}); lab runs every device on the host's root \
                     file system until it runs images"
                ),
            ),
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
                let said = format!("lab.conf: `{k}` means nothing to lab");
                warn_once(&mut warnings, &said, format!("{said}; ignored ({device_name}[{k}] and any other)"));
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
    // A folder beside lab.conf is a device too, lab.conf naming it or not (as in Kathará):
    // one without interfaces. Not `shared/`, nor hidden or test folders.
    let mut folders: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n != "shared" && !n.starts_with('.') && !n.starts_with('_'))
        .filter(|n| !nodes.keys().any(|k| k.get_ref() == n))
        .collect();
    folders.sort();
    for f in folders {
        if super::Name::parse(&f).is_err() {
            warnings.push(format!("folder {f}/ is not a device name lab takes (a DNS label); not a device"));
            continue;
        }
        nodes.insert(Spanned::new(0..0, f), RawNode::default());
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
        // shared.startup first in every device, then the device's own (as Kathará runs them).
        let scripts: Vec<Str> = ["shared.startup".to_string(), format!("{name}.startup")]
            .into_iter()
            .filter(|f| dir.join(f).is_file())
            .map(|f| Spanned::new(span.clone(), f))
            .collect();
        if !scripts.is_empty() {
            node.startup = Opt::Set(Spanned::new(span.clone(), OneOrList::List(scripts)));
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

/// `warning`, unless one starting with `said` is already there.
fn warn_once(warnings: &mut Vec<String>, said: &str, warning: String) {
    if !warnings.iter().any(|w| w.starts_with(said)) {
        warnings.push(warning);
    }
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

#[cfg(test)]
mod tests {
    use crate::topology::Topology;
    use crate::Source;

    fn parse(text: &str) -> Result<(Topology, Vec<String>), String> {
        Topology::parse_kathara(Source::new("k/lab.conf", text)).map_err(|e| e.to_string())
    }

    #[test]
    fn lab_conf_mistakes_point_at_their_lines() {
        let e = parse("LAB_NAME=\"x\"\npc1 is a host\n").unwrap_err();
        assert!(e.contains("lab.conf:2:1") && e.contains("not a `device[key]=value` line"), "{e}");
        let e = parse("pc1[0]=\"A\"\npc1[sysctl]=\"net.ipv4.ip_forward\"\n").unwrap_err();
        assert!(e.contains("lab.conf:2:14") && e.contains("is not key=value"), "{e}");
        let e = parse("pc1[env]=NOVALUE\n").unwrap_err();
        assert!(e.contains("lab.conf:1:10") && e.contains("is not NAME=value"), "{e}");
        let e = parse("pc1[0]=\"/02:42:ac:11:00:02\"\n").unwrap_err();
        assert!(e.contains("collision domain's name is empty"), "{e}");
        // What the topology checks say, at lab.conf's lines too.
        let e = parse("pc1[0]=\"A\"\npc1[mem]=\"lots\"\n").unwrap_err();
        assert!(e.contains("lab.conf:2:11") && e.contains("lots"), "{e}");
    }

    #[test]
    fn devices_domains_and_what_lab_does_differently() {
        let (t, warnings) = parse(
            "pc1[0]=\"A\"\npc1[1]=\"Lan_2\"\npc1[image]=\"kathara/base\"\npc1[shell]=\"/bin/bash\"\n\
             r1[0]=\"A\"\nr1[bridged]=true\nr1[port]=\"8080:80/tcp\"\nr1[image]=\"kathara/frr\"\nr2[shell]=\"sh\"\n",
        )
        .unwrap();
        let names: Vec<&str> = t.networks.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a", "lan-2", "bridged"]);
        assert!(!t.networks[0].addressed && t.networks[2].addressed && t.networks[2].nat);
        let r1 = &t.nodes[1];
        let ifs: Vec<&str> = r1.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(ifs, ["eth0", "eth1"], "bridged comes after the domains");
        assert_eq!((r1.ports[0].host, r1.ports[0].node), (8080, 80));
        assert!(r1.security.cap_add.iter().any(|c| c == "SYS_ADMIN") && r1.systemctl, "a router, with systemctl");
        assert_eq!(warnings.len(), 2, "images and shell, once each: {warnings:?}");
    }

    #[test]
    fn shared_startup_runs_first_and_folders_are_devices() {
        let dir = tempfile::tempdir().unwrap();
        let at = |p: &str| dir.path().join(p);
        std::fs::write(at("lab.conf"), "pc1[0]=\"A\"\n").unwrap();
        for f in ["shared.startup", "pc1.startup", "ws.startup"] {
            std::fs::write(at(f), "true\n").unwrap();
        }
        for d in ["ws", "shared", "_test", "Not A Name"] {
            std::fs::create_dir(at(d)).unwrap();
        }
        let path = at("lab.conf");
        let text = std::fs::read_to_string(&path).unwrap();
        let (t, warnings) = Topology::parse_kathara(Source::new(&path, text)).unwrap();
        let names: Vec<&str> = t.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["pc1", "ws"], "ws by its folder; not shared/, _test/ or a folder no name can be");
        assert_eq!(t.nodes[0].startup, [at("shared.startup"), at("pc1.startup")]);
        assert_eq!(t.nodes[1].startup, [at("shared.startup"), at("ws.startup")]);
        assert!(t.nodes[1].interfaces.is_empty() && t.nodes[1].files == Some(at("ws")));
        assert!(warnings.iter().any(|w| w.contains("Not A Name")), "{warnings:?}");
    }
}
