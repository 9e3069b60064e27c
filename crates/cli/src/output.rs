//! What the user reads: tables, JSON, and errors with a hint and an exit code.

use lab::runtime::{DownReport, Health, LabStatus, NodeState, NodeStatus};
use lab::topology::Name;
use lab::Error;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

/// Colours, on a terminal only, and never with NO_COLOR set (https://no-color.org).
pub const GREEN: &str = "32";
pub const RED: &str = "31";
pub const YELLOW: &str = "33";

fn colour_on() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal())
}

fn colour_err() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// `text` in colour `code` when stdout is a terminal.
pub fn paint(text: &str, code: &str) -> String {
    if colour_on() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

fn state_colour(s: NodeState) -> &'static str {
    match s {
        NodeState::Running => GREEN,
        NodeState::Paused | NodeState::Starting | NodeState::Stopped => YELLOW,
        NodeState::Exited | NodeState::Gone => RED,
    }
}

pub fn json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("lab: error: encoding JSON: {e}"),
    }
}

/// What `lab up` waits for: on a terminal one live line, rewritten; otherwise a log line
/// per event.
pub struct Progress {
    live: bool,
    shown: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// A bar per image being pulled (on a terminal).
    pulls: std::sync::Arc<Pulls>,
}

#[derive(Default)]
struct Pulls {
    all: indicatif::MultiProgress,
    bars: std::sync::Mutex<std::collections::HashMap<String, indicatif::ProgressBar>>,
}

impl Pulls {
    /// Moves image `image`'s bar to `done` of `total` bytes, making it on first use.
    fn show(&self, image: &str, done: u64, total: u64) {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        let bar = bars.entry(image.to_string()).or_insert_with(|| {
            let bar = self.all.add(indicatif::ProgressBar::new(total));
            let style = indicatif::ProgressStyle::with_template(
                "pulling {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(image.to_string());
            bar
        });
        bar.set_length(total);
        bar.set_position(done);
        if done >= total {
            bar.finish();
        }
    }
}

impl Progress {
    pub fn new() -> Progress {
        Progress { live: std::io::stderr().is_terminal(), shown: Default::default(), pulls: Default::default() }
    }

