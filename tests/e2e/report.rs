//! What this machine lacks that some tests need, and which tests ran here because of it.
//!
//! A test that needs a kernel feature asks [`needs`]; one that checks something else where
//! the feature is missing (lab's error) asks [`with_or_without`]. Either way the answer is
//! recorded, a line per test, in the file `$LAB_TEST_REPORT` names, under a line that says
//! what this machine is. `.ci/run` and `scripts/vm-test` set it, and `scripts/test-report`
//! puts the host's and the VM's side by side, failing if a test ran in neither.

use crate::support::host;
use std::io::Write;
use std::sync::{Mutex, OnceLock};

/// A kernel feature that not every kernel has.
#[derive(Debug, Clone, Copy)]
pub enum Feature {
    /// The netem qdisc: delay, jitter, loss, corruption, duplication.
    Netem,
    /// Bridges that filter by VLAN, and 802.1Q devices in nodes.
    Vlans,
}

impl Feature {
    fn name(self) -> &'static str {
        match self {
            Feature::Netem => "sch_netem (CONFIG_NET_SCH_NETEM)",
            Feature::Vlans => "VLAN filtering bridges and 802.1Q (CONFIG_BRIDGE_VLAN_FILTERING, CONFIG_VLAN_8021Q)",
        }
    }

    /// Checked once, from outside lab, in a network namespace of its own.
    pub fn present(self) -> bool {
        static NETEM: OnceLock<bool> = OnceLock::new();
        static VLANS: OnceLock<bool> = OnceLock::new();
        match self {
            Feature::Netem => *NETEM.get_or_init(|| {
                host("unshare --net sh -c 'tc qdisc add dev lo root netem delay 1ms'").status.success()
            }),
            Feature::Vlans => {
                *VLANS.get_or_init(|| // The bridge module may not load itself (lab loads it before it makes a bridge).
                host("modprobe -q bridge 2>/dev/null; unshare --net ip link add name lab-probe type bridge vlan_filtering 1")
                    .status
                    .success())
            }
        }
    }
}

/// For a test that needs `feature`: whether it runs here. Where it does not, it says which
/// feature is missing (and the report says where the test did run).
pub fn needs(feature: Feature) -> bool {
    let present = feature.present();
    if present {
        record("ran");
    } else {
        eprintln!("{}: not run here: this kernel has no {}", test_name(), feature.name());
        record(&format!("not run: no {}", feature.name()));
    }
    present
}

/// For a test with one check where `feature` is present and another where it is missing:
/// whether it is present.
pub fn with_or_without(feature: Feature) -> bool {
    let present = feature.present();
    record(&format!("ran {} {}", if present { "with" } else { "without" }, feature.name()));
    present
}

/// The running test's name, as the test harness names its thread (`netem::delay_...`).
fn test_name() -> String {
    std::thread::current().name().unwrap_or("(unnamed test)").to_string()
}

/// This machine, as the report's first line: kernel, cgroup setup, the features above.
fn machine() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    const CGROUP2: i64 = 0x6367_7270;
    let v2 = nix::sys::statfs::statfs("/sys/fs/cgroup").is_ok_and(|s| s.filesystem_type().0 == CGROUP2);
    let netem = if Feature::Netem.present() { "sch_netem" } else { "no sch_netem" };
    let vlans = if Feature::Vlans.present() { "VLANs" } else { "no VLANs" };
    format!("kernel {}, {}, {netem}, {vlans}", kernel.trim(), if v2 { "cgroup v2" } else { "cgroup v1/hybrid" })
}

fn record(outcome: &str) {
    let Some(path) = std::env::var_os("LAB_TEST_REPORT") else { return };
    static FILE: Mutex<Option<std::fs::File>> = Mutex::new(None);
    let mut file = FILE.lock().unwrap_or_else(|p| p.into_inner());
    if file.is_none() {
        let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&path) else {
            eprintln!("cannot write the test report {}", path.to_string_lossy());
            return;
        };
        if f.metadata().is_ok_and(|m| m.len() == 0) {
            let _ = writeln!(f, "# {}", machine());
        }
        *file = Some(f);
    }
    if let Some(f) = file.as_mut() {
        let _ = writeln!(f, "{}\t{outcome}", test_name());
    }
}
