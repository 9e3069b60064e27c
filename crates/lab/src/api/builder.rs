//! Topologies written from code: [`LabBuilder`] takes TOML tables (the file's schema) or the
//! typed [`Node`], [`Network`] and [`Link`]; [`Impair`] and [`Healthcheck`] take units as the
//! file does (`"16mbit"`) or as Rust values ([`Duration`]).

use crate::topology::Impairment;
use crate::units;
use crate::{Error, Source, Topology, TopologyError};
use std::time::Duration;
use toml::{Table, Value};

/// A topology written from code: each network, node and link is a TOML table (the topology
/// file's schema, see README), checked like a file would be.
///
/// ```
/// use lab::api::{toml, LabBuilder};
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
    root: Table,
}

impl LabBuilder {
    /// A lab named `name`, with nothing in it yet.
    pub fn new(name: &str) -> LabBuilder {
        let mut root = Table::new();
        root.insert("name".into(), name.into());
        LabBuilder { root }
    }

    /// A lab named `prefix-` and a suffix no other lab of this machine has now: this
    /// process's id and a counter (tests running in parallel, or several test processes,
    /// never share a lab). The name is cut to fit (a DNS label: 63 bytes).
    pub fn unique(prefix: &str) -> LabBuilder {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let suffix = format!("-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let room = crate::Name::MAX_LEN.saturating_sub(suffix.len());
        let prefix: String = prefix.chars().take(room).collect();
        LabBuilder::new(&format!("{}{suffix}", prefix.trim_end_matches('-')))
    }

    /// The lab's name.
    pub fn name(&self) -> &str {
        self.root.get("name").and_then(Value::as_str).unwrap_or_default()
    }

    fn section(&mut self, key: &str) -> &mut Table {
        let entry = self.root.entry(key).or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        match entry {
            Value::Table(t) => t,
            // Made a table just above.
            _ => unreachable!("a section is a table"),
        }
    }

    /// Settings every node starts from (`[defaults]`).
    pub fn defaults(mut self, settings: impl Into<Table>) -> LabBuilder {
        self.root.insert("defaults".into(), settings.into().into());
        self
    }

    /// Adds network `name` (`[networks.<name>]`).
    pub fn network(mut self, name: &str, settings: impl Into<Table>) -> LabBuilder {
        self.section("networks").insert(name.into(), settings.into().into());
        self
    }

    /// Adds node `name` (`[nodes.<name>]`).
    pub fn node(mut self, name: &str, settings: impl Into<Table>) -> LabBuilder {
        self.section("nodes").insert(name.into(), settings.into().into());
        self
    }

    /// A point-to-point link: `endpoints = ["a:eth1", "b:eth1"]` and the rest of `[[links]]`.
    pub fn link(mut self, settings: impl Into<Table>) -> LabBuilder {
        let links = self.root.entry("links").or_insert_with(|| Value::Array(Vec::new()));
        if let Some(list) = links.as_array_mut() {
            list.push(settings.into().into());
        }
        self
    }

    /// The topology as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.root).unwrap_or_default()
    }

    /// Checks the topology; errors point into [`LabBuilder::to_toml`]'s text.
    pub fn build(&self) -> Result<Topology, TopologyError> {
        Topology::parse(Source::new(format!("<builder {}>.toml", self.name()), self.to_toml()))
    }
}

/// Sets `key` in `table` to `value`.
fn set(table: &mut Table, key: &str, value: impl Into<Value>) {
    table.insert(key.into(), value.into());
}

/// `key`'s table in `table`, made if missing.
fn sub<'a>(table: &'a mut Table, key: &str) -> &'a mut Table {
    let entry = table.entry(key).or_insert_with(|| Value::Table(Table::new()));
    if !entry.is_table() {
        *entry = Value::Table(Table::new());
    }
    match entry {
        Value::Table(t) => t,
        _ => unreachable!("made a table just above"),
    }
}

/// `key`'s list in `table`, made if missing.
fn push(table: &mut Table, key: &str, value: impl Into<Value>) {
    let entry = table.entry(key).or_insert_with(|| Value::Array(Vec::new()));
    if !entry.is_array() {
        *entry = Value::Array(Vec::new());
    }
    if let Value::Array(list) = entry {
        list.push(value.into());
    }
}

