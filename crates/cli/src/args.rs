//! The command line: every subcommand and its arguments, as clap parses them.

use clap::{Args, Parser, Subcommand};
use lab::units;
use std::path::PathBuf;

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
    /// List labs and their nodes.
    Ps(PsArgs),
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
    /// Stop a node: its processes and interfaces go, its addresses stay reserved.
    Stop(NodeArgs),
    /// Start a stopped node again, with the same addresses, links and faults.
    Start(NodeArgs),
    /// Draw a lab (or a topology file) as Mermaid, Graphviz DOT or SVG.
    Graph(GraphArgs),
    /// Capture an interface's packets as pcap (to a file, or to a pipe into Wireshark).
    Capture(CaptureArgs),
    /// Show a node command's output, with timestamps.
    Logs(LogsArgs),
}

#[derive(Args)]
pub(crate) struct LogsArgs {
    /// The node.
    pub(crate) node: String,
    /// Keep printing new output until the node ends.
    #[arg(short, long)]
    pub(crate) follow: bool,
    /// Only the last N lines.
    #[arg(short = 'n', long, value_name = "N")]
    pub(crate) tail: Option<usize>,
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
        _ => Err(format!("{s:?}: write NODE:INTERFACE, e.g. node1:eth0")),
    }
}

#[derive(Args)]
pub(crate) struct ImpairArgs {
    /// The interface, as NODE:INTERFACE.
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
    /// The interface, as NODE:INTERFACE.
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
    /// Nodes on one side.
    #[arg(required = true)]
    pub(crate) nodes: Vec<String>,
    /// Nodes on the other side.
    #[arg(long, required = true, num_args = 1..)]
    pub(crate) from: Vec<String>,
    /// The lab, when several have nodes of these names.
    #[arg(short, long)]
    pub(crate) lab: Option<String>,
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
    /// The interface, as NODE:INTERFACE.
    #[arg(value_parser = parse_node_if)]
    pub(crate) target: NodeIf,
    /// Where to write the pcap stream; - is stdout (e.g. `| wireshark -k -i -`).
    #[arg(short = 'w', long = "write", value_name = "FILE", default_value = "-")]
    pub(crate) write: PathBuf,
    /// Stop after this many packets.
    #[arg(short = 'c', long = "count")]
    pub(crate) count: Option<u64>,
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
    /// The node.
    pub(crate) node: String,
    /// The lab, when several have a node of this name.
    #[arg(short, long)]
    pub(crate) lab: Option<String>,
}

#[derive(Args)]
pub(crate) struct UpArgs {
    /// The topology file.
    pub(crate) file: PathBuf,
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
    /// The lab, when several have a node of this name.
    #[arg(short, long)]
    pub(crate) lab: Option<String>,
    /// The node.
    pub(crate) node: String,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub(crate) command: Vec<String>,
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
    /// A lab name or its topology file.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub(crate) lab: Option<String>,
    /// Take down every lab on this machine.
    #[arg(long)]
    pub(crate) all: bool,
}
