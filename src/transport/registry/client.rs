//! A small client for the OCI distribution API over `reqwest::blocking`.
//!
//! Why not oci-client: see docs/decisions.md ("Registry client"). In short, we
//! need status codes and headers it hides (Retry-After, 202 on mount with its
//! upload session, Link pagination, Content-Type), multi-scope tokens for mounts,
//! and resumable streaming reads; everything here streams, nothing buffers a blob.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use reqwest::blocking::{Body, Client as Http, RequestBuilder, Response};
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, LINK, LOCATION, RANGE,
    RETRY_AFTER, WWW_AUTHENTICATE,
};
use serde::Deserialize;

use super::credentials::{self, Credential, Found, Secret};
use crate::digest::Digest;
use crate::error::{Error, RegistryErrorKind, Result, to_io};
use crate::image::{Descriptor, MAX_MANIFEST_BYTES, MediaType, RawManifest};
use crate::transport::{BlobContent, manifest_from_bytes};
use crate::ui;

/// How hard to try before giving up on a request.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base: Duration,
    pub cap: Duration,
    /// Total time one operation may spend, retries included.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(10),
            deadline: Duration::from_secs(300),
        }
    }
}

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

/// The manifest types we ask for. Schema 1 is included so we can say clearly that
/// it is unsupported instead of getting a confusing 404.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.5, application/vnd.docker.distribution.manifest.v1+json;q=0.5";

#[derive(Clone, Debug)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

struct Token {
    value: Secret,
    expires: Instant,
}

/// One registry host: HTTP connection pool, credentials, learned challenge, tokens.
pub struct Client {
    http: Http,
    /// As written in references (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    base: String,
    retry: RetryPolicy,
    io_timeout: Duration,
    explicit: Option<Credential>,
    credential: OnceLock<Option<Found>>,
    challenge: Mutex<Option<Challenge>>,
    tokens: Mutex<HashMap<String, Token>>,
    /// Counters for reports and tests.
    pub stats: Stats,
}

#[derive(Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
}

fn jitter_fraction() -> f64 {
    // Jitter only spreads retries out; it needs no cryptographic quality.
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.load(Ordering::Relaxed);
    if x == 0 {
        x = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ (std::process::id() as u64) << 32
            | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    (x % 10_000) as f64 / 10_000.0
}

/// `Retry-After` as seconds or an HTTP date, capped so a hostile server cannot park us.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let secs = match v.parse::<u64>() {
        Ok(s) => s,
        Err(_) => {
            let at = http_date(v)?;
            let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
            at.saturating_sub(now)
        }
    };
    Some(Duration::from_secs(secs.min(60)))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) as Unix seconds.
fn http_date(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as i64
        + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    // Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + m * 60 + sec).ok()
}

