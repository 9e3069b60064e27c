//! How a node and `[defaults]` combine, one rule per kind of key:
//!
//! - a value (`command`, `memory`, `user`, `healthcheck`...): the node's, else the default's;
//! - a list (`cap_add`, `mounts`, `exec`, `routes`, `depends_on`...): the default's items, then
//!   the node's; a node's mount on the same path, route to the same destination or repeated
//!   name replaces the default's;
//! - a table (`env`, `sysctls`, `impair`): the default's entries, then the node's, the node's
//!   winning on the same key;
//! - `key = false` in a node: neither, as if nothing were set.
//!
//! `networks` and `hostname` are the node's own; `ports` and `loopback` too, since two nodes
//! cannot forward one host port or carry one address.

use super::raw::{Opt, RawNode, Str};
use indexmap::IndexMap;
use std::hash::Hash;
use toml::Spanned;

/// `node` with `defaults` applied: what the checks read. A `false` is gone (unset).
pub(super) fn merged(defaults: &RawNode, node: &RawNode, name: &str) -> RawNode {
    let d = defaults;
    // A default `depends_on` naming this node is about the others.
    let mut default_deps = d.depends_on.clone();
    if let Opt::Set(list) = &mut default_deps {
        let span = list.span();
        let others: Vec<Str> = list.get_ref().iter().filter(|n| n.get_ref() != name).cloned().collect();
        *list = Spanned::new(span, others);
    }
    RawNode {
        networks: node.networks.clone(),
        hostname: node.hostname.clone(),
        ports: one(&Opt::Unset, &node.ports),
        loopback: one(&Opt::Unset, &node.loopback),
        command: one(&d.command, &node.command),
        env: table(&d.env, &node.env),
        // A node's own `rootfs` or `image` is what it runs on, whichever default there is.
        rootfs: match node.image {
            Opt::Set(_) => one(&Opt::Unset, &node.rootfs),
            _ => one(&d.rootfs, &node.rootfs),
        },
        image: match node.rootfs {
            Opt::Set(_) => one(&Opt::Unset, &node.image),
            _ => one(&d.image, &node.image),
        },
        entrypoint: one(&d.entrypoint, &node.entrypoint),
        seccomp: one(&d.seccomp, &node.seccomp),
        cap_add: list(&d.cap_add, &node.cap_add, |s| s.to_ascii_uppercase()),
        cap_drop: list(&d.cap_drop, &node.cap_drop, |s| s.to_ascii_uppercase()),
        privileged: node.privileged.clone().or_else(|| d.privileged.clone()),
        userns: node.userns.clone().or_else(|| d.userns.clone()),
        preset: one(&d.preset, &node.preset),
        setup: list(&d.setup, &node.setup, |_| String::new()),
        memory: one(&d.memory, &node.memory),
        scratch: one(&d.scratch, &node.scratch),
        scratch_size: one(&d.scratch_size, &node.scratch_size),
        cpus: one(&d.cpus, &node.cpus),
        pids: one(&d.pids, &node.pids),
        io_weight: one(&d.io_weight, &node.io_weight),
        mounts: list(&d.mounts, &node.mounts, |s| mount_target(s).to_string()),
        volumes: list(&d.volumes, &node.volumes, |s| mount_target(s).to_string()),
        files: one(&d.files, &node.files),
        startup: one(&d.startup, &node.startup),
        shared: one(&d.shared, &node.shared),
        reveal: list(&d.reveal, &node.reveal, |s| s.trim_end_matches('/').to_string()),
        routes: list(&d.routes, &node.routes, |s| s.split_whitespace().next().unwrap_or("").to_string()),
        sysctls: table(&d.sysctls, &node.sysctls),
        impair: table(&d.impair, &node.impair),
        workdir: one(&d.workdir, &node.workdir),
        user: one(&d.user, &node.user),
        restart: one(&d.restart, &node.restart),
        stop_signal: one(&d.stop_signal, &node.stop_signal),
        stop_timeout: one(&d.stop_timeout, &node.stop_timeout),
        depends_on: list(&default_deps, &node.depends_on, str::to_string),
        healthcheck: one(&d.healthcheck, &node.healthcheck),
        // Hooks are commands: a node's own run after the default's, none replaced.
        exec: list(&d.exec, &node.exec, |_| String::new()),
        systemd: node.systemd || d.systemd,
    }
}

/// A value: the node's, else the default's; `false` clears both.
fn one<T: Clone>(default: &Opt<T>, node: &Opt<T>) -> Opt<T> {
    match node {
        Opt::Set(_) => node.clone(),
        Opt::Off(_) => Opt::Unset,
        Opt::Unset => match default {
            Opt::Set(_) => default.clone(),
            _ => Opt::Unset,
        },
    }
}

