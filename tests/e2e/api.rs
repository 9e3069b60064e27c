//! The Rust API, as integration tests of distributed software use it: a real three-node
//! service (each node answers TCP with its name), partitioned, healed, a node stopped and
//! started, logs read; from plain tests and from `#[tokio::test]`s (both flavours), a lab
//! taken down on drop (also on a panic, also inside a runtime), typed exec results, no
//! signal handlers left behind, and labs of a SIGKILLed test process reaped.

use crate::support::*;
use lab::api::blocking::RunningLab;
use lab::api::{toml::toml, Error, Exec, LabBuilder, Node, UpOptions};
use std::time::{Duration, Instant};

fn options() -> UpOptions {
    UpOptions { lab_binary: Some(lab_bin().into()), ..UpOptions::default() }
}

fn sleeper(name: &str) -> lab::Topology {
    LabBuilder::new(name).node("a", Node::new().command(["sleep", "infinity"])).build().expect("a valid topology")
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
    let script = format!("exec 3<>/dev/tcp/{peer}/7000; head -1 <&3");
    let out = lab.exec_with(node, Exec::new(["bash", "-c", &script]).timeout(Duration::from_secs(2))).ok()?;
    out.success().then(|| out.stdout_text().trim().to_string())
}

/// Waits (for at most 10 s) until nothing of lab `name` is left: a teardown that runs on its
/// own, after a drop inside a runtime.
fn gone(name: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = leftovers(name);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_three_node_service_through_the_rust_api() {
    let _host = shared();
    let name = unique("api");
    let lab = RunningLab::up_with(&cluster(&name), options()).expect("lab up");
    for (a, b) in [("n1", "n2"), ("n2", "n3"), ("n3", "n1")] {
        assert_eq!(ask(&lab, a, b).as_deref(), Some(b), "{a} asks {b}");
    }
    let out = lab.exec("n1", &["sh", "-c", "echo out; echo err >&2; exit 3"]).unwrap();
    assert_eq!((out.code, out.signal), (3, None));
    assert_eq!((out.stdout.as_slice(), out.stderr.as_slice()), (&b"out\n"[..], &b"err\n"[..]));

    lab.partition(&["n1"], &["n2", "n3"]).unwrap();
    assert_eq!(ask(&lab, "n1", "n2"), None, "partitioned");
    assert_eq!(ask(&lab, "n2", "n3").as_deref(), Some("n3"), "the majority still talks");
    lab.heal().unwrap();
    assert_eq!(ask(&lab, "n1", "n2").as_deref(), Some("n2"), "healed");

    lab.stop_with("n3", Duration::from_millis(500)).unwrap();
    assert_eq!(ask(&lab, "n1", "n3"), None, "stopped");
    lab.start("n3").unwrap();
    lab.wait_healthy("n3", Duration::from_secs(10)).expect("n3 serves again");
    assert_eq!(ask(&lab, "n1", "n3").as_deref(), Some("n3"), "started again");
    let n3 = lab.node("n3").unwrap();
    let (v4, v6) = (n3.ipv4("lan").expect("an IPv4 address"), n3.ipv6("lan").expect("an IPv6 address"));
    assert!(n3.mac("lan").is_some_and(|m| m.len() == 17), "{n3:?}");
    let seen = lab.sh("n1", "getent hosts n3 | cut -d' ' -f1 | sort").unwrap();
    assert!(seen.contains(&v4.to_string()) || seen.contains(&v6.to_string()), "{seen} names {v4} or {v6}");
    let lines = lab.log_lines("n3").unwrap();
    assert!(lines.iter().any(|l| l.stream == lab::api::Stream::Lab && l.text.contains("node exited")), "{lines:?}");
    assert!(lab.logs("n3").unwrap().contains("Z lab: node exited"));
    let report = lab.down().unwrap();
    assert_eq!(report.nodes.len(), 3);
    assert_eq!(leftovers(&name), Vec::<String>::new());
}

#[test]
fn exec_says_what_lab_could_not_do_apart_from_what_the_command_did() {
    let _host = shared();
    let name = unique("apiexec");
    let lab = RunningLab::up_with(&sleeper(&name), options()).expect("lab up");
    // The command's own 125 is the command's.
    let own = lab.exec("a", &["sh", "-c", "exit 125"]).unwrap();
    assert_eq!((own.code, own.signal), (125, None));
    let killed = lab.exec("a", &["sh", "-c", "kill -TERM $$"]).unwrap();
    assert_eq!((killed.code, killed.signal), (143, Some(15)), "{killed:?}");
    assert!(!killed.success());
    let with = Exec::new(["sh", "-c", "cat; echo \"$X\"; pwd; id -u"])
        .stdin("in\n")
        .env("X", "y")
        .workdir("/tmp")
        .user("65534");
    assert_eq!(lab.exec_with("a", with).unwrap().stdout_text(), "in\ny\n/tmp\n65534\n");
    // A hung command fails the call, and is killed with what it started.
    let started = Instant::now();
    let hung = lab.exec_with("a", Exec::sh("sleep 300 & sleep 301").timeout(Duration::from_millis(300)));
    assert!(matches!(hung.as_ref().map_err(Error::root), Err(Error::TimedOut { .. })), "{hung:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    let left = lab.exec("a", &["sh", "-c", "ps -eo args | grep -c '^sleep 30[01]' || true"]).unwrap();
    assert_eq!(left.stdout_text().trim(), "0", "the timeout killed the command's process group");
    let missing = lab.exec("nosuch", &["true"]).unwrap_err();
    assert!(matches!(missing.root(), Error::NoSuchNode { .. }), "{missing}");
    assert!(missing.report().contains("hint: `lab ps` lists"), "{}", missing.report());
    let no_check = lab.wait_healthy("a", Duration::from_secs(1)).unwrap_err();
    assert!(no_check.to_string().contains("it has no healthcheck to wait for"), "{no_check}");
    let no_partition = lab.heal_partition(&["a"], &["a"]).unwrap_err();
    assert_eq!(no_partition.to_string(), "no partition between a and a");
    lab.pause("a").unwrap();
    assert!(matches!(lab.exec("a", &["true"]).unwrap_err().root(), Error::Paused(_)));
    lab.resume("a").unwrap();
    lab.stop_with("a", Duration::ZERO).unwrap();
    assert!(matches!(lab.exec("a", &["true"]).unwrap_err().root(), Error::Stopped(_)));
    assert!(format!("{lab:?}").contains(&name), "Debug names the lab");
    lab.down().unwrap();
    assert_eq!(leftovers(&name), Vec::<String>::new());
}

#[test]
fn a_panicking_test_still_takes_its_lab_down() {
    let _host = shared();
    let name = unique("apipanic");
    let topology = sleeper(&name);
    let panicked = std::thread::spawn(move || {
        let lab = RunningLab::up_with(&topology, options()).expect("lab up");
        assert!(!leftovers(lab.name().as_str()).is_empty(), "the lab is up");
        panic!("the test under the lab fails");
    })
    .join();
    assert!(panicked.is_err());
    assert_eq!(leftovers(&name), Vec::<String>::new(), "Drop took the lab down while unwinding");
}

// The host guard is held for the whole test, as in every other test: only tests that need the
// host to themselves wait for it, on threads of their own.
#[allow(clippy::await_holding_lock)]
#[tokio::test]
async fn async_tests_use_the_api_on_their_own_thread() {
    let _host = shared();
    let name = unique("apiasync");
    let lab = lab::api::RunningLab::up_with(&sleeper(&name), options()).await.expect("lab up");
    let out = lab.exec("a", &["hostname"]).await.unwrap();
    assert_eq!(out.stdout_text(), "a\n");
    lab.stop("a").await.unwrap();
    lab.start("a").await.unwrap();
    lab.pause("a").await.unwrap();
    lab.resume("a").await.unwrap();
    // The sync face works here too (it blocks this thread, and nothing else).
    let report = lab.down().await.unwrap();
    assert_eq!(report.nodes.len(), 1);
    assert_eq!(leftovers(&name), Vec::<String>::new());
    // Dropped inside the runtime, without `down`: taken down by a `lab down` of its own.
    let name = unique("apiasyncdrop");
    let lab = lab::api::RunningLab::up_with(&sleeper(&name), options()).await.expect("lab up");
    drop(lab);
    assert_eq!(gone(&name), Vec::<String>::new());
}

#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_inside_a_runtime_neither_aborts_nor_leaks() {
    let _host = shared();
    let name = unique("apiasyncpanic");
    let topology = sleeper(&name);
    let task = tokio::spawn(async move {
        let lab = lab::api::RunningLab::up_with(&topology, options()).await.expect("lab up");
        // A blocking handle inside the runtime, dropped while unwinding too.
        let sync = RunningLab::up_with(&sleeper(&format!("{}-b", lab.name())), options()).expect("second lab up");
        assert!(!leftovers(sync.name().as_str()).is_empty());
        panic!("the test under the lab fails");
    });
    assert!(task.await.unwrap_err().is_panic(), "the panic reached the test, not an abort");
    assert_eq!(gone(&name), Vec::<String>::new());
    assert_eq!(gone(&format!("{name}-b")), Vec::<String>::new());
}

/// Signals caught by this process (SigCgt of /proc/self/status has bit N-1 for signal N).
fn caught() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let mask = status.lines().find_map(|l| l.strip_prefix("SigCgt:")).unwrap().trim();
    u64::from_str_radix(mask, 16).unwrap()
}