fn strings<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Value {
    Value::Array(items.into_iter().map(|s| Value::String(s.into())).collect())
}

/// A time as the topology file writes one: whole milliseconds, or microseconds below that.
fn time(d: Duration) -> String {
    if d.subsec_micros() % 1000 == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}us", d.as_micros())
    }
}

/// A node (`[nodes.NAME]`), typed; anything it has no method for goes through [`Node::set`].
///
/// ```
/// use lab::api::{Healthcheck, Impair, LabBuilder, Network, Node};
/// use std::time::Duration;
///
/// let topology = LabBuilder::new("typed")
///     .network("lan", Network::new().subnet("10.77.0.0/24").ipv6())
///     .node("db", Node::new()
///         .network_address("lan", "10.77.0.10")
///         .command(["sleep", "infinity"])
///         .healthcheck(Healthcheck::cmd(["true"]).interval(Duration::from_millis(100)))
///         .impair("eth0", Impair::new().rate("16mbit")))
///     .node("app", Node::new().network("lan").depends_on("db").env("DB", "db").memory("256M"))
///     .build()?;
/// assert_eq!(topology.nodes.len(), 2);
/// # Ok::<(), lab::TopologyError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Node(Table);

impl Node {
    /// A node with nothing set: on the host's root, no networks, no command (its init waits).
    pub fn new() -> Node {
        Node::default()
    }

    /// Any key of the schema (README): `.set("restart", "on-failure")`.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Node {
        set(&mut self.0, key, value);
        self
    }

    /// Joins `network`, with an address lab picks.
    pub fn network(self, network: &str) -> Node {
        self.network_address(network, "auto")
    }

    /// Joins `network` with a static address (`"10.0.0.5"`, or `"auto"`).
    pub fn network_address(mut self, network: &str, address: &str) -> Node {
        // A list of networks becomes the table form, keeping those already named.
        if let Some(Value::Array(list)) = self.0.get("networks") {
            let named: Table =
                list.iter().filter_map(Value::as_str).map(|n| (n.to_string(), Value::from("auto"))).collect();
            self.0.insert("networks".into(), Value::Table(named));
        }
        sub(&mut self.0, "networks").insert(network.into(), address.into());
        self
    }

    /// Runs on image `image` (`"alpine:3.20"`), from lab's image store.
    pub fn image(self, image: &str) -> Node {
        self.set("image", image)
    }

    /// The node's command and its arguments.
    pub fn command<I: IntoIterator<Item = S>, S: Into<String>>(self, argv: I) -> Node {
        self.set("command", strings(argv))
    }

    /// The node's command as a shell script (`/bin/sh -c`).
    pub fn shell(self, script: &str) -> Node {
        self.set("command", script)
    }

    /// An environment variable of the command and of `exec`.
    pub fn env(mut self, key: &str, value: &str) -> Node {
        sub(&mut self.0, "env").insert(key.into(), value.into());
        self
    }

    /// Its command starts after `node`'s runs and passes its health check.
    pub fn depends_on(mut self, node: &str) -> Node {
        push(&mut self.0, "depends_on", node);
        self
    }

    /// Its health check.
    pub fn healthcheck(self, check: Healthcheck) -> Node {
        self.set("healthcheck", check.0)
    }

    /// An impairment of interface `ifname` from the start.
    pub fn impair(mut self, ifname: &str, impair: Impair) -> Node {
        sub(&mut self.0, "impair").insert(ifname.into(), Value::Table(impair.table()));
        self
    }

    /// A host path mounted in the node: `"/host/path:/node/path"` or `"...:ro"`.
    pub fn mount(mut self, mount: &str) -> Node {
        push(&mut self.0, "mounts", mount);
        self
    }

    /// A named volume: `"data:/var/lib/app"`.
    pub fn volume(mut self, volume: &str) -> Node {
        push(&mut self.0, "volumes", volume);
        self
    }

    /// A static route: `"10.2.0.0/24 via 10.1.0.1"`, `"default via 10.1.0.1"`.
    pub fn route(mut self, route: &str) -> Node {
        push(&mut self.0, "routes", route);
        self
    }

    /// A `net.*` sysctl of its namespace.
    pub fn sysctl(mut self, key: &str, value: impl Into<Value>) -> Node {
        sub(&mut self.0, "sysctls").insert(key.into(), value.into());
        self
    }

    /// A memory limit: `"256M"`.
    pub fn memory(self, size: &str) -> Node {
        self.set("memory", size)
    }

    /// A CPU limit, in CPUs.
    pub fn cpus(self, cpus: f64) -> Node {
        self.set("cpus", cpus)
    }

    /// The most processes it may have.
    pub fn pids(self, pids: u32) -> Node {
        self.set("pids", i64::from(pids))
    }

    /// Who its command runs as: `"nobody"`, `"1000:1000"`.
    pub fn user(self, user: &str) -> Node {
        self.set("user", user)
    }

    /// Its working directory.
    pub fn workdir(self, dir: &str) -> Node {
        self.set("workdir", dir)
    }

    /// How long its command has after its stop signal before it is killed.
    pub fn stop_timeout(self, grace: Duration) -> Node {
        self.set("stop_timeout", time(grace))
    }

    /// A host port forwarded to it: `"8080:80"` (its network needs NAT).
    pub fn port(mut self, port: &str) -> Node {
        push(&mut self.0, "ports", port);
        self
    }
}

