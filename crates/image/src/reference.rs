//! Image references, read as Docker reads them: `alpine` is
//! `docker.io/library/alpine:latest`, `org/app` is `docker.io/org/app:latest`, a first
//! component with a `.` or a `:`, or `localhost`, is a registry (`localhost:5000/app:dev`,
//! `ghcr.io/org/app@sha256:...`).

use crate::digest::Digest;
use crate::{Error, Result};
use std::fmt;

/// Docker Hub, as references name it.
pub const DOCKER_HUB: &str = "docker.io";
const DEFAULT_TAG: &str = "latest";

/// A parsed image reference, normalized.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// `docker.io`, `ghcr.io`, `localhost:5000`, `127.0.0.1:5000`.
    pub registry: String,
    /// `library/alpine`, `org/app`.
    pub repository: String,
    /// `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses `text` as `docker pull` would.
    pub fn parse(text: &str) -> Result<Reference> {
        let bad = |why: &str| Error::Reference { reference: text.to_string(), why: why.to_string() };
        if text.is_empty() || text.len() > 4096 || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("not an image name"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((r, d)) => (r, Some(Digest::parse(d).map_err(|_| bad("its digest is not sha256:<64 hex digits>"))?)),
            None => (text, None),
        };
        // A tag follows the last `:` after the last `/` (a `:` before it is a registry's port).
        let last = rest.rsplit_once('/').map(|(_, l)| l).unwrap_or(rest);
        let (name, tag) = match last.rsplit_once(':') {
            Some((_, t)) => (&rest[..rest.len() - t.len() - 1], Some(t.to_string())),
            None => (rest, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                && !t.starts_with(['.', '-']);
            if !ok {
                return Err(bad("its tag is not [A-Za-z0-9_][A-Za-z0-9._-]{0,127}"));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_string(), path.to_string())
            }
            Some(_) => (DOCKER_HUB.to_string(), name.to_string()),
            None => (DOCKER_HUB.to_string(), format!("library/{name}")),
        };
        let registry = if registry == "index.docker.io" { DOCKER_HUB.to_string() } else { registry };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
                && !c.starts_with(['.', '_', '-'])
                && !c.ends_with(['.', '_', '-'])
        };
        if !repository.split('/').all(component_ok) {
            return Err(bad(
                "its repository has characters a name cannot (lowercase letters, digits, `.`, `_`, `-`, `/`)",
            ));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            _ => tag,
        };
        Ok(Reference { registry, repository, tag, digest })
    }

    /// Whether plain HTTP may be used for its registry without the user saying so: loopback
    /// only, as Docker allows.
    pub fn is_loopback(&self) -> bool {
        let host = self.registry.rsplit_once(':').map(|(h, _)| h).unwrap_or(&self.registry);
        host == "localhost" || host == "127.0.0.1" || host == "[::1]" || host.starts_with("127.")
    }

    /// The name without tag or digest: `docker.io/library/alpine`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short form people write: `alpine:3.20` for Docker Hub's official images.
    pub fn familiar(&self) -> String {
        let name = match (self.registry.as_str(), self.repository.strip_prefix("library/")) {
            (DOCKER_HUB, Some(short)) => short.to_string(),
            (DOCKER_HUB, None) => self.repository.clone(),
            _ => self.name(),
        };
        self.with_suffix(name)
    }

    fn with_suffix(&self, mut name: String) -> String {
        if let Some(t) = &self.tag {
            name.push(':');
            name.push_str(t);
        }
        if let Some(d) = &self.digest {
            name.push('@');
            name.push_str(d.as_str());
        }
        name
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.with_suffix(self.name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_as_docker_reads_them() {
        let full = |s: &str| Reference::parse(s).unwrap().to_string();
        assert_eq!(full("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(full("alpine:3.20"), "docker.io/library/alpine:3.20");
        assert_eq!(full("org/app"), "docker.io/org/app:latest");
        assert_eq!(full("index.docker.io/library/alpine"), "docker.io/library/alpine:latest");
        assert_eq!(full("localhost:5000/app:dev"), "localhost:5000/app:dev");
        assert_eq!(full("localhost/app"), "localhost/app:latest");
        assert_eq!(full("127.0.0.1:40123/a/b/c:1.0"), "127.0.0.1:40123/a/b/c:1.0");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(full(&format!("ghcr.io/org/app@{d}")), format!("ghcr.io/org/app@{d}"));
        assert_eq!(full(&format!("ghcr.io/org/app:v1@{d}")), format!("ghcr.io/org/app:v1@{d}"));
        assert_eq!(Reference::parse("alpine:3.20").unwrap().familiar(), "alpine:3.20");
        assert_eq!(Reference::parse("localhost:5000/app").unwrap().familiar(), "localhost:5000/app:latest");
        assert!(Reference::parse("localhost:5000/app").unwrap().is_loopback());
        assert!(Reference::parse("127.0.0.1:5000/app").unwrap().is_loopback());
        assert!(!Reference::parse("ghcr.io/app").unwrap().is_loopback());
        for bad in ["", "Alpine", "alpine:", "alpine@sha256:12", "a b", "org//app", "alpine:-x", "-a/b"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
