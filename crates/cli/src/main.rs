//! The `lab` command.

mod output;

use clap::{Args, Parser, Subcommand};
use lab::runtime::{self, ExecRequest, Options};
use lab::topology::Name;
use lab::{Error, Topology};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(name = "lab", version, about = "Networks of isolated Linux nodes from one TOML file")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
}

#[derive(Args)]
struct StatsArgs {
    /// Only this node.
    node: Option<String>,
    /// Only this lab (or the lab of NODE, when several have one of that name).
    #[arg(short, long)]
    lab: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct NodeArgs {
    /// The node.
    node: String,
    /// The lab, when several have a node of this name.
    #[arg(short, long)]
    lab: Option<String>,
}

#[derive(Args)]
struct UpArgs {
    /// The topology file.
    file: PathBuf,
    /// Use this lab name instead of the file's `name`.
    #[arg(long)]
    name: Option<String>,
    /// Print the lab as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ExecArgs {
    /// Keep stdin open (pass it to the command).
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    tty: bool,
    /// Set an environment variable (repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Working directory inside the node.
    #[arg(short, long, value_name = "DIR")]
    workdir: Option<String>,
    /// The lab, when several have a node of this name.
    #[arg(short, long)]
    lab: Option<String>,
    /// The node.
    node: String,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Args)]
struct PsArgs {
    /// Only this lab.
    lab: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DownArgs {
    /// A lab name or its topology file.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    lab: Option<String>,
    /// Take down every lab on this machine.
    #[arg(long)]
    all: bool,
}

fn main() -> ExitCode {
    // A node's monitor and init are this binary too; they start before any argument parsing.
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("__monitor") if args.len() == 3 => lab_sandbox::monitor::main(Path::new(&args[2])),
        Some("__init") => lab_sandbox::init::main(),
        Some("__join") => lab_sandbox::join::main(),
        _ => {}
    }
    let cli = Cli::parse();
    // LAB_LOG=debug (or any tracing filter) shows what lab does, step by step.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("LAB_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let (which, result) = match cli.command {
        Command::Up(a) => (output::Command::Up, run_async(up(a))),
        Command::Exec(a) => (output::Command::Exec, exec(a)),
        Command::Ps(a) => (output::Command::Other, ps(a)),
        Command::Stats(a) => (output::Command::Other, stats(a)),
        Command::Pause(a) => (output::Command::Other, pause(a, true)),
        Command::Resume(a) => (output::Command::Other, pause(a, false)),
        Command::Down(a) => (output::Command::Other, run_async(down(a))),
    };
    match result {
        Ok(code) => code,
        Err(e) => output::report(&e, which),
    }
}

/// Only the commands that talk netlink get an async runtime; `exec` must stay
/// single-threaded (it forks and joins namespaces).
fn run_async<F: std::future::Future<Output = Result<ExitCode, Error>>>(f: F) -> Result<ExitCode, Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Io("starting the async runtime".into(), e))?;
    rt.block_on(f)
}

async fn up(a: UpArgs) -> Result<ExitCode, Error> {
    let started = Instant::now();
    let mut topology = Topology::load(&a.file)?;
    if let Some(name) = &a.name {
        topology.name = Name::parse(name).map_err(|m| Error::Failed(format!("--name: {m}")))?;
    }
    let state = runtime::up(&topology, &Options::default()).await?;
    let status = runtime::list().into_iter().find(|l| l.name == state.plan.lab.as_str());
    match (a.json, status) {
        (true, Some(s)) => output::json(&s),
        (false, Some(s)) => {
            eprintln!(
                "lab {} is up: {} nodes, {} networks, {} links in {:.2}s",
                s.name,
                s.nodes.len(),
                state.plan.networks.len(),
                state.plan.links.len(),
                started.elapsed().as_secs_f64()
            );
            output::nodes_table(&[s]);
        }
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}

async fn down(a: DownArgs) -> Result<ExitCode, Error> {
    if a.all {
        for (name, report) in runtime::down_all().await? {
            output::down_report(&name, &report);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let name = runtime::lab_name_from_arg(a.lab.as_deref().unwrap_or_default())?;
    let report = runtime::down(&name).await?;
    output::down_report(&name, &report);
    Ok(ExitCode::SUCCESS)
}

fn ps(a: PsArgs) -> Result<ExitCode, Error> {
    let labs: Vec<_> = runtime::list().into_iter().filter(|l| a.lab.as_ref().is_none_or(|n| &l.name == n)).collect();
    if let (Some(name), true) = (&a.lab, labs.is_empty()) {
        return Err(Error::NotFound(format!("lab {name} is not up")));
    }
    if a.json {
        output::json(&labs);
    } else {
        output::nodes_table(&labs);
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_lab(lab: Option<&str>) -> Result<Option<Name>, Error> {
    lab.map(Name::parse).transpose().map_err(|m| Error::Failed(format!("--lab: {m}")))
}

fn stats(a: StatsArgs) -> Result<ExitCode, Error> {
    let lab = parse_lab(a.lab.as_deref())?;
    let stats = runtime::stats(lab.as_ref(), a.node.as_deref(), std::time::Duration::from_millis(500))?;
    if a.json {
        output::json(&stats);
    } else {
        output::stats_table(&stats);
    }
    Ok(ExitCode::SUCCESS)
}

fn pause(a: NodeArgs, frozen: bool) -> Result<ExitCode, Error> {
    let lab = parse_lab(a.lab.as_deref())?;
    runtime::pause(lab.as_ref(), &a.node, frozen)?;
    eprintln!("node {} is {}", a.node, if frozen { "paused" } else { "running again" });
    Ok(ExitCode::SUCCESS)
}

fn exec(a: ExecArgs) -> Result<ExitCode, Error> {
    let mut env = Vec::new();
    for kv in &a.env {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => env.push((k.to_string(), v.to_string())),
            // `-e KEY` takes KEY from our own environment, as Docker does.
            None if !kv.is_empty() => {
                if let Ok(v) = std::env::var(kv) {
                    env.push((kv.clone(), v));
                }
            }
            _ => return Err(Error::Failed(format!("-e {kv:?}: expected KEY=VALUE"))),
        }
    }
    let lab = parse_lab(a.lab.as_deref())?;
    if a.tty && a.interactive && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(Error::Failed("the input device is not a TTY: drop -t, or run from a terminal".into()));
    }
    let req = ExecRequest {
        lab,
        node: a.node,
        argv: a.command,
        env,
        workdir: a.workdir,
        tty: a.tty,
        interactive: a.interactive,
    };
    let code = runtime::exec(&req)?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
