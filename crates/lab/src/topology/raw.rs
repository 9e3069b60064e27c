//! The topology file as written: serde structures that keep the span of every value, so that
//! validation can point at the exact text. Unknown keys are rejected here.

use indexmap::IndexMap;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use toml::Spanned;

pub type Str = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTopology {
    pub name: Option<Str>,
    /// Settings of every node that does not set them itself (node-only keys are refused).
    #[serde(default)]
    pub defaults: RawNode,
    #[serde(default)]
    pub networks: IndexMap<Str, RawNetwork>,
    #[serde(default)]
    pub nodes: IndexMap<Str, RawNode>,
    #[serde(default)]
    pub links: Vec<Spanned<RawLink>>,
    /// What `lab check` checks.
    #[serde(default)]
    pub checks: Vec<Spanned<super::checks::RawCheck>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    pub subnet: Option<Str>,
    pub subnet6: Option<Str>,
    /// IPv6 with a subnet picked from the free pool.
    pub ipv6: Option<Spanned<bool>>,
    pub mtu: Option<Spanned<i64>>,
    #[serde(default)]
    pub nat: bool,
    /// Spanning tree on the network's bridge.
    #[serde(default)]
    pub stp: bool,
    /// Nodes get addresses on it (`false`: a bare layer-2 segment, addressed by the nodes).
    #[serde(default = "yes")]
    pub addresses: bool,
}

fn yes() -> bool {
    true
}

/// A node's keys. Every key but `networks`, `hostname` and the flags may be `false` in a node
/// to clear what `[defaults]` set ([`Opt`]); see `merge` for how a node and the defaults combine.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub networks: Option<Spanned<RawAttachments>>,
    #[serde(default)]
    pub command: Opt<RawCommand>,
    #[serde(default)]
    pub env: IndexMap<Str, Str>,
    #[serde(default)]
    pub rootfs: Opt<String>,
    /// An OCI image to run on instead of a rootfs: `"alpine:3.20"`, as Docker reads names.
    #[serde(default)]
    pub image: Opt<String>,
    /// With an image: what runs first, replacing the image's Entrypoint (and its Cmd unless
    /// `command` is given), as `docker run --entrypoint` does.
    #[serde(default)]
    pub entrypoint: Opt<RawCommand>,
    pub hostname: Option<Str>,
    #[serde(default)]
    pub seccomp: Opt<String>,
    #[serde(default)]
    pub cap_add: Opt<Vec<Str>>,
    #[serde(default)]
    pub cap_drop: Opt<Vec<Str>>,
    pub privileged: Option<Spanned<bool>>,
    pub userns: Option<Spanned<bool>>,
    /// What a kind of node needs, by name: `"router"`.
    #[serde(default)]
    pub preset: Opt<String>,
    /// Shell commands run as root in the node before its command starts.
    #[serde(default)]
    pub setup: Opt<Vec<Str>>,
    #[serde(default)]
    pub memory: Opt<RawScalar>,
    /// Where the writable layer is: `"disk"` (the default) or `"tmpfs"`.
    #[serde(default)]
    pub scratch: Opt<String>,
    /// The most a tmpfs writable layer holds: `"2G"`.
    #[serde(default)]
    pub scratch_size: Opt<RawScalar>,
    #[serde(default)]
    pub cpus: Opt<RawScalar>,
    #[serde(default)]
    pub pids: Opt<RawScalar>,
    #[serde(default)]
    pub io_weight: Opt<RawScalar>,
    #[serde(default)]
    pub mounts: Opt<Vec<Str>>,
    /// Named volumes lab makes for the node: `["pgdata:/var/lib/postgresql"]`.
    #[serde(default)]
    pub volumes: Opt<Vec<Str>>,
    /// Addresses on the node's `lo`: `["10.255.0.1/32", "fd00::1/128"]`.
    #[serde(default)]
    pub loopback: Opt<Vec<Str>>,
    /// A directory (beside the topology file) laid over the node's root at start.
    #[serde(default)]
    pub files: Opt<String>,
    /// Scripts run in the node once its network is up, in order, before its `exec` hooks:
    /// `"r1.startup"` or `["common.sh", "r1.sh"]`.
    #[serde(default)]
    pub startup: Opt<RawPaths>,
    /// A directory mounted at /shared.
    #[serde(default)]
    pub shared: Opt<String>,
    /// Host paths the node's default view of the host hides, shown after all.
    #[serde(default)]
    pub reveal: Opt<Vec<Str>>,
    #[serde(default)]
    pub routes: Opt<Vec<Str>>,
    #[serde(default)]
    pub sysctls: IndexMap<Str, Spanned<RawScalar>>,
    #[serde(default)]
    pub ports: Opt<Vec<Str>>,
    /// Impairments by interface name.
    #[serde(default)]
    pub impair: IndexMap<Str, Spanned<RawImpair>>,
    #[serde(default)]
    pub workdir: Opt<String>,
    #[serde(default)]
    pub user: Opt<String>,
    #[serde(default)]
    pub restart: Opt<String>,
    /// The signal `lab stop` and `lab down` send the command first: "SIGTERM", "INT", "9".
    #[serde(default)]
    pub stop_signal: Opt<String>,
    /// How long the command has to end after its stop signal before it is killed: "10s".
    #[serde(default)]
    pub stop_timeout: Opt<String>,
    #[serde(default)]
    pub depends_on: Opt<Vec<Str>>,
    #[serde(default)]
    pub healthcheck: Opt<RawHealthcheck>,
    /// Commands run in the node once its network is up and its command started.
    #[serde(default)]
    pub exec: Opt<Vec<Str>>,
    /// `systemctl` and `service` start services without systemd (a Kathará lab's).
    #[serde(skip)]
    pub systemd: bool,
}

