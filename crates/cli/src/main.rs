//! The `lab` command.

#![forbid(unsafe_code)]

mod args;
mod output;

use args::{
    CaptureArgs, Cli, Command, DownArgs, ExecArgs, GraphArgs, GraphFormat, HealArgs, ImpairArgs, LinkArgs, LinkState,
    LogsArgs, NodeArgs, NodeIf, PartitionArgs, PsArgs, StatsArgs, UpArgs,
};
use clap::Parser;
use lab::runtime::{self, ExecRequest, Options};
use lab::topology::Name;
use lab::{Error, Topology};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    // A node's monitor and init are this binary too; they start before any argument parsing.
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("__monitor") if args.len() == 3 => lab::roles::monitor(Path::new(&args[2])),
        Some("__init") => lab::roles::init(),
        Some("__join") => lab::roles::join(),
        _ => {}
    }
    let cli = Cli::parse();
    // LAB_LOG=debug (or any tracing filter) shows what lab does, step by step.
    // Warnings always (what a node does without, say); LAB_LOG for more.
    let filter = tracing_subscriber::EnvFilter::builder()
        .with_default_directive(tracing::level_filters::LevelFilter::WARN.into())
        .with_env_var("LAB_LOG")
        .from_env_lossy();
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let (which, result) = match cli.command {
        Command::Up(a) => (output::Command::Up, run_async(up(a))),
        Command::Exec(a) => (output::Command::Exec, exec(a)),
        Command::Ps(a) => (output::Command::Other, ps(a)),
        Command::Stats(a) => (output::Command::Other, stats(a)),
        Command::Pause(a) => (output::Command::Other, pause(a, true)),
        Command::Resume(a) => (output::Command::Other, pause(a, false)),
        Command::Down(a) => (output::Command::Other, run_async(down(a))),
        Command::Impair(a) => (output::Command::Other, run_async(impair(a))),
        Command::Link(a) => (output::Command::Other, run_async(link(a))),
        Command::Partition(a) => (output::Command::Other, run_async(partition(a))),
        Command::Heal(a) => (output::Command::Other, run_async(heal(a))),
        Command::Stop(a) => (output::Command::Other, run_async(stop(a))),
        Command::Start(a) => (output::Command::Other, run_async(start(a))),
        Command::Graph(a) => (output::Command::Other, graph(a)),
        Command::Capture(a) => (output::Command::Other, capture(a)),
        Command::Logs(a) => (output::Command::Other, logs(a)),
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
        topology.name = Name::parse(name).map_err(|m| Error::Usage(format!("--name: {m}")))?;
    }
    let options = Options { wait: a.wait, ..Options::default() };
    let state = runtime::up(&topology, &options).await?;
    let status = runtime::list().into_iter().find(|l| l.name == state.plan.lab.as_str());
    for w in &state.warnings {
        eprintln!("lab: warning: {w}");
    }
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
    let lab = parse_lab(a.lab.as_deref())?;
    let labs: Vec<_> =
        runtime::list().into_iter().filter(|l| lab.as_ref().is_none_or(|n| l.name == n.as_str())).collect();
    if let (Some(name), true) = (lab, labs.is_empty()) {
        return Err(Error::LabNotUp(name));
    }
    if a.json {
        output::json(&labs);
    } else {
        output::nodes_table(&labs);
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_lab(lab: Option<&str>) -> Result<Option<Name>, Error> {
    lab.map(Name::parse).transpose().map_err(|m| Error::Usage(format!("--lab: {m}")))
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
            _ => return Err(Error::Usage(format!("-e {kv:?}: expected KEY=VALUE"))),
        }
    }
    let lab = parse_lab(a.lab.as_deref())?;
    if a.tty && a.interactive && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(Error::Usage("the input device is not a TTY: drop -t, or run from a terminal".into()));
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

async fn impair(a: ImpairArgs) -> Result<ExitCode, Error> {
    let lab = parse_lab(a.lab.as_deref())?;
    let impairment = lab::topology::Impairment {
        rate: a.rate,
        delay: a.delay,
        jitter: a.jitter,
        loss: a.loss,
        corrupt: a.corrupt,
        duplicate: a.duplicate,
    };
    if impairment.is_empty() && !a.clear {
        return Err(Error::Usage(
            "say what to do: --rate, --delay, --jitter, --loss, --corrupt, --duplicate, or --clear".into(),
        ));
    }
    let NodeIf { node, ifname } = a.target;
    runtime::impair(lab.as_ref(), &node, &ifname, impairment).await?;
    eprintln!("{node}:{ifname}: {}", if a.clear { "no impairment".to_string() } else { impairment.to_string() });
    Ok(ExitCode::SUCCESS)
}

