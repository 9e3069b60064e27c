//! Bad topology files: each gives its message at its file:line:column, and nothing is made.

use crate::support::*;

#[test]
fn bad_topologies_are_rejected_before_anything_is_made() {
    let _host = shared();
    let dir = repo().join("tests/bad");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    assert!(files.len() >= 10, "the table of bad topologies is in {}", dir.display());
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        let expect = source.lines().next().and_then(|l| l.strip_prefix("# expect: ")).expect("# expect: header");
        let (at, message) = expect.split_once(' ').unwrap();
        let path = file.to_str().unwrap();
        let out = lab(&["up", path]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{path}: topology errors exit 2:\n{}", show(&out));
        assert!(err.contains(&format!("--> {path}:{at}")), "{path}: expected the error at {at}:\n{err}");
        assert!(err.contains(message), "{path}: expected {message:?}:\n{err}");
        // Whatever name the file meant, nothing of it exists.
        let name = source
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .map(|n| n.trim_end_matches('"').to_string())
            .unwrap_or_default();
        if !name.is_empty() {
            assert_eq!(leftovers(&name), Vec::<String>::new(), "{path}");
        }
    }
}

#[test]
fn a_missing_file_or_bad_arguments_say_so() {
    let _host = shared();
    let out = lab(&["up", "/no/such/topology.toml"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(text(&out.stderr).contains("reading topology file /no/such/topology.toml"), "{}", show(&out));
    let out = lab(&["up", &repo().join("topologies/three-node.toml").to_string_lossy(), "--name", "Bad_Name"]);
    assert_eq!(out.status.code(), Some(2), "a bad --name is a bad command line:\n{}", show(&out));
    assert!(text(&out.stderr).contains("--name: `Bad_Name` is not a valid name"), "{}", show(&out));
    let out = lab(&["exec"]);
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2:\n{}", show(&out));
}