fn parse_challenge(headers: &HeaderMap) -> Option<Challenge> {
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

/// The URL of the next page from a `Link: <...>; rel="next"` header.
fn next_link(headers: &HeaderMap, base: &str) -> Option<String> {
    let v = headers.get(LINK)?.to_str().ok()?;
    for part in v.split(',') {
        let (url, params) = part.split_once(';').unwrap_or((part, ""));
        if params.contains("rel=\"next\"") || params.contains("rel=next") {
            let url = url.trim().trim_start_matches('<').trim_end_matches('>');
            return Some(
                if url.starts_with("http://") || url.starts_with("https://") {
                    url.to_string()
                } else {
                    format!("{base}{url}")
                },
            );
        }
    }
    None
}

/// Registry error bodies look like `{"errors":[{"code":"...","message":"..."}]}`.
fn error_summary(body: &[u8]) -> String {
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

impl Client {
    pub fn new(
        registry: &str,
        api_host: &str,
        opts: &super::RegistryOptions,
    ) -> Result<Arc<Client>> {
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
            .map_err(|e| Error::Registry {
                registry: registry.to_string(),
                kind: RegistryErrorKind::Network,
                message: format!("cannot create an HTTP client: {e}"),
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
            stats: Stats::default(),
        }))
    }

    fn err(&self, kind: RegistryErrorKind, message: impl Into<String>) -> Error {
        Error::Registry {
            registry: self.registry.clone(),
            kind,
            message: message.into(),
        }
    }

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

    fn credential_origin(&self) -> String {
        match self.credential.get() {
            Some(Some(f)) => format!("credentials from {}", f.origin),
            _ => format!(
                "no credentials found (looked at --username/--password-stdin and {})",
                credentials::docker_config_path()
                    .map_or("the docker config".into(), |p| p.display().to_string())
            ),
        }
    }

    fn backoff(&self, attempt: u32, server_hint: Option<Duration>) -> Duration {
        if let Some(h) = server_hint {
            return h;
        }
        let exp = self
            .retry
            .base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.retry.cap);
        exp.mul_f64(0.5 + jitter_fraction() / 2.0)
    }

    /// Authorization header for a request needing `scopes`, fetching a token if needed.
    fn authorization(&self, scopes: &[Scope]) -> Result<Option<String>> {
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

    fn fetch_token(&self, realm: &str, service: Option<&str>, scopes: &[Scope]) -> Result<Token> {
        #[derive(Deserialize)]
        struct TokenReply {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let scope_strings: Vec<String> = scopes.iter().map(Scope::as_token_scope).collect();
        let cred = self.credential()?.map(|f| f.credential.clone());
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let req = match &cred {
                Some(Credential::IdentityToken(refresh)) => {
                    // OAuth2 refresh-token grant, as docker does for identity tokens.
                    let mut form: Vec<(&str, &str)> = vec![
                        ("grant_type", "refresh_token"),
                        ("refresh_token", refresh.expose()),
                        ("client_id", "coldpress"),
                    ];
                    if let Some(s) = service {
                        form.push(("service", s));
                    }
                    let joined = scope_strings.join(" ");
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
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            ui::trace(|| format!("GET token from {realm} for {}", scope_strings.join(" ")));
            let outcome = req.send();
            let transient_wait = match outcome {
                Err(e) => {
                    if attempt + 1 >= self.retry.attempts || started.elapsed() > self.retry.deadline
                    {
                        return Err(self.err(
                            RegistryErrorKind::Network,
                            format!("token request to {realm} failed: {}", describe_reqwest(&e)),
                        ));
                    }
                    None
                }
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success() {
                        let body = read_capped(resp, 1 << 20).map_err(|e| {
                            self.err(
                                RegistryErrorKind::Network,
                                format!("reading token from {realm}: {e}"),
                            )
                        })?;
                        let reply: TokenReply = serde_json::from_slice(&body).map_err(|_| {
                            self.err(
                                RegistryErrorKind::Protocol,
                                format!(
                                    "token server {realm} returned something that is not a token"
                                ),
                            )
                        })?;
                        let value = reply
                            .token
                            .or(reply.access_token)
                            .filter(|t| !t.is_empty())
                            .ok_or_else(|| {
                                self.err(
                                    RegistryErrorKind::Protocol,
                                    format!("token server {realm} returned no token"),
                                )
                            })?;
                        // Refresh a little early; default lifetime per the token spec is 60s.
                        let secs = reply.expires_in.unwrap_or(60).max(10);
                        return Ok(Token {
                            value: Secret::new(value),
                            expires: Instant::now() + Duration::from_secs(secs - secs / 10),
                        });
                    }
                    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                        return Err(self.err(
                            RegistryErrorKind::Auth,
                            format!(
                                "the token server {realm} refused access to {} ({}; {})",
                                scope_strings.join(" "),
                                status.as_u16(),
                                self.credential_origin()
                            ),
                        ));
                    }
                    if !(status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error())
                        || attempt + 1 >= self.retry.attempts
                    {
                        let body = read_capped(resp, 4096).unwrap_or_default();
                        return Err(self.err(
                            if status.is_server_error() {
                                RegistryErrorKind::Transient
                            } else {
                                RegistryErrorKind::Protocol
                            },
                            format!(
                                "token server {realm} answered {}: {}",
                                status.as_u16(),
                                error_summary(&body)
                            ),
                        ));
                    }
                    retry_after(resp.headers())
                }
            };
            let wait = self.backoff(attempt, transient_wait);
            attempt += 1;
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(wait);
        }
    }

    /// Whether `url` is on the registry itself (same scheme, host and port, with
    /// default ports spelled or not): only then does it get our Authorization.
    fn same_host(&self, url: &str) -> bool {
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

    /// Send a request with auth and retries. `build` is called for every attempt,
    /// so a request with a body re-opens its content each time.
    pub fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        scopes: &[Scope],
        build: &dyn Fn(RequestBuilder) -> Result<RequestBuilder>,
    ) -> Result<Response> {
        let started = Instant::now();
        let mut attempt = 0u32;
        let mut reauthenticated = false;
        loop {
            let mut req = build(self.http.request(method.clone(), url))?;
            if self.same_host(url)
                && let Some(h) = self.authorization(scopes)?
            {
                req = req.header(AUTHORIZATION, h);
            }
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let result = req.send();
            let hint = match result {
                Ok(resp) => {
                    let status = resp.status();
                    ui::trace(|| format!("{method} {url} -> {}", status.as_u16()));
                    if status == StatusCode::UNAUTHORIZED && !reauthenticated {
                        reauthenticated = true;
                        if let Some(ch) = parse_challenge(resp.headers()) {
                            // A 401 with a token we had means it expired: drop cached tokens.
                            self.tokens.lock().expect("not poisoned").clear();
                            *self.challenge.lock().expect("not poisoned") = Some(ch);
                            continue;
                        }
                    }
                    let retriable = status == StatusCode::TOO_MANY_REQUESTS
                        || matches!(status.as_u16(), 500 | 502 | 503 | 504);
                    if !retriable
                        || attempt + 1 >= self.retry.attempts
                        || started.elapsed() > self.retry.deadline
                    {
                        return Ok(resp);
                    }
                    retry_after(resp.headers())
                }
                Err(e) => {
                    ui::trace(|| format!("{method} {url} -> {}", describe_reqwest(&e)));
                    if attempt + 1 >= self.retry.attempts || started.elapsed() > self.retry.deadline
                    {
                        return Err(self.err(
                            RegistryErrorKind::Network,
                            format!("{method} {url}: {}", describe_reqwest(&e)),
                        ));
                    }
                    None
                }
            };
            let wait = self.backoff(attempt, hint);
            attempt += 1;
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(wait);
        }
    }

    /// Map a non-success response to a typed error.
    pub fn status_error(&self, what: &str, resp: Response) -> Error {
        let status = resp.status();
        let body = read_capped(resp, 64 * 1024).unwrap_or_default();
        let summary = error_summary(&body);
        let code = status.as_u16();
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => self.err(
                RegistryErrorKind::Auth,
                format!(
                    "{what}: access denied ({code} {summary}; {})",
                    self.credential_origin()
                ),
            ),
            StatusCode::NOT_FOUND => Error::NotFound {
                what: format!("{}: {what}", self.registry),
                hint: format!(" ({summary})"),
            },
            s if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => self.err(
                RegistryErrorKind::Transient,
                format!("{what}: registry answered {code} {summary} (gave up after retries)"),
            ),
            _ => self.err(
                RegistryErrorKind::Protocol,
                format!("{what}: registry answered {code} {summary}"),
            ),
        }
    }

    fn repo_url(&self, repo: &str, tail: &str) -> String {
        format!("{}/v2/{repo}/{tail}", self.base)
    }

    /// GET a small document whole. A body cut short is retried like a failed
    /// request (status-level retries happen in `send`).
    fn get_bytes(
        &self,
        url: &str,
        scopes: &[Scope],
        accept: Option<&str>,
        max: u64,
        what: &str,
    ) -> Result<(HeaderMap, Vec<u8>)> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let resp = self.send(reqwest::Method::GET, url, scopes, &|r| {
                Ok(match accept {
                    Some(a) => r.header(ACCEPT, a),
                    None => r,
                })
            })?;
            if !resp.status().is_success() {
                return Err(self.status_error(what, resp));
            }
            let headers = resp.headers().clone();
            match read_capped(resp, max) {
                Ok(body) => return Ok((headers, body)),
                Err(e)
                    if attempt + 1 < self.retry.attempts
                        && started.elapsed() < self.retry.deadline =>
                {
                    ui::trace(|| format!("{what}: {e}; retrying"));
                    std::thread::sleep(self.backoff(attempt, None));
                    attempt += 1;
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => return Err(self.err(RegistryErrorKind::Network, format!("{what}: {e}"))),
            }
        }
    }

    /// GET a manifest by tag or digest, with its exact bytes.
    pub fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
        expected: Option<&Digest>,
    ) -> Result<RawManifest> {
        let what = format!("manifest {repo}:{reference}").replace(":sha256:", "@sha256:");
        let url = self.repo_url(repo, &format!("manifests/{reference}"));
        let (headers, body) = self.get_bytes(
            &url,
            &[Scope::Pull(repo.into())],
            Some(MANIFEST_ACCEPT),
            MAX_MANIFEST_BYTES + 1,
            &what,
        )?;
        let declared = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(MediaType::parse);
        let header_digest = headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        if body.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(Error::invalid(
                format!("{}: {what}", self.registry),
                format!("manifest is over the {MAX_MANIFEST_BYTES}-byte limit"),
            ));
        }
        let full_what = format!("{}: {what}", self.registry);
        let m = manifest_from_bytes(body, declared, expected, &full_what)?;
        if let Some(h) = header_digest
            && h != m.digest
            && !m.media_type.is_schema1()
        {
            return Err(Error::DigestMismatch {
                what: format!("{full_what} (Docker-Content-Digest header)"),
                expected: h.to_string(),
                actual: m.digest.to_string(),
            });
        }
        Ok(m)
    }

    pub fn blob_exists(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let url = self.repo_url(repo, &format!("blobs/{digest}"));
        let resp = self.send(
            reqwest::Method::HEAD,
            &url,
            &[Scope::Pull(repo.into())],
            &|r| Ok(r),
        )?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error(&format!("blob {digest} in {repo}"), resp)),
        }
    }

    fn blob_response(&self, repo: &str, digest: &Digest, offset: u64) -> Result<Response> {
        let url = self.repo_url(repo, &format!("blobs/{digest}"));
        let resp = self.send(
            reqwest::Method::GET,
            &url,
            &[Scope::Pull(repo.into())],
            &|r| {
                Ok(if offset > 0 {
                    r.header(RANGE, format!("bytes={offset}-"))
                } else {
                    r
                })
            },
        )?;
        if !resp.status().is_success() {
            return Err(self.status_error(&format!("blob {digest} in {repo}"), resp));
        }
        Ok(resp)
    }

    /// A blob as a stream that resumes (with `Range`) when the connection drops
    /// or the body ends short. The caller still verifies the digest.
    pub fn open_blob(self: &Arc<Self>, repo: &str, desc: &Descriptor) -> Result<BlobStream> {
        let resp = self.blob_response(repo, &desc.digest, 0)?;
        Ok(BlobStream {
            client: self.clone(),
            repo: repo.to_string(),
            digest: desc.digest.clone(),
            size: desc.size,
            pos: 0,
            resp: Some(resp),
            resumes: 0,
            started: Instant::now(),
        })
    }

    fn resolve_location(&self, loc: &str) -> String {
        if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_string()
        } else {
            format!(
                "{}{}",
                self.base,
                if loc.starts_with('/') {
                    loc.to_string()
                } else {
                    format!("/{loc}")
                }
            )
        }
    }

    fn location(&self, resp: &Response, what: &str) -> Result<String> {
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                self.err(
                    RegistryErrorKind::Protocol,
                    format!("{what}: the registry sent no Location for the upload"),
                )
            })?;
        Ok(self.resolve_location(loc))
    }

    /// Start an upload session; returns its location.
    fn start_upload(&self, repo: &str, what: &str) -> Result<String> {
        let url = self.repo_url(repo, "blobs/uploads/");
        let resp = self.send(
            reqwest::Method::POST,
            &url,
            &[Scope::Push(repo.into())],
            &|r| Ok(r.header(CONTENT_LENGTH, 0)),
        )?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.status_error(what, resp));
        }
        self.location(&resp, what)
    }

    /// Finish an upload with one PUT carrying the whole blob (monolithic: chunked
    /// uploads are broken on ECR and capped on GHCR, see docs/decisions.md).
    fn finish_upload(
        &self,
        repo: &str,
        location: &str,
        desc: &Descriptor,
        content: &dyn BlobContent,
        what: &str,
    ) -> Result<()> {
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!(
            "{location}{sep}digest={}",
            urlencode(&desc.digest.to_string())
        );
        // Uploads may legitimately take long: allow 1 MiB/s plus the stall timeout.
        // A whole-request limit: generous enough for an uplink of 128 KiB/s.
        let budget = self.io_timeout + Duration::from_secs(desc.size / (128 << 10));
        let size = desc.size;
        let resp = self.send_once_with_body(
            reqwest::Method::PUT,
            &url,
            &[Scope::Push(repo.into())],
            &|r| {
                Ok(r.header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, size)
                    .timeout(budget)
                    .body(Body::sized(content.open()?, size)))
            },
        )?;
        if resp.status() != StatusCode::CREATED {
            let status = resp.status();
            let e = self.status_error(what, resp);
            if status == StatusCode::BAD_REQUEST {
                return Err(Error::invalid(
                    format!("{}: {what}", self.registry),
                    format!("the registry rejected the upload ({e})"),
                ));
            }
            return Err(e);
        }
        Ok(())
    }

    /// Like `send`, but a failed attempt is reported instead of repeated: an upload
    /// session cannot be replayed, so the caller restarts the whole upload.
    fn send_once_with_body(
        &self,
        method: reqwest::Method,
        url: &str,
        scopes: &[Scope],
        build: &dyn Fn(RequestBuilder) -> Result<RequestBuilder>,
    ) -> Result<Response> {
        let mut req = build(self.http.request(method.clone(), url))?;
        if self.same_host(url)
            && let Some(h) = self.authorization(scopes)?
        {
            req = req.header(AUTHORIZATION, h);
        }
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        match req.send() {
            Ok(resp) => {
                ui::trace(|| {
                    format!(
                        "{method} {} -> {}",
                        url.split('?').next().unwrap_or(url),
                        resp.status().as_u16()
                    )
                });
                Ok(resp)
            }
            Err(e) => Err(self.err(
                RegistryErrorKind::Network,
                format!("{method} upload: {}", describe_reqwest(&e)),
            )),
        }
    }

    /// Upload a blob, restarting the whole upload on transient failures.
    pub fn upload_blob(
        &self,
        repo: &str,
        desc: &Descriptor,
        content: &dyn BlobContent,
        first_location: Option<String>,
    ) -> Result<()> {
        let what = format!("uploading blob {} to {repo}", desc.digest);
        let started = Instant::now();
        let mut location = first_location;
        let mut attempt = 0;
        let mut reauthenticated = false;
        loop {
            let result = (|| {
                let loc = match location.take() {
                    Some(l) => l,
                    None => self.start_upload(repo, &what)?,
                };
                self.finish_upload(repo, &loc, desc, content, &what)
            })();
            match result {
                Ok(()) => return Ok(()),
                // A token that expired during a long upload: fetch a new one, once.
                Err(Error::Registry {
                    kind: RegistryErrorKind::Auth,
                    ..
                }) if !reauthenticated => {
                    reauthenticated = true;
                    self.tokens.lock().expect("not poisoned").clear();
                    ui::trace(|| {
                        format!("{what}: refused; restarting the upload with a fresh token")
                    });
                }
                Err(e)
                    if e.is_transient()
                        && attempt + 1 < self.retry.attempts
                        && started.elapsed() < self.retry.deadline =>
                {
                    ui::trace(|| format!("{what}: {e}; restarting the upload"));
                    std::thread::sleep(self.backoff(attempt, None));
                    attempt += 1;
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Cross-repository mount. `Ok(None)`: mounted. `Ok(Some(location))`: the
    /// registry opened an upload session instead (202), to be used for the upload.
    pub fn mount_blob(
        &self,
        repo: &str,
        from_repo: &str,
        digest: &Digest,
    ) -> Result<Option<String>> {
        let what = format!("mounting blob {digest} from {from_repo} into {repo}");
        let url = format!(
            "{}?mount={}&from={}",
            self.repo_url(repo, "blobs/uploads/"),
            urlencode(&digest.to_string()),
            urlencode(from_repo)
        );
        let scopes = [Scope::Push(repo.into()), Scope::Pull(from_repo.into())];
        let resp = self.send(reqwest::Method::POST, &url, &scopes, &|r| {
            Ok(r.header(CONTENT_LENGTH, 0))
        })?;
        match resp.status() {
            StatusCode::CREATED => Ok(None),
            StatusCode::ACCEPTED => Ok(Some(self.location(&resp, &what)?)),
            _ => Err(self.status_error(&what, resp)),
        }
    }

    pub fn put_manifest(&self, repo: &str, reference: &str, manifest: &RawManifest) -> Result<()> {
        let what = format!("pushing manifest {} to {repo}:{reference}", manifest.digest);
        let url = self.repo_url(repo, &format!("manifests/{reference}"));
        let bytes = manifest.bytes.clone();
        let mt = manifest.media_type.as_str().to_string();
        let resp = self.send(
            reqwest::Method::PUT,
            &url,
            &[Scope::Push(repo.into())],
            &|r| Ok(r.header(CONTENT_TYPE, mt.as_str()).body(bytes.clone())),
        )?;
        if !resp.status().is_success() {
            return Err(self.status_error(&what, resp));
        }
        Ok(())
    }

    /// Follow `Link` pagination from `first` (a URL without query), collecting one
    /// JSON array field from every page. We ask for pages of 1000 (ECR's maximum);
    /// a registry whose cap is lower may refuse that outright (distribution 2.8.2+
    /// with `catalog.maxentries`: 400 PAGINATION_NUMBER_INVALID), and is then asked
    /// again without `n`, to page at its own size.
    fn paginate(
        &self,
        first: String,
        scope: Scope,
        field: &str,
        what: &str,
    ) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut url = Some(format!("{first}?n=1000"));
        let mut pages = 0;
        while let Some(u) = url.take() {
            pages += 1;
            if pages > 100_000 {
                return Err(self.err(
                    RegistryErrorKind::Protocol,
                    format!("{what}: pagination does not end"),
                ));
            }
            let get =
                |u: &str| self.get_bytes(u, std::slice::from_ref(&scope), None, 64 << 20, what);
            let (headers, body) = match get(&u) {
                Err(e) if pages == 1 && refuses_page_size(&e) => {
                    ui::trace(|| {
                        format!("{what}: the registry refused n=1000; paging at its own size")
                    });
                    get(&first)?
                }
                r => r?,
            };
            url = next_link(&headers, &self.base);
            let v: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| self.err(RegistryErrorKind::Protocol, format!("{what}: {e}")))?;
            if let Some(items) = v.get(field).and_then(|x| x.as_array()) {
                out.extend(items.iter().filter_map(|x| x.as_str().map(str::to_string)));
            }
        }
        Ok(out)
    }

    pub fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        self.paginate(
            self.repo_url(repo, "tags/list"),
            Scope::Pull(repo.into()),
            "tags",
            &format!("listing tags of {repo}"),
        )
    }

    pub fn catalog(&self) -> Result<Vec<String>> {
        self.paginate(
            format!("{}/v2/_catalog", self.base),
            Scope::Catalog,
            "repositories",
            "listing repositories (/v2/_catalog)",
        )
    }
}