/// A list: the default's items, less those the node's replace (same non-empty `key`), then
/// the node's; `false` clears both.
fn list(default: &Opt<Vec<Str>>, node: &Opt<Vec<Str>>, key: impl Fn(&str) -> String) -> Opt<Vec<Str>> {
    let (Opt::Set(d), Opt::Set(n)) = (default, node) else { return one(default, node) };
    let replaced: Vec<String> = n.get_ref().iter().map(|s| key(s.get_ref())).filter(|k| !k.is_empty()).collect();
    let kept = d.get_ref().iter().filter(|s| !replaced.contains(&key(s.get_ref())));
    Opt::Set(Spanned::new(n.span(), kept.chain(n.get_ref()).cloned().collect()))
}

/// A table: the default's entries, then the node's, the node's winning on the same key.
fn table<K: Clone + Hash + Eq, V: Clone>(default: &IndexMap<K, V>, node: &IndexMap<K, V>) -> IndexMap<K, V> {
    let mut out = default.clone();
    for (k, v) in node {
        out.insert(k.clone(), v.clone());
    }
    out
}

/// The node path of a mount, `"src:/path[:ro]"`, as the key a node's mount replaces by.
fn mount_target(s: &str) -> &str {
    s.split(':').nth(1).map(|t| t.trim_end_matches('/')).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use crate::topology::Topology;
    use crate::Source;

    fn parse(text: &str) -> Result<Topology, String> {
        Topology::parse(Source::new("merge.toml", text)).map_err(|e| e.to_string())
    }

    #[test]
    fn lists_add_tables_merge_values_replace_and_false_clears() {
        let t = parse(
            r#"
name = "m"
[defaults]
command = ["sleep", "infinity"]
cap_add = ["NET_ADMIN"]
mounts = ["/srv/a:/a", "/srv/b:/b:ro"]
env = { A = "1", B = "2" }
sysctls = { "net.ipv4.ip_forward" = 1 }
exec = ["echo default"]
routes = ["10.9.0.0/16 via 10.0.0.1"]
depends_on = ["a"]
healthcheck = { cmd = ["true"] }
memory = "64M"
[networks.lan]
subnet = "10.0.0.0/24"
[nodes.a]
networks = ["lan"]
[nodes.b]
networks = ["lan"]
command = false
cap_add = ["NET_RAW"]
mounts = ["/srv/other:/b"]
env = { B = "3" }
exec = ["echo mine"]
routes = ["10.9.0.0/16 via 10.0.0.2"]
healthcheck = false
memory = false
[nodes.c]
networks = ["lan"]
cap_add = false
exec = false
depends_on = false
"#,
        )
        .unwrap();
        let (a, b, c) = (&t.nodes[0], &t.nodes[1], &t.nodes[2]);
        assert_eq!(a.command.as_deref(), Some(&["sleep".to_string(), "infinity".to_string()][..]));
        assert_eq!(b.command, None, "false clears a default value");
        assert_eq!(a.security.cap_add, ["NET_ADMIN"]);
        assert_eq!(b.security.cap_add, ["NET_ADMIN", "NET_RAW"], "lists add");
        assert!(c.security.cap_add.is_empty());
        let mounts: Vec<(&str, &str)> =
            b.mounts.iter().map(|m| (m.source.to_str().unwrap_or(""), m.target.as_str())).collect();
        assert_eq!(mounts, [("/srv/a", "/a"), ("/srv/other", "/b")], "a node's mount on a path replaces the default's");
        assert_eq!(b.env, [("A".to_string(), "1".to_string()), ("B".to_string(), "3".to_string())]);
        assert_eq!(b.sysctls, a.sysctls);
        assert_eq!(b.service.exec, ["echo default", "echo mine"]);
        assert!(c.service.exec.is_empty());
        assert_eq!(b.routes.len(), 1);
        assert_eq!(b.routes[0].via.to_string(), "10.0.0.2");
        assert!(a.service.depends_on.is_empty(), "a default dependency on a node is not that node's");
        assert_eq!(b.service.depends_on, ["a"]);
        assert!(c.service.depends_on.is_empty());
        assert!(a.service.healthcheck.is_some() && b.service.healthcheck.is_none());
        assert_eq!((a.limits.memory, b.limits.memory), (Some(64 << 20), None));
    }

    #[test]
    fn an_error_in_a_default_is_told_once_and_true_is_refused() {
        let e = parse("[defaults]\nmemory = \"lots\"\n[nodes.a]\n[nodes.b]\n").unwrap_err();
        assert_eq!(e.matches("is not a size").count(), 1, "{e}");
        let e = parse("[nodes.a]\ncommand = true\n").unwrap_err();
        assert!(e.contains("false to clear"), "{e}");
        let e = parse("[defaults]\nports = [\"80:80\"]\n[nodes.a]\n").unwrap_err();
        assert!(e.contains("`ports` is per node"), "{e}");
    }

    #[test]
    fn default_impairments_go_to_the_nodes_with_that_interface() {
        let t = parse(
            "[defaults.impair.eth1]\ndelay = \"10ms\"\n[networks.a]\n[networks.b]\n\
             [nodes.one]\nnetworks = [\"a\", \"b\"]\n[nodes.two]\nnetworks = [\"a\"]\n",
        )
        .unwrap();
        assert_eq!(t.nodes[0].impairments.len(), 1);
        assert!(t.nodes[1].impairments.is_empty(), "two has no eth1");
    }
}
