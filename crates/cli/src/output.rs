//! What the user reads: tables, JSON, and errors with a hint and an exit code.

use lab::runtime::{DownReport, LabStatus, NodeStats};
use lab::topology::Name;
use lab::Error;
use std::process::ExitCode;

pub fn json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("lab: error: encoding JSON: {e}"),
    }
}

/// LAB NODE STATE PID ADDRESSES, one row per node.
pub fn nodes_table(labs: &[LabStatus]) {
    let mut rows = vec![["LAB".to_string(), "NODE".into(), "STATE".into(), "PID".into(), "ADDRESSES".into()]];
    for lab in labs {
        if lab.nodes.is_empty() {
            let state = if lab.complete { "-" } else { "incomplete (run lab down)" };
            rows.push([lab.name.clone(), "-".into(), state.into(), "-".into(), String::new()]);
        }
        for n in &lab.nodes {
            let oom = match n.oom_kills {
                0 => String::new(),
                1 => ", 1 OOM kill".to_string(),
                k => format!(", {k} OOM kills"),
            };
            rows.push([
                lab.name.clone(),
                n.name.clone(),
                format!("{}{oom}", n.state),
                n.pid.map_or("-".into(), |p| p.to_string()),
                n.addresses.join(" "),
            ]);
        }
    }
    print!("{}", table(&rows));
}

fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line += cell;
            } else {
                line += &format!("{cell:<width$}  ", width = widths[i]);
            }
        }
        out += line.trim_end();
        out.push('\n');
    }
    out
}

/// LAB NODE CPU% MEMORY / LIMIT PIDS / LIMIT.
pub fn stats_table(stats: &[NodeStats]) {
    let mib = |b: u64| format!("{:.1}MiB", b as f64 / (1 << 20) as f64);
    let limit = |l: Option<u64>, f: &dyn Fn(u64) -> String| l.map_or("-".to_string(), f);
    let mut rows =
        vec![["LAB".to_string(), "NODE".into(), "CPU %".into(), "MEMORY / LIMIT".into(), "PIDS / LIMIT".into()]];
    for s in stats {
        let u = &s.usage;
        rows.push([
            s.lab.clone(),
            s.node.clone(),
            format!("{:.1}", s.cpu_percent),
            format!("{} / {}", mib(u.memory), limit(u.memory_limit, &mib)),
            format!("{} / {}", u.pids, limit(u.pids_limit, &|n| n.to_string())),
        ]);
    }
    print!("{}", table(&rows));
}

pub fn down_report(name: &Name, r: &DownReport) {
    if r.found_anything() {
        eprintln!(
            "lab {name} is down: removed {} nodes, {} processes, {} interfaces, {} nft tables",
            r.nodes.len(),
            r.processes,
            r.interfaces,
            r.nft_tables
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

/// Prints an error and what to do about it; returns the exit code: 2 for a bad topology file,
/// 125 when `lab exec` could not run the command, 1 otherwise.
pub fn report(e: &Error, command: Command) -> ExitCode {
    if let Error::Topology(t) = e {
        eprintln!("{t}");
        return ExitCode::from(2);
    }
    eprintln!("lab: error: {e}");
    if let Some(hint) = hint(e, command) {
        eprintln!("  hint: {hint}");
    }
    ExitCode::from(if command == Command::Exec { EXEC_FAILED } else { 1 })
}

/// What to do next, chosen by what went wrong (whatever node it is about).
fn hint(e: &Error, command: Command) -> Option<String> {
    if e.is_missing_feature() {
        return Some("the kernel was built without it; most distribution kernels have it".into());
    }
    Some(match (e.root(), command) {
        (Error::NotRoot, _) => "run it as root, e.g. with sudo".into(),
        (Error::AlreadyUp(name), _) => {
            format!("take it down first with `lab down {name}`, or pick another name with --name")
        }
        (Error::LabNotUp(_) | Error::NoLabUp | Error::NoSuchNode { .. }, _) => {
            "`lab ps` lists the labs and nodes that are up".into()
        }
        (Error::AmbiguousLab(labs), _) | (Error::AmbiguousNode { labs, .. }, _) => match labs.first() {
            Some(first) => format!("add --lab, e.g. --lab {first}"),
            None => return None,
        },
        (Error::NoSuchInterface { node, .. }, _) => format!("`lab ps` shows the interfaces of {node}"),
        (Error::NotRunning(lab::NodeRef { lab, node }), _) => {
            format!("`lab logs {node}` shows how it ended; `lab start {node} --lab {lab}` runs it again")
        }
        (Error::PortBusy { port, .. }, _) => format!("free port {port}, or forward another host port in `ports`"),
        (Error::UndoFailed { .. } | Error::Unkillable(..), _) => {
            "some resources are left behind; `lab down` removes them (it is safe to repeat)".into()
        }
        (Error::Interrupted, _) => "everything made so far was removed".into(),
        (_, Command::Up) => "everything made so far was removed".into(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::{hint, Command};
    use lab::{Error, Name};

    fn name(s: &str) -> Name {
        Name::parse(s).expect("a valid name")
    }

    #[test]
    fn hints_follow_the_error_through_the_node_it_is_about() {
        let stopped = Error::node("a", Error::NotRunning(lab::NodeRef::new(&name("demo"), "a")));
        assert!(hint(&stopped, Command::Other).is_some_and(|h| h.contains("lab logs a")));
        let ambiguous = Error::AmbiguousNode { node: "a".into(), labs: vec![name("x"), name("y")] };
        assert_eq!(hint(&ambiguous, Command::Exec).as_deref(), Some("add --lab, e.g. --lab x"));
        let undo = Error::UndoFailed {
            cause: Box::new(Error::Interrupted),
            what: "rolling back",
            undo: Box::new(Error::Unkillable(2, 5)),
        };
        assert!(hint(&undo, Command::Up).is_some_and(|h| h.contains("lab down")));
        assert!(undo.to_string().starts_with("interrupted; rolling back also failed: 2 processes"));
        let gone = Error::node("b", Error::LabNotUp(name("demo")));
        assert!(hint(&gone, Command::Other).is_some_and(|h| h.contains("lab ps")));
    }

    #[test]
    fn table_aligns_columns_and_trims() {
        let rows = [["A".to_string(), "BB".into(), "C".into()], ["aaa".to_string(), "b".into(), "".into()]];
        assert_eq!(super::table(&rows), "A    BB  C\naaa  b\n");
    }
}
