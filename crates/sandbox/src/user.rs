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
    /// Its primary group and every group /etc/group lists it in.
    pub groups: Vec<u32>,
}

impl User {
    /// Becomes this user: supplementary groups, gid, uid (which leaves a non-root user no
    /// capabilities, as the kernel does on setuid). Needs SETGID and SETUID.
    pub(crate) fn become_it(&self) -> std::io::Result<()> {
        let groups: Vec<nix::unistd::Gid> = self.groups.iter().map(|g| nix::unistd::Gid::from_raw(*g)).collect();
        nix::unistd::setgroups(&groups)?;
        let gid = nix::unistd::Gid::from_raw(self.gid);
        nix::unistd::setresgid(gid, gid, gid)?;
        let uid = nix::unistd::Uid::from_raw(self.uid);
        nix::unistd::setresuid(uid, uid, uid)?;
        Ok(())
    }
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
    let name = entry.as_ref().map(|f| f[0]);
    Ok(User { uid, gid, groups: groups_of(&group, name, gid) })
}

/// `gid` and the groups whose member list in `group` (an /etc/group) names `user`.
fn groups_of(group: &str, user: Option<&str>, gid: u32) -> Vec<u32> {
    let mut out = vec![gid];
    let Some(user) = user else { return out };
    for f in group.lines().map(|l| l.split(':').collect::<Vec<_>>()).filter(|f| f.len() >= 4) {
        if f[3].split(',').any(|m| m == user) {
            if let Ok(g) = f[2].parse() {
                if !out.contains(&g) {
                    out.push(g);
                }
            }
        }
    }
    out
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
    fn supplementary_groups_come_from_group() {
        let group = "root:x:0:\nfrr:x:101:\nfrrvty:x:102:frr,alice\nwheel:x:10:alice\n";
        assert_eq!(super::groups_of(group, Some("frr"), 101), [101, 102]);
        assert_eq!(super::groups_of(group, Some("alice"), 1000), [1000, 102, 10]);
        assert_eq!(super::groups_of(group, None, 5), [5]);
    }

    #[test]
    fn homes_come_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nfrr:x:100:101::/var/run/frr:/usr/sbin/nologin\n";
        assert_eq!(super::home_in(passwd, 100).as_deref(), Some("/var/run/frr"));
        assert_eq!(super::home_in(passwd, 0).as_deref(), Some("/root"));
        assert_eq!(super::home_in(passwd, 5), None);
    }
}
