//! The sending half of the request engine: one registry host's client, one
//! attempt at a request (auth header, send, classify by the table in `retry.rs`),
//! and typed errors from answers. Every request to a registry or its token server
//! is an operation run by `Client::run` (`retry.rs`); the callers (`auth`,
//! `manifests`, `blobs`, `paginate`) build requests and read answers, and none of
//! them has a retry loop of its own.
//!
//! Why not oci-client: see docs/decisions.md ("Registry client"). In short, we
//! need status codes and headers it hides (Retry-After, 202 on mount with its
//! upload session, Link pagination, Content-Type), multi-scope tokens for mounts,
//! and resumable streaming reads; everything here streams, nothing buffers a blob.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::auth::{Challenge, Scope, Token};
use super::credentials::{Credential, Found};
use super::retry::{Action, Answer, Attempts, Failure, RetryPolicy, classify, retry_after};
use crate::error::{Error, RegistryErrorKind, Result};
use crate::ui;

#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// `HOST[:PORT]`s that speak plain HTTP (loopback always does).
    pub insecure: Vec<String>,
    /// `--username`/`--password-stdin`, for the registries in `explicit_for`.
    pub explicit: Option<Credential>,
    pub explicit_for: Vec<String>,
    pub connect_timeout: Duration,
    /// A single read or write may stall this long.
    pub io_timeout: Duration,
    pub retry: RetryPolicy,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure: Vec::new(),
            explicit: None,
            explicit_for: Vec::new(),
            connect_timeout: Duration::from_secs(15),
            io_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
        }
    }
}

/// One registry host: HTTP connection pool, credentials, learned challenge, tokens.
pub struct Client {
    pub(super) http: Http,
    /// As written in references (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    pub(super) base: String,
    pub(super) retry: RetryPolicy,
    pub(super) io_timeout: Duration,
    pub(super) explicit: Option<Credential>,
    pub(super) credential: OnceLock<Option<Found>>,
    pub(super) challenge: Mutex<Option<Challenge>>,
    pub(super) tokens: Mutex<HashMap<String, Token>>,
}