/// A key a node may set, leave to `[defaults]`, or clear with `false`.
#[derive(Debug, Clone, Default)]
pub enum Opt<T> {
    /// Not written: the default's, if any.
    #[default]
    Unset,
    /// `false`: neither the node's nor the default's.
    Off(std::ops::Range<usize>),
    /// A value, where it is written.
    Set(Spanned<T>),
}

impl<T> Opt<T> {
    /// The value, if one is set.
    pub fn get(&self) -> Option<&Spanned<T>> {
        match self {
            Opt::Set(v) => Some(v),
            _ => None,
        }
    }

    /// Where the key is written, set or cleared.
    pub fn span(&self) -> Option<std::ops::Range<usize>> {
        match self {
            Opt::Unset => None,
            Opt::Off(span) => Some(span.clone()),
            Opt::Set(v) => Some(v.span()),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Opt<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Spanned::<FalseOr<T>>::deserialize(d)?;
        let span = v.span();
        Ok(match v.into_inner() {
            FalseOr::False => Opt::Off(span),
            FalseOr::Value(t) => Opt::Set(Spanned::new(span, t)),
        })
    }
}

/// `false`, or what `T` reads: the other values are handed to `T` as they come.
enum FalseOr<T> {
    False,
    Value(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for FalseOr<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use de::value::{F64Deserializer, I64Deserializer, MapAccessDeserializer, SeqAccessDeserializer};
        use de::value::{StrDeserializer, U64Deserializer};
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = FalseOr<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value, or false to clear the default")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                if v {
                    return Err(E::custom("`true` means nothing here: write a value, or false to clear the default"));
                }
                Ok(FalseOr::False)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(StrDeserializer::<E>::new(v)).map(FalseOr::Value)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                T::deserialize(I64Deserializer::<E>::new(v)).map(FalseOr::Value)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                T::deserialize(U64Deserializer::<E>::new(v)).map(FalseOr::Value)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                T::deserialize(F64Deserializer::<E>::new(v)).map(FalseOr::Value)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                T::deserialize(SeqAccessDeserializer::new(seq)).map(FalseOr::Value)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(FalseOr::Value)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// `healthcheck = { cmd = [...], interval = "1s", timeout = "5s", retries = 3 }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthcheck {
    pub cmd: Spanned<RawCommand>,
    pub interval: Option<Str>,
    pub timeout: Option<Str>,
    pub retries: Option<Spanned<i64>>,
}

/// `rate = "10mbit"`, `delay = "50ms"`, `jitter = "5ms"`, `loss = "1%"`, `corrupt`, `duplicate`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImpair {
    pub rate: Option<Str>,
    pub delay: Option<Str>,
    pub jitter: Option<Str>,
    pub loss: Option<Spanned<RawScalar>>,
    pub corrupt: Option<Spanned<RawScalar>>,
    pub duplicate: Option<Spanned<RawScalar>>,
}

