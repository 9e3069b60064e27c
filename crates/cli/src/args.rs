//! The command line: every subcommand and its arguments, as clap parses them.

use clap::{Args, Parser, Subcommand};
use lab::units;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "lab", version, about = "Networks of isolated Linux nodes from one TOML file")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Create every node, link, address and NAT rule of a topology file.
    Up(UpArgs),
    /// Run a command inside a node.
    Exec(ExecArgs),
    /// Copy files between a running node and the host: `lab cp r1:/etc/frr ./r1`, `lab cp
    /// frr.conf r1:/etc/frr/`.
    Cp(CpArgs),
    /// List labs and their nodes.
    Ps(PsArgs),
    /// Everything about a lab or a node: where it came from, its state, interfaces, ports,
    /// limits and use, security, and the faults in force.
    Inspect(InspectArgs),
    /// Show CPU, memory and process use of nodes.
    Stats(StatsArgs),
    /// Freeze every process of a node.
    Pause(NodeArgs),
    /// Thaw a paused node.
    Resume(NodeArgs),
    /// Remove everything a lab made. Safe to repeat; works after a crash.
    Down(DownArgs),
    /// Shape what an interface sends: rate (tbf), delay, jitter, loss, corruption,
    /// duplication (netem).
    Impair(ImpairArgs),
    /// Take an interface of a node down, or bring it back up.
    Link(LinkArgs),
    /// Drop all traffic between two sets of nodes, both ways, on every network and link.
    Partition(PartitionArgs),
    /// End every partition of a lab.
    Heal(HealArgs),
    /// Stop a node: its command gets its stop signal (SIGTERM) and a grace period, then its
    /// processes and interfaces go; its addresses stay reserved.
    Stop(StopArgs),
    /// Start a stopped node again, with the same addresses, links and faults, and the files
    /// it had (its writable layer is kept, as `docker start` keeps a container's).
    Start(StartArgs),
    /// Stop a node (gracefully, as `stop`) and start it again, keeping its files.
    Restart(StopArgs),
    /// Stop a node (if it runs) and start it again with a new writable layer: its files as
    /// at `lab up`.
    Recreate(StopArgs),
    /// Draw a lab (or a topology file) as Mermaid, Graphviz DOT or SVG.
    Graph(GraphArgs),
    /// Capture an interface's packets as pcap (to a file, or to a pipe into Wireshark).
    Capture(CaptureArgs),
    /// Show a node's output (or all of a lab's nodes', interleaved).
    Logs(LogsArgs),
    /// Run a lab's checks (its [[checks]], or a checks file's): ping, route, a command's
    /// output, a process; exit 0 only when all pass.
    Check(CheckArgs),
    /// Manage the image store: import, list, remove, prune.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Print a shell completion script: `lab completion bash > /etc/bash_completion.d/lab`.
    Completion(CompletionArgs),
    /// Print lab's man page (roff): `lab man | man -l -`.
    Man,
    /// Print lab's version, the version of its JSON, and what this machine gives it.
    Version(VersionArgs),
}

#[derive(Args)]
pub(crate) struct CheckArgs {
    /// The lab [default: the only lab that is up].
    pub(crate) lab: Option<String>,
    /// Run the [[checks]] of this file instead of the topology's.
    #[arg(short, long, value_name = "FILE")]
    pub(crate) file: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also write the results as JUnit XML, for CI.
    #[arg(long, value_name = "FILE")]
    pub(crate) junit: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct CompletionArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub(crate) shell: clap_complete::Shell,
}