impl From<Node> for Table {
    fn from(n: Node) -> Table {
        n.0
    }
}

/// A network (`[networks.NAME]`), typed.
#[derive(Debug, Clone, Default)]
pub struct Network(Table);

impl Network {
    /// A plain layer-2 segment with a free subnet.
    pub fn new() -> Network {
        Network::default()
    }

    /// Any key of the schema.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Network {
        set(&mut self.0, key, value);
        self
    }

    /// Its IPv4 subnet: `"10.42.0.0/24"`.
    pub fn subnet(self, cidr: &str) -> Network {
        self.set("subnet", cidr)
    }

    /// An IPv6 subnet too.
    pub fn ipv6(self) -> Network {
        self.set("ipv6", true)
    }

    /// Outbound masquerade through the host (and forwarded ports).
    pub fn nat(self) -> Network {
        self.set("nat", true)
    }

    /// The MTU of its bridge and interfaces.
    pub fn mtu(self, mtu: u32) -> Network {
        self.set("mtu", i64::from(mtu))
    }
}

impl From<Network> for Table {
    fn from(n: Network) -> Table {
        n.0
    }
}

/// A point-to-point link (`[[links]]`), typed.
#[derive(Debug, Clone, Default)]
pub struct Link(Table);

impl Link {
    /// A wire between two endpoints, `"node:ifname"` or `"node"`.
    pub fn new(a: &str, b: &str) -> Link {
        let mut t = Table::new();
        set(&mut t, "endpoints", strings([a, b]));
        Link(t)
    }

    /// Any key of the schema.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Link {
        set(&mut self.0, key, value);
        self
    }

    /// Its two IPv4 addresses: `("10.0.12.1/30", "10.0.12.2/30")`.
    pub fn addresses(self, a: &str, b: &str) -> Link {
        self.set("addresses", strings([a, b]))
    }

    /// The MTU of both ends.
    pub fn mtu(self, mtu: u32) -> Link {
        self.set("mtu", i64::from(mtu))
    }
}

impl From<Link> for Table {
    fn from(l: Link) -> Table {
        l.0
    }
}

/// A node's health check: a command run in it until it exits 0.
#[derive(Debug, Clone)]
pub struct Healthcheck(Table);

impl Healthcheck {
    /// Runs `argv`.
    pub fn cmd<I: IntoIterator<Item = S>, S: Into<String>>(argv: I) -> Healthcheck {
        let mut t = Table::new();
        set(&mut t, "cmd", strings(argv));
        Healthcheck(t)
    }

    /// Runs `script` with `/bin/sh -c`.
    pub fn shell(script: &str) -> Healthcheck {
        let mut t = Table::new();
        set(&mut t, "cmd", script);
        Healthcheck(t)
    }

    /// Time between checks (default 1 s).
    pub fn interval(mut self, every: Duration) -> Healthcheck {
        set(&mut self.0, "interval", time(every));
        self
    }

    /// How long one check may take (default 5 s).
    pub fn timeout(mut self, after: Duration) -> Healthcheck {
        set(&mut self.0, "timeout", time(after));
        self
    }

