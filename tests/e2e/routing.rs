//! Routing daemons in nodes, as on a host: FRR (watchfrr, zebra, ospfd, staticd) and bird
//! with `preset = "router"` and no privilege, their syslog in `lab logs`, `setup` commands
//! as root before a command that is not.

use crate::support::*;
use std::time::{Duration, Instant};

/// Whether `cond` holds within `secs` seconds. Routing converges with no event to wait on
/// (and, on a loaded slow machine, an adjacency may flap and come back): look until then.
fn eventually(secs: u64, cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    true
}

/// Routing example lab `topology` (in topologies/) converges under its own `lab check`, and
/// r1's route to `dest` goes by `direct`, then, once r1's `cut` interface is down, by
/// `detour`; `dest_name` still answers. The lab stays up for the caller's own checks.
fn reroutes_round_a_cut(
    what: &str,
    topology: &str,
    dest: &str,
    dest_name: &str,
    direct: &str,
    cut: &str,
    detour: &str,
) -> Lab {
    let l = Lab::up_file(what, &repo().join(topology));
    let out = lab(&["check", &l.name]);
    let log = text_of(&lab(&["logs", &format!("{}/r1", l.name)]));
    assert!(
        out.status.success(),
        "{topology} converges within its checks' deadlines:\n{}\nr1's log:\n{log}",
        show(&out)
    );
    let via = |hop: &str| text(&l.exec("r1", &["ip", "route", "get", dest]).stdout).contains(&format!("via {hop}"));
    assert!(eventually(60, || via(direct)), "r1 reaches {dest} by {direct}: {}", l.sh("r1", "ip route"));
    let out = lab(&["link", &format!("{}/r1:{cut}", l.name), "down"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(eventually(60, || via(detour)), "rerouted by {detour}: {}", l.sh("r1", "ip route"));
    let out = l.exec("r1", &["ping", "-c1", "-W2", dest_name]);
    assert!(out.status.success(), "{}", show(&out));
    l
}

/// FRR and bird come from the host's packages (scripts/install-deps installs them).
fn need(program: &str) {
    assert!(std::path::Path::new(program).exists(), "{program} is missing: scripts/install-deps installs it");
}

#[test]
fn the_frr_ospf_lab_converges_in_unprivileged_nodes_and_reroutes_round_a_cut_link() {
    // FRR starts slowly where CPU is short (a VM under TCG): nothing else runs meanwhile.
    let _host = exclusive();
    need("/usr/lib/frr/watchfrr");
    // r1 reaches r3's loopback directly, then through r2 once their link is cut.
    let l = reroutes_round_a_cut(
        "ospf",
        "topologies/frr-ospf/lab.toml",
        "10.255.0.3",
        "r3-lo",
        "10.0.13.2",
        "eth2",
        "10.0.12.2",
    );
    // Not privileged: its own user namespace (SYS_ADMIN there is over its own namespaces
    // only), lab's seccomp filter, no capability beyond the preset's.
    let out = lab(&["inspect", &format!("{}/r1", l.name), "--json"]);
    let r1: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect --json");
    let sec = &r1["labs"][0]["nodes"][0]["details"]["security"];
    assert_eq!((sec["userns"].as_bool(), sec["seccomp"].as_str()), (Some(true), Some("default")), "{sec}");
    let caps = sec["capabilities"].to_string();
    assert!(caps.contains("SYS_ADMIN") && !caps.contains("SYS_MODULE") && !caps.contains("SYS_PTRACE"), "{caps}");
    // FRR logs to syslog: /dev/log reaches the node's log.
    let logs = text_of(&lab(&["logs", &format!("{}/r1", l.name)]));
    assert!(logs.contains("ospfd[") && logs.contains("zebra["), "{logs}");
    l.down();
}

#[test]
fn bird_runs_with_the_router_preset_and_setup_prepares_its_directory() {
    let _host = shared();
    need("/usr/sbin/bird");
    let l = Lab::up(
        "bird",
        r#"
[nodes.b1]
preset = "router"
loopback = ["10.255.9.1/32"]
setup = ["install -d -o bird -g bird /run/bird"]
command = "exec bird -f -u bird -g bird"
"#,
    );
    let status = || text_of(&l.exec("b1", &["birdc", "show", "status"]));
    assert!(eventually(30, || status().contains("Daemon is up and running")), "{}", status());
    assert!(status().contains("Router ID is 10.255.9.1"), "{}", status());
    assert_eq!(l.sh("b1", "sysctl -n net.ipv4.ip_forward"), "1\n", "the preset forwards");
    let logs = text_of(&lab(&["logs", &format!("{}/b1", l.name)]));
    assert!(logs.contains("bird: Started"), "{logs}");
    l.down();
}

#[test]
fn setup_runs_as_root_before_a_command_that_is_not_and_a_failing_one_fails_up() {
    let _host = shared();
    let l = Lab::up(
        "setup",
        r#"
[defaults]
setup = ["install -d -o nobody /run/app"]
[nodes.app]
user = "nobody"
setup = ["echo ready > /run/app/by-setup"]
command = "echo $(id -un) > /run/app/by-command && logger -t app started && exec sleep infinity"
"#,
    );
    assert!(eventually(10, || l.sh("app", "ls /run/app").contains("by-command")), "the command ran");
    assert_eq!(l.sh("app", "cat /run/app/by-setup /run/app/by-command"), "ready\nnobody\n");
    assert_eq!(l.sh("app", "stat -c %U /run/app/by-setup"), "root\n", "setup ran as root");
    let logs = text_of(&lab(&["logs", &format!("{}/app", l.name)]));
    assert!(logs.contains("app: started"), "logger's line reaches lab logs: {logs}");
    l.down();

    let (guard, out) = Lab::try_up(
        "setupfails",
        "[nodes.broken]\nsetup = [\"echo preparing; exit 3\"]\ncommand = [\"sleep\", \"infinity\"]\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains("node broken") && err.contains("setup command `echo preparing; exit 3` failed (exit 3)"),
        "{err}"
    );
    assert!(err.contains("preparing"), "its log lines come with the error: {err}");
    assert_eq!(leftovers(&guard.name), Vec::<String>::new());
}

#[test]
fn the_frr_bgp_square_converges_and_goes_the_long_way_round_a_cut_link() {
    // FRR starts slowly where CPU is short (a VM under TCG): nothing else runs meanwhile.
    let _host = exclusive();
    need("/usr/lib/frr/watchfrr");
    // r1 reaches r2 directly, then the long way, through r4 and r3.
    let l = reroutes_round_a_cut(
        "bgp",
        "topologies/frr-bgp/lab.toml",
        "10.255.2.1",
        "r2-lo",
        "10.1.2.2",
        "eth1",
        "10.4.1.1",
    );
    l.down();
}
