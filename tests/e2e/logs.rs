//! `lab logs`: a node command's output with timestamps, tail and follow; gone with the lab.

use crate::support::*;

#[test]
fn logs_show_timestamped_output_tail_and_follow_until_the_node_ends() {
    let _host = shared();
    let lab = Lab::up(
        "logs",
        r#"
[nodes.talker]
command = "echo first; sleep 1; echo second; echo complaint >&2"
"#,
    );
    // -f starts while the node still runs and returns once it has ended.
    // Each line goes to the stream it was written to; how the node ended is lab's, on stderr.
    let follow = lab_cmd(&["logs", "--lab", &lab.name, "-f", "talker"]);
    assert!(follow.status.success(), "{}", show(&follow));
    assert_eq!(text(&follow.stdout), "first\nsecond\n", "{}", show(&follow));
    assert_eq!(text(&follow.stderr), "complaint\nlab: node exited: exit code 0\n", "{}", show(&follow));
    // -t puts the time in front.
    let stamped = lab_cmd(&["logs", "-t", &format!("{}/talker", lab.name)]);
    for l in text(&stamped.stdout).lines().chain(text(&stamped.stderr).lines()) {
        let stamp = l.split(' ').next().unwrap_or_default();
        assert!(stamp.len() == 24 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T', "RFC 3339: {l}");
    }
    let tail = lab_cmd(&["logs", "--lab", &lab.name, "--tail", "2", "talker"]);
    assert_eq!(text(&tail.stdout), "", "{}", show(&tail));
    assert_eq!(text(&tail.stderr), "complaint\nlab: node exited: exit code 0\n", "{}", show(&tail));
    // --since: nothing is newer than the future; everything is newer than an hour ago.
    let future = lab_cmd(&["logs", "--lab", &lab.name, "--since", "2999-01-01T00:00:00Z", "talker"]);
    assert_eq!(text(&future.stdout) + &text(&future.stderr), "", "{}", show(&future));
    let hour = lab_cmd(&["logs", "--lab", &lab.name, "--since", "1h", "talker"]);
    assert_eq!(text(&hour.stdout), "first\nsecond\n", "{}", show(&hour));
    let name = lab.name.clone();
    lab.down();
    let gone = lab_cmd(&["logs", "--lab", &name, "talker"]);
    assert!(!gone.status.success() && text(&gone.stderr).contains("is not up"), "{}", show(&gone));
}

fn lab_cmd(args: &[&str]) -> std::process::Output {
    crate::support::lab(args)
}

#[test]
fn logs_of_a_lab_interleave_its_nodes_by_time_with_a_prefix() {
    let _host = shared();
    let lab = Lab::up(
        "lablogs",
        r#"
[nodes.a]
command = "echo a1; sleep 1; echo a2 >&2; sleep 1; echo a3"
[nodes.bb]
command = "sleep 0.5; echo b1; sleep 1; echo b2"
"#,
    );
    // Until every node has ended.
    let out = lab_cmd(&["logs", "-f", &lab.name]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(text(&out.stdout), "a  | a1\nbb | b1\nbb | b2\na  | a3\n", "{}", show(&out));
    let err = text(&out.stderr);
    assert!(err.starts_with("a  | a2\n"), "{err}");
    assert!(err.contains("a  | lab: node exited: exit code 0") && err.contains("bb | lab: node exited"), "{err}");
    // Not following: the same lines, each node's tail.
    let out = lab_cmd(&["logs", &lab.name, "--tail", "1"]);
    assert_eq!(text(&out.stdout), "", "{}", show(&out));
    assert_eq!(text(&out.stderr).lines().count(), 2, "{}", show(&out));
    lab.down();
}
