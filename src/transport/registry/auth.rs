//! Authentication: the challenge a registry sends with its first 401, the
//! credentials for it, and bearer tokens fetched (through the request engine)
//! from the token server and cached per scope set.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, WWW_AUTHENTICATE};
use serde::Deserialize;

use super::Client;
use super::credentials::{self, Credential, Found, Secret};
use super::http::{error_summary, read_capped, urlencode};
use super::retry::{Attempts, Failure};
use crate::error::{Error, RegistryErrorKind, Result};
use crate::ui;

#[derive(Clone, Debug)]
pub(super) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

pub(super) struct Token {
    value: Secret,
    expires: Instant,
}

/// What a request needs access to, in the token-scope grammar.
#[derive(Clone, Debug)]
pub enum Scope {
    Pull(String),
    Push(String),
    Catalog,
}

impl Scope {
    fn as_token_scope(&self) -> String {
        match self {
            Scope::Pull(r) => format!("repository:{r}:pull"),
            Scope::Push(r) => format!("repository:{r}:pull,push"),
            Scope::Catalog => "registry:catalog:*".into(),
        }
    }
}

pub(super) fn parse_challenge(headers: &HeaderMap) -> Option<Challenge> {
    let raw = headers.get(WWW_AUTHENTICATE)?.to_str().ok()?;
    let (scheme, params) = raw.trim().split_once(' ').unwrap_or((raw.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    // key="value" pairs; values may contain commas inside quotes.
    let mut rest = params;
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().trim_start_matches(',').trim();
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        match key.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value.to_string()),
            "service" => service = Some(value.to_string()),
            _ => {}
        }
        rest = tail.trim_start_matches(',').trim_start();
    }
    Some(Challenge::Bearer {
        realm: realm?,
        service,
    })
}

impl Client {
    fn credential(&self) -> Result<Option<&Found>> {
        if let Some(c) = self.credential.get() {
            return Ok(c.as_ref());
        }
        let found = match &self.explicit {
            Some(c) => Some(Found {
                credential: c.clone(),
                origin: "--username/--password-stdin".into(),
            }),
            None => credentials::lookup(&self.registry)?,
        };
        if let Some(f) = &found {
            ui::trace(|| format!("{}: using credentials from {}", self.registry, f.origin));
        }
        let _ = self.credential.set(found);
        Ok(self.credential.get().and_then(Option::as_ref))
    }

    pub(super) fn credential_origin(&self) -> String {
        match self.credential.get() {
            Some(Some(f)) => format!("credentials from {}", f.origin),
            _ => format!(
                "no credentials found (looked at --username/--password-stdin and {})",
                credentials::docker_config_path()
                    .map_or("the docker config".into(), |p| p.display().to_string())
            ),
        }
    }

    /// An access-denied error, with a hint when we had nothing to offer.
    pub(super) fn auth_error(&self, message: String) -> Error {
        let e = self.err(RegistryErrorKind::Auth, message);
        match self.credential.get() {
            Some(Some(_)) => e,
            _ => e.with_hint(format!(
                "log in with `docker login {}`, or pass --username and --password-stdin",
                self.registry
            )),
        }
    }

