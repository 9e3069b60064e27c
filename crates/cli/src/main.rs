//! The `lab` command.

#![forbid(unsafe_code)]

mod args;
mod output;

use args::{
    CaptureArgs, CheckArgs, Cli, Command, CpArgs, DownArgs, ExecArgs, GraphArgs, GraphFormat, HealArgs, ImageCommand,
    ImpairArgs, InspectArgs, LinkArgs, LinkState, LogsArgs, NodeArgs, NodeIf, PartitionArgs, PsArgs, StartArgs,
    StatsArgs, StopArgs, UpArgs, VersionArgs,
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
    // Everything but printing what lab is and drawing a file needs root: say so up front,
    // not as a node that looks gone or a state file that cannot be read.
    let needs_root = match &cli.command {
        Command::Completion(_) | Command::Man | Command::Version(_) => false,
        Command::Graph(g) => !Path::new(&g.lab).is_file(),
        _ => true,
    };
    if needs_root {
        if let Err(e) = runtime::ensure_root() {
            return output::report(&e, output::Command::Other);
        }
    }
    let (which, result) = match cli.command {
        Command::Up(a) => (output::Command::Up, run_async(up(a))),
        Command::Exec(a) => (output::Command::Exec, exec(a)),
        Command::Cp(a) => (output::Command::Other, cp(a)),
        Command::Ps(a) => (output::Command::Other, ps(a)),
        Command::Inspect(a) => (output::Command::Other, inspect(a)),
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
        Command::Restart(a) => (output::Command::Other, run_async(restart(a, false))),
        Command::Recreate(a) => (output::Command::Other, run_async(restart(a, true))),
        Command::Graph(a) => (output::Command::Other, graph(a)),
        Command::Capture(a) => (output::Command::Other, capture(a)),
        Command::Logs(a) => (output::Command::Other, logs(a)),
        Command::Completion(a) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(a.shell, &mut cmd, "lab", &mut std::io::stdout());
            (output::Command::Other, Ok(ExitCode::SUCCESS))
        }
        Command::Man => (output::Command::Other, man()),
        Command::Check(a) => (output::Command::Other, run_async(check(a))),
        Command::Image(a) => (output::Command::Other, image(a)),
        Command::Version(a) => (output::Command::Other, version(a)),
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
    let file = runtime::topology_file(a.file.as_deref())?;
    let mut topology = Topology::load(&file)?;
    if let Some(name) = &a.name {
        topology.name = Name::parse(name).map_err(|m| Error::Usage(format!("--name: {m}")))?;
    }
    let progress = output::Progress::new();
    let options =
        Options { wait: a.wait, progress: Some(progress.callback()), catch_signals: true, ..Options::default() };
    let result = runtime::up(&topology, &options).await;
    progress.finish();
    let runtime::Up { state, status } = result?;
    for w in &state.warnings {
        eprintln!("lab: warning: {w}");
    }
    if a.json {
        output::json(&runtime::Report::new(vec![status]));
    } else {
        eprintln!(
            "lab {} is up: {}, {}, {} in {:.2}s",
            status.name,
            output::count(status.nodes.len(), "node"),
            output::count(state.plan.networks.len(), "network"),
            output::count(state.plan.links.len(), "link"),
            started.elapsed().as_secs_f64()
        );
        output::nodes_table(&[status]);
    }
    Ok(ExitCode::SUCCESS)
}

