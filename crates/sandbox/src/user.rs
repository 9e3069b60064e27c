//! Who a node's processes run as, from the node's own /etc/passwd and /etc/group, and the
//! HOME that goes with it: the one place both the init (for the command) and `lab exec` (as
//! root) take it from.

use crate::error::{Error, Result};

/// When a path is not in the environment (the plan always puts one there), exec searches
/// this one.
pub(crate) const SEARCH_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A user the command runs as.
pub(crate) struct User {
    pub uid: u32,
    pub gid: u32,
}

/// `uid[:gid]` or `name[:group]`, from the node's own /etc/passwd and /etc/group. A uid with
/// no entry runs with gid 0, as Docker does.
pub(crate) fn resolve(spec: &str) -> Result<User> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 7 && (f[0] == u || (u.parse::<u32>().is_ok() && f[2] == u)));
    let uid = match (u.parse::<u32>(), &entry) {
        (Ok(n), _) => n,
        (Err(_), Some(f)) => f[2].parse().map_err(|_| Error::Other(format!("user {u}: bad /etc/passwd entry")))?,
        (Err(_), None) => return Err(Error::Other(format!("user {u} is not in the node's /etc/passwd"))),
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| Error::Other(format!("group {g} is not in the node's /etc/group")))?,
        },
        None => entry.as_ref().and_then(|f| f[3].parse().ok()).unwrap_or(0),
    };
    Ok(User { uid, gid })
}

/// The home directory of `uid` in the node's /etc/passwd; `/root` where it has none.
pub(crate) fn home_of(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    home_in(&passwd, uid).unwrap_or_else(|| "/root".to_string())
}

fn home_in(passwd: &str, uid: u32) -> Option<String> {
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 7 && f[2].parse() == Ok(uid))
        .map(|f| f[5].to_string())
}

/// `env` with HOME set to `uid`'s home, unless it already has one.
pub(crate) fn with_home(env: &[(String, String)], uid: u32) -> Vec<(String, String)> {
    let mut out = env.to_vec();
    if !out.iter().any(|(k, _)| k == "HOME") {
        out.push(("HOME".to_string(), home_of(uid)));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn homes_come_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nfrr:x:100:101::/var/run/frr:/usr/sbin/nologin\n";
        assert_eq!(super::home_in(passwd, 100).as_deref(), Some("/var/run/frr"));
        assert_eq!(super::home_in(passwd, 0).as_deref(), Some("/root"));
        assert_eq!(super::home_in(passwd, 5), None);
    }
}
