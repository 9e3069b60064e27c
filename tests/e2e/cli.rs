//! The command line as containerlab, Docker and Compose users expect it: nodes named per lab
//! (`LAB/NODE`), `down` by the file a lab came from, `lab.toml` found as Compose finds its
//! file, namespace names that cannot collide, graceful stop, and `up` losing to `down`.

use crate::support::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `lab` with `args` in directory `dir`.
fn lab_in(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(lab_bin()).args(args).current_dir(dir).stdin(Stdio::null()).output().expect("running lab")
}

#[test]
fn a_node_name_in_two_labs_is_named_lab_slash_node_by_every_command() {
    let _host = shared();
    let topo = "[networks.lan]\n[nodes.node1]\nnetworks = [\"lan\"]\n[nodes.node2]\nnetworks = [\"lan\"]\n";
    let one = Lab::up("addr", topo);
    let two = Lab::up("addr", topo);
    // Ambiguous: the error lists the candidates as they are typed.
    let out = lab(&["exec", "node1", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", show(&out));
    for l in [&one, &two] {
        assert!(text(&out.stderr).contains(&format!("{}/node1", l.name)), "{}", show(&out));
    }
    // LAB/NODE and --lab both say which; they must agree.
    let slash = format!("{}/node1", one.name);
    let out = lab(&["exec", &slash, "cat", "/etc/hostname"]);
    assert_eq!(text(&out.stdout), "node1\n", "{}", show(&out));
    let out = lab(&["exec", "-l", &two.name, "node1", "ping", "-c1", "-W2", "node2"]);
    assert!(out.status.success(), "{}", show(&out));
    let out = lab(&["exec", "-l", &two.name, &slash, "true"]);
    assert_eq!(out.status.code(), Some(2), "a contradiction is a usage error:\n{}", show(&out));
    // Every command that names a node takes the same form.
    let if1 = format!("{slash}:eth0");
    let other = format!("{}/node2", one.name);
    let steps: Vec<Vec<&str>> = vec![
        vec!["stats", &slash, "--json"],
        vec!["logs", &slash],
        vec!["pause", &slash],
        vec!["resume", &slash],
        vec!["impair", &if1, "--rate", "10mbit"],
        vec!["impair", &if1, "--clear"],
        vec!["link", &if1, "down"],
        vec!["link", &if1, "up"],
        vec!["partition", &slash, "--from", &other],
        vec!["heal", &one.name],
        vec!["stop", &slash],
        vec!["start", &slash],
        vec!["restart", &slash, "-t", "0"],
    ];
    for args in &steps {
        let out = lab(args);
        assert!(out.status.success(), "lab {}:\n{}", args.join(" "), show(&out));
    }
    let pcap = tempfile::NamedTempFile::new().expect("temp file");
    let capture = Command::new(lab_bin())
        .args(["capture", &if1, "-c", "1", "-w", pcap.path().to_str().expect("utf-8")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lab capture");
    // Traffic until the capture has its packet; then ^C to the ping (lab exec passes it on).
    let mut pinger = Command::new(lab_bin())
        .args(["exec", &other, "ping", "-i", "0.1", "-w", "10", "node1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ping");
    let out = capture.wait_with_output().expect("lab capture ends");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pinger.id() as i32), nix::sys::signal::SIGINT);
    let _ = pinger.wait();
    assert!(out.status.success(), "{}", show(&out));
    assert!(text(&out.stderr).contains("1 packet captured"), "{}", show(&out));
    // The other lab's node1 was never touched.
    let json = lab_json(&two.name);
    assert!(json["nodes"].as_array().into_iter().flatten().all(|n| n["state"] == "running"), "{json}");
    one.down();
    two.down();
}

#[test]
fn down_by_file_takes_down_the_lab_from_that_file_and_never_a_namesake() {
    let _host = shared();
    let dir = tempfile::tempdir().expect("temp dir");
    let name = unique("byfile");
    let copy = format!("{name}-copy");
    // Two files that carry the same `name`.
    let f = dir.path().join("f.toml");
    let g = dir.path().join("g.toml");
    for file in [&f, &g] {
        std::fs::write(file, format!("name = \"{name}\"\n[nodes.a]\n")).expect("writing topology");
    }
    let out = lab(&["up", g.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    let _g = Lab::adopt(&name, &g, tempfile::tempdir().expect("temp dir"));
    let out = lab(&["up", f.to_str().unwrap(), "--name", &copy]);
    assert!(out.status.success(), "{}", show(&out));
    let _f = Lab::adopt(&copy, &f, tempfile::tempdir().expect("temp dir"));
    // f.toml's lab is the copy, not the lab named in it (which came from g.toml).
    let out = lab(&["down", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(text(&out.stderr).contains(&format!("lab {copy} is down")), "{}", show(&out));
    assert_eq!(leftovers(&copy), Vec::<String>::new());
    assert_eq!(lab_json(&name)["nodes"][0]["state"], "running");
    // Again: nothing of f.toml is up; the namesake from g.toml is named, not touched.
    let out = lab(&["down", f.to_str().unwrap()]);
    assert!(out.status.success(), "down stays idempotent:\n{}", show(&out));
    assert!(text(&out.stderr).contains("from another file"), "{}", show(&out));
    assert_eq!(lab_json(&name)["nodes"][0]["state"], "running");
    // --name on down as on up; a relative path from another directory is the same file.
    let out = lab_in(dir.path(), &["down", "g.toml", "--name", &copy]);
    assert!(out.status.success(), "{}", show(&out));
    let out = lab_in(dir.path(), &["down", "./g.toml"]);
    assert!(text(&out.stderr).contains(&format!("lab {name} is down")), "{}", show(&out));
    assert_eq!(leftovers(&name), Vec::<String>::new());
    // A name that is not up says so, and which labs are; still exit 0.
    let out = lab(&["down", "no-such-lab-anywhere"]);
    assert!(out.status.success(), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(err.contains("lab no-such-lab-anywhere is not up"), "{err}");
    assert!(err.contains("no lab is up") || err.contains("labs up: "), "{err}");
}

#[test]
fn up_finds_lab_toml_and_names_the_lab_after_its_directory() {
    let _host = shared();
    let parent = tempfile::tempdir().expect("temp dir");
    let name = unique("dir");
    let dir = parent.path().join(name.to_uppercase().replace('-', "_"));
    std::fs::create_dir(&dir).expect("lab directory");
    std::fs::write(dir.join("lab.toml"), "[networks.lan]\n[nodes.a]\nnetworks = [\"lan\"]\n").expect("lab.toml");
    // `lab up` in the directory: the lab is named after it, as Compose names projects.
    let out = lab_in(&dir, &["up"]);
    let _guard = Lab::adopt(&name, &dir.join("lab.toml"), tempfile::tempdir().expect("temp dir"));
    assert!(out.status.success(), "{}", show(&out));
    assert!(text(&out.stderr).contains(&format!("lab {name} is up: 1 node, 1 network, 0 links")), "{}", show(&out));
    let out = lab_in(&dir, &["down"]);
    assert!(text(&out.stderr).contains(&format!("lab {name} is down")), "{}", show(&out));
    assert_eq!(leftovers(&name), Vec::<String>::new());
    // `lab up DIR`, and the one *.lab.toml of a directory.
    let out = lab(&["up", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(lab(&["down", dir.to_str().unwrap()]).status.success());
    assert_eq!(leftovers(&name), Vec::<String>::new());
    std::fs::rename(dir.join("lab.toml"), dir.join(format!("{name}-x.lab.toml"))).expect("rename");
    let out = lab_in(&dir, &["up"]);
    let _guard2 = Lab::adopt(&format!("{name}-x"), &dir, tempfile::tempdir().expect("temp dir"));
    assert!(text(&out.stderr).contains(&format!("lab {name}-x is up")), "{}", show(&out));
    assert!(lab_in(&dir, &["down"]).status.success());
    // Nothing to find is a usage error that says what is missing.
    let empty = tempfile::tempdir().expect("temp dir");
    let out = lab_in(empty.path(), &["up"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(text(&out.stderr).contains("no lab.toml"), "{}", show(&out));
}

#[test]
fn namespace_names_of_two_labs_never_collide() {
    let _host = shared();
    // `<lab>-<node>` made both `x-b-c`.
    let base = unique("ns");
    let (first, _) = Lab::try_up_named(&format!("{base}-b"), "[nodes.c]\n");
    let (second, out) = Lab::try_up_named(&base, "[nodes.b-c]\n");
    assert!(out.status.success(), "{}", show(&out));
    for (l, node) in [(&first, "c"), (&second, "b-c")] {
        let out = host(&format!("ip netns exec {}.{node} cat /proc/net/dev", l.name));
        assert!(out.status.success(), "ip netns exec {}.{node}:\n{}", l.name, show(&out));
        assert_eq!(l.sh(node, "hostname").trim(), node);
    }
    first.down();
    second.down();
}

/// A node command that records, in a host directory, the signals it got.
const TRAPS: &str = r#"
[nodes.polite]
mounts = ["DIR:/out"]
command = ["sh", "-c", "trap 'echo term > /out/polite; exit 0' TERM; while true; do sleep 0.05; done"]
[nodes.custom]
mounts = ["DIR:/out"]
stop_signal = "SIGUSR1"
command = ["sh", "-c", "trap 'echo usr1 > /out/custom; exit 0' USR1; while true; do sleep 0.05; done"]
[nodes.stubborn]
mounts = ["DIR:/out"]
stop_timeout = "300ms"
command = ["sh", "-c", "trap 'echo ignored > /out/stubborn' TERM; while true; do sleep 0.05; done"]
"#;

#[test]
fn stop_and_down_ask_the_command_to_stop_before_they_kill_it() {
    let _host = shared();
    let out_dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(out_dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).expect("chmod");
    let topo = TRAPS.replace("DIR", out_dir.path().to_str().expect("utf-8"));
    let lab_ = Lab::up("graceful", &topo);
    let read = |f: &str| std::fs::read_to_string(out_dir.path().join(f)).unwrap_or_default();
    // The node's own stop signal; then SIGTERM with the default grace period.
    let out = lab(&["stop", &format!("{}/custom", lab_.name)]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(read("custom"), "usr1\n");
    let out = lab(&["stop", &format!("{}/polite", lab_.name), "-t", "5"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(read("polite"), "term\n");
    // Docker's no-ops: stopping a stopped node, starting a running one.
    let out = lab(&["stop", &format!("{}/polite", lab_.name)]);
    assert!(out.status.success() && text(&out.stderr).contains("already stopped"), "{}", show(&out));
    let out = lab(&["start", &format!("{}/stubborn", lab_.name)]);
    assert!(out.status.success() && text(&out.stderr).contains("already running"), "{}", show(&out));
    // restart: stopped gracefully, then running again with a new init.
    let pid = |n: &str| {
        lab_json(&lab_.name)["nodes"].as_array().unwrap().iter().find(|x| x["name"] == n).unwrap()["pid"].clone()
    };
    assert!(lab(&["start", &format!("{}/polite", lab_.name)]).status.success());
    std::fs::remove_file(out_dir.path().join("polite")).expect("rm");
    let before = pid("polite");
    let out = lab(&["restart", &format!("{}/polite", lab_.name)]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(read("polite"), "term\n");
    assert_ne!(pid("polite"), before);
    // down: every node asked at once; the one that ignores SIGTERM is killed after its
    // stop_timeout, and down still succeeds and leaves nothing.
    std::fs::remove_file(out_dir.path().join("polite")).expect("rm");
    lab_.down();
    assert_eq!(read("polite"), "term\n");
    assert_eq!(read("stubborn"), "ignored\n");
}

#[test]
fn up_that_loses_to_down_fails_and_never_shows_the_lab_up() {
    let _host = shared();
    let name = unique("race");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("race.toml");
    // db turns healthy only after a while; app waits for it.
    std::fs::write(
        &file,
        format!(
            r#"name = "{name}"
[networks.lan]
[nodes.db]
networks = ["lan"]
command = ["sh", "-c", "sleep 30; touch /tmp/ok; sleep infinity"]
healthcheck = {{ cmd = "test -e /tmp/ok", interval = "200ms", retries = 1000 }}
[nodes.app]
networks = ["lan"]
depends_on = ["db"]
command = ["sleep", "infinity"]
"#
        ),
    )
    .expect("topology");
    let _guard = Lab::adopt(&name, &file, tempfile::tempdir().expect("temp dir"));
    let mut up = Command::new(lab_bin())
        .args(["up", file.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lab up");
    // Not on a terminal: progress comes as log lines. The first says who waits for what.
    let mut stderr = BufReader::new(up.stderr.take().expect("stderr"));
    let mut seen = String::new();
    while !seen.contains("health check") {
        let mut line = String::new();
        if stderr.read_line(&mut line).expect("reading lab up's stderr") == 0 {
            panic!("lab up ended before waiting:\n{seen}");
        }
        seen += &line;
    }
    assert!(seen.contains("app waiting for db"), "{seen}");
    // Meanwhile `lab ps` shows both nodes as starting, db's health as not passed yet.
    let json = lab_json(&name);
    let nodes = json["nodes"].as_array().expect("nodes");
    assert!(nodes.iter().all(|n| n["state"] == "starting"), "{json}");
    assert_eq!(nodes[0]["health"], "starting", "{json}");
    let out = lab(&["ps", &name]);
    assert!(text(&out.stdout).contains("starting (health: starting)"), "{}", show(&out));
    // `lab down` wins.
    let down = lab(&["down", &name]);
    assert!(down.status.success(), "{}", show(&down));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).expect("stderr");
    let out = up.wait_with_output().expect("lab up ends");
    assert_ne!(out.status.code(), Some(0), "up must fail:\n{seen}{rest}");
    assert!(rest.contains("was taken down"), "{seen}{rest}");
    assert!(!text(&out.stdout).contains("running"), "up printed the lab:\n{}", text(&out.stdout));
    assert!(!rest.contains("is up"), "{rest}");
    assert_eq!(leftovers(&name), Vec::<String>::new());
}

/// Checks `json` (a `--json` output) against docs/lab.schema.json.
fn assert_schema(what: &str, json: &serde_json::Value) {
    static SCHEMA: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    let validator = SCHEMA.get_or_init(|| {
        let text = std::fs::read_to_string(repo().join("docs/lab.schema.json")).expect("docs/lab.schema.json");
        let schema: serde_json::Value = serde_json::from_str(&text).expect("the schema is JSON");
        jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema")
    });
    let errors: Vec<String> = validator.iter_errors(json).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{what} does not match docs/lab.schema.json:\n{}\n{json:#}", errors.join("\n"));
}

fn json_of(args: &[&str]) -> serde_json::Value {
    let out = lab(args);
    assert!(out.status.success(), "lab {}:\n{}", args.join(" "), show(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("lab {}: {e}\n{}", args.join(" "), show(&out)))
}

#[test]
fn every_json_output_has_the_one_documented_versioned_shape() {
    let _host = shared();
    let name = unique("json");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("j.toml");
    let port = 40_000 + std::process::id() % 20_000;
    std::fs::write(
        &file,
        format!(
            r#"name = "{name}"
[networks.lan]
nat = true
ipv6 = true
[nodes.a]
networks = ["lan"]
ports = ["{port}:80"]
memory = "64M"
cpus = 0.5
pids = 50
command = ["sleep", "infinity"]
healthcheck = {{ cmd = "true", interval = "100ms" }}
[nodes.b]
networks = ["lan"]
[nodes.c]
command = ["true"]
[[links]]
endpoints = ["a", "b"]
"#
        ),
    )
    .expect("topology");
    let _guard = Lab::adopt(&name, &file, tempfile::tempdir().expect("temp dir"));
    let up = json_of(&["up", file.to_str().unwrap(), "--json", "--wait"]);
    assert_schema("up --json", &up);
    let lab0 = &up["labs"][0];
    assert_eq!(lab0["name"], name.as_str());
    assert_eq!(lab0["topology"], std::fs::canonicalize(&file).unwrap().to_str().unwrap());
    let a = &lab0["nodes"][0];
    assert_eq!(a["health"], "healthy", "{a}");
    assert_eq!(a["interfaces"][0]["network"], "lan");
    assert_eq!(a["interfaces"][0]["addresses"][0]["family"], "ipv4");
    assert_eq!(a["interfaces"][0]["addresses"][1]["family"], "ipv6");
    assert_eq!(a["interfaces"][1]["peer"], "b:eth1");
    assert_eq!(a["ports"][0]["node_port"], 80);
    // Faults show where they are.
    let a_eth0 = format!("{name}/a:eth0");
    for args in [
        vec!["impair", a_eth0.as_str(), "--rate", "10mbit"],
        vec!["link", &format!("{name}/b:eth1"), "down"],
        vec!["partition", &format!("{name}/a"), "--from", "b"],
    ] {
        let out = lab(&args);
        assert!(out.status.success(), "{}", show(&out));
    }
    let ps = json_of(&["ps", "--json"]);
    assert_schema("ps --json", &ps);
    let inspect = json_of(&["inspect", &name, "--json"]);
    assert_schema("inspect --json", &inspect);
    let l = &inspect["labs"][0];
    assert_eq!(l["partitions"][0], serde_json::json!([["a"], ["b"]]), "{l}");
    let a = &l["nodes"][0];
    assert_eq!(a["interfaces"][0]["impairment"]["rate_bps"], 10_000_000, "{a}");
    assert_eq!(l["nodes"][1]["interfaces"][1]["up"], false, "{l}");
    assert_eq!(a["details"]["limits"]["cpus"], 0.5, "{a}");
    assert_eq!(a["details"]["limits"]["memory_bytes"], 64u64 << 20, "{a}");
    assert!(a["usage"]["pids"].as_u64().unwrap_or(0) >= 2, "{a}");
    assert_eq!(a["details"]["security"]["seccomp"], "default", "{a}");
    let c = &l["nodes"][2];
    assert_eq!(c["state"], "exited", "{c}");
    assert_eq!(c["exit"]["code"], 0, "{c}");
    let one = json_of(&["inspect", &format!("{name}/b"), "--json"]);
    assert_schema("inspect LAB/NODE --json", &one);
    assert_eq!(one["labs"][0]["nodes"].as_array().map(Vec::len), Some(1));
    let stats = json_of(&["stats", "--lab", &name, "--json"]);
    assert_schema("stats --json", &stats);
    // The human forms say the same.
    let text_ = text(&lab(&["inspect", &name]).stdout);
    for want in ["impaired: rate 10mbit", "DOWN (lab link)", "partition: a | b", "cpus:      0.5", "link to b:eth1"] {
        assert!(text_.contains(want), "{want} not in:\n{text_}");
    }
    let ps_text = text(&lab(&["ps", &name]).stdout);
    assert!(ps_text.contains("running (healthy)") && ps_text.contains("->80/tcp"), "{ps_text}");
}

#[test]
fn choices_lab_cannot_make_for_you_are_usage_errors_that_say_what_to_name() {
    let _host = shared();
    // Two *.lab.toml in one directory: which one?
    let dir = tempfile::tempdir().unwrap();
    for f in ["a.lab.toml", "b.lab.toml"] {
        std::fs::write(dir.path().join(f), "[nodes.n]\n").unwrap();
    }
    let out = lab_in(dir.path(), &["up"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("several topology files") && text(&out.stderr).contains("b.lab.toml"),
        "{}",
        show(&out)
    );
    // Two labs up from one file under other names: down of the file asks which.
    let file = dir.path().join("a.lab.toml");
    let (one, two) = (unique("from"), unique("from"));
    let _guards: Vec<Lab> = [&one, &two]
        .iter()
        .map(|n| {
            let out = lab(&["up", file.to_str().unwrap(), "--name", n]);
            assert!(out.status.success(), "{}", show(&out));
            Lab::adopt(n, &file, tempfile::tempdir().unwrap())
        })
        .collect();
    let out = lab(&["down", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(err.contains("several labs are up from") && err.contains(&one) && err.contains("--name"), "{err}");
    assert!(lab_json(&one)["nodes"][0]["state"] == "running", "nothing was taken down");
    // lab cp between two host paths.
    let out = lab(&["cp", "/etc/hostname", "/tmp/x"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(text(&out.stderr).contains("NODE:PATH"), "{}", show(&out));
}
