//! Labs from Rust: bring one up from a file or a builder, run commands in its nodes and read
//! what they print, break and heal it, and take it down when the handle is dropped, also
//! when a test panics.
//!
//! Commands run through the `lab` executable (`lab exec`), so that the calling process, a
//! multi-threaded test harness say, never forks into a node itself: [`Options::lab_binary`]
//! must name it (`env!("CARGO_BIN_EXE_lab")` in this repository's tests, or wherever `lab`
//! is installed).

/// The toml crate, for `toml::toml!` tables in a [`LabBuilder`].
pub use toml;

use crate::runtime::{self, DownReport, LogRequest, Options};
use crate::topology::{Impairment, Name};
use crate::{Error, Source, Topology, TopologyError};
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A lab that is up. Dropping it takes the lab down.
pub struct RunningLab {
    name: Name,
    options: Options,
    rt: tokio::runtime::Runtime,
    down: bool,
}

impl RunningLab {
    /// Brings up the lab of a topology file.
    pub fn up_file(path: impl AsRef<Path>, options: Options) -> Result<RunningLab, Error> {
        RunningLab::up(&Topology::load(path.as_ref())?, options)
    }

    /// Brings up a checked topology (from [`Topology::parse`] or [`LabBuilder::build`]).
    pub fn up(topology: &Topology, options: Options) -> Result<RunningLab, Error> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Io("starting an async runtime".into(), e))?;
        rt.block_on(runtime::up(topology, &options))?;
        Ok(RunningLab { name: topology.name.clone(), options, rt, down: false })
    }

    /// The lab's name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// Runs `argv` in `node` and waits: its exit status and everything it printed.
    pub fn exec(&self, node: &str, argv: &[&str]) -> Result<Output, Error> {
        Command::new(&self.options.lab_binary)
            .args(["exec", "--lab", self.name.as_str(), node, "--"])
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::Io(format!("running {}", self.options.lab_binary.display()), e))
    }

    /// Runs `sh -c script` in `node`; its standard output if it succeeded, else an error with
    /// its exit code and standard error.
    pub fn sh(&self, node: &str, script: &str) -> Result<String, Error> {
        let out = self.exec(node, &["sh", "-c", script])?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        Err(Error::node(
            node,
            Error::CommandFailed {
                command: script.to_string(),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            },
        ))
    }

    /// Drops all traffic between nodes `a` and nodes `b`.
    pub fn partition(&self, a: &[&str], b: &[&str]) -> Result<(), Error> {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        self.rt.block_on(runtime::partition(Some(&self.name), &own(a), &own(b)))
    }

    /// Ends every partition.
    pub fn heal(&self) -> Result<(), Error> {
        self.rt.block_on(runtime::heal(Some(&self.name)))
    }

    /// Takes an interface of a node down or up.
    pub fn set_link(&self, node: &str, ifname: &str, up: bool) -> Result<(), Error> {
        self.rt.block_on(runtime::set_link(Some(&self.name), node, ifname, up))
    }

    /// Shapes what an interface sends (an empty impairment clears it).
    pub fn impair(&self, node: &str, ifname: &str, impairment: Impairment) -> Result<(), Error> {
        self.rt.block_on(runtime::impair(Some(&self.name), node, ifname, impairment))
    }

    /// Stops a node (`lab stop`): its processes and interfaces go, its addresses stay.
    pub fn stop(&self, node: &str) -> Result<(), Error> {
        self.rt.block_on(runtime::stop(Some(&self.name), node, None))
    }

    /// Starts a stopped node again (`lab start`), with the same addresses, links and faults.
    pub fn start(&self, node: &str) -> Result<(), Error> {
        self.rt.block_on(runtime::start(Some(&self.name), node, false, &self.options))
    }

    /// The node command's output so far, stdout and stderr in the order written, one
    /// timestamped line per line (as `lab logs -t`).
    pub fn logs(&self, node: &str) -> Result<String, Error> {
        let all = Shared::default();
        let req = LogRequest {
            lab: Some(self.name.clone()),
            node: Some(node.to_string()),
            timestamps: true,
            ..LogRequest::default()
        };
        runtime::logs(&req, &mut all.clone(), &mut all.clone())?;
        let bytes = all.0.borrow();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Takes the lab down now, and says what was removed.
    pub fn down(mut self) -> Result<DownReport, Error> {
        self.down = true;
        self.rt.block_on(runtime::down(&self.name, None, false))
    }
}

impl Drop for RunningLab {
    fn drop(&mut self) {
        if !self.down {
            if let Err(e) = self.rt.block_on(runtime::down(&self.name, None, false)) {
                eprintln!("lab: taking lab {} down: {e}", self.name);
            }
        }
    }
}

/// A topology written from code: each network, node and link is a TOML table (the topology
/// file's schema, see README), checked like a file would be.
///
/// ```
/// use lab::api::LabBuilder;
///
/// let topology = LabBuilder::new("demo")
///     .network("lan", toml::toml! { nat = true })
///     .node("db", toml::toml! { networks = ["lan"] command = ["sleep", "infinity"] })
///     .node("app", toml::toml! { networks = ["lan"] depends_on = ["db"] })
///     .build()?;
/// assert_eq!(topology.nodes.len(), 2);
/// # Ok::<(), lab::TopologyError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct LabBuilder {
    root: toml::Table,
}

impl LabBuilder {
    /// A lab named `name`, with nothing in it yet.
    pub fn new(name: &str) -> LabBuilder {
        let mut root = toml::Table::new();
        root.insert("name".into(), name.into());
        LabBuilder { root }
    }

    fn section(&mut self, key: &str) -> &mut toml::Table {
        let entry = self.root.entry(key).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        entry.as_table_mut().expect("made a table just above")
    }

    /// Settings every node starts from (`[defaults]`).
    pub fn defaults(mut self, settings: toml::Table) -> LabBuilder {
        self.root.insert("defaults".into(), settings.into());
        self
    }

    /// Adds network `name` (`[networks.<name>]`).
    pub fn network(mut self, name: &str, settings: toml::Table) -> LabBuilder {
        self.section("networks").insert(name.into(), settings.into());
        self
    }

    /// Adds node `name` (`[nodes.<name>]`).
    pub fn node(mut self, name: &str, settings: toml::Table) -> LabBuilder {
        self.section("nodes").insert(name.into(), settings.into());
        self
    }

    /// A point-to-point link: `endpoints = ["a:eth1", "b:eth1"]` and the rest of `[[links]]`.
    pub fn link(mut self, settings: toml::Table) -> LabBuilder {
        let links = self.root.entry("links").or_insert_with(|| toml::Value::Array(Vec::new()));
        if let Some(list) = links.as_array_mut() {
            list.push(settings.into());
        }
        self
    }

    /// The topology as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.root).unwrap_or_default()
    }

    /// Checks the topology; errors point into [`LabBuilder::to_toml`]'s text.
    pub fn build(&self) -> Result<Topology, TopologyError> {
        let name = self.root.get("name").and_then(|n| n.as_str()).unwrap_or("lab");
        Topology::parse(Source::new(format!("<builder {name}>.toml"), self.to_toml()))
    }
}

/// One buffer behind two writers (a log's stdout and stderr, in the order written).
#[derive(Clone, Default)]
struct Shared(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
