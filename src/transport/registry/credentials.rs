//! Finding credentials the way `docker` does: `--username/--password-stdin`,
//! then `$DOCKER_CONFIG/config.json` (`credHelpers`, `auths`, `credsStore`).
//! Secrets never reach `Debug`, `Display`, logs or errors.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine;
use serde::Deserialize;

use crate::error::{Error, RegistryErrorKind, Result};

/// A secret string that refuses to be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// Username and password (or token used as password, e.g. ECR's `AWS` user).
    Basic { username: String, password: Secret },
    /// An OAuth2 refresh token (`identitytoken`), exchanged at the token realm.
    IdentityToken(Secret),
}

/// Credentials plus where they came from, for error messages.
#[derive(Clone, Debug)]
pub struct Found {
    pub credential: Credential,
    pub origin: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// `https://index.docker.io/v1/`, `docker.io` and `registry-1.docker.io` all mean Docker Hub.
fn normalize_server(key: &str) -> String {
    let s = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
        h => h.to_string(),
    }
}

/// The server name credential helpers expect for a registry.
fn helper_server(registry: &str) -> String {
    if registry == "docker.io" {
        "https://index.docker.io/v1/".into()
    } else {
        registry.to_string()
    }
}

pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

/// Look up credentials for `registry` (as written in references, e.g. `127.0.0.1:5000`).
pub fn lookup(registry: &str) -> Result<Option<Found>> {
    let Some(path) = docker_config_path() else {
        return Ok(None);
    };
    let raw = match std::fs::read(&path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let cfg: DockerConfig = serde_json::from_slice(&raw)
        // serde's message can quote the offending value, which may be a secret:
        // say where, not what.
        .map_err(|e| {
            Error::invalid(
                path.display(),
                format!(
                    "not a valid docker config (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            )
        })?;
    let target = normalize_server(registry);

    if let Some((_, helper)) = cfg
        .cred_helpers
        .iter()
        .find(|(k, _)| normalize_server(k) == target)
    {
        let origin = format!("credHelpers '{helper}' in {}", path.display());
        return run_helper(helper, registry, &origin);
    }
    if let Some((_, entry)) = cfg
        .auths
        .iter()
        .find(|(k, _)| normalize_server(k) == target)
        && let Some(c) = entry_credential(entry, registry, &path)?
    {
        return Ok(Some(Found {
            credential: c,
            origin: format!("auths in {}", path.display()),
        }));
    }
    if let Some(store) = &cfg.creds_store {
        let origin = format!("credsStore '{store}' in {}", path.display());
        return run_helper(store, registry, &origin);
    }
    Ok(None)
}

fn entry_credential(
    e: &AuthEntry,
    registry: &str,
    path: &std::path::Path,
) -> Result<Option<Credential>> {
    if let Some(tok) = e.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credential::IdentityToken(Secret::new(tok))));
    }
    if let Some(auth) = e.auth.as_deref().filter(|a| !a.is_empty()) {
        let bad = || {
            Error::invalid(
                path.display(),
                format!("the 'auth' entry for {registry} is not base64 of user:password"),
            )
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (u, p) = decoded.split_once(':').ok_or_else(bad)?;
        return Ok(Some(Credential::Basic {
            username: u.to_string(),
            password: Secret::new(p),
        }));
    }
    if let (Some(u), Some(p)) = (&e.username, &e.password) {
        return Ok(Some(Credential::Basic {
            username: u.clone(),
            password: Secret::new(p.clone()),
        }));
    }
    Ok(None)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperReply {
    username: String,
    secret: String,
}

/// Run `docker-credential-NAME get` with the server on stdin.
fn run_helper(name: &str, registry: &str, origin: &str) -> Result<Option<Found>> {
    let program = format!("docker-credential-{name}");
    let auth_err = |message: String| Error::registry(registry, RegistryErrorKind::Auth, message);
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            auth_err(format!(
                "cannot run credential helper {program} ({origin}): {e}"
            ))
            .with_hint(format!(
                "install {program}, or remove it from the docker config"
            ))
        })?;
    // A helper may exit without reading its input (e.g. "not found"): its answer,
    // not our write, decides.
    match child
        .stdin
        .take()
        .expect("piped")
        .write_all(helper_server(registry).as_bytes())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(auth_err(format!(
                "credential helper {program} ({origin}): {e}"
            )));
        }
        _ => {}
    }
    let out = child
        .wait_with_output()
        .map_err(|e| auth_err(format!("credential helper {program} ({origin}): {e}")))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        // Helpers say this when they have nothing for the server: not an error.
        if msg.contains("credentials not found") {
            return Ok(None);
        }
        // The helper's own words, first line only; they never contain the secret.
        let first = msg
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output")
            .trim()
            .to_string();
        return Err(auth_err(format!(
            "credential helper {program} ({origin}) failed: {first}"
        )));
    }
    let reply: HelperReply = serde_json::from_slice(&out.stdout).map_err(|_| {
        auth_err(format!(
            "credential helper {program} ({origin}) returned something that is not JSON credentials"
        ))
    })?;
    let credential = if reply.username == "<token>" {
        Credential::IdentityToken(Secret::new(reply.secret))
    } else {
        Credential::Basic {
            username: reply.username,
            password: Secret::new(reply.secret),
        }
    };
    Ok(Some(Found {
        credential,
        origin: origin.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let c = Credential::Basic {
            username: "u".into(),
            password: Secret::new("hunter2"),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn server_keys_normalize() {
        assert_eq!(normalize_server("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(
            normalize_server("http://127.0.0.1:5000/v2/"),
            "127.0.0.1:5000"
        );
        assert_eq!(normalize_server("ghcr.io"), "ghcr.io");
    }
}
