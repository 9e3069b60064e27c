//! Which topology file and which lab a command means: `lab up` with a file, a directory or
//! nothing (as Compose finds its file), and `lab down` by name or by the file a lab came from.

use crate::state::all_states;
use crate::topology::{Name, Topology};
use crate::Error;
use std::path::{Path, PathBuf};

/// The file `lab up ARG` reads: ARG itself, ARG/lab.toml for a directory (else its lab.conf:
/// a Kathará lab), and with no ARG the same of the current directory, or its one `*.lab.toml`.
pub fn topology_file(arg: Option<&Path>) -> Result<PathBuf, Error> {
    let dir = match arg {
        Some(p) if p.is_dir() => p.to_path_buf(),
        Some(p) => return Ok(p.to_path_buf()),
        None => PathBuf::from("."),
    };
    let lab_toml = dir.join("lab.toml");
    if lab_toml.is_file() {
        return Ok(lab_toml);
    }
    let lab_conf = dir.join("lab.conf");
    if lab_conf.is_file() {
        return Ok(lab_conf);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| Error::Io(format!("reading {}", dir.display()), e))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n.to_string_lossy().ends_with(".lab.toml")))
        .collect();
    found.sort();
    let shown = if dir == Path::new(".") { "this directory".to_string() } else { dir.display().to_string() };
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => {
            Err(Error::Usage(format!("{shown} has no lab.toml, no *.lab.toml and no lab.conf: name the topology file")))
        }
        _ => Err(Error::Usage(format!(
            "{shown} has several topology files ({}): name one",
            found.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// What `lab down` takes down.
#[derive(Debug)]
pub struct DownTarget {
    /// The labs (none when the file's lab is up from another file).
    pub labs: Vec<Name>,
    /// What the user should know about the choice.
    pub note: Option<String>,
}

/// The labs `lab down [ARG] [--name NAME]` means. ARG is a lab's name, a topology file or a
/// directory (or, missing, the file `lab up` would find here). A file means the lab brought
/// up from it (its `name`, or the one lab from it under another `--name`), never another lab
/// that carries the same name.
pub fn down_target(arg: Option<&str>, name: Option<&Name>) -> Result<DownTarget, Error> {
    let file = match arg {
        Some(a) if !looks_like_path(a) => {
            let lab = Name::parse(a).map_err(|m| Error::Usage(format!("{a}: {m}")))?;
            if let Some(n) = name.filter(|n| **n != lab) {
                return Err(Error::Usage(format!("lab {a} or lab {n}? name one")));
            }
            return Ok(DownTarget { labs: vec![lab], note: None });
        }
        None if name.is_some() => return Ok(DownTarget { labs: name.into_iter().cloned().collect(), note: None }),
        a => topology_file(a.map(Path::new)).map_err(|e| match (a, e) {
            (None, Error::Usage(m)) => Error::Usage(format!("name the lab to take down (or --all): {m}")),
            (_, e) => e,
        })?,
    };
    let path = std::path::absolute(&file).map_err(|e| Error::Io(format!("reading {}", file.display()), e))?;
    let canonical = std::fs::canonicalize(&path).unwrap_or(path);
    let states = all_states();
    let from_file =
        |n: &Name| states.iter().find(|(l, _)| l == n).and_then(|(_, s)| s.as_ref()).map(|s| s.topology == canonical);
    if let Some(n) = name {
        return match from_file(n) {
            Some(false) => Err(Error::Usage(format!(
                "lab {n} was not brought up from {}; `lab down {n}` takes it down",
                file.display()
            ))),
            _ => Ok(DownTarget { labs: vec![n.clone()], note: None }),
        };
    }
    let own = Topology::load(&file)?.name;
    let mut labs: Vec<Name> = states
        .iter()
        .filter(|(_, s)| s.as_ref().is_some_and(|s| s.topology == canonical))
        .map(|(n, _)| n.clone())
        .collect();
    if labs.contains(&own) || (labs.is_empty() && from_file(&own).is_none()) {
        // Its own lab; or nothing from this file is up, and what is left of a lab of that
        // name (a crash) has no state to say where it came from.
        return Ok(DownTarget { labs: vec![own], note: None });
    }
    match labs.len() {
        0 => Ok(DownTarget {
            labs: Vec::new(),
            note: Some(format!(
                "lab {own} is up, but from another file than {}; `lab down {own}` takes it down",
                file.display()
            )),
        }),
        1 => Ok(DownTarget { labs: vec![labs.remove(0)], note: None }),
        _ => Err(Error::Usage(format!(
            "several labs are up from {} ({}): say which with --name",
            file.display(),
            labs.iter().map(Name::to_string).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Whether an argument is a path rather than a lab's name (names have no `/` or `.`; a
/// directory named like a lab is written `./dir`).
fn looks_like_path(arg: &str) -> bool {
    arg.contains('/') || arg.contains('.') || Path::new(arg).is_file()
}

/// The lab name from a topology file, or `arg` taken as a name.
pub fn lab_name_from_arg(arg: &str) -> Result<Name, Error> {
    if looks_like_path(arg) {
        return Ok(Topology::load(&topology_file(Some(Path::new(arg)))?)?.name);
    }
    Name::parse(arg).map_err(Error::Usage)
}