async fn down(a: DownArgs) -> Result<ExitCode, Error> {
    if a.all {
        for (name, report) in runtime::down_all(a.timeout, a.keep_volumes).await? {
            output::down_report(&name, &report);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if a.orphans {
        let taken = runtime::down_orphans(a.timeout).await?;
        if taken.is_empty() {
            eprintln!("lab: no orphaned labs");
        }
        for (name, report) in taken {
            output::down_report(&name, &report);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let name = parse_lab(a.name.as_deref())?;
    let target = runtime::down_target(a.lab.as_deref(), name.as_ref())?;
    if let Some(note) = &target.note {
        eprintln!("lab: {note}");
    }
    for name in &target.labs {
        let report = runtime::down(name, a.timeout, a.keep_volumes).await?;
        if report.found_anything() {
            output::down_report(name, &report);
        } else {
            // Idempotent, as `compose down`; but a typo should be seen.
            let up: Vec<String> = runtime::list().into_iter().map(|l| l.name).collect();
            let which = if up.is_empty() { "no lab is up".to_string() } else { format!("labs up: {}", up.join(", ")) };
            eprintln!("lab {name} is not up: nothing to remove ({which})");
        }
    }
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
        output::json(&runtime::Report::new(labs));
    } else {
        output::nodes_table(&labs);
    }
    Ok(ExitCode::SUCCESS)
}

fn cp(a: CpArgs) -> Result<ExitCode, Error> {
    let flag = parse_lab(a.lab.as_deref())?;
    let with_lab = |p: runtime::Place| -> Result<runtime::Place, Error> {
        match p {
            runtime::Place::Node { lab: None, node, path } => {
                Ok(runtime::Place::Node { lab: flag.clone(), node, path })
            }
            runtime::Place::Node { lab: Some(l), node, path } => {
                if let Some(f) = flag.as_ref().filter(|f| **f != l) {
                    return Err(Error::Usage(format!("{l}/{node} names lab {l}, but --lab says {f}")));
                }
                Ok(runtime::Place::Node { lab: Some(l), node, path })
            }
            host => Ok(host),
        }
    };
    let copied = runtime::copy(&with_lab(a.from)?, &with_lab(a.to)?)?;
    eprintln!(
        "copied {} ({})",
        output::count(copied.entries as usize, "entry"),
        output::count(copied.bytes as usize, "byte")
    );
    Ok(ExitCode::SUCCESS)
}

fn inspect(a: InspectArgs) -> Result<ExitCode, Error> {
    let (lab, node) = match (a.lab.as_deref(), a.node.as_deref()) {
        (Some(l), None) if l.contains('/') => {
            let (lab, node) = node_arg(None, l)?;
            (lab, Some(node))
        }
        (l, n) => (parse_lab(l)?, n.map(str::to_string)),
    };
    let status = runtime::inspect(lab.as_ref(), node.as_deref())?;
    if a.json {
        output::json(&runtime::Report::new(vec![status]));
    } else {
        print!("{}", output::inspect(&status));
    }
    Ok(ExitCode::SUCCESS)
}

async fn check(a: CheckArgs) -> Result<ExitCode, Error> {
    let lab = a.lab.as_deref().map(runtime::lab_name_from_arg).transpose()?;
    let binary = Options::default().lab_binary;
    let (name, results) = runtime::check(lab.as_ref(), a.file.as_deref(), &binary).await?;
    if let Some(f) = &a.junit {
        std::fs::write(f, runtime::junit(&name, &results))
            .map_err(|e| Error::Io(format!("writing {}", f.display()), e))?;
    }
    let failed = results.iter().filter(|r| !r.passed).count();
    if a.json {
        output::json(
            &serde_json::json!({ "version": 1, "lab": name.as_str(), "passed": failed == 0, "checks": results }),
        );
    } else {
        output::checks_table(&results);
        eprintln!("{} of {} passed", results.len() - failed, output::count(results.len(), "check"));
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The man page, from the same definitions as `--help`: lab(1), with every subcommand's
/// options in a section of its own.
fn man() -> Result<ExitCode, Error> {
    let cmd = <Cli as clap::CommandFactory>::command();
    let mut page = Vec::new();
    let io = |e: std::io::Error| Error::Io("writing the man page".into(), e);
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(&mut page).map_err(io)?;
    man.render_name_section(&mut page).map_err(io)?;
    man.render_synopsis_section(&mut page).map_err(io)?;
    man.render_description_section(&mut page).map_err(io)?;
    page.extend_from_slice(b".SH COMMANDS\n");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name();
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        page.extend_from_slice(format!(".SS \"lab {name}\"\n{}\n", roff_escape(&about)).as_bytes());
        let usage = sub.clone().bin_name(format!("lab {name}")).render_usage().to_string();
        page.extend_from_slice(
            format!(".PP\n\\fB{}\\fR\n", roff_escape(usage.trim_start_matches("Usage: "))).as_bytes(),
        );
        for arg in sub.get_arguments().filter(|a| !a.is_hide_set() && a.get_id() != "help") {
            let flag = match (arg.get_short(), arg.get_long()) {
                (Some(s), Some(l)) => format!("-{s}, --{l}"),
                (None, Some(l)) => format!("--{l}"),
                (Some(s), None) => format!("-{s}"),
                (None, None) => arg.get_value_names().map_or(arg.get_id().to_string(), |v| {
                    v.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" ")
                }),
            };
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            page.extend_from_slice(format!(".TP\n\\fB{}\\fR\n{}\n", roff_escape(&flag), roff_escape(&help)).as_bytes());
        }
    }
    man.render_version_section(&mut page).map_err(io)?;
    std::io::Write::write_all(&mut std::io::stdout(), &page).map_err(io)?;
    Ok(ExitCode::SUCCESS)
}

/// Text safe in roff: backslashes doubled, no line starting with a control character.
fn roff_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .lines()
        .map(|l| if l.starts_with(['.', '\'']) { format!("\\&{l}") } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
}

fn version(a: VersionArgs) -> Result<ExitCode, Error> {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let cgroups = runtime::cgroup_setup();
    let (lab_version, json) = (env!("CARGO_PKG_VERSION"), lab::runtime::JSON_VERSION);
    if a.json {
        output::json(
            &serde_json::json!({ "version": lab_version, "json_version": json, "kernel": kernel, "cgroups": cgroups }),
        );
    } else {
        println!("lab {lab_version}");
        println!("JSON shape:  version {json} (docs/lab.schema.json)");
        println!("kernel:      {kernel}");
        println!("cgroups:     {cgroups}");
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_lab(lab: Option<&str>) -> Result<Option<Name>, Error> {
    lab.map(Name::parse).transpose().map_err(|m| Error::Usage(format!("--lab: {m}")))
}

/// A node as the user names it, `NODE` or `LAB/NODE`, with `--lab` as the other way to name
/// its lab: the lab (if named) and the node.
fn node_arg(lab: Option<&str>, node: &str) -> Result<(Option<Name>, String), Error> {
    let flag = parse_lab(lab)?;
    let Some((l, n)) = node.split_once('/') else { return Ok((flag, node.to_string())) };
    let l = Name::parse(l).map_err(|m| Error::Usage(format!("{node}: {m}")))?;
    if let Some(f) = flag.filter(|f| *f != l) {
        return Err(Error::Usage(format!("{node} names lab {l}, but --lab says {f}")));
    }
    Ok((Some(l), n.to_string()))
}

/// Several nodes of one lab, each `NODE` or `LAB/NODE`.
fn nodes_arg(lab: Option<&str>, nodes: &[String]) -> Result<(Option<Name>, Vec<String>), Error> {
    let mut lab = parse_lab(lab)?;
    let mut out = Vec::new();
    for n in nodes {
        let (l, node) = node_arg(lab.as_ref().map(Name::as_str), n)?;
        lab = lab.or(l);
        out.push(node);
    }
    Ok((lab, out))
}

fn stats(a: StatsArgs) -> Result<ExitCode, Error> {
    let (lab, node) = match &a.node {
        Some(n) => {
            let (lab, node) = node_arg(a.lab.as_deref(), n)?;
            (lab, Some(node))
        }
        None => (parse_lab(a.lab.as_deref())?, None),
    };
    let stats = runtime::stats(lab.as_ref(), node.as_deref(), std::time::Duration::from_millis(500))?;
    if a.json {
        output::json(&runtime::Report::new(stats));
    } else {
        output::stats_table(&stats);
    }
    Ok(ExitCode::SUCCESS)
}

fn pause(a: NodeArgs, frozen: bool) -> Result<ExitCode, Error> {
    let (lab, node) = node_arg(a.lab.as_deref(), &a.node)?;
    runtime::pause(lab.as_ref(), &node, frozen)?;
    eprintln!("node {node} is {}", if frozen { "paused" } else { "running again" });
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
    let (lab, node) = node_arg(a.lab.as_deref(), &a.node)?;
    if a.tty && a.interactive && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(Error::Usage("the input device is not a TTY: drop -t, or run from a terminal".into()));
    }
    let req = ExecRequest {
        lab,
        node,
        argv: a.command,
        env,
        workdir: a.workdir,
        tty: a.tty,
        interactive: a.interactive,
        user: a.user,
        timeout: a.timeout,
    };
    let result = runtime::exec(&req);
    if let Some(path) = &a.status_file {
        let status = match &result {
            Ok(exit) if exit.started => serde_json::json!({
                "code": exit.code,
                "signal": exit.signal,
                "timed_out": exit.timed_out,
            }),
            Ok(exit) => {
                serde_json::json!({ "error": format!("the command could not be started (exit {})", exit.code) })
            }
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
        std::fs::write(path, status.to_string())
            .map_err(|e| Error::Io(format!("writing the status file {}", path.display()), e))?;
    }
    let exit = result?;
    if exit.timed_out {
        if let Some(t) = a.timeout {
            eprintln!("lab exec: timed out after {t:?}: killed");
        }
        return Ok(ExitCode::from(124));
    }
    Ok(ExitCode::from(exit.code.clamp(0, 255) as u8))
}

async fn impair(a: ImpairArgs) -> Result<ExitCode, Error> {
    let NodeIf { node, ifname } = a.target;
    let (lab, node) = node_arg(a.lab.as_deref(), &node)?;
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
    runtime::impair(lab.as_ref(), &node, &ifname, impairment).await?;
    eprintln!("{node}:{ifname}: {}", if a.clear { "no impairment".to_string() } else { impairment.to_string() });
    Ok(ExitCode::SUCCESS)
}

async fn link(a: LinkArgs) -> Result<ExitCode, Error> {
    let (lab, node) = node_arg(a.lab.as_deref(), &a.target.node)?;
    let up = matches!(a.state, LinkState::Up);
    runtime::set_link(lab.as_ref(), &node, &a.target.ifname, up).await?;
    eprintln!("{node}:{} is {}", a.target.ifname, if up { "up" } else { "down" });
    Ok(ExitCode::SUCCESS)
}

async fn partition(a: PartitionArgs) -> Result<ExitCode, Error> {
    let all: Vec<String> = a.nodes.iter().chain(&a.from).cloned().collect();
    let (lab, mut nodes) = nodes_arg(a.lab.as_deref(), &all)?;
    let from = nodes.split_off(a.nodes.len());
    runtime::partition(lab.as_ref(), &nodes, &from).await?;
    eprintln!("partitioned {} from {}", nodes.join(" "), from.join(" "));
    Ok(ExitCode::SUCCESS)
}

fn image(a: ImageCommand) -> Result<ExitCode, Error> {
    match a {
        ImageCommand::Pull(a) => {
            let progress = output::Progress::new();
            let pulled = run_async(async {
                let name = runtime::image_pull(&a.image, Some(&progress.callback())).await;
                progress.finish();
                println!("pulled {}", name?);
                Ok(ExitCode::SUCCESS)
            });
            pulled?;
        }
        ImageCommand::Import(a) => {
            for name in runtime::image_import(&a.source, a.name.as_deref())? {
                println!("imported {name}");
            }
        }
        ImageCommand::Ls(a) => {
            let rows = runtime::image_list()?;
            if a.json {
                output::json(&rows);
            } else {
                output::images_table(&rows);
            }
        }
        ImageCommand::Rm(a) => {
            for image in &a.images {
                println!("removed {}", runtime::image_remove(image)?);
            }
        }
        ImageCommand::Prune(a) => {
            let (images, entries) = runtime::image_prune(a.all)?;
            for i in &images {
                println!("removed {i}");
            }
            eprintln!(
                "pruned {} image(s) and {entries} unused store entr{}",
                images.len(),
                if entries == 1 { "y" } else { "ies" }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn heal(a: HealArgs) -> Result<ExitCode, Error> {
    let lab = a.lab.as_deref().map(runtime::lab_name_from_arg).transpose()?;
    runtime::heal(lab.as_ref()).await?;
    eprintln!("healed every partition");
    Ok(ExitCode::SUCCESS)
}

async fn stop(a: StopArgs) -> Result<ExitCode, Error> {
    let (lab, node) = node_arg(a.target.lab.as_deref(), &a.target.node)?;
    match runtime::stop(lab.as_ref(), &node, a.timeout).await {
        // As `docker stop` of a stopped container: nothing to do.
        Err(Error::AlreadyStopped(_)) => eprintln!("node {node} is already stopped"),
        r => {
            r?;
            eprintln!("node {node} is stopped");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn start(a: StartArgs) -> Result<ExitCode, Error> {
    let (lab, node) = node_arg(a.target.lab.as_deref(), &a.target.node)?;
    match runtime::start(lab.as_ref(), &node, a.fresh, &Options::default()).await {
        Err(Error::Running(_)) if !a.fresh => eprintln!("node {node} is already running"),
        r => {
            r?;
            eprintln!("node {node} is running again");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `restart` keeps the node's writable layer, `recreate` starts it with a new one.
async fn restart(a: StopArgs, fresh: bool) -> Result<ExitCode, Error> {
    let (lab, node) = node_arg(a.target.lab.as_deref(), &a.target.node)?;
    match runtime::stop(lab.as_ref(), &node, a.timeout).await {
        Err(Error::AlreadyStopped(_)) => {}
        r => r?,
    }
    runtime::start(lab.as_ref(), &node, fresh, &Options::default()).await?;
    eprintln!("node {node} {}", if fresh { "recreated" } else { "restarted" });
    Ok(ExitCode::SUCCESS)
}

fn graph(a: GraphArgs) -> Result<ExitCode, Error> {
    let (plan, changes) = runtime::plan_of(&a.lab)?;
    let text = match a.format {
        GraphFormat::Mermaid => lab::graph::mermaid(&plan, changes.as_ref()),
        GraphFormat::Dot => lab::graph::dot(&plan, changes.as_ref()),
        GraphFormat::Svg => return svg(&lab::graph::dot(&plan, changes.as_ref())),
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
    let NodeIf { node, ifname } = a.target;
    let (lab, node) = node_arg(a.lab.as_deref(), &node)?;
    let req = runtime::CaptureRequest { lab, node, ifname, count: a.count, filter: a.filter };
    let to_stdout = a.write.as_os_str() == "-";
    if to_stdout && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(Error::Usage(
            "pcap is binary: write it to a file with -w FILE, or pipe it (| wireshark -k -i -)".into(),
        ));
    }
    let (what, file) = (format!("{}:{}", req.node, req.ifname), a.write.clone());
    let created = std::cell::Cell::new(false);
    let result = if to_stdout {
        runtime::capture(&req, || Ok(std::io::stdout().lock()))
    } else {
        runtime::capture(&req, || {
            let f = std::fs::File::create(&file).map_err(|e| Error::Io(format!("creating {}", file.display()), e))?;
            created.set(true);
            eprintln!("capturing on {what} into {}; Ctrl-C stops", file.display());
            Ok(std::io::BufWriter::new(f))
        })
    };
    match result {
        Ok(n) => {
            eprintln!("{} captured", output::count(n as usize, "packet"));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            // A capture that failed leaves no file with nothing in it.
            if created.get() && std::fs::metadata(&a.write).is_ok_and(|m| m.len() <= 24) {
                let _ = std::fs::remove_file(&a.write);
            }
            Err(e)
        }
    }
}

fn logs(a: LogsArgs) -> Result<ExitCode, Error> {
    let since = a.since.as_deref().map(runtime::since).transpose().map_err(Error::Usage)?;
    let (lab, node) = match a.target.as_deref() {
        Some(t) => logs_target(a.lab.as_deref(), t)?,
        None => (parse_lab(a.lab.as_deref())?, None),
    };
    let req = runtime::LogRequest { lab, node, tail: a.tail, since, follow: a.follow, timestamps: a.timestamps };
    runtime::logs(&req, &mut std::io::stdout().lock(), &mut std::io::stderr().lock())?;
    Ok(ExitCode::SUCCESS)
}

/// `lab logs X`: LAB/NODE; a node (of --lab, or of the one lab that has it); else a lab.
fn logs_target(lab: Option<&str>, target: &str) -> Result<(Option<Name>, Option<String>), Error> {
    if target.contains('/') || lab.is_some() {
        let (lab, node) = node_arg(lab, target)?;
        return Ok((lab, Some(node)));
    }
    match runtime::find_node(None, target) {
        Ok((lab, _)) => Ok((Some(lab), Some(target.to_string()))),
        Err(Error::NoSuchNode { .. }) if Name::parse(target).is_ok_and(|n| lab::state::LabDir::new(&n).exists()) => {
            Ok((Name::parse(target).ok(), None))
        }
        Err(e) => Err(e),
    }
}
