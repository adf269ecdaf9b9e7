//! A small token server for the distribution registry's `auth: token` mode (the
//! flow Docker Hub, GHCR and public.ecr.aws use): GET /token with Basic
//! credentials, or the OAuth2 refresh-token POST, answers a JWT signed (RS256,
//! with `openssl`) by a certificate the registry trusts. Every token it issues is
//! remembered, so tests can check none of them leaks.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use super::{assert_success, require};

pub const SERVICE: &str = "coldpress-test-registry";
pub const ISSUER: &str = "coldpress-test-issuer";

pub struct TokenServer {
    pub realm: String,
    pub cert: PathBuf,
    pub issued: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

fn sign(key: &Path, input: &str, dir: &Path) -> Vec<u8> {
    let data = dir.join(format!("in-{}", std::process::id()));
    std::fs::write(&data, input).unwrap();
    let out = Command::new(require("openssl", "openssl"))
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .arg(&data)
        .output()
        .unwrap();
    assert_success(&out, "openssl sign");
    out.stdout
}

fn query_params(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), urldecode(v)))
        .collect()
}

fn urldecode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl TokenServer {
    /// Accepts `user:password` (Basic) and `refresh_token` (OAuth2 POST).
    pub fn start(user: &str, password: &str, refresh_token: &str) -> TokenServer {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        let out = Command::new(require("openssl", "openssl"))
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=coldpress-test-token",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .unwrap();
        assert_success(&out, "openssl req");
        let der = Command::new("openssl")
            .args(["x509", "-outform", "der", "-in"])
            .arg(&cert)
            .output()
            .unwrap()
            .stdout;
        let x5c = STANDARD.encode(der);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let issued = Arc::new(Mutex::new(Vec::new()));
        let (issued2, user, password, refresh, work) = (
            issued.clone(),
            user.to_string(),
            password.to_string(),
            refresh_token.to_string(),
            dir.path().to_path_buf(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let (method, target) = (
                    parts.next().unwrap_or("").to_string(),
                    parts.next().unwrap_or("").to_string(),
                );
                let mut auth = None;
                let mut length = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap_or((&h, ""));
                    match k.trim().to_ascii_lowercase().as_str() {
                        "authorization" => auth = Some(v.trim().to_string()),
                        "content-length" => length = v.trim().parse().unwrap_or(0),
                        _ => {}
                    }
                }
                let mut body = vec![0u8; length];
                let _ = reader.read_exact(&mut body);
                let mut params = query_params(target.split_once('?').map_or("", |(_, q)| q));
                if method == "POST" {
                    params.extend(query_params(&String::from_utf8_lossy(&body)));
                }
                let get = |k: &str| {
                    params
                        .iter()
                        .filter(|(key, _)| key == k)
                        .map(|(_, v)| v.clone())
                        .collect::<Vec<_>>()
                };
                let subject = if method == "POST" {
                    (get("grant_type") == ["refresh_token"]
                        && get("refresh_token") == [refresh.clone()])
                    .then(|| "robot".to_string())
                } else {
                    match auth.as_deref().and_then(|a| a.strip_prefix("Basic ")) {
                        Some(b64) => {
                            let decoded =
                                String::from_utf8(STANDARD.decode(b64).unwrap_or_default())
                                    .unwrap_or_default();
                            (decoded == format!("{user}:{password}")).then(|| user.clone())
                        }
                        None => Some(String::new()), // anonymous: a token with no access
                    }
                };
                let Some(subject) = subject else {
                    let _ = stream.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 44\r\nConnection: close\r\n\r\n{\"errors\":[{\"code\":\"UNAUTHORIZED\"}],\"x\":0}\n");
                    continue;
                };
                let scopes: Vec<String> = get("scope")
                    .iter()
                    .flat_map(|s| s.split(' ').map(str::to_string).collect::<Vec<_>>())
                    .collect();
                let access: Vec<serde_json::Value> = if subject.is_empty() {
                    Vec::new()
                } else {
                    scopes
                        .iter()
                        .filter_map(|s| {
                            let mut p = s.splitn(3, ':');
                            let (t, n, a) = (p.next()?, p.next()?, p.next()?);
                            Some(serde_json::json!({"type": t, "name": n, "actions": a.split(',').collect::<Vec<_>>()}))
                        })
                        .collect()
                };
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [x5c]});
                let claims = serde_json::json!({
                    "iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now,
                    "jti": format!("{now}-{}", issued2.lock().unwrap().len()), "access": access,
                });
                let input = format!(
                    "{}.{}",
                    URL_SAFE_NO_PAD.encode(header.to_string()),
                    URL_SAFE_NO_PAD.encode(claims.to_string())
                );
                let sig = sign(&key_path(&work), &input, &work);
                let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
                issued2.lock().unwrap().push(token.clone());
                let reply = if method == "POST" {
                    serde_json::json!({"access_token": token, "expires_in": 300})
                } else {
                    serde_json::json!({"token": token, "expires_in": 300})
                }
                .to_string();
                let _ = stream.write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}", reply.len()).as_bytes());
            }
        });
        TokenServer {
            realm,
            cert,
            issued,
            _dir: dir,
        }
    }

    /// The `auth:` section of a registry config that trusts this server.
    pub fn registry_auth(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.realm,
            self.cert.display()
        )
    }
}

fn key_path(dir: &Path) -> PathBuf {
    dir.join("key.pem")
}
