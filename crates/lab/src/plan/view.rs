//! What a node on the host's root file system (`rootfs = "host"`) sees of the host: the
//! system itself (/usr, /etc, /opt, /bin, /lib ...) so that host-installed software runs, and
//! none of the host's secrets, its users' files or its services' data: locked copies of the
//! password files, no SSH host keys or TLS private keys, empty /root and /home, a fresh /var.
//! `reveal` brings chosen paths back.

use lab_sandbox::{Cover, NodeFile};

/// Files whose password fields are locked in the node's copy.
const LOCKED: &[&str] = &["/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-"];
/// Paths that are not there at all (the last component may hold `*`).
const REMOVED: &[&str] = &["/etc/ssh/ssh_host_*"];
/// Directories that are empty.
const EMPTIED: &[&str] =
    &["/root", "/home", "/var", "/etc/ssl/private", "/etc/NetworkManager/system-connections", "/etc/wireguard"];

/// A fresh /var: (path, mode) of its directories, and its symlinks, as a Debian system has.
const VAR_DIRS: &[(&str, u32)] = &[
    ("/var/tmp", 0o1777),
    ("/var/log", 0o755),
    ("/var/cache", 0o755),
    ("/var/lib", 0o755),
    ("/var/spool", 0o755),
    ("/var/local", 0o755),
    ("/var/opt", 0o755),
    ("/var/mail", 0o755),
    ("/var/backups", 0o755),
];
const VAR_LINKS: &[(&str, &str)] = &[("/var/run", "/run"), ("/var/lock", "/run/lock")];

/// Whether `path` is `dir` or below it.
fn within(path: &str, dir: &str) -> bool {
    dir == "/" || path == dir || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

/// The hidden paths, for messages.
pub fn hidden() -> Vec<&'static str> {
    LOCKED.iter().chain(REMOVED).chain(EMPTIED).copied().collect()
}

/// Whether revealing `path` shows anything the default view hides.
pub fn reveals_something(path: &str) -> bool {
    hidden().iter().any(|h| {
        let dir = h.rsplit_once('/').map_or("/", |(d, _)| if d.is_empty() { "/" } else { d });
        let glob = h.contains('*');
        within(h, path)
            || (!glob && within(path, h))
            || (glob && path.starts_with(h.trim_end_matches('*')) && within(path, dir))
    })
}

/// The covers and files of a node's view of the host, less what `reveal` brings back: a
/// revealed path (or one of its parents) drops the covers below it; a revealed path below an
/// emptied directory is kept in it.
pub fn host_view(reveal: &[String]) -> (Vec<Cover>, Vec<NodeFile>) {
    let dropped = |p: &str| reveal.iter().any(|r| within(p, r));
    let kept =
        |dir: &str| -> Vec<String> { reveal.iter().filter(|r| within(r, dir) && r.as_str() != dir).cloned().collect() };
    let mut covers = Vec::new();
    for p in LOCKED.iter().filter(|p| !dropped(p)) {
        covers.push(Cover::Locked { path: p.to_string() });
    }
    for p in REMOVED.iter().filter(|p| !dropped(p)) {
        let (dir, pattern) = p.rsplit_once('/').expect("absolute paths");
        let prefix = format!("{dir}/{}", pattern.trim_end_matches('*'));
        let keep = reveal.iter().filter(|r| r.starts_with(&prefix)).cloned().collect();
        covers.push(Cover::Remove { path: p.to_string(), keep });
    }
    let mut files = Vec::new();
    for p in EMPTIED.iter().filter(|p| !dropped(p)) {
        covers.push(Cover::Empty { path: p.to_string(), keep: kept(p) });
        if *p == "/var" {
            for (dir, mode) in VAR_DIRS.iter().filter(|(d, _)| !reveal.iter().any(|r| within(r, d))) {
                files.push(NodeFile::dir(dir, *mode).expect("plain paths"));
            }
            for (link, target) in VAR_LINKS.iter().filter(|(l, _)| !reveal.iter().any(|r| within(r, l))) {
                files.push(NodeFile::symlink(link, target).expect("plain paths"));
            }
        }
    }
    (covers, files)
}