    pub fn callback(&self) -> lab::runtime::ProgressFn {
        let (live, shown, pulls) = (self.live, self.shown.clone(), self.pulls.clone());
        std::sync::Arc::new(move |p: &lab::runtime::Progress| {
            use lab::runtime::Progress as P;
            // A pull is shown as a bar on a terminal only (as Docker's are): quiet in a log.
            if let P::Pulling { image, done, total } = p {
                if live {
                    pulls.show(image, *done, *total);
                }
                return;
            }
            let line = match p {
                P::Waiting { nodes, on } => format!("{} waiting for {}", nodes.join(", "), on.join(", ")),
                P::Checking { node, check, failures, elapsed, why } => format!(
                    "{node}: health check `{check}` not passing yet ({:.1}s, {}: {why})",
                    elapsed.as_secs_f64(),
                    count(*failures as usize, "failure")
                ),
                P::Healthy { node, elapsed } => format!("{node}: healthy after {:.1}s", elapsed.as_secs_f64()),
                P::Pulling { image, .. } => format!("pulling {image}"),
            };
            if live {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[K{line}");
                let _ = err.flush();
                shown.store(true, std::sync::atomic::Ordering::Relaxed);
            } else {
                eprintln!("lab: {line}");
            }
        })
    }

    /// Clears the live line.
    pub fn finish(&self) {
        if self.shown.load(std::sync::atomic::Ordering::Relaxed) {
            eprint!("\r\x1b[K");
        }
    }
}

/// LAB NODE STATE PID UPTIME ADDRESSES PORTS, one row per node.
pub fn nodes_table(labs: &[LabStatus]) {
    let mut rows = vec![[
        "LAB".to_string(),
        "NODE".into(),
        "IMAGE".into(),
        "STATE".into(),
        "PID".into(),
        "UPTIME".into(),
        "ADDRESSES".into(),
        "PORTS".into(),
    ]];
    for lab in labs {
        if lab.nodes.is_empty() {
            let state = if lab.complete { "-" } else { "incomplete (run lab down)" };
            rows.push([
                lab.name.clone(),
                "-".into(),
                "-".into(),
                state.into(),
                "-".into(),
                "-".into(),
                String::new(),
                String::new(),
            ]);
        }
        for n in &lab.nodes {
            rows.push([
                lab.name.clone(),
                n.name.clone(),
                n.image.as_deref().map_or("-".into(), short_image),
                node_state(n),
                n.pid.map_or("-".into(), |p| p.to_string()),
                n.uptime_seconds.map_or("-".into(), uptime),
                addresses(n),
                n.ports
                    .iter()
                    .map(|p| format!("{}->{}/{}", p.host_port, p.node_port, p.protocol))
                    .collect::<Vec<_>>()
                    .join(" "),
            ]);
        }
    }
    // The IMAGE column only when a node runs an image.
    if labs.iter().flat_map(|l| &l.nodes).any(|n| n.image.is_some()) {
        print!("{}", table(&rows));
    } else {
        let rows: Vec<[String; 7]> = rows.into_iter().map(|[a, b, _, c, d, e, f, g]| [a, b, c, d, e, f, g]).collect();
        print!("{}", table(&rows));
    }
}

/// An image's reference as people write it: `alpine:3.20` for Docker Hub's own.
pub fn short_image(full: &str) -> String {
    let short = full.strip_prefix("docker.io/").unwrap_or(full);
    short.strip_prefix("library/").unwrap_or(short).to_string()
}

/// `running (healthy)`, `exited (exit code 1)`, `running, 1 OOM kill`.
pub fn node_state(n: &NodeStatus) -> String {
    let mut s = paint(&n.state.to_string(), state_colour(n.state));
    match (&n.exit, n.health) {
        (Some(e), _) => s += &format!(" ({})", e.text),
        (None, Some(Health::Starting)) => s += " (health: starting)",
        (None, Some(h)) => {
            s += &format!(" ({})", paint(&h.to_string(), if h == Health::Healthy { GREEN } else { RED }))
        }
        (None, None) => {}
    }
    if n.oom_kills > 0 {
        s += &format!(", {}", count(n.oom_kills as usize, "OOM kill"));
    }
    s
}

/// `eth0=10.42.0.2/24 eth1=fd00::2/64 lo=10.255.0.1/32`.
fn addresses(n: &NodeStatus) -> String {
    n.interfaces
        .iter()
        .flat_map(|i| i.addresses.iter().map(move |a| format!("{}={}/{}", i.name, a.address, a.prefix)))
        .chain(n.loopback.iter().map(|a| format!("lo={}/{}", a.address, a.prefix)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `42s`, `5m`, `3h`, `2d`, as Docker's "Up 5 minutes", short.
fn uptime(secs: f64) -> String {
    let s = secs as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// `lab image ls`.
pub fn images_table(images: &[lab::runtime::ImageRow]) {
    let mut rows = vec![["IMAGE", "DIGEST", "SIZE", "LABS"].map(String::from)];
    for i in images {
        let digest = i.digest.strip_prefix("sha256:").map(|h| &h[..12.min(h.len())]).unwrap_or(&i.digest);
        let labs = if i.labs.is_empty() { "-".to_string() } else { i.labs.join(",") };
        rows.push([i.short.clone(), digest.to_string(), format!("{:.1}MiB", i.size as f64 / (1 << 20) as f64), labs]);
    }
    print!("{}", table(&rows));
}

fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(visible_width(cell));
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line += cell;
            if i + 1 < N {
                line += &" ".repeat(widths[i] - visible_width(cell) + 2);
            }
        }
        out += line.trim_end();
        out.push('\n');
    }
    out
}

/// Characters a terminal shows: colour escapes take no room.
fn visible_width(s: &str) -> usize {
    let mut width = 0;
    let mut in_escape = false;
    for c in s.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => width += 1,
        }
    }
    width
}

/// CHECK RESULT TIME DETAIL, one row per check.
pub fn checks_table(results: &[lab::runtime::CheckResult]) {
    let mut rows = vec![["CHECK".to_string(), "RESULT".into(), "TIME".into(), "DETAIL".into()]];
    for r in results {
        let result = if r.passed { paint("pass", GREEN) } else { paint("FAIL", RED) };
        rows.push([r.name.clone(), result, format!("{:.1}s", r.seconds), r.detail.clone()]);
    }
    print!("{}", table(&rows));
}

/// LAB NODE CPU% MEMORY / LIMIT PIDS / LIMIT.
pub fn stats_table(labs: &[LabStatus]) {
    let mib = |b: u64| format!("{:.1}MiB", b as f64 / (1 << 20) as f64);
    let limit = |l: Option<u64>, f: &dyn Fn(u64) -> String| l.map_or("-".to_string(), f);
    let mut rows =
        vec![["LAB".to_string(), "NODE".into(), "CPU %".into(), "MEMORY / LIMIT".into(), "PIDS / LIMIT".into()]];
    for l in labs {
        for n in &l.nodes {
            let Some(u) = &n.usage else { continue };
            rows.push([
                l.name.clone(),
                n.name.clone(),
                format!("{:.1}", u.cpu_percent),
                format!("{} / {}", mib(u.memory_bytes), limit(u.memory_limit_bytes, &mib)),
                format!("{} / {}", u.pids, limit(u.pids_limit, &|n| n.to_string())),
            ]);
        }
    }
    print!("{}", table(&rows));
}

/// `lab inspect`: a lab and its nodes, section by section.
pub fn inspect(lab: &LabStatus) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "lab {}", lab.name);
    let _ = writeln!(o, "  topology:  {}", lab.topology.display());
    if let Some(c) = &lab.created {
        let _ = writeln!(o, "  created:   {c}");
    }
    for n in &lab.networks {
        let behind = n.gateway_netns.as_ref().map(|ns| format!(" in network namespace {ns}")).unwrap_or_default();
        let nat = if n.nat { format!(", NAT via {}{behind}", n.gateways.join(" ")) } else { String::new() };
        let v6 = n.subnet6.as_ref().map(|s| format!(" {s}")).unwrap_or_default();
        let _ = writeln!(o, "  network {}: {}{v6}, bridge {}{nat}", n.name, n.subnet, n.bridge);
    }
    for l in &lab.links {
        let _ = writeln!(o, "  link {} <-> {}", l.endpoints[0], l.endpoints[1]);
    }
    for [a, b] in &lab.partitions {
        let _ = writeln!(o, "  partition: {} | {}", a.join(" "), b.join(" "));
    }
    for n in &lab.nodes {
        let _ = writeln!(o);
        let _ = writeln!(o, "node {}/{}: {}", lab.name, n.name, node_state(n));
        if let (Some(pid), Some(up)) = (n.pid, n.uptime_seconds) {
            let since = n.started.as_deref().unwrap_or("?");
            let _ = writeln!(o, "  pid {pid}, up {} (since {since})", uptime(up));
        }
        if let Some(d) = &n.details {
            let _ = writeln!(o, "  rootfs:    {}", d.rootfs);
            let cmd = d.command.as_ref().map_or("(none: idle)".to_string(), |c| c.join(" "));
            let _ = writeln!(o, "  command:   {cmd}");
            let _ =
                writeln!(o, "  stop:      {} then {}s, restart {}", d.stop_signal, d.stop_timeout_seconds, d.restart);
        }
        for i in &n.interfaces {
            let addrs: Vec<String> = i.addresses.iter().map(|a| format!("{}/{}", a.address, a.prefix)).collect();
            let place = match (&i.network, &i.peer) {
                (Some(net), _) => format!("on {net} (bridge {})", i.bridge.as_deref().unwrap_or("?")),
                (None, Some(peer)) => format!("link to {peer}"),
                (None, None) => String::new(),
            };
            let mut faults = Vec::new();
            if !i.up {
                faults.push("DOWN (lab link)".to_string());
            }
            if let Some(imp) = &i.impairment {
                faults.push(format!("impaired: {}", imp.text));
            }
            let faults = if faults.is_empty() { String::new() } else { format!("  [{}]", faults.join("; ")) };
            let _ = writeln!(
                o,
                "  {} {} {} {place}, host end {}{faults}",
                i.name,
                i.mac.as_deref().unwrap_or("-"),
                if addrs.is_empty() { "-".to_string() } else { addrs.join(" ") },
                i.host_end
            );
        }
        if !n.loopback.is_empty() {
            let lo: Vec<String> = n.loopback.iter().map(|a| format!("{}/{}", a.address, a.prefix)).collect();
            let _ = writeln!(o, "  lo {}", lo.join(" "));
        }
        for p in &n.ports {
            let _ = writeln!(o, "  port {}->{}/{} ({})", p.host_port, p.node_port, p.protocol, p.address);
        }
        if let Some(d) = &n.details {
            let l = &d.limits;
            let u = n.usage.as_ref();
            let mib = |b: u64| format!("{:.1}MiB", b as f64 / (1 << 20) as f64);
            let memory = l.memory_bytes.map_or("no limit".to_string(), mib);
            let used_memory = u.map(|u| format!(" (uses {})", mib(u.memory_bytes))).unwrap_or_default();
            let pids = l.pids.map_or("no limit".to_string(), |p| p.to_string());
            let used_pids = u.map(|u| format!(" (uses {})", u.pids)).unwrap_or_default();
            let cpus = l.cpus.map_or("no limit".to_string(), |c| c.to_string());
            let used_cpu = u.map(|u| format!(" (uses {:.1}%)", u.cpu_percent)).unwrap_or_default();
            let io = l.io_weight.map_or("default".to_string(), |w| w.to_string());
            let _ = writeln!(o, "  memory:    {memory}{used_memory}");
            let _ = writeln!(o, "  cpus:      {cpus}{used_cpu}");
            let _ = writeln!(o, "  pids:      {pids}{used_pids}");
            let _ = writeln!(o, "  io weight: {io}");
            let s = &d.security;
            let userns = match s.host_uid {
                Some(uid) => format!("own user namespace (root is host uid {uid})"),
                None => "the host's user namespace".to_string(),
            };
            let _ = writeln!(o, "  caps:      {}", s.capabilities.join(" "));
            let nnp = if s.no_new_privs { ", no_new_privs" } else { "" };
            let _ = writeln!(o, "  seccomp:   {}{nnp}; {userns}", s.seccomp);
            for r in &d.routes {
                let _ = writeln!(o, "  route:     {r}");
            }
            for m in &d.mounts {
                let _ = writeln!(o, "  mount:     {m}");
            }
            let _ = writeln!(o, "  netns:     {} (ip netns exec {} ...)", d.netns, d.netns);
            let _ = writeln!(o, "  cgroup:    {}", d.cgroup);
        }
        let _ = writeln!(o, "  log:       {}", n.log.display());
    }
    o
}

