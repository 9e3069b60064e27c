//! `lab check`: a lab's `[[checks]]` (or a checks file's) as a teacher grades and a CI job
//! gates: a table, JSON, JUnit, and exit 0 only when every check passes.

use crate::support::*;

const LAB: &str = r#"
[networks.lan]
[networks.other]
[nodes.a]
networks = ["lan"]
command = ["sleep", "infinity"]
[nodes.b]
networks = ["lan"]
# Up only after a while: its check passes within its deadline, by retrying.
command = "sleep 1; ip route add blackhole 10.99.0.0/24; exec sleep infinity"
[nodes.c]
networks = ["other"]

[[checks]]
from = "a"
ping = "b"
[[checks]]
node = "b"
route = "10.99.0.0/24"
within = "20s"
[[checks]]
node = "a"
cmd = "cat /etc/hostname"
expect = "^a$"
[[checks]]
node = "a"
process = "sleep"
[[checks]]
name = "a reaches c"
from = "a"
ping = "c"
within = "10s"
"#;

#[test]
fn checks_pass_fail_retry_and_report_as_a_table_json_and_junit() {
    let _host = shared();
    let lab_ = Lab::up("check", LAB);
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let out = lab(&["check", &lab_.name, "--junit", junit.to_str().unwrap()]);
    // One check fails: c is on another network.
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let table = text(&out.stdout);
    let row = |name: &str| {
        table.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}: {table}")).to_string()
    };
    assert!(row("a pings b").contains("pass"), "{table}");
    assert!(row("b has a route to 10.99.0.0/24").contains("pass"), "converged within its deadline: {table}");
    assert!(row("a: `cat /etc/hostname` matches /^a$/").contains("pass"), "{table}");
    assert!(row("a runs sleep").contains("pass"), "{table}");
    assert!(row("a reaches c").contains("FAIL"), "{table}");
    assert!(text(&out.stderr).contains("4 of 5 checks passed"), "{}", show(&out));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("tests=\"5\" failures=\"1\""), "{xml}");
    assert!(
        xml.contains("<testcase classname=\"lab.")
            && xml.contains("name=\"a reaches c\"")
            && xml.contains("<failure message="),
        "{xml}"
    );
    // JSON says the same; attempts show the retries.
    let out = lab(&["check", &lab_.name, "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("check --json");
    assert_eq!(j["passed"], false);
    assert_eq!(j["checks"].as_array().map(Vec::len), Some(5));
    assert!(j["checks"][4]["attempts"].as_u64().unwrap() >= 2, "retried until its deadline: {j}");
    // A checks file of passing checks alone: exit 0.
    let file = dir.path().join("checks.toml");
    std::fs::write(
        &file,
        "[[checks]]\nfrom = \"b\"\nping = \"a\"\n[[checks]]\nnode = \"c\"\nprocess = \"sleep\"\nwithin = \"100ms\"\n",
    )
    .unwrap();
    let out = lab(&["check", &lab_.name, "--file", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "c runs no sleep: {}", show(&out));
    std::fs::write(&file, "[[checks]]\nfrom = \"b\"\nping = \"a\"\n").unwrap();
    let out = lab(&["check", &lab_.name, "--file", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // A bad checks file points at its line.
    std::fs::write(&file, "[[checks]]\nfrom = \"b\"\nping = \"nobody\"\n").unwrap();
    let out = lab(&["check", &lab_.name, "--file", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(text(&out.stderr).contains("checks.toml:3:8"), "{}", show(&out));
    lab_.down();
}