/// The distribution spec's error code for a page size the registry will not serve.
fn refuses_page_size(e: &Error) -> bool {
    matches!(e, Error::Registry { message, .. } if message.contains("PAGINATION_NUMBER_INVALID"))
}

fn urlencode(s: &str) -> String {
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

/// A short description of a transport error, without URLs that might carry tokens.
fn describe_reqwest(e: &reqwest::Error) -> String {
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
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut root = None;
    while let Some(s) = source {
        root = Some(s.to_string());
        source = s.source();
    }
    match root {
        // rustls's words for an HTTP answer to a TLS hello.
        Some(r) if r.contains("InvalidContentType") => format!(
            "{kind} ({r}): the server does not speak TLS; for a plain-HTTP registry pass --insecure-registry HOST[:PORT]"
        ),
        // A private CA: the usual fix, as for curl, git or skopeo, is to trust it.
        Some(r) if r.contains("UnknownIssuer") => format!(
            "{kind} ({r}): the registry's certificate is not signed by a trusted CA; add the CA to the system trust store or set SSL_CERT_FILE to a PEM bundle that has it"
        ),
        Some(r) => format!("{kind} ({r})"),
        None => kind.to_string(),
    }
}

fn read_capped(resp: Response, max: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    resp.take(max).read_to_end(&mut out)?;
    Ok(out)
}

/// A blob download that survives dropped connections and short bodies by asking
/// for the rest with `Range`. Digest verification happens in the caller's
/// `VerifyingReader`, over all bytes, so a resume can never splice in wrong data
/// unnoticed.
pub struct BlobStream {
    client: Arc<Client>,
    repo: String,
    digest: Digest,
    size: u64,
    pos: u64,
    resp: Option<Response>,
    resumes: u32,
    started: Instant,
}

impl BlobStream {
    fn resume(&mut self, why: String) -> io::Result<()> {
        let c = &self.client;
        if self.resumes + 1 >= c.retry.attempts || self.started.elapsed() > c.retry.deadline {
            return Err(to_io(c.err(
                RegistryErrorKind::Network,
                format!(
                    "blob {} in {}: {why} at byte {} of {} (gave up after {} resumes)",
                    self.digest, self.repo, self.pos, self.size, self.resumes
                ),
            )));
        }
        std::thread::sleep(c.backoff(self.resumes, None));
        self.resumes += 1;
        c.stats.retries.fetch_add(1, Ordering::Relaxed);
        ui::trace(|| format!("blob {}: {why} at byte {}; resuming", self.digest, self.pos));
        let mut resp = c
            .blob_response(&self.repo, &self.digest, self.pos)
            .map_err(to_io)?;
        if resp.status() != StatusCode::PARTIAL_CONTENT && self.pos > 0 {
            // The registry ignored Range: skip what we already have.
            io::copy(&mut (&mut resp).take(self.pos), &mut io::sink())?;
        }
        self.resp = Some(resp);
        Ok(())
    }
}

impl Read for BlobStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(resp) = self.resp.as_mut() else {
                return Ok(0);
            };
            match resp.read(buf) {
                Ok(0) if self.pos < self.size => self.resume("the body ended early".into())?,
                Ok(0) => {
                    self.resp = None;
                    return Ok(0);
                }
                Ok(n) => {
                    self.pos += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Errors we raised ourselves (typed) are final.
                    if e.get_ref().is_some_and(|i| i.is::<Error>()) {
                        return Err(e);
                    }
                    self.resume(format!("read failed ({e})"))?
                }
            }
        }
    }
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
    fn retry_after_in_seconds_or_as_a_date() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        assert_eq!(
            http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::ZERO),
            "a date in the past: now"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn authorization_stays_on_the_registry() {
        let c = Client::new(
            "registry.example",
            "registry.example",
            &super::super::RegistryOptions::default(),
        )
        .unwrap();
        assert!(c.same_host("https://registry.example/v2/x/blobs/uploads/1"));
        assert!(c.same_host("https://registry.example:443/v2/x/blobs/uploads/1"));
        assert!(!c.same_host("https://registry.example.evil.com/v2/"));
        assert!(!c.same_host("https://s3.amazonaws.com/bucket/blob"));
        assert!(!c.same_host("http://registry.example/v2/"));
    }

    #[test]
    fn follows_link_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            LINK,
            HeaderValue::from_static(r#"</v2/_catalog?last=b&n=2>; rel="next""#),
        );
        assert_eq!(
            next_link(&h, "http://r:5000").unwrap(),
            "http://r:5000/v2/_catalog?last=b&n=2"
        );
    }

    #[test]
    fn summarizes_registry_errors() {
        let body =
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(error_summary(body), "MANIFEST_UNKNOWN: manifest unknown");
    }
}
