//! `lab exec`: what goes in and what comes out.

use crate::support::*;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

const ONE: &str = "[nodes.a]\nenv = { ROLE = \"server\", COLOR = \"blue\" }\n";

#[test]
fn stdout_stderr_and_exit_codes_pass_through_unchanged() {
    let _host = shared();
    let lab = Lab::up("codes", ONE);
    let out = lab.exec("a", &["sh", "-c", "echo out; echo err >&2; exit 42"]);
    assert_eq!(out.status.code(), Some(42), "{}", show(&out));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");

    let missing = lab.exec("a", &["no-such-program", "arg"]);
    assert_eq!(missing.status.code(), Some(127), "{}", show(&missing));
    assert_eq!(text(&missing.stderr), "lab exec: no-such-program: command not found\n");
    let not_exec = lab.exec("a", &["/etc/hostname"]);
    assert_eq!(not_exec.status.code(), Some(126), "{}", show(&not_exec));
    let killed = lab.exec("a", &["sh", "-c", "kill -9 $$"]);
    assert_eq!(killed.status.code(), Some(137), "{}", show(&killed));
    // Arguments that look like lab's own options belong to the command.
    assert_eq!(text(&lab.exec("a", &["echo", "-n", "--lab", "-it"]).stdout), "--lab -it");
    lab.down();
}

#[test]
fn environment_workdir_and_stdin() {
    let _host = shared();
    let lab_ = Lab::up("env", ONE);
    let out = lab(&[
        "exec",
        "--lab",
        &lab_.name,
        "-e",
        "COLOR=red",
        "-e",
        "EXTRA=1",
        "-w",
        "/tmp",
        "a",
        "sh",
        "-c",
        "echo $ROLE $COLOR $EXTRA $HOSTNAME; pwd",
    ]);
    assert_eq!(text(&out.stdout), "server red 1 a\n/tmp\n", "{}", show(&out));

    let bad_dir = lab(&["exec", "--lab", &lab_.name, "-w", "/no/such/dir", "a", "true"]);
    assert_eq!(bad_dir.status.code(), Some(126), "{}", show(&bad_dir));
    assert!(text(&bad_dir.stderr).contains("/no/such/dir"), "{}", show(&bad_dir));

    let feed = |args: &[&str]| {
        let mut child =
            Command::new(lab_bin()).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(b"through stdin\n").unwrap();
        text(&child.wait_with_output().unwrap().stdout)
    };
    assert_eq!(feed(&["exec", "--lab", &lab_.name, "-i", "a", "cat"]), "through stdin\n");
    assert_eq!(feed(&["exec", "--lab", &lab_.name, "a", "cat"]), "", "without -i the command reads /dev/null");
    lab_.down();
}

#[test]
fn exec_failures_of_lab_itself_exit_125_with_a_message() {
    let _host = shared();
    let lab_ = Lab::up("e125", ONE);
    let out = lab(&["exec", "--lab", &lab_.name, "zz", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", show(&out));
    assert!(text(&out.stderr).contains(&format!("lab {} has no node zz", lab_.name)), "{}", show(&out));
    let out = lab(&["exec", "--lab", "t-no-such-lab", "a", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", show(&out));
    assert!(text(&out.stderr).contains("lab t-no-such-lab is not up"), "{}", show(&out));
    // The status file tells lab's failure apart from a command's own 125.
    let dir = tempfile::tempdir().unwrap();
    let status = dir.path().join("status.json");
    let file = status.to_str().unwrap();
    let out = lab(&["exec", "--lab", &lab_.name, "--status-file", file, "zz", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", show(&out));
    let said: serde_json::Value = serde_json::from_slice(&std::fs::read(&status).unwrap()).unwrap();
    assert!(said["error"].as_str().is_some_and(|e| e.contains("has no node zz")), "{said}");
    let out = lab(&["exec", "--lab", &lab_.name, "--status-file", file, "a", "sh", "-c", "exit 125"]);
    assert_eq!(out.status.code(), Some(125), "{}", show(&out));
    let said: serde_json::Value = serde_json::from_slice(&std::fs::read(&status).unwrap()).unwrap();
    assert_eq!(said, serde_json::json!({ "code": 125, "signal": null, "timed_out": false }));
    lab_.down();
}

#[test]
fn a_command_past_its_timeout_is_killed_with_its_process_group_and_exits_124() {
    let _host = shared();
    let lab_ = Lab::up("timeout", ONE);
    let out = lab(&["exec", "--lab", &lab_.name, "--timeout", "300ms", "a", "sh", "-c", "sleep 300 & sleep 301"]);
    assert_eq!(out.status.code(), Some(124), "{}", show(&out));
    assert!(text(&out.stderr).contains("lab exec: timed out after 300ms: killed"), "{}", show(&out));
    let left = lab_.sh("a", "ps -eo args | grep -c '^sleep 30[01]' || true");
    assert_eq!(left.trim(), "0", "the background sleep went with the command");
    // A command that ends in time is not touched.
    let out = lab(&["exec", "--lab", &lab_.name, "--timeout", "10", "a", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    lab_.down();
}

#[test]
fn sigterm_to_lab_exec_reaches_the_command() {
    let _host = shared();
    let lab_ = Lab::up("term", ONE);
    let mut child = Command::new(lab_bin())
        .args([
            "exec",
            "--lab",
            &lab_.name,
            "a",
            "sh",
            "-c",
            "trap 'echo got-term; exit 5' TERM; echo ready; sleep 30 >/dev/null & wait",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 6];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"ready\n");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(status.code(), Some(5));
    lab_.down();
}

#[test]
fn interactive_shell_on_a_pty() {
    let _host = shared();
    let lab_ = Lab::up("pty", ONE);
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = pty.slave;
    let mut cmd = Command::new(lab_bin());
    cmd.args(["exec", "-it", "--lab", &lab_.name, "a", "sh"])
        .env("TERM", "xterm-test")
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    // Like a terminal session: a new session with the pty as its controlling terminal.
    // SAFETY: setsid and an ioctl on fd 0 between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let mut master = std::fs::File::from(pty.master);
    master.write_all(b"tty; echo \"T=$TERM\"; exit 3\n").unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let mut fds = [libc::pollfd { fd: master.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        // SAFETY: one pollfd, the count given.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, 20_000) };
        assert!(ready > 0, "no output from the shell within 20s; so far:\n{}", text(&out));
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let status = child.wait().unwrap();
    let out = text(&out);
    assert_eq!(status.code(), Some(3), "{out}");
    assert!(out.contains("/dev/pts/0"), "the shell's terminal is the node's own pty:\n{out}");
    assert!(out.contains("T=xterm-test"), "{out}");
    lab_.down();
}
