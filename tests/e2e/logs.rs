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
    // The two nodes take turns (a folder they share passes the turn), so that their lines are
    // interleaved in time whatever the machine's pace.
    let turns = tempfile::tempdir().unwrap();
    std::fs::set_permissions(turns.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let wait = |f: &str| format!("while [ ! -e /t/{f} ]; do sleep 0.02; done");
    let lab = Lab::up(
        "lablogs",
        &format!(
            "[defaults]\nmounts = [\"{}:/t\"]\n[nodes.a]\ncommand = \"echo a1; touch /t/1; {}; echo a2 >&2; sleep 0.3; echo a3\"\n\
             [nodes.bb]\ncommand = \"{}; sleep 0.3; echo b1; touch /t/2\"\n",
            turns.path().display(),
            wait("2"),
            wait("1"),
        ),
    );
    // Until every node has ended; with the times, to check the order.
    let out = lab_cmd(&["logs", "-f", "-t", &lab.name]);
    assert!(out.status.success(), "{}", show(&out));
    let stdout = text(&out.stdout);
    let lines: Vec<(&str, &str, &str)> = stdout
        .lines()
        .map(|l| {
            let (node, rest) = l.split_once(" | ").unwrap_or_else(|| panic!("no node in front: {l:?}"));
            let (time, said) = rest.split_once(' ').unwrap_or_else(|| panic!("no time: {l:?}"));
            (node.trim_end(), time, said)
        })
        .collect();
    let said: Vec<(&str, &str)> = lines.iter().map(|(n, _, s)| (*n, *s)).collect();
    assert_eq!(said, [("a", "a1"), ("bb", "b1"), ("a", "a3")], "{stdout}");
    assert!(lines.windows(2).all(|w| w[0].1 <= w[1].1), "in the order of time: {stdout}");
    assert!(stdout.starts_with("a  | "), "names padded to one width: {stdout}");
    let err = text(&out.stderr);
    assert!(err.lines().any(|l| l.starts_with("a  | ") && l.ends_with(" a2")), "{err}");
    assert!(err.contains("lab: node exited: exit code 0") && err.contains("bb | "), "{err}");
    // Not following: the same lines, each node's tail.
    let out = lab_cmd(&["logs", &lab.name, "--tail", "1"]);
    assert_eq!(text(&out.stdout), "", "{}", show(&out));
    assert_eq!(text(&out.stderr).lines().count(), 2, "{}", show(&out));
    lab.down();
}
