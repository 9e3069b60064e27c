//! `lab-net`: the network plumbing of a lab, over netlink only.
//!
//! Bridges, veth pairs (created straight into a node's network namespace), addresses and
//! routes through rtnetlink; tc wires and IFB shaping on host-side interfaces; NAT, isolation
//! and partitions through nf_tables messages (libnftnl); persistent network namespace names
//! where `ip netns` finds them. Knows nothing of nodes or topology files.
//!
//! A [`Netlink`] handle is bound to one network namespace: [`Netlink::host`] for the caller's,
//! [`Netlink::in_netns`] for a node's (the socket is opened on a short-lived thread that
//! entered the namespace; the thread ends, the socket stays bound there).

mod addr;
mod bridge;
pub mod capture;
mod error;
mod ffi;
pub mod firewall;
mod handle;
pub mod nat;
pub mod netns;
mod nft;
pub mod preload;
pub mod sysctl;
pub mod tc;
mod veth;
mod wire;

pub use addr::HostRoute;
pub use bridge::{BridgeOptions, PortVlan};
pub use error::{Error, Result};
pub use handle::{LinkInfo, Netlink};
pub use veth::VethEnd;
