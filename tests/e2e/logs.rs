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
    let follow = lab_cmd(&["logs", "--lab", &lab.name, "-f", "talker"]);
    assert!(follow.status.success(), "{}", show(&follow));
    let lines: Vec<String> = text(&follow.stdout).lines().map(String::from).collect();
    let said: Vec<&str> = lines.iter().map(|l| l.split_once(' ').map_or("", |(_, rest)| rest)).collect();
    assert_eq!(said, ["stdout first", "stdout second", "stderr complaint", "lab node exited: exit code 0"]);
    for l in &lines {
        let stamp = l.split(' ').next().unwrap_or_default();
        assert!(stamp.len() == 24 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T', "RFC 3339: {l}");
    }
    let tail = lab_cmd(&["logs", "--lab", &lab.name, "--tail", "2", "talker"]);
    assert_eq!(text(&tail.stdout).lines().count(), 2, "{}", show(&tail));
    assert!(text(&tail.stdout).contains("stderr complaint"));
    let name = lab.name.clone();
    lab.down();
    let gone = lab_cmd(&["logs", "--lab", &name, "talker"]);
    assert!(!gone.status.success() && text(&gone.stderr).contains("is not up"), "{}", show(&gone));
}

fn lab_cmd(args: &[&str]) -> std::process::Output {
    crate::support::lab(args)
}
