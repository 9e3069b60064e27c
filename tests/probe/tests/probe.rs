//! The probe reports outcomes the way the escape tests read them. (Having integration tests
//! also makes `cargo test --workspace` build the probe binary the escape tests run.)

use std::process::Command;

fn probe(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lab-probe")).args(args).output().expect("running lab-probe");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn outcomes_are_ok_or_an_errno_name() {
    assert_eq!(probe(&["open-write", "/lab-probe/no/such/file"]), (Some(0), "ENOENT".into()));
    assert_eq!(probe(&["read", "/dev/null"]), (Some(0), "0 bytes".into()));
    assert_eq!(probe(&["cwd"]).1, std::env::current_dir().unwrap().display().to_string());
    assert_eq!(probe(&["kill", "-1000000"]).1, "ESRCH");
    assert_eq!(probe(&["no-such-operation"]).0, Some(2));
}