#[derive(Args)]
pub(crate) struct VersionArgs {
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct LogsArgs {
    /// A node (NODE or LAB/NODE), or a lab: all its nodes, interleaved, each line with its
    /// node in front [default: the only lab that is up].
    pub(crate) target: Option<String>,
    /// Keep printing new output until the node (every node) ends.
    #[arg(short, long)]
    pub(crate) follow: bool,
    /// Only the last N lines (of each node).
    #[arg(short = 'n', long, value_name = "N")]
    pub(crate) tail: Option<usize>,
    /// Only lines since this time: 10m, 1h (back from now), or 2026-11-23T10:45:00Z.
    #[arg(long, value_name = "WHEN")]
    pub(crate) since: Option<String>,
    /// Show each line's time (UTC, RFC 3339).
    #[arg(short, long)]
    pub(crate) timestamps: bool,
    /// The lab, when several have a node of this name.
    #[arg(short, long)]
    pub(crate) lab: Option<String>,
}

/// `NODE:INTERFACE`, e.g. `node1:eth0`.
#[derive(Clone)]
pub(crate) struct NodeIf {
    pub(crate) node: String,
    pub(crate) ifname: String,
}

pub(crate) fn parse_node_if(s: &str) -> Result<NodeIf, String> {
    match s.split_once(':') {
        Some((node, ifname)) if !node.is_empty() && !ifname.is_empty() => {
            Ok(NodeIf { node: node.to_string(), ifname: ifname.to_string() })
        }
        _ => Err(format!("{s:?}: write NODE:INTERFACE, e.g. node1:eth0 or three-node/node1:eth0")),
    }
}

#[derive(Args)]
pub(crate) struct ImpairArgs {
    /// The interface, as NODE:INTERFACE (or LAB/NODE:INTERFACE).
    #[arg(value_parser = parse_node_if)]
    pub(crate) target: NodeIf,
    /// Rate limit: 10mbit, 500kbit, 1gbit (tc units; kbps/mbps are bytes per second).
    #[arg(long, value_parser = units::parse_rate)]
    pub(crate) rate: Option<u64>,
    /// Added delay: 50ms, 1s, 200us.
    #[arg(long, value_parser = units::parse_time)]
    pub(crate) delay: Option<u64>,
    /// Delay variation, with --delay: 5ms.
    #[arg(long, value_parser = units::parse_time, requires = "delay")]
    pub(crate) jitter: Option<u64>,
    /// Packets dropped: 1%, 0.1%.
    #[arg(long, value_parser = units::parse_percent)]
    pub(crate) loss: Option<u32>,
    /// Packets with a flipped bit: 0.1%.
    #[arg(long, value_parser = units::parse_percent)]
    pub(crate) corrupt: Option<u32>,
    /// Packets sent twice: 0.1%.
    #[arg(long, value_parser = units::parse_percent)]
    pub(crate) duplicate: Option<u32>,
    /// Remove every impairment of the interface.
    #[arg(long, conflicts_with_all = ["rate", "delay", "jitter", "loss", "corrupt", "duplicate"])]
    pub(crate) clear: bool,
    /// The lab, when several have a node of this name.
    #[arg(short, long)]
    pub(crate) lab: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum LinkState {
    Up,
    Down,
}

#[derive(Args)]
pub(crate) struct LinkArgs {
    /// The interface, as NODE:INTERFACE (or LAB/NODE:INTERFACE).
    #[arg(value_parser = parse_node_if)]
    pub(crate) target: NodeIf,
    /// up or down.
    pub(crate) state: LinkState,
    /// The lab, when several have a node of this name.
    #[arg(short, long)]
    pub(crate) lab: Option<String>,
}

#[derive(Args)]
pub(crate) struct PartitionArgs {
    /// Nodes on one side (NODE or LAB/NODE).
    #[arg(required = true)]
    pub(crate) nodes: Vec<String>,
    /// Nodes on the other side.
    #[arg(long, required = true, num_args = 1..)]
    pub(crate) from: Vec<String>,
    /// The lab, when several have nodes of these names.
    #[arg(short, long)]
    pub(crate) lab: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum ImageCommand {
    /// Pull an image from its registry (`alpine:3.20`, `localhost:5000/app:dev`).
    Pull(ImagePullArgs),
    /// Import a `docker save` tarball or an OCI image layout directory (what `skopeo copy
    /// ... oci:DIR` and `podman save --format oci-dir` write).
    Import(ImageImportArgs),
    /// List the store's images: name, digest, size, which labs run them.
    Ls(ImageLsArgs),
    /// Remove images (refused while a lab that is up runs on one).
    Rm(ImageRmArgs),
    /// Remove what no image needs; with --all, every image no lab that is up runs on.
    Prune(ImagePruneArgs),
}

#[derive(Args)]
pub(crate) struct ImagePullArgs {
    /// The image, as `image =` names it.
    pub(crate) image: String,
}

#[derive(Args)]
pub(crate) struct ImageImportArgs {
    /// The tarball or directory.
    pub(crate) source: PathBuf,
    /// Name the image (e.g. `myapp:dev`) instead of as the source names it.
    #[arg(long)]
    pub(crate) name: Option<String>,
}

#[derive(Args)]
pub(crate) struct ImageLsArgs {
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct ImageRmArgs {
    /// The images, as `image =` names them (`alpine:3.20`).
    #[arg(required = true)]
    pub(crate) images: Vec<String>,
}

#[derive(Args)]
pub(crate) struct ImagePruneArgs {
    /// Also remove every image no lab that is up runs on.
    #[arg(short, long)]
    pub(crate) all: bool,
}

#[derive(Args)]
pub(crate) struct HealArgs {
    /// The lab (needed when several are up).
    pub(crate) lab: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum GraphFormat {
    Mermaid,
    Dot,
    Svg,
}

#[derive(Args)]
pub(crate) struct GraphArgs {
    /// A lab that is up, or a topology file.
    pub(crate) lab: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "mermaid")]
    pub(crate) format: GraphFormat,
}

#[derive(Args)]
pub(crate) struct CaptureArgs {
    /// The interface, as NODE:INTERFACE (or LAB/NODE:INTERFACE).
    #[arg(value_parser = parse_node_if)]
    pub(crate) target: NodeIf,
    /// Where to write the pcap stream; - is stdout (e.g. `| wireshark -k -i -`).
    #[arg(short = 'w', long = "write", value_name = "FILE", default_value = "-")]
    pub(crate) write: PathBuf,
    /// Stop after this many packets.
    #[arg(short = 'c', long = "count")]
    pub(crate) count: Option<u64>,
    /// Only packets this filter accepts, in tcpdump's language: 'icmp or arp', 'tcp port 80'.
    #[arg(short = 'f', long = "filter", value_name = "EXPRESSION")]
    pub(crate) filter: Option<String>,
    /// The lab, when several have a node of this name.
    #[arg(short, long)]
    pub(crate) lab: Option<String>,
}

#[derive(Args)]
pub(crate) struct StatsArgs {
    /// Only this node.
    pub(crate) node: Option<String>,
    /// Only this lab (or the lab of NODE, when several have one of that name).
    #[arg(short, long)]
    pub(crate) lab: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct NodeArgs {
    /// The node: NODE, or LAB/NODE when several labs have one of that name.
    pub(crate) node: String,
    /// The lab, when several have a node of this name.
    #[arg(short, long)]
    pub(crate) lab: Option<String>,
}

#[derive(Args)]
pub(crate) struct StartArgs {
    #[command(flatten)]
    pub(crate) target: NodeArgs,
    /// Throw away what the node wrote: start it with a new writable layer, as at `lab up`.
    #[arg(long)]
    pub(crate) fresh: bool,
}

#[derive(Args)]
pub(crate) struct StopArgs {
    #[command(flatten)]
    pub(crate) target: NodeArgs,
    /// Seconds (or a duration: 500ms) the command has after its stop signal before it is
    /// killed [default: the node's stop_timeout, 10s].
    #[arg(short, long, value_name = "SECONDS", value_parser = parse_timeout)]
    pub(crate) timeout: Option<Duration>,
}

/// `10` (seconds, as Docker's `-t`) or a duration: `500ms`, `1m`.
pub(crate) fn parse_timeout(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => units::parse_time(s).map(Duration::from_micros),
    }
}

#[derive(Args)]
pub(crate) struct UpArgs {
    /// The topology file, or a directory holding lab.toml [default: ./lab.toml, or the one
    /// *.lab.toml here].
    pub(crate) file: Option<PathBuf>,
    /// Use this lab name instead of the file's `name`.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Print the lab as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Return only once every node with a health check is healthy (or fail naming the one
    /// that is not, and why).
    #[arg(long)]
    pub(crate) wait: bool,
}

#[derive(Args)]
pub(crate) struct ExecArgs {
    /// Keep stdin open (pass it to the command).
    #[arg(short, long)]
    pub(crate) interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub(crate) tty: bool,
    /// Set an environment variable (repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub(crate) env: Vec<String>,
    /// Working directory inside the node.
    #[arg(short, long, value_name = "DIR")]
    pub(crate) workdir: Option<String>,
    /// Run as this user: name or uid, optionally :group or :gid [default: the node's user].
    #[arg(short, long, value_name = "USER[:GROUP]")]
    pub(crate) user: Option<String>,
    /// The lab, when several have a node of this name.
    #[arg(short, long)]
    pub(crate) lab: Option<String>,
    /// Kill the command (and its process group) after this long, then exit 124: seconds, or
    /// a duration (500ms, 1m).
    #[arg(long, value_name = "SECONDS", value_parser = parse_timeout)]
    pub(crate) timeout: Option<Duration>,
    /// Also write how it ended to FILE, as JSON: {"code", "signal", "timed_out"}, or
    /// {"error"} when lab could not run the command (for programs that drive lab exec).
    #[arg(long, value_name = "FILE")]
    pub(crate) status_file: Option<PathBuf>,
    /// The node: NODE, or LAB/NODE when several labs have one of that name.
    pub(crate) node: String,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub(crate) command: Vec<String>,
}

#[derive(Args)]
pub(crate) struct CpArgs {
    /// NODE:PATH (or LAB/NODE:PATH), or a host path.
    #[arg(value_parser = lab::runtime::parse_place)]
    pub(crate) from: lab::runtime::Place,
    /// NODE:PATH (or LAB/NODE:PATH), or a host path; an existing directory receives the
    /// source under its own name.
    #[arg(value_parser = lab::runtime::parse_place)]
    pub(crate) to: lab::runtime::Place,
    /// The lab, when several have a node of that name.
    #[arg(short, long)]
    pub(crate) lab: Option<String>,
}

#[derive(Args)]
pub(crate) struct InspectArgs {
    /// The lab, or LAB/NODE [default: the only lab that is up].
    pub(crate) lab: Option<String>,
    /// Only this node.
    pub(crate) node: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct PsArgs {
    /// Only this lab.
    pub(crate) lab: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct DownArgs {
    /// A lab's name, or the topology file (or directory) it was brought up from
    /// [default: the file `lab up` would find here].
    #[arg(conflicts_with = "all")]
    pub(crate) lab: Option<String>,
    /// The lab's name, when it was brought up with `lab up --name`.
    #[arg(long, conflicts_with = "all")]
    pub(crate) name: Option<String>,
    /// Seconds (or a duration) each node's command has after its stop signal before it is
    /// killed [default: each node's stop_timeout, 10s].
    #[arg(short, long, value_name = "SECONDS", value_parser = parse_timeout)]
    pub(crate) timeout: Option<Duration>,
    /// Take down every lab on this machine.
    #[arg(long)]
    pub(crate) all: bool,
    /// Take down the labs whose owner is gone: programs that brought them up through the
    /// Rust API and were killed (or ended) before taking them down.
    #[arg(long, conflicts_with_all = ["all", "lab", "name", "keep_volumes"])]
    pub(crate) orphans: bool,
    /// Keep the nodes' volumes: the next `lab up` of the lab finds them as they were.
    #[arg(long)]
    pub(crate) keep_volumes: bool,
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::Parser;

    /// Words of a shell command line: quotes group, `#` outside them starts a comment.
    fn words(line: &str) -> Vec<String> {
        let (mut out, mut word, mut quote, mut any) = (Vec::new(), String::new(), None, false);
        for c in line.chars() {
            match (quote, c) {
                (None, '\'' | '"') => (quote, any) = (Some(c), true),
                (Some(q), c) if c == q => quote = None,
                (None, '#') => break,
                (None, c) if c.is_whitespace() => {
                    if any {
                        out.push(std::mem::take(&mut word));
                        any = false;
                    }
                }
                (_, c) => (word, any) = (word + &c.to_string(), true),
            }
        }
        if any {
            out.push(word);
        }
        out
    }

    /// Every `lab ...` command line in the README's examples parses as the binary parses it:
    /// the README cannot show an option or a command that does not exist.
    #[test]
    fn every_command_line_in_the_readme_parses() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).expect("README");
        // Code blocks that are shell (not TOML, not output alone); in one that shows a prompt,
        // only the prompted lines are commands (the rest is what they print).
        let mut blocks: Vec<Vec<&str>> = Vec::new();
        let mut current: Option<Vec<&str>> = None;
        for line in readme.lines() {
            if line.starts_with("```") {
                match current.take() {
                    Some(b) => blocks.push(b),
                    None if line == "```" || line == "```sh" => current = Some(Vec::new()),
                    None => current = Some(vec!["# not shell"]),
                }
                continue;
            }
            if let Some(b) = current.as_mut() {
                b.push(line);
            }
        }
        let mut checked = 0;
        for block in blocks.iter().filter(|b| b.first() != Some(&"# not shell")) {
            let prompted = block.iter().any(|l| l.starts_with("$ "));
            for line in block.iter().filter(|l| !prompted || l.starts_with("$ ")) {
                let line = line.trim().trim_start_matches("$ ");
                // Each command of a pipeline or list that runs lab.
                for part in line.split(" | ").flat_map(|p| p.split(" && ")) {
                    let w = words(part);
                    let Some(at) = w.iter().position(|x| x == "lab" || x.ends_with("/lab")) else { continue };
                    let argv: Vec<String> = w[at..].iter().take_while(|x| !x.starts_with('>')).cloned().collect();
                    if let Err(e) = Cli::try_parse_from(&argv) {
                        panic!("README: `{part}` does not parse:\n{e}");
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked >= 30, "only {checked} command lines found in the README");
    }

    #[test]
    fn words_split_as_a_shell_would() {
        assert_eq!(words("lab exec a sh -c 'echo $X; pwd'  # note"), ["lab", "exec", "a", "sh", "-c", "echo $X; pwd"]);
        assert_eq!(
            words("lab capture r1:eth1 -f \"tcp port 179\""),
            ["lab", "capture", "r1:eth1", "-f", "tcp port 179"]
        );
    }
}
