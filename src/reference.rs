//! Image references: where an image lives and how to name it.
//!
//! Accepted forms (the same ones skopeo users type):
//! - `[docker://]HOST[:PORT]/REPO[:TAG][@sha256:…]`, with Docker Hub short forms
//!   (`python:3.12` is `docker.io/library/python:3.12`),
//! - `oci:DIR[:TAG]`, an OCI image layout directory,
//! - `docker-archive:FILE[:NAME:TAG]`, a `docker save` tarball.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::digest::Digest;
use crate::error::{Error, Result};

pub const DOCKER_HUB: &str = "docker.io";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageRef {
    Registry(RegistryRef),
    OciLayout { dir: PathBuf, tag: Option<String> },
    DockerArchive { file: PathBuf, name: Option<String> },
}

/// A reference to an image in a registry, normalized.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RegistryRef {
    /// `HOST[:PORT]` as the user wrote it, `docker.io` for Docker Hub.
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl ImageRef {
    pub fn parse(input: &str) -> Result<ImageRef> {
        let bad = |reason: &str| Error::Reference {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if let Some(rest) = input.strip_prefix("oci:") {
            let (dir, tag) = match rest.split_once(':') {
                Some((d, t)) => (d, Some(t)),
                None => (rest, None),
            };
            if dir.is_empty() {
                return Err(bad("oci: needs a directory, e.g. oci:./layout:tag"));
            }
            if let Some(t) = tag
                && (t.is_empty() || t.contains('/'))
            {
                return Err(bad(
                    "the tag after the OCI layout directory is empty or has '/'",
                ));
            }
            return Ok(ImageRef::OciLayout {
                dir: PathBuf::from(dir),
                tag: tag.map(str::to_string),
            });
        }
        if let Some(rest) = input.strip_prefix("docker-archive:") {
            let (file, name) = match rest.split_once(':') {
                Some((f, n)) => (f, Some(n)),
                None => (rest, None),
            };
            if file.is_empty() {
                return Err(bad(
                    "docker-archive: needs a file, e.g. docker-archive:./app.tar",
                ));
            }
            if let Some(n) = name
                && n.is_empty()
            {
                return Err(bad("the name after the archive path is empty"));
            }
            return Ok(ImageRef::DockerArchive {
                file: PathBuf::from(file),
                name: name.map(str::to_string),
            });
        }
        let rest = input.strip_prefix("docker://").unwrap_or(input);
        if let Some((scheme, _)) = rest.split_once("://") {
            return Err(bad(&format!(
                "unknown transport '{scheme}://' (use docker://, oci: or docker-archive:)"
            )));
        }
        RegistryRef::parse(rest)
            .map(ImageRef::Registry)
            .map_err(|reason| bad(&reason))
    }

    pub fn as_registry(&self) -> Option<&RegistryRef> {
        match self {
            ImageRef::Registry(r) => Some(r),
            _ => None,
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Registry(r) => write!(f, "{r}"),
            ImageRef::OciLayout { dir, tag } => {
                write!(f, "oci:{}", dir.display())?;
                if let Some(t) = tag {
                    write!(f, ":{t}")?;
                }
                Ok(())
            }
            ImageRef::DockerArchive { file, name } => {
                write!(f, "docker-archive:{}", file.display())?;
                if let Some(n) = name {
                    write!(f, ":{n}")?;
                }
                Ok(())
            }
        }
    }
}

fn valid_repository(repo: &str) -> bool {
    // distribution's grammar: path components of [a-z0-9]+ joined by separators.
    !repo.is_empty()
        && repo.len() <= 255
        && repo.split('/').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
                && c.as_bytes()[0].is_ascii_alphanumeric()
                && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
        })
}

/// `HOST[:PORT]`: DNS labels or an IPv4 address, or `[IPv6]`, with an optional port.
fn valid_registry(r: &str) -> bool {
    let (host, port) = if let Some(rest) = r.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, tail)) if ip.parse::<std::net::Ipv6Addr>().is_ok() => {
                ("ok", tail.strip_prefix(':'))
            }
            _ => return false,
        }
    } else {
        match r.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (r, None),
        }
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = host == "ok"
        || (!host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            }));
    port_ok && host_ok
}

fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && (tag.as_bytes()[0].is_ascii_alphanumeric() || tag.as_bytes()[0] == b'_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl RegistryRef {
    pub fn parse(s: &str) -> std::result::Result<RegistryRef, String> {
        if s.is_empty() {
            return Err("empty reference".into());
        }
        if s.bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err("contains whitespace or control characters".into());
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(d.parse::<Digest>()?)),
            None => (s, None),
        };
        // The tag is after the last ':' that comes after the last '/', so a port is not a tag.
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (
                &name_tag[..last_slash + i],
                Some(&name_tag[last_slash + i + 1..]),
            ),
            None => (name_tag, None),
        };
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err(format!("'{t}' is not a valid tag"));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.starts_with('[') =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        if !valid_registry(&registry) {
            return Err(format!("'{registry}' is not a registry host (HOST[:PORT])"));
        }
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if !valid_repository(&repository) {
            return Err(format!(
                "'{repository}' is not a valid repository name (lowercase letters, digits, '.', '_', '-', '/')"
            ));
        }
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t.map(str::to_string),
        };
        Ok(RegistryRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// Host (and port) to connect to.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// Loopback registries speak plain HTTP, as dockerd assumes.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.registry)
    }

    /// The reference a digest names within the same repository.
    pub fn with_digest(&self, digest: &Digest) -> RegistryRef {
        RegistryRef {
            digest: Some(digest.clone()),
            ..self.clone()
        }
    }

    pub fn with_repository(&self, repository: &str, tag: Option<&str>) -> RegistryRef {
        RegistryRef {
            registry: self.registry.clone(),
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest: None,
        }
    }

    /// What to put in `/v2/<repo>/manifests/<here>`: the digest if known, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }
}

/// `localhost`, `127.0.0.0/8` and `::1`, with or without a port.
pub fn is_loopback_host(host_port: &str) -> bool {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host_port
            }
        })
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(s: &str) -> RegistryRef {
        match ImageRef::parse(s).unwrap() {
            ImageRef::Registry(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn docker_hub_short_forms() {
        let r = reg("python:3.12");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/python");
        assert_eq!(r.tag.as_deref(), Some("3.12"));
        assert_eq!(reg("python").tag.as_deref(), Some("latest"));
        assert_eq!(reg("bitnami/redis").repository, "bitnami/redis");
        assert_eq!(
            reg("docker://index.docker.io/library/alpine").registry,
            "docker.io"
        );
    }

    #[test]
    fn hosts_ports_and_digests() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = reg(&format!("127.0.0.1:5000/lambda/python:3.12@{d}"));
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "lambda/python");
        assert_eq!(r.tag.as_deref(), Some("3.12"));
        assert_eq!(r.digest.as_ref().unwrap().to_string(), d);
        assert_eq!(r.manifest_ref(), d);
        let r = reg(&format!("localhost:5000/app@{d}"));
        assert_eq!(r.tag, None);
        let r = reg("123456789012.dkr.ecr.us-east-1.amazonaws.com/api:latest");
        assert_eq!(r.registry, "123456789012.dkr.ecr.us-east-1.amazonaws.com");
        assert_eq!(
            r.to_string(),
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/api:latest"
        );
    }

    #[test]
    fn transports() {
        assert_eq!(
            ImageRef::parse("oci:./build/layout:app").unwrap(),
            ImageRef::OciLayout {
                dir: "./build/layout".into(),
                tag: Some("app".into())
            }
        );
        assert_eq!(
            ImageRef::parse("docker-archive:./app.tar").unwrap(),
            ImageRef::DockerArchive {
                file: "./app.tar".into(),
                name: None
            }
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "UPPER/case",
            "host:5000/repo:bad tag",
            "repo:",
            "repo@sha256:123",
            "ftp://x/y",
            "oci:",
            "a//b",
            "repo:-tag",
            "docker://oci:./layout:app",
            "host:port/x",
            "bad_host.com/x",
            "[::zz]:5000/x",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn loopback() {
        assert!(is_loopback_host("127.0.0.1:5000"));
        assert!(is_loopback_host("127.3.4.5"));
        assert!(is_loopback_host("localhost:1234"));
        assert!(is_loopback_host("[::1]:5000"));
        assert!(!is_loopback_host("10.0.0.1:5000"));
        assert!(!is_loopback_host("public.ecr.aws"));
    }
}