/// `systemctl` for a node without systemd (a Kathará lab's startup scripts call it): each
/// unit's SysV script, as `service` does where systemd is not running.
pub fn systemctl_shim() -> NodeFile {
    const SCRIPT: &str = r#"#!/bin/sh
# lab's systemctl: no systemd runs in this node, so units are their /etc/init.d scripts.
action=${1:-}
[ $# -gt 0 ] && shift
case "$action" in
start|stop|restart|reload|status|force-reload) ;;
enable|disable|daemon-reload|is-system-running|mask|unmask) exit 0 ;;
*) echo "systemctl (lab): \`$action' is not supported without systemd" >&2; exit 1 ;;
esac
status=0
for unit in "$@"; do
    case "$unit" in -*) continue ;; esac
    name=${unit%.service}
    if [ -x "/etc/init.d/$name" ]; then
        "/etc/init.d/$name" "$action" || status=$?
    else
        echo "systemctl (lab): no /etc/init.d/$name for $unit" >&2
        status=5
    fi
done
exit $status
"#;
    NodeFile::new("/usr/local/sbin/systemctl", SCRIPT, 0o755).expect("a plain path")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(covers: &[Cover]) -> Vec<&str> {
        covers.iter().map(Cover::path).collect()
    }

    #[test]
    fn the_default_view_hides_secrets_users_and_services() {
        let (covers, files) = host_view(&[]);
        let p = paths(&covers);
        for hidden in
            ["/etc/shadow", "/etc/gshadow", "/etc/ssh/ssh_host_*", "/root", "/home", "/var", "/etc/ssl/private"]
        {
            assert!(p.contains(&hidden), "{hidden} in {p:?}");
        }
        let var: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert!(var.contains(&"/var/tmp") && var.contains(&"/var/run") && var.contains(&"/var/lib"), "{var:?}");
    }

    #[test]
    fn reveal_drops_or_keeps() {
        let (covers, files) = host_view(&["/root".into(), "/var/lib/dpkg".into(), "/etc/ssh".into()]);
        let p = paths(&covers);
        assert!(!p.contains(&"/root") && !p.contains(&"/etc/ssh/ssh_host_*"), "{p:?}");
        let var = covers.iter().find(|c| c.path() == "/var").expect("/var still fresh");
        assert_eq!(var, &Cover::Empty { path: "/var".into(), keep: vec!["/var/lib/dpkg".into()] });
        // /var/lib is no longer made fresh: it is the host's, but for what is not kept.
        assert!(!files.iter().any(|f| f.path == "/var/lib"));
        assert!(files.iter().any(|f| f.path == "/var/log"));
        let (covers, _) = host_view(&["/etc/ssh/ssh_host_ed25519_key.pub".into()]);
        let ssh = covers.iter().find(|c| c.path() == "/etc/ssh/ssh_host_*").unwrap();
        assert_eq!(
            ssh,
            &Cover::Remove {
                path: "/etc/ssh/ssh_host_*".into(),
                keep: vec!["/etc/ssh/ssh_host_ed25519_key.pub".into()]
            }
        );
        let (covers, files) = host_view(&["/".into()]);
        assert!(covers.is_empty() && files.is_empty());
    }

    #[test]
    fn what_reveals_something() {
        for yes in [
            "/",
            "/etc",
            "/etc/shadow",
            "/root",
            "/home/alice",
            "/var/lib/dpkg",
            "/etc/ssh",
            "/etc/ssh/ssh_host_rsa_key",
        ] {
            assert!(reveals_something(yes), "{yes}");
        }
        for no in ["/usr", "/etc/passwd", "/etc/ssh/sshd_config", "/opt", "/etc/shadowx"] {
            assert!(!reveals_something(no), "{no}");
        }
    }
}