    /// Failures in a row that make the node unhealthy (default 3).
    pub fn retries(mut self, retries: u32) -> Healthcheck {
        set(&mut self.0, "retries", i64::from(retries));
        self
    }
}

/// An impairment of an interface: rate, delay, jitter, loss, corruption, duplication, each
/// as the topology file and `lab impair` write them (`"16mbit"`, `"50ms"`, `"1%"`) or as
/// numbers. A unit that does not parse makes the impairment an error when it is used.
///
/// ```
/// use lab::api::Impair;
/// use std::time::Duration;
///
/// let slow: lab::topology::Impairment = Impair::new().rate("16mbit").delay(Duration::from_millis(20)).try_into()?;
/// assert_eq!(slow.rate, Some(16_000_000));
/// assert!(Impair::new().rate("fast").build().is_err());
/// # Ok::<(), lab::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Impair {
    rate: Option<String>,
    delay: Option<Duration>,
    jitter: Option<Duration>,
    loss: Option<f64>,
    corrupt: Option<f64>,
    duplicate: Option<f64>,
}

impl Impair {
    /// No impairment (given to `impair`, it clears one).
    pub fn new() -> Impair {
        Impair::default()
    }

    /// A rate: `"16mbit"`, `"512kbit"`, `"1gbit"`.
    pub fn rate(mut self, rate: &str) -> Impair {
        self.rate = Some(rate.into());
        self
    }

    /// Added delay (needs sch_netem).
    pub fn delay(mut self, delay: Duration) -> Impair {
        self.delay = Some(delay);
        self
    }

    /// Delay variation (with a delay).
    pub fn jitter(mut self, jitter: Duration) -> Impair {
        self.jitter = Some(jitter);
        self
    }

    /// Percent of packets dropped.
    pub fn loss(mut self, percent: f64) -> Impair {
        self.loss = Some(percent);
        self
    }

    /// Percent of packets with a flipped bit.
    pub fn corrupt(mut self, percent: f64) -> Impair {
        self.corrupt = Some(percent);
        self
    }

    /// Percent of packets sent twice.
    pub fn duplicate(mut self, percent: f64) -> Impair {
        self.duplicate = Some(percent);
        self
    }

    /// The impairment, or why a value is not one.
    pub fn build(&self) -> Result<Impairment, Error> {
        let bad = |what: &str, e: String| Error::Usage(format!("impairment {what}: {e}"));
        let percent = |what: &str, p: Option<f64>| {
            p.map(|p| units::percent_ppm(p).ok_or_else(|| bad(what, format!("{p}% is not a percentage")))).transpose()
        };
        let micros = |d: Option<Duration>| d.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        Ok(Impairment {
            rate: self.rate.as_deref().map(units::parse_rate).transpose().map_err(|e| bad("rate", e))?,
            delay: micros(self.delay),
            jitter: micros(self.jitter),
            loss: percent("loss", self.loss)?,
            corrupt: percent("corrupt", self.corrupt)?,
            duplicate: percent("duplicate", self.duplicate)?,
        })
    }

    /// As the topology file writes it.
    fn table(&self) -> Table {
        let mut t = Table::new();
        if let Some(r) = &self.rate {
            set(&mut t, "rate", r.as_str());
        }
        for (key, d) in [("delay", self.delay), ("jitter", self.jitter)] {
            if let Some(d) = d {
                set(&mut t, key, time(d));
            }
        }
        for (key, p) in [("loss", self.loss), ("corrupt", self.corrupt), ("duplicate", self.duplicate)] {
            if let Some(p) = p {
                set(&mut t, key, format!("{p}%"));
            }
        }
        t
    }
}

impl TryFrom<Impair> for Impairment {
    type Error = Error;

    fn try_from(i: Impair) -> Result<Impairment, Error> {
        i.build()
    }
}

/// What [`super::RunningLab::impair`] takes: an [`Impairment`], or an [`Impair`] whose
/// units are checked when it is used.
pub trait IntoImpairment {
    /// The impairment, or why it is not one.
    fn into_impairment(self) -> Result<Impairment, Error>;
}

impl IntoImpairment for Impairment {
    fn into_impairment(self) -> Result<Impairment, Error> {
        Ok(self)
    }
}

impl IntoImpairment for Impair {
    fn into_impairment(self) -> Result<Impairment, Error> {
        self.build()
    }
}
