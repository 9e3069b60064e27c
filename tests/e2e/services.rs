//! Nodes as services: user, workdir, restart policies, depends_on with health checks, `exec`
//! hooks, and `lab up --wait`.

use crate::support::*;

/// The node's log: its stdout lines, then its stderr lines (lab's own among them).
fn logs(lab: &Lab, node: &str) -> String {
    let out = crate::support::lab(&["logs", "--lab", &lab.name, node]);
    assert!(out.status.success(), "{}", show(&out));
    text(&out.stdout) + &text(&out.stderr)
}

fn lines_equal(log: &str, line: &str) -> usize {
    log.lines().filter(|l| *l == line).count()
}

#[test]
fn dependents_start_after_their_dependency_is_healthy_and_hooks_run() {
    let _host = shared();
    let lab = Lab::up(
        "svc",
        &format!(
            r#"
[defaults]
{}
[networks.lan]
[nodes.app]
networks = ["lan"]
depends_on = ["db"]
command = ["bash", "-c", "if exec 3<>/dev/tcp/db/80; then echo connected; else echo refused; fi; exec sleep infinity"]
exec = ["touch /tmp/hooked", "ip -br addr show eth0"]
[nodes.db]
networks = ["lan"]
user = "nobody"
workdir = "/tmp"
command = "id -un; pwd; sleep 1; exec /probe serve 80 hello"
healthcheck = {{ cmd = ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/80"], interval = "200ms", retries = 30 }}
"#,
            probe_mount()
        ),
    );
    let app = logs(&lab, "app");
    assert_eq!(lines_equal(&app, "connected"), 1, "app started before db listened:\n{app}");
    let db = logs(&lab, "db");
    assert!(lines_equal(&db, "nobody") == 1 && lines_equal(&db, "/tmp") == 1, "user and workdir:\n{db}");
    assert_eq!(lab.sh("app", "ls /tmp/hooked"), "/tmp/hooked\n", "the hook ran in the node");
    assert_eq!(lab.sh("db", "pwd"), "/tmp\n", "lab exec starts in the node's workdir");
    lab.down();
}

#[test]
fn wait_fails_naming_the_unhealthy_node_and_leaves_nothing() {
    let _host = shared();
    let (lab, out) = {
        let name = unique("unhealthy");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lab.toml");
        std::fs::write(
            &file,
            format!(
                "name = \"{name}\"\n[nodes.ok]\n[nodes.sick]\nhealthcheck = {{ cmd = \"echo not yet; exit 1\", interval = \"100ms\", retries = 3 }}\n"
            ),
        )
        .unwrap();
        let out = crate::support::lab(&["up", "--wait", file.to_str().unwrap()]);
        (Lab::adopt(&name, &file, dir), out)
    };
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(err.contains("node sick: unhealthy"), "{err}");
    assert!(err.contains("failed 3 times in a row; last: exit 1: not yet"), "{err}");
    assert_eq!(leftovers(&lab.name), Vec::<String>::new());

    // Without --wait, a check nobody depends on is not waited for.
    let again = Lab::up("unhealthy", "[nodes.sick]\nhealthcheck = { cmd = \"exit 1\", retries = 1 }\n");
    again.down();
    drop(lab);
}

#[test]
fn a_failing_hook_fails_up_naming_it() {
    let _host = shared();
    let (lab, out) = Lab::try_up("hook", "[nodes.a]\nexec = [\"true\", \"echo broken >&2; exit 4\"]\n");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(err.contains("node a: exec hook `echo broken >&2; exit 4` failed (exit 4): broken"), "{err}");
    assert_eq!(leftovers(&lab.name), Vec::<String>::new());
}

#[test]
fn restart_policies() {
    let _host = shared();
    let lab = Lab::up(
        "restart",
        r#"
[nodes.flaky]
restart = "on-failure"
command = "echo run; exit 3"
[nodes.done]
restart = "on-failure"
command = "echo once; exit 0"
[nodes.never]
command = "exit 5"
"#,
    );
    // Restarts back off 100, 200, 400 ms: three runs within a second.
    let mut runs = 0;
    for _ in 0..30 {
        runs = lines_equal(&logs(&lab, "flaky"), "run");
        if runs >= 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(runs >= 3, "restarted: {}", logs(&lab, "flaky"));
    assert!(logs(&lab, "flaky").contains("restarting it in"));
    assert_eq!(node_json(&lab.name, "flaky")["state"], "running");
    // A clean exit is not a failure; `no` never restarts.
    for (node, code) in [("done", 0), ("never", 5)] {
        let mut state = serde_json::Value::Null;
        for _ in 0..50 {
            state = node_json(&lab.name, node);
            if state["state"] == "exited" {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert_eq!(state["exit"]["code"], code, "{node}: {state}");
    }
    assert_eq!(lines_equal(&logs(&lab, "done"), "once"), 1);
    lab.down();
}
