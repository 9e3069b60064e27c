//! What is up and how it is doing: `lab ps`, `lab inspect`, `lab stats` (all in the shape of
//! `shape.rs`), and pausing nodes.

use super::exec::find_node;
use super::shape::*;
use crate::plan::{Attach, InterfacePlan, NodePlan};
use crate::state::{all_states, LabDir, LabState};
use crate::topology::{Name, Rootfs, SeccompChoice};
use crate::Error;
use crate::NodeRef;
use lab_sandbox::cgroup::{self, Cgroups, Stats};
use lab_sandbox::{ExitStatus, NodeSpec};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// Every lab with state, and its nodes, as `lab ps` shows them.
pub fn list() -> Vec<LabStatus> {
    let cgroups = cgroup::detect().ok();
    all_states()
        .into_iter()
        .map(|(name, state)| match state {
            Some(s) => of(&LabDir::new(&name), &s, cgroups.as_deref()),
            None => LabStatus {
                name: name.to_string(),
                topology: PathBuf::new(),
                complete: false,
                created: None,
                networks: Vec::new(),
                links: Vec::new(),
                partitions: Vec::new(),
                nodes: Vec::new(),
            },
        })
        .collect()
}

/// Lab `lab` (or the only one up) with every detail of its nodes (or of node `node`), as
/// `lab inspect` shows it.
pub fn inspect(lab: Option<&Name>, node: Option<&str>) -> Result<LabStatus, Error> {
    let name = match node {
        Some(n) => find_node(lab, n)?.0,
        None => super::locked::the_lab(lab)?,
    };
    let state = LabDir::new(&name).read_state()?.ok_or_else(|| Error::LabNotUp(name.clone()))?;
    // What `stats` shows (the lab, only that node, each with its use), plus the details.
    let mut status = stats(Some(&name), node, Duration::from_millis(100))?.pop().ok_or(Error::LabNotUp(name))?;
    for n in &mut status.nodes {
        n.details = state.plan.node(&n.name).map(details);
    }
    Ok(status)
}

/// A lab as its state and the kernel say it is now.
pub(super) fn of(dir: &LabDir, state: &LabState, cgroups: Option<&dyn Cgroups>) -> LabStatus {
    let plan = &state.plan;
    let clock = Clock::now();
    let nodes = plan
        .nodes
        .iter()
        .enumerate()
        .map(|(index, n)| {
            let name = n.name.as_str();
            let procs = state.node(name);
            let alive = procs.is_some_and(|p| p.init.is_alive());
            let frozen = alive && cgroups.is_some_and(|c| c.frozen(&n.cgroup));
            let exit = NodeSpec::load(&dir.node_dir(name).join("spec.json")).ok().and_then(|s| s.exit_status());
            let stopped = state.runtime.stopped.contains(name);
            let ready = state.complete || dir.node_dir(name).join("ready").exists();
            let node_state = match (alive, exit, procs) {
                _ if stopped => NodeState::Stopped,
                (true, _, _) if frozen => NodeState::Paused,
                (true, _, _) if !ready => NodeState::Starting,
                (true, _, _) => NodeState::Running,
                (false, Some(_), _) => NodeState::Exited,
                (false, None, None) if !state.complete => NodeState::Starting,
                _ => NodeState::Gone,
            };
            let started = procs.filter(|_| alive).and_then(|p| clock.started(p.init.start_time));
            NodeStatus {
                name: name.to_string(),
                state: node_state,
                image: match &n.rootfs {
                    Rootfs::Image(r) => Some(r.clone()),
                    _ => None,
                },
                image_digest: n.image_digest.clone(),
                exit: exit.filter(|_| node_state == NodeState::Exited).map(exit_of),
                health: if alive { super::Health::read(dir, name) } else { None },
                pid: procs.filter(|_| alive).map(|p| p.init.pid),
                started: started.map(lab_sandbox::monitor::timestamp),
                uptime_seconds: started.and_then(|t| t.elapsed().ok()).map(|d| (d.as_secs_f64() * 10.0).round() / 10.0),
                interfaces: n.interfaces.iter().map(|i| interface(state, index, n, i)).collect(),
                loopback: n.loopback.iter().map(address).collect(),
                ports: plan
                    .ports
                    .iter()
                    .filter(|p| p.node == n.name)
                    .map(|p| PortStatus {
                        protocol: p.protocol.to_string(),
                        host_port: p.host_port,
                        node_port: p.node_port,
                        address: p.address.to_string(),
                    })
                    .collect(),
                oom_kills: cgroups.and_then(|c| c.stats(&n.cgroup).ok()).map_or(0, |s| s.oom_kills),
                log: dir.node_dir(name).join("log"),
                details: None,
                usage: None,
            }
        })
        .collect();
    LabStatus {
        name: plan.lab.to_string(),
        topology: state.topology.clone(),
        complete: state.complete,
        created: state.created.clone(),
        networks: plan
            .networks
            .iter()
            .enumerate()
            .map(|(k, n)| NetworkStatus {
                name: n.name.to_string(),
                bridge: n.bridge.to_string(),
                subnet: n.subnet.to_string(),
                subnet6: n.subnet6.map(|s| s.to_string()),
                gateways: n.gateway_addresses().iter().map(|g| g.to_string()).collect(),
                gateway_netns: plan.gateway.as_ref().filter(|g| g.leg(k).is_some()).map(|g| g.netns.clone()),
                nat: n.nat,
                mtu: n.mtu,
            })
            .collect(),
        links: (0..plan.links.len())
            .map(|l| LinkStatus {
                endpoints: [0, 1].map(|end| match plan.link_end(l, end) {
                    Some((node, iface)) => format!("{}:{}", plan.nodes[node].name, iface.name),
                    None => String::new(),
                }),
                mtu: plan.links[l].mtu,
            })
            .collect(),
        partitions: state
            .runtime
            .partitions
            .iter()
            .map(|sides| sides.clone().map(|s| s.into_iter().collect()))
            .collect(),
        nodes,
    }
}