async fn link(a: LinkArgs) -> Result<ExitCode, Error> {
    let lab = parse_lab(a.lab.as_deref())?;
    let up = matches!(a.state, LinkState::Up);
    runtime::set_link(lab.as_ref(), &a.target.node, &a.target.ifname, up).await?;
    eprintln!("{}:{} is {}", a.target.node, a.target.ifname, if up { "up" } else { "down" });
    Ok(ExitCode::SUCCESS)
}

async fn partition(a: PartitionArgs) -> Result<ExitCode, Error> {
    let lab = parse_lab(a.lab.as_deref())?;
    runtime::partition(lab.as_ref(), &a.nodes, &a.from).await?;
    eprintln!("partitioned {} from {}", a.nodes.join(" "), a.from.join(" "));
    Ok(ExitCode::SUCCESS)
}

async fn heal(a: HealArgs) -> Result<ExitCode, Error> {
    let lab = a.lab.as_deref().map(runtime::lab_name_from_arg).transpose()?;
    runtime::heal(lab.as_ref()).await?;
    eprintln!("healed every partition");
    Ok(ExitCode::SUCCESS)
}

async fn stop(a: NodeArgs) -> Result<ExitCode, Error> {
    let lab = parse_lab(a.lab.as_deref())?;
    runtime::stop(lab.as_ref(), &a.node).await?;
    eprintln!("node {} is stopped", a.node);
    Ok(ExitCode::SUCCESS)
}

async fn start(a: NodeArgs) -> Result<ExitCode, Error> {
    let lab = parse_lab(a.lab.as_deref())?;
    runtime::start(lab.as_ref(), &a.node, &Options::default()).await?;
    eprintln!("node {} is running again", a.node);
    Ok(ExitCode::SUCCESS)
}

fn graph(a: GraphArgs) -> Result<ExitCode, Error> {
    let plan = runtime::plan_of(&a.lab)?;
    let text = match a.format {
        GraphFormat::Mermaid => lab::graph::mermaid(&plan),
        GraphFormat::Dot => lab::graph::dot(&plan),
        GraphFormat::Svg => return svg(&lab::graph::dot(&plan)),
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// Renders DOT with Graphviz's `dot`, onto stdout.
fn svg(dot: &str) -> Result<ExitCode, Error> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("dot").arg("-Tsvg").stdin(Stdio::piped()).spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Missing(
                "--format svg needs Graphviz's `dot` (Debian: apt install graphviz); --format dot prints its input"
                    .into(),
            )
        } else {
            Error::Io("running dot -Tsvg".into(), e)
        }
    })?;
    let written = child.stdin.take().map(|mut s| s.write_all(dot.as_bytes()));
    let status = child.wait().map_err(|e| Error::Io("running dot -Tsvg".into(), e))?;
    if let Some(Err(e)) = written {
        return Err(Error::Io("writing to dot -Tsvg".into(), e));
    }
    if !status.success() {
        return Err(Error::Io("running dot -Tsvg".into(), std::io::Error::other(format!("it failed ({status})"))));
    }
    Ok(ExitCode::SUCCESS)
}

fn capture(a: CaptureArgs) -> Result<ExitCode, Error> {
    let lab = parse_lab(a.lab.as_deref())?;
    let NodeIf { node, ifname } = a.target;
    let n = if a.write.as_os_str() == "-" {
        let stdout = std::io::stdout();
        if std::io::IsTerminal::is_terminal(&stdout) {
            return Err(Error::Usage(
                "pcap is binary: write it to a file with -w FILE, or pipe it (| wireshark -k -i -)".into(),
            ));
        }
        runtime::capture(lab.as_ref(), &node, &ifname, &mut stdout.lock(), a.count)?
    } else {
        let file =
            std::fs::File::create(&a.write).map_err(|e| Error::Io(format!("creating {}", a.write.display()), e))?;
        eprintln!("capturing on {node}:{ifname} into {}; Ctrl-C stops", a.write.display());
        runtime::capture(lab.as_ref(), &node, &ifname, &mut std::io::BufWriter::new(file), a.count)?
    };
    eprintln!("{n} packets captured");
    Ok(ExitCode::SUCCESS)
}

fn logs(a: LogsArgs) -> Result<ExitCode, Error> {
    let req = runtime::LogRequest { lab: parse_lab(a.lab.as_deref())?, node: a.node, tail: a.tail, follow: a.follow };
    runtime::logs(&req, &mut std::io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}