/// A number or a string: `memory = "256M"` or `memory = 268435456`, `cpus = 0.5` or `cpus = 2`.
#[derive(Debug, Clone, PartialEq)]
pub enum RawScalar {
    Int(i64),
    Float(f64),
    Str(String),
}

impl<'de> Deserialize<'de> for RawScalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawScalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(RawScalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v).map(RawScalar::Int).map_err(|_| E::custom("number too large"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(RawScalar::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawScalar::Str(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLink {
    pub endpoints: Spanned<Vec<Str>>,
    pub addresses: Option<Spanned<Vec<Str>>>,
    /// A second pair, of the other IP version.
    pub addresses6: Option<Spanned<Vec<Str>>>,
    pub mtu: Option<Spanned<i64>>,
}

/// `networks = ["lan", "wan"]` or `networks = { lan = "10.0.0.5", wan = "auto" }`.
#[derive(Debug, Clone)]
pub enum RawAttachments {
    List(Vec<Str>),
    Table(Vec<(Str, Spanned<RawAttach>)>),
}

/// One network of a node's table: `"10.0.0.5"`, `["10.0.0.5", "fd00::5"]`, or
/// `{ ifname = "uplink", addresses = [...] }`.
#[derive(Debug, Clone)]
pub enum RawAttach {
    /// One address, written as a plain string (its span is the value's).
    One(String),
    Addresses(Vec<Str>),
    Table {
        ifname: Option<Str>,
        addresses: Vec<Str>,
        /// An access port of this VLAN.
        vlan: Option<Spanned<i64>>,
        /// A trunk of these VLANs, tagged.
        vlans: Option<Spanned<Vec<Spanned<i64>>>>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttachTable {
    ifname: Option<Str>,
    address: Option<Str>,
    #[serde(default)]
    addresses: Vec<Str>,
    vlan: Option<Spanned<i64>>,
    vlans: Option<Spanned<Vec<Spanned<i64>>>>,
}

impl<'de> Deserialize<'de> for RawAttach {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAttach;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an address, a list of addresses, or a table with ifname and addresses")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawAttach::One(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<Str>()? {
                    out.push(v);
                }
                Ok(RawAttach::Addresses(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let t = RawAttachTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let addresses = t.address.into_iter().chain(t.addresses).collect();
                Ok(RawAttach::Table { ifname: t.ifname, addresses, vlan: t.vlan, vlans: t.vlans })
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawAttachments {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAttachments;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of network names or a table of network name = address")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<Str>()? {
                    out.push(v);
                }
                Ok(RawAttachments::List(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<Str, Spanned<RawAttach>>()? {
                    out.push((k, v));
                }
                Ok(RawAttachments::Table(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A string, or a list of strings each where it is written.
#[derive(Debug, Clone)]
pub enum OneOrList {
    One(String),
    List(Vec<Str>),
}

/// `command = ["sleep", "infinity"]` (program and arguments) or `command = "nc -l -p 80"`
/// (run by `/bin/sh -c`).
pub type RawCommand = OneOrList;

/// `startup = "r1.sh"` or `startup = ["common.sh", "r1.sh"]`: paths, in order.
pub type RawPaths = OneOrList;

impl<'de> Deserialize<'de> for OneOrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(OneOrList::One(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<Str>()? {
                    out.push(v);
                }
                Ok(OneOrList::List(out))
            }
        }
        d.deserialize_any(V)
    }
}
