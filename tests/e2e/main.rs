//! End-to-end tests: the built `lab` binary, run as root against the real kernel.
//! Each test makes uniquely named labs and takes them down in a guard, also when it fails.
//!
//! Between fork and exec (terminal sessions, leaked fds) the tests make raw syscalls, a few
//! to a block, each block saying why that is sound.
#![allow(clippy::multiple_unsafe_ops_per_block)]

mod api;
mod check;
mod cli;
mod conventions;
mod errors;
mod escape;
mod escape_network;
mod exec;
mod host;
mod image;
mod isolation;
mod kathara;
mod kit;
mod lifecycle;
mod limits;
mod logs;
mod nat;
mod netem;
mod network;
mod ps;
mod readme;
mod registry;
mod report;
mod routing;
mod security;
mod services;
mod support;
mod vlan;