fn exit_of(e: ExitStatus) -> Exit {
    let (code, signal) = match e {
        ExitStatus::Code(c) => (Some(c), None),
        ExitStatus::Signal(s) => (None, Some(s)),
    };
    let signal_name = signal.and_then(|s| nix::sys::signal::Signal::try_from(s).ok()).map(|s| s.as_str().to_string());
    Exit { code, signal, signal_name, text: e.to_string() }
}

fn interface(state: &LabState, index: usize, node: &NodePlan, i: &InterfacePlan) -> InterfaceStatus {
    let plan = &state.plan;
    let (network, bridge) = match &i.attach {
        Attach::Bridge { network, .. } => {
            plan.networks.get(*network).map_or((None, None), |n| (Some(n.name.to_string()), Some(n.bridge.to_string())))
        }
        Attach::Link { .. } => (None, None),
    };
    let peer = plan.link_peer(index, i).map(|(p, pi)| format!("{}:{}", plan.nodes[p].name, pi.name));
    let name = node.name.as_str();
    InterfaceStatus {
        name: i.name.to_string(),
        mac: i.mac.map(|m| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")),
        addresses: i.addresses.iter().map(address).collect(),
        network,
        bridge,
        peer,
        host_end: i.host_veth().to_string(),
        up: !state.runtime.links_down.iter().any(|(n, f)| n == name && *f == i.name),
        impairment: state.runtime.impairment(plan, name, i.name.as_str()).map(|imp| ImpairmentStatus {
            rate_bps: imp.rate,
            delay_us: imp.delay,
            jitter_us: imp.jitter,
            loss_percent: imp.loss.map(percent),
            corrupt_percent: imp.corrupt.map(percent),
            duplicate_percent: imp.duplicate.map(percent),
            text: imp.to_string(),
        }),
    }
}

fn address(a: &ipnetwork::IpNetwork) -> Address {
    Address { family: if a.is_ipv4() { "ipv4" } else { "ipv6" }, address: a.ip().to_string(), prefix: a.prefix() }
}

/// Parts per million as a percentage.
fn percent(ppm: u32) -> f64 {
    f64::from(ppm) / 10_000.0
}

fn details(n: &NodePlan) -> NodeDetails {
    let sec = &n.policy;
    NodeDetails {
        hostname: n.hostname.to_string(),
        rootfs: match &n.rootfs {
            Rootfs::Host => "host".into(),
            Rootfs::Dir(d) => d.display().to_string(),
            Rootfs::Image(r) => format!("image {r}"),
        },
        command: n.command.clone(),
        env: n.env.iter().map(|(k, v)| [k.clone(), v.clone()]).collect(),
        workdir: n.service.workdir.clone(),
        user: n.service.user.clone(),
        restart: match n.service.restart {
            lab_sandbox::Restart::No => "no",
            lab_sandbox::Restart::OnFailure => "on-failure",
            lab_sandbox::Restart::Always => "always",
        }
        .into(),
        stop_signal: nix::sys::signal::Signal::try_from(n.service.stop_signal)
            .map_or_else(|_| n.service.stop_signal.to_string(), |s| s.as_str().to_string()),
        stop_timeout_seconds: n.service.stop_timeout_ms as f64 / 1000.0,
        netns: n.netns.clone(),
        cgroup: n.cgroup.clone(),
        routes: n.routes.iter().map(|r| format!("{} via {}", r.destination, r.via)).collect(),
        mounts: n
            .mounts
            .iter()
            .map(|m| format!("{}:{}{}", m.source.display(), m.target, if m.read_only { ":ro" } else { "" }))
            .collect(),
        limits: Limits {
            memory_bytes: n.limits.memory,
            cpus: n.limits.millicpus.map(|m| f64::from(m) / 1000.0),
            pids: n.limits.pids,
            io_weight: n.limits.io_weight,
        },
        security: SecurityStatus {
            capabilities: sec.caps.iter().map(|c| c.to_string()).collect(),
            seccomp: match &sec.seccomp {
                SeccompChoice::Default => "default".into(),
                SeccompChoice::Unconfined => "unconfined".into(),
                SeccompChoice::Profile(p) => p.display().to_string(),
            },
            no_new_privs: sec.no_new_privs,
            userns: n.userns.is_some(),
            host_uid: n.userns.map(|m| m.host),
        },
    }
}

/// Turns a process's start time (clock ticks after boot) into a time of day.
struct Clock {
    boot: Option<SystemTime>,
    ticks: u64,
}

impl Clock {
    fn now() -> Clock {
        let btime = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse::<u64>().ok())));
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100).max(1) as u64;
        Clock { boot: btime.map(|b| SystemTime::UNIX_EPOCH + Duration::from_secs(b)), ticks }
    }

    fn started(&self, start_ticks: u64) -> Option<SystemTime> {
        Some(self.boot? + Duration::from_millis(start_ticks * 1000 / self.ticks))
    }
}