/// Registry error bodies look like `{"errors":[{"code":"...","message":"..."}]}`.
pub(super) fn error_summary(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Envelope {
        errors: Vec<E>,
    }
    #[derive(Deserialize)]
    struct E {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(env) = serde_json::from_slice::<Envelope>(body)
        && let Some(e) = env.errors.first()
    {
        return format!(
            "{}{}",
            e.code.as_deref().unwrap_or("error"),
            e.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        "no details".into()
    } else {
        line.to_string()
    }
}

pub(super) fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A URL as it may be shown: upload locations carry session state (and on some
/// registries signed tokens) in the query.
pub(super) fn shown(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// A transport error as an [`Answer`], a short description, and a hint where
/// the fix is known.
fn describe(e: &reqwest::Error) -> (Answer, &'static str, Option<&'static str>) {
    let mut root = None;
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        root = Some(s.to_string());
        source = s.source();
    }
    let root = root.unwrap_or_default();
    // rustls's words for an HTTP answer to a TLS hello.
    if root.contains("InvalidContentType") {
        return (
            Answer::Tls,
            "the server does not speak TLS",
            Some("for a plain-HTTP registry pass --insecure-registry HOST[:PORT]"),
        );
    }
    // A private CA: the usual fix, as for curl, git or skopeo, is to trust it.
    if root.contains("UnknownIssuer") {
        return (
            Answer::Tls,
            "the registry's certificate is not signed by a trusted CA",
            Some(
                "add the CA to the system trust store, or set SSL_CERT_FILE to a PEM bundle that has it",
            ),
        );
    }
    if e.is_builder() {
        return (Answer::Local, "the request could not be built", None);
    }
    let kind = if e.is_connect() {
        "connection failed"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() || e.is_decode() {
        "connection broke while reading the response"
    } else if e.is_request() {
        "request failed"
    } else {
        "error"
    };
    (Answer::Network, kind, None)
}

/// Read at most `max` bytes of a response body.
pub(super) fn read_capped(resp: Response, max: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    resp.take(max).read_to_end(&mut out)?;
    Ok(out)
}

impl Client {
    pub fn new(registry: &str, api_host: &str, opts: &RegistryOptions) -> Result<Arc<Client>> {
        let plain = crate::reference::is_loopback_host(registry)
            || opts.insecure.iter().any(|h| h == registry);
        let scheme = if plain { "http" } else { "https" };
        // reqwest is built without a crypto provider (Cargo.toml); the first client
        // installs ring process-wide, later calls find it already there.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = Http::builder()
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.io_timeout)
            .user_agent(concat!("coldpress/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                let mut err = Error::registry(
                    registry,
                    RegistryErrorKind::Network,
                    "cannot create an HTTP client",
                );
                if let Error::Registry { source, .. } = &mut err {
                    *source = Some(Box::new(e));
                }
                err
            })?;
        let explicit = opts
            .explicit
            .clone()
            .filter(|_| opts.explicit_for.iter().any(|r| r == registry));
        Ok(Arc::new(Client {
            http,
            registry: registry.to_string(),
            base: format!("{scheme}://{api_host}"),
            retry: opts.retry.clone(),
            io_timeout: opts.io_timeout,
            explicit,
            credential: OnceLock::new(),
            challenge: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
        }))
    }

    pub(super) fn err(&self, kind: RegistryErrorKind, message: impl Into<String>) -> Error {
        Error::registry(&self.registry, kind, message.into())
    }

    pub(super) fn repo_url(&self, repo: &str, tail: &str) -> String {
        format!("{}/v2/{repo}/{tail}", self.base)
    }

    /// Whether `url` is on the registry itself (same scheme, host and port, with
    /// default ports spelled or not): only then does it get our Authorization.
    pub(super) fn same_host(&self, url: &str) -> bool {
        let origin = |u: &str| {
            reqwest::Url::parse(u).ok().map(|u| {
                (
                    u.scheme().to_string(),
                    u.host_str().map(str::to_ascii_lowercase),
                    u.port_or_known_default(),
                )
            })
        };
        origin(url).is_some() && origin(url) == origin(&self.base)
    }

    /// One attempt at one request: auth header, send, classify. A response the
    /// table accepts is returned whatever its status; the caller reads it.
    /// `build` is called once per attempt, so a body is re-opened each time.
    pub(super) fn send_once(
        &self,
        method: Method,
        url: &str,
        scopes: &[Scope],
        what: &str,
        build: impl FnOnce(RequestBuilder) -> Result<RequestBuilder>,
    ) -> Result<Response, Failure> {
        let mut req = build(self.http.request(method.clone(), url)).map_err(Failure::fail)?;
        if self.same_host(url)
            && let Some(h) = self.authorization(scopes).map_err(Failure::fail)?
        {
            req = req.header(AUTHORIZATION, h);
        }
        self.answer(req.send(), &format!("{method} {}", shown(url)), what, true)
    }

    /// Classify what a sent request came back with. Only the registry's own 401
    /// (`from_registry`) teaches us a challenge; the token server's is its verdict
    /// on the credentials, and goes to the caller.
    pub(super) fn answer(
        &self,
        sent: reqwest::Result<Response>,
        request: &str,
        what: &str,
        from_registry: bool,
    ) -> Result<Response, Failure> {
        let resp = match sent {
            Ok(resp) => resp,
            Err(e) => {
                let (answer, kind, hint) = describe(&e);
                ui::trace(|| format!("{request} -> {kind}"));
                let mut error = self.err(RegistryErrorKind::Network, format!("{what}: {kind}"));
                if let Error::Registry {
                    source, hint: h, ..
                } = &mut error
                {
                    *source = Some(Box::new(e.without_url()));
                    *h = hint.map(str::to_string);
                }
                return Err(Failure {
                    action: classify(answer),
                    wait: None,
                    error,
                });
            }
        };
        let status = resp.status();
        ui::trace(|| format!("{request} -> {}", status.as_u16()));
        match classify(Answer::Status(status)) {
            Action::Accept => Ok(resp),
            Action::Reauth if !from_registry => Ok(resp),
            Action::Reauth => match super::auth::parse_challenge(resp.headers()) {
                Some(ch) => {
                    *self.challenge.lock().expect("not poisoned") = Some(ch);
                    Err(Failure {
                        action: Action::Reauth,
                        wait: None,
                        error: self.status_error(what, resp),
                    })
                }
                // Nothing to authenticate with: the caller says "access denied".
                None => Ok(resp),
            },
            action => Err(Failure {
                action,
                wait: retry_after(resp.headers()),
                error: self.status_error(what, resp),
            }),
        }
    }

    /// Map a non-success response to a typed error.
    pub fn status_error(&self, what: &str, resp: Response) -> Error {
        let status = resp.status();
        let body = read_capped(resp, 64 * 1024).unwrap_or_default();
        let summary = error_summary(&body);
        let code = status.as_u16();
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => self.auth_error(format!(
                "{what}: access denied ({code} {summary}; {})",
                self.credential_origin()
            )),
            StatusCode::NOT_FOUND => Error::NotFound {
                what: format!("{}: {what}", self.registry),
                // A missing manifest is usually a typo; a missing blob is the
                // registry's problem, and its own words are all we can add.
                hint: if what.starts_with("manifest") {
                    format!("check the repository and tag; the registry said {summary}")
                } else {
                    format!("the registry said {summary}")
                },
            },
            s if matches!(classify(Answer::Status(s)), Action::Retry) || s.is_server_error() => {
                self.err(
                    RegistryErrorKind::Transient,
                    format!("{what}: registry answered {code} {summary}"),
                )
            }
            _ => self.err(
                RegistryErrorKind::Protocol,
                format!("{what}: registry answered {code} {summary}"),
            ),
        }
    }

    /// GET a small document whole. A body cut short repeats the request.
    pub(super) fn get_bytes(
        &self,
        url: &str,
        scopes: &[Scope],
        accept: Option<&str>,
        max: u64,
        what: &str,
    ) -> Result<(HeaderMap, Vec<u8>)> {
        self.run(&mut Attempts::new(), || {
            let resp = self.send_once(Method::GET, url, scopes, what, |r| {
                Ok(match accept {
                    Some(a) => r.header(ACCEPT, a),
                    None => r,
                })
            })?;
            if !resp.status().is_success() {
                return Err(Failure::fail(self.status_error(what, resp)));
            }
            let headers = resp.headers().clone();
            let body = read_capped(resp, max).map_err(|e| {
                Failure::retry(self.err(
                    RegistryErrorKind::Network,
                    format!("{what}: the body broke off ({e})"),
                ))
            })?;
            Ok((headers, body))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_stays_on_the_registry() {
        let c = Client::new(
            "registry.example",
            "registry.example",
            &RegistryOptions::default(),
        )
        .unwrap();
        assert!(c.same_host("https://registry.example/v2/x/blobs/uploads/1"));
        assert!(c.same_host("https://registry.example:443/v2/x/blobs/uploads/1"));
        assert!(!c.same_host("https://registry.example.evil.com/v2/"));
        assert!(!c.same_host("https://s3.amazonaws.com/bucket/blob"));
        assert!(!c.same_host("http://registry.example/v2/"));
    }

    #[test]
    fn summarizes_registry_errors() {
        let body =
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(error_summary(body), "MANIFEST_UNKNOWN: manifest unknown");
    }
}