#[test]
fn the_api_leaves_sigint_and_sigterm_to_the_test_process() {
    let _host = shared();
    let name = unique("apisig");
    let lab = RunningLab::up_with(&sleeper(&name), options()).expect("lab up");
    let mask = caught();
    assert_eq!(mask & (1 << (libc::SIGINT - 1)), 0, "SIGINT is not caught after up");
    assert_eq!(mask & (1 << (libc::SIGTERM - 1)), 0, "SIGTERM is not caught after up");
    lab.down().unwrap();
}

#[test]
fn a_binary_that_is_not_lab_is_refused_by_name() {
    let test_binary = std::env::current_exe().unwrap();
    let options = UpOptions { lab_binary: Some(test_binary.clone()), ..UpOptions::default() };
    let err = RunningLab::up_with(&sleeper("t-apinotlab"), options).unwrap_err();
    assert!(matches!(err, Error::LabBinary(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains(&test_binary.display().to_string()) && text.contains("not a lab executable"), "{text}");
    assert!(err.report().contains("hint: set LAB_BIN"), "{}", err.report());
}

#[test]
fn unique_names_and_typed_nodes() {
    let (a, b) = (LabBuilder::unique("same"), LabBuilder::unique("same"));
    assert_ne!(a.name(), b.name());
    assert!(a.name().starts_with("same-"));
    let long = LabBuilder::unique(&"x".repeat(80));
    assert!(long.name().len() <= 63, "{}", long.name());
    let name = a.name().to_string();
    let topology = a.node("n", Node::new().command(["true"])).build().unwrap();
    assert_eq!(topology.name.as_str(), name);
}

#[test]
fn builder_mistakes_point_into_its_toml() {
    let err = LabBuilder::new("bad").node("a", toml! { restart = "sometimes" }).build().unwrap_err();
    assert!(err.to_string().contains("restart `sometimes` is not a policy"), "{err}");
    assert!(err.location().starts_with("<builder bad>.toml:"), "{}", err.location());
}

/// The test process a SIGKILL ends with a lab up: run only as the child of
/// `labs_of_a_killed_test_process_are_reaped`.
#[test]
#[ignore = "the child of labs_of_a_killed_test_process_are_reaped"]
fn owner_that_is_killed() {
    let Ok(name) = std::env::var("LAB_E2E_ORPHAN") else { return };
    let lab = RunningLab::up_with(&sleeper(&name), options()).expect("lab up");
    println!("\nUP {}", lab.name());
    std::thread::sleep(Duration::from_secs(600));
}

/// Brings lab `name` up from a child test process, and SIGKILLs that process.
fn orphan(name: &str) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "api::owner_that_is_killed", "--ignored", "--nocapture", "--test-threads=1"])
        .env("LAB_E2E_ORPHAN", name)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let up = std::io::BufReader::new(stdout).lines().map_while(Result::ok).any(|l| l.starts_with("UP "));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(up, "the child brought its lab up");
    assert!(!leftovers(name).is_empty(), "a SIGKILL takes nothing down");
}

