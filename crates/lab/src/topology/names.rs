//! Names that are checked once, when they are parsed, so that nothing downstream checks again.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A DNS label: 1 to 63 lowercase letters, digits and `-`, not starting or ending with `-`.
/// Lab, node and network names are all labels, so they are valid host names, file names,
/// cgroup names and parts of network-namespace names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    /// The longest name, in bytes.
    pub const MAX_LEN: usize = 63;

    /// `s` if it is a valid name, else why not.
    pub fn parse(s: &str) -> Result<Name, String> {
        if s.is_empty() {
            return Err("a name cannot be empty".into());
        }
        if s.len() > Self::MAX_LEN {
            return Err(format!(
                "`{s}` is {} characters long; names are at most {} (a DNS label)",
                s.len(),
                Self::MAX_LEN
            ));
        }
        if let Some(c) = s.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
            return Err(format!(
                "`{s}` is not a valid name: {c:?} is not allowed; use lowercase letters, digits and `-` (a DNS label)"
            ));
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err(format!("`{s}` is not a valid name: it cannot start or end with `-` (a DNS label)"));
        }
        Ok(Name(s.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Name::parse(&s)
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A network interface name as the kernel accepts it: 1 to 15 bytes (IFNAMSIZ - 1), no `/`,
/// `:`, whitespace, and not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IfName(String);

impl IfName {
    /// The longest interface name, in bytes (IFNAMSIZ - 1).
    pub const MAX_LEN: usize = 15;

    /// `s` if the kernel takes it as an interface name, else why not.
    pub fn parse(s: &str) -> Result<IfName, String> {
        if s.is_empty() {
            return Err("an interface name cannot be empty".into());
        }
        if s.len() > Self::MAX_LEN {
            return Err(format!(
                "interface name `{s}` is {} bytes long; Linux allows at most {}",
                s.len(),
                Self::MAX_LEN
            ));
        }
        if s == "." || s == ".." {
            return Err(format!("`{s}` is not a valid interface name"));
        }
        if let Some(c) = s.chars().find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control()) {
            return Err(format!("interface name `{s}` contains {c:?}, which Linux does not allow"));
        }
        Ok(IfName(s.to_string()))
    }

    /// `eth<n>`, the name interfaces get when the topology does not name them.
    pub fn eth(n: usize) -> IfName {
        IfName(format!("eth{n}"))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IfName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        IfName::parse(&s)
    }
}

impl From<IfName> for String {
    fn from(n: IfName) -> String {
        n.0
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An interface name is used wherever the kernel takes one: as the string it is.
impl std::ops::Deref for IfName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// A host name for a node's UTS namespace: dot-separated DNS labels, at most 64 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Hostname(String);

impl Hostname {
    /// The longest host name, in bytes (HOST_NAME_MAX).
    pub const MAX_LEN: usize = 64;

    /// `s` if it is a valid host name, else why not.
    pub fn parse(s: &str) -> Result<Hostname, String> {
        if s.len() > Self::MAX_LEN {
            return Err(format!("host name `{s}` is longer than {} bytes", Self::MAX_LEN));
        }
        for label in s.split('.') {
            let ok = !label.is_empty()
                && label.len() <= Name::MAX_LEN
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(format!(
                    "`{s}` is not a valid host name: use dot-separated labels of letters, digits and `-`"
                ));
            }
        }
        Ok(Hostname(s.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&Name> for Hostname {
    fn from(n: &Name) -> Hostname {
        Hostname(n.0.clone())
    }
}

impl TryFrom<String> for Hostname {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Hostname::parse(&s)
    }
}

impl From<Hostname> for String {
    fn from(n: Hostname) -> String {
        n.0
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        for ok in ["a", "node1", "three-node", "x".repeat(63).as_str()] {
            assert!(Name::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "Node1", "node_1", "a.b", "nöde", "x".repeat(64).as_str()] {
            assert!(Name::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn interface_names_fit_ifnamsiz() {
        assert!(IfName::parse("eth0").is_ok());
        assert!(IfName::parse("a-very-long-nam").is_ok());
        let err = IfName::parse("a-very-long-name").unwrap_err();
        assert!(err.contains("16 bytes"), "{err}");
        for bad in ["", ".", "..", "a/b", "a:b", "a b"] {
            assert!(IfName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostnames_may_have_dots_and_capitals() {
        assert!(Hostname::parse("Router-1.example").is_ok());
        assert!(Hostname::parse("a..b").is_err());
        assert!(Hostname::parse(&"a".repeat(65)).is_err());
    }
}