/// Resource use of every node (of `lab`, or just `node`), with CPU use measured over
/// `window`: the labs, with only those nodes, each with its `usage`.
pub fn stats(lab: Option<&Name>, node: Option<&str>, window: Duration) -> Result<Vec<LabStatus>, Error> {
    let cgroups = cgroup::detect()?;
    let states: Vec<(Name, LabState)> = match node {
        Some(node) => vec![find_node(lab, node)?],
        None => {
            let states: Vec<_> = all_states()
                .into_iter()
                .filter(|(n, _)| lab.is_none_or(|l| l == n))
                .filter_map(|(n, s)| s.map(|s| (n, s)))
                .collect();
            if let (Some(l), true) = (lab, states.is_empty()) {
                return Err(Error::LabNotUp(l.clone()));
            }
            states
        }
    };
    let mut labs: Vec<LabStatus> = states.iter().map(|(n, s)| of(&LabDir::new(n), s, Some(cgroups.as_ref()))).collect();
    for l in &mut labs {
        l.nodes.retain(|n| node.is_none_or(|want| n.name == want));
    }
    let cgroup_of =
        |lab: usize, node: &str| states[lab].1.plan.node(node).map(|n| n.cgroup.clone()).unwrap_or_default();
    let sample = |path: &str| cgroups.stats(path).unwrap_or_default();
    let before: Vec<Vec<Stats>> = labs
        .iter()
        .enumerate()
        .map(|(i, l)| l.nodes.iter().map(|n| sample(&cgroup_of(i, &n.name))).collect())
        .collect();
    let start = Instant::now();
    // CPU use is a rate: it needs a window, and nothing signals its end.
    std::thread::sleep(window);
    let elapsed = start.elapsed().as_micros().max(1) as f64;
    for (i, l) in labs.iter_mut().enumerate() {
        for (n, b) in l.nodes.iter_mut().zip(&before[i]) {
            let u = sample(&cgroup_of(i, &n.name));
            n.usage = Some(Usage {
                cpu_percent: (u.cpu_usec.saturating_sub(b.cpu_usec) as f64 * 100.0 / elapsed * 10.0).round() / 10.0,
                cpu_usec: u.cpu_usec,
                memory_bytes: u.memory,
                memory_limit_bytes: u.memory_limit,
                pids: u.pids,
                pids_limit: u.pids_limit,
            });
        }
    }
    Ok(labs)
}

/// Freezes (`lab pause`) or thaws (`lab resume`) every process of a node.
pub fn pause(lab: Option<&Name>, node: &str, frozen: bool) -> Result<(), Error> {
    let (lab, state) = find_node(lab, node)?;
    let running = state.node(node).is_some_and(|p| p.init.is_alive());
    if !running {
        return Err(Error::NotRunning(NodeRef::new(&lab, node)));
    }
    let plan = state.plan.node(node).expect("find_node checked the node");
    cgroup::detect()?.freeze(&plan.cgroup, frozen).map_err(|e| Error::node(node, e))
}