/// "1 node", "3 nodes", "2 processes".
pub fn count(n: usize, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        _ if what.ends_with('s') => format!("{n} {what}es"),
        _ if what.ends_with('y') => format!("{n} {}ies", &what[..what.len() - 1]),
        _ => format!("{n} {what}s"),
    }
}

pub fn down_report(name: &Name, r: &DownReport) {
    if r.stopped_up && r.nodes.is_empty() && r.processes == 0 {
        eprintln!("lab {name} is down: its `lab up` was stopped and removed what it had made");
    } else if r.found_anything() {
        eprintln!(
            "lab {name} is down: removed {}, {}, {}, {}",
            count(r.nodes.len(), "node"),
            count(r.processes, "process"),
            count(r.interfaces, "interface"),
            count(r.nft_tables, "nft table")
        );
    } else {
        eprintln!("lab {name}: nothing to remove");
    }
}

/// The command that failed, for the hint and the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Up,
    Exec,
    Other,
}

/// Exit code of `lab exec` when lab itself fails (the command's own codes pass through).
pub const EXEC_FAILED: u8 = 125;

/// Prints an error and what to do about it; returns the exit code: 2 for a bad topology file
/// or command line, 130 for `up` interrupted by Ctrl-C, 125 when `lab exec` could not run the
/// command, 1 otherwise.
pub fn report(e: &Error, command: Command) -> ExitCode {
    if let Error::Topology(t) = e {
        eprintln!("{t}");
        return ExitCode::from(2);
    }
    let (error, hint_word) =
        if colour_err() { ("\x1b[31merror\x1b[0m", "\x1b[33mhint\x1b[0m") } else { ("error", "hint") };
    eprintln!("lab: {error}: {e}");
    if let Some(hint) = e.hint() {
        eprintln!("  {hint_word}: {hint}");
    }
    ExitCode::from(match e.root() {
        Error::Usage(_) => 2,
        _ if command == Command::Exec => EXEC_FAILED,
        Error::Interrupted => 130,
        _ => 1,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn plurals() {
        assert_eq!(super::count(1, "node"), "1 node");
        assert_eq!(super::count(0, "network"), "0 networks");
        assert_eq!(super::count(2, "process"), "2 processes");
        assert_eq!(super::count(3, "entry"), "3 entries");
    }

    #[test]
    fn table_aligns_columns_and_trims() {
        let rows = [["A".to_string(), "BB".into(), "C".into()], ["aaa".to_string(), "b".into(), "".into()]];
        assert_eq!(super::table(&rows), "A    BB  C\naaa  b\n");
    }
}
