//! The Rust API, as an integration test of distributed software would use it: a real
//! three-node service (each node answers TCP with its name), partitioned, healed, a node
//! stopped and started, logs read, and the lab taken down on drop, also on a panic.

use crate::support::*;
use lab::api::{toml::toml, LabBuilder, RunningLab};
use lab::runtime::Options;

fn options() -> Options {
    Options { lab_binary: lab_bin().into(), ..Options::default() }
}

fn cluster(name: &str) -> lab::Topology {
    let probe = std::path::PathBuf::from(lab_bin()).with_file_name("lab-probe");
    let mount = format!("{}:/probe:ro", probe.display());
    let mut b = LabBuilder::new(name).network("lan", toml! { ipv6 = true });
    for n in ["n1", "n2", "n3"] {
        let mut node = toml! {
            networks = ["lan"]
            healthcheck = { cmd = ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/7000"], interval = "100ms", retries = 50 }
        };
        node.insert("command".into(), vec!["/probe", "serve", "7000", n].into());
        node.insert("mounts".into(), vec![mount.as_str()].into());
        b = b.node(n, node);
    }
    b.build().expect("a valid topology")
}

/// What `node` gets when it asks `peer` for its name.
fn ask(lab: &RunningLab, node: &str, peer: &str) -> Option<String> {
    let out = lab
        .exec(node, &["bash", "-c", &format!("timeout 2 bash -c 'exec 3<>/dev/tcp/{peer}/7000; head -1 <&3'")])
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn a_three_node_service_through_the_rust_api() {
    let _host = shared();
    let name = unique("api");
    let options = Options { wait: true, ..options() };
    let lab = RunningLab::up(&cluster(&name), options).expect("lab up");
    for (a, b) in [("n1", "n2"), ("n2", "n3"), ("n3", "n1")] {
        assert_eq!(ask(&lab, a, b).as_deref(), Some(b), "{a} asks {b}");
    }
    let out = lab.exec("n1", &["sh", "-c", "echo out; echo err >&2; exit 3"]).unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!((out.stdout.as_slice(), out.stderr.as_slice()), (&b"out\n"[..], &b"err\n"[..]));

    lab.partition(&["n1"], &["n2", "n3"]).unwrap();
    assert_eq!(ask(&lab, "n1", "n2"), None, "partitioned");
    assert_eq!(ask(&lab, "n2", "n3").as_deref(), Some("n3"), "the majority still talks");
    lab.heal().unwrap();
    assert_eq!(ask(&lab, "n1", "n2").as_deref(), Some("n2"), "healed");

    lab.stop("n3").unwrap();
    assert_eq!(ask(&lab, "n1", "n3"), None, "stopped");
    lab.start("n3").unwrap();
    let mut back = None;
    for _ in 0..50 {
        back = ask(&lab, "n1", "n3");
        if back.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(back.as_deref(), Some("n3"), "started again");
    let logs = lab.logs("n3").unwrap();
    assert!(logs.contains("Z lab: node exited"), "the first run's end is in the log: {logs}");
    let report = lab.down().unwrap();
    assert_eq!(report.nodes.len(), 3);
    assert_eq!(leftovers(&name), Vec::<String>::new());
}

#[test]
fn a_panicking_test_still_takes_its_lab_down() {
    let _host = shared();
    let name = unique("apipanic");
    let topology = LabBuilder::new(&name).node("a", toml! { command = ["sleep", "infinity"] }).build().unwrap();
    let panicked = std::thread::spawn(move || {
        let lab = RunningLab::up(&topology, options()).expect("lab up");
        assert!(!leftovers(lab.name().as_str()).is_empty(), "the lab is up");
        panic!("the test under the lab fails");
    })
    .join();
    assert!(panicked.is_err());
    assert_eq!(leftovers(&name), Vec::<String>::new(), "Drop took the lab down while unwinding");
}

#[test]
fn builder_mistakes_point_into_its_toml() {
    let err = LabBuilder::new("bad").node("a", toml! { restart = "sometimes" }).build().unwrap_err();
    assert!(err.to_string().contains("restart `sometimes` is not a policy"), "{err}");
    assert!(err.location().starts_with("<builder bad>.toml:"), "{}", err.location());
}