#[test]
fn labs_of_a_killed_test_process_are_reaped() {
    let _host = shared();
    // The next up through the API takes the orphan down first.
    let first = unique("apiorphan");
    let _guard = Lab::adopt(&first, std::path::Path::new(""), tempfile::tempdir().unwrap());
    orphan(&first);
    let cli = Lab::up("apinotorphan", "[nodes.a]\ncommand = [\"sleep\", \"infinity\"]\n");
    let reaper = RunningLab::up_with(&sleeper(&unique("apireaper")), options()).expect("lab up");
    assert_eq!(leftovers(&first), Vec::<String>::new(), "reaped by the next up");
    assert!(!leftovers(&cli.name).is_empty(), "a lab of the CLI's has no owner: never an orphan");
    assert!(!leftovers(reaper.name().as_str()).is_empty(), "a lab whose owner runs is no orphan");
    // And so does `lab down --orphans`.
    let second = unique("apiorphan");
    let _guard = Lab::adopt(&second, std::path::Path::new(""), tempfile::tempdir().unwrap());
    orphan(&second);
    let out = lab(&["down", "--orphans"]);
    assert!(out.status.success() && text(&out.stderr).contains(&second), "{}", show(&out));
    assert_eq!(leftovers(&second), Vec::<String>::new());
    assert!(!leftovers(reaper.name().as_str()).is_empty());
    let again = lab(&["down", "--orphans"]);
    assert!(again.status.success() && text(&again.stderr).contains("no orphaned labs"), "{}", show(&again));
    reaper.down().unwrap();
}