    /// Authorization header for a request needing `scopes`, fetching a token if needed.
    pub(super) fn authorization(&self, scopes: &[Scope]) -> Result<Option<String>> {
        let challenge = self.challenge.lock().expect("not poisoned").clone();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(match self.credential()? {
                Some(Found {
                    credential: Credential::Basic { username, password },
                    ..
                }) => {
                    use base64::Engine;
                    let raw = format!("{username}:{}", password.expose());
                    Some(format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(raw)
                    ))
                }
                _ => None,
            }),
            Some(Challenge::Bearer { realm, service }) => {
                let key: Vec<String> = scopes.iter().map(Scope::as_token_scope).collect();
                let key = key.join(" ");
                if let Some(t) = self.tokens.lock().expect("not poisoned").get(&key)
                    && t.expires > Instant::now()
                {
                    return Ok(Some(format!("Bearer {}", t.value.expose())));
                }
                let token = self.fetch_token(&realm, service.as_deref(), scopes)?;
                let header = format!("Bearer {}", token.value.expose());
                self.tokens.lock().expect("not poisoned").insert(key, token);
                Ok(Some(header))
            }
        }
    }

    /// A token from the realm: a GET with basic auth (or none), or for an
    /// identity token the OAuth2 refresh-token grant, as docker does.
    fn fetch_token(&self, realm: &str, service: Option<&str>, scopes: &[Scope]) -> Result<Token> {
        let scope_strings: Vec<String> = scopes.iter().map(Scope::as_token_scope).collect();
        let joined = scope_strings.join(" ");
        let cred = self.credential()?.map(|f| f.credential.clone());
        let what = format!("token request to {realm}");
        self.run(&mut Attempts::new(), || {
            let req = match &cred {
                Some(Credential::IdentityToken(refresh)) => {
                    let mut form: Vec<(&str, &str)> = vec![
                        ("grant_type", "refresh_token"),
                        ("refresh_token", refresh.expose()),
                        ("client_id", "coldpress"),
                    ];
                    if let Some(s) = service {
                        form.push(("service", s));
                    }
                    form.push(("scope", &joined));
                    let body: String = form
                        .iter()
                        .map(|(k, v)| format!("{k}={}", urlencode(v)))
                        .collect::<Vec<_>>()
                        .join("&");
                    self.http
                        .post(realm)
                        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .body(body)
                }
                other => {
                    let mut q: Vec<(&str, &str)> = scope_strings
                        .iter()
                        .map(|s| ("scope", s.as_str()))
                        .collect();
                    if let Some(s) = service {
                        q.push(("service", s));
                    }
                    let mut req = self.http.get(realm).query(&q);
                    if let Some(Credential::Basic { username, password }) = other {
                        req = req.basic_auth(username, Some(password.expose()));
                    }
                    req
                }
            };
            ui::trace(|| format!("GET token from {realm} for {joined}"));
            let resp = self.answer(req.send(), &format!("token {realm}"), &what, false)?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(Failure::fail(self.token_refused(
                    realm,
                    &joined,
                    status.as_u16(),
                )));
            }
            if !status.is_success() {
                let body = read_capped(resp, 4096).unwrap_or_default();
                return Err(Failure::fail(self.err(
                    RegistryErrorKind::Protocol,
                    format!(
                        "token server {realm} answered {}: {}",
                        status.as_u16(),
                        error_summary(&body)
                    ),
                )));
            }
            let body = read_capped(resp, 1 << 20).map_err(|e| {
                Failure::retry(self.err(
                    RegistryErrorKind::Network,
                    format!("reading token from {realm}: {e}"),
                ))
            })?;
            parse_token(&body).map_err(|why| {
                Failure::fail(self.err(
                    RegistryErrorKind::Protocol,
                    format!("token server {realm} {why}"),
                ))
            })
        })
    }

    fn token_refused(&self, realm: &str, scopes: &str, code: u16) -> Error {
        self.auth_error(format!(
            "the token server {realm} refused access to {scopes} ({code}; {})",
            self.credential_origin()
        ))
    }
}

fn parse_token(body: &[u8]) -> Result<Token, &'static str> {
    #[derive(Deserialize)]
    struct TokenReply {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<u64>,
    }
    let reply: TokenReply =
        serde_json::from_slice(body).map_err(|_| "returned something that is not a token")?;
    let value = reply
        .token
        .or(reply.access_token)
        .filter(|t| !t.is_empty())
        .ok_or("returned no token")?;
    // Refresh a little early; default lifetime per the token spec is 60s.
    let secs = reply.expires_in.unwrap_or(60).max(10);
    Ok(Token {
        value: Secret::new(value),
        expires: Instant::now() + Duration::from_secs(secs - secs / 10),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn parses_bearer_challenge() {
        let mut h = HeaderMap::new();
        h.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#),
        );
        match parse_challenge(&h).unwrap() {
            Challenge::Bearer { realm, service } => {
                assert_eq!(realm, "https://auth.example/token");
                assert_eq!(service.as_deref(), Some("registry.example"));
            }
            other => panic!("{other:?}"),
        }
        h.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="Registry Realm""#),
        );
        assert!(matches!(parse_challenge(&h), Some(Challenge::Basic)));
    }

    #[test]
    fn token_replies_in_either_spelling() {
        assert!(parse_token(br#"{"token":"t","expires_in":300}"#).is_ok());
        assert!(parse_token(br#"{"access_token":"t"}"#).is_ok());
        assert_eq!(
            parse_token(br#"{"token":""}"#).err(),
            Some("returned no token")
        );
        assert!(parse_token(b"<html>").is_err());
    }
}
