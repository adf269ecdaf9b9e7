//! Blobs: existence checks, streams that resume, cross-repository mounts, and
//! uploads. Each is one operation of the request engine; a stream keeps its
//! operation's budget across all its resumes.

use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;

use reqwest::blocking::{Body, Response};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Method, StatusCode};

use super::Client;
use super::auth::Scope;
use super::http::urlencode;
use super::retry::{Attempts, Failure};
use crate::digest::Digest;
use crate::error::{Error, RegistryErrorKind, Result, to_io};
use crate::image::Descriptor;
use crate::transport::BlobContent;
use crate::ui;

impl Client {
    pub fn blob_exists(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let what = format!("blob {digest} in {repo}");
        let url = self.repo_url(repo, &format!("blobs/{digest}"));
        self.run(&mut Attempts::new(), || {
            let resp =
                self.send_once(Method::HEAD, &url, &[Scope::Pull(repo.into())], &what, Ok)?;
            match resp.status() {
                s if s.is_success() => Ok(true),
                StatusCode::NOT_FOUND => Ok(false),
                _ => Err(Failure::fail(self.status_error(&what, resp))),
            }
        })
    }

    /// One GET of a blob from `offset` on.
    fn blob_response_once(
        &self,
        repo: &str,
        digest: &Digest,
        offset: u64,
    ) -> Result<Response, Failure> {
        let what = format!("blob {digest} in {repo}");
        let url = self.repo_url(repo, &format!("blobs/{digest}"));
        let resp = self.send_once(Method::GET, &url, &[Scope::Pull(repo.into())], &what, |r| {
            Ok(if offset > 0 {
                r.header(RANGE, format!("bytes={offset}-"))
            } else {
                r
            })
        })?;
        if !resp.status().is_success() {
            return Err(Failure::fail(self.status_error(&what, resp)));
        }
        Ok(resp)
    }

    /// A blob as a stream that resumes (with `Range`) when the connection drops
    /// or the body ends short. The caller still verifies the digest.
    pub fn open_blob(self: &Arc<Self>, repo: &str, desc: &Descriptor) -> Result<BlobStream> {
        let mut attempts = Attempts::new();
        let resp = self.run(&mut attempts, || {
            self.blob_response_once(repo, &desc.digest, 0)
        })?;
        Ok(BlobStream {
            client: self.clone(),
            repo: repo.to_string(),
            digest: desc.digest.clone(),
            size: desc.size,
            pos: 0,
            failed_at: None,
            resp: Some(resp),
            attempts,
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

    fn location(&self, resp: &Response, what: &str) -> Result<String, Failure> {
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Failure::fail(self.err(
                    RegistryErrorKind::Protocol,
                    format!("{what}: the registry sent no Location for the upload"),
                ))
            })?;
        Ok(self.resolve_location(loc))
    }

    /// Start an upload session; returns its location.
    fn start_upload(&self, repo: &str, what: &str) -> Result<String, Failure> {
        let url = self.repo_url(repo, "blobs/uploads/");
        let resp = self.send_once(Method::POST, &url, &[Scope::Push(repo.into())], what, |r| {
            Ok(r.header(CONTENT_LENGTH, 0))
        })?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(Failure::fail(self.status_error(what, resp)));
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
    ) -> Result<(), Failure> {
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!(
            "{location}{sep}digest={}",
            urlencode(&desc.digest.to_string())
        );
        // A whole-request limit instead of the per-read one: the stall timeout
        // plus enough for an uplink of 128 KiB/s.
        let budget = self.io_timeout + Duration::from_secs(desc.size / (128 << 10));
        let size = desc.size;
        let resp = self.send_once(Method::PUT, &url, &[Scope::Push(repo.into())], what, |r| {
            Ok(r.header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, size)
                .timeout(budget)
                .body(Body::sized(content.open()?, size)))
        })?;
        if resp.status() != StatusCode::CREATED {
            let status = resp.status();
            let e = self.status_error(what, resp);
            if status == StatusCode::BAD_REQUEST {
                return Err(Failure::fail(Error::invalid(
                    format!("{}: {what}", self.registry),
                    format!("the registry rejected the upload ({e})"),
                )));
            }
            return Err(Failure::fail(e));
        }
        Ok(())
    }

    /// Upload a blob. The operation is the whole session (POST, then the PUT
    /// from the spooled content): a session whose PUT failed cannot be replayed,
    /// so a retry starts a new one.
    pub fn upload_blob(
        &self,
        repo: &str,
        desc: &Descriptor,
        content: &dyn BlobContent,
        first_location: Option<String>,
    ) -> Result<()> {
        let what = format!("uploading blob {} to {repo}", desc.digest);
        let mut location = first_location;
        self.run(&mut Attempts::new(), || {
            let loc = match location.take() {
                Some(l) => l,
                None => self.start_upload(repo, &what)?,
            };
            self.finish_upload(repo, &loc, desc, content, &what)
        })
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
        self.run(&mut Attempts::new(), || {
            let resp = self.send_once(Method::POST, &url, &scopes, &what, |r| {
                Ok(r.header(CONTENT_LENGTH, 0))
            })?;
            match resp.status() {
                StatusCode::CREATED => Ok(None),
                StatusCode::ACCEPTED => Ok(Some(self.location(&resp, &what)?)),
                _ => Err(Failure::fail(self.status_error(&what, resp))),
            }
        })
    }
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
    /// Where the last failure happened, to tell progress from a stuck stream.
    failed_at: Option<u64>,
    resp: Option<Response>,
    attempts: Attempts,
}

impl BlobStream {
    fn resume(&mut self, why: String) -> io::Result<()> {
        let c = self.client.clone();
        if self.failed_at.is_some_and(|at| self.pos > at) {
            self.attempts.progressed();
        }
        self.failed_at = Some(self.pos);
        let error = c.err(
            RegistryErrorKind::Network,
            format!(
                "blob {} in {}: {why} at byte {} of {}",
                self.digest, self.repo, self.pos, self.size
            ),
        );
        c.settle(&mut self.attempts, Failure::retry(error))
            .map_err(to_io)?;
        ui::trace(|| format!("blob {}: resuming at byte {}", self.digest, self.pos));
        let (repo, digest, pos) = (&self.repo, &self.digest, self.pos);
        let mut resp = c
            .run(&mut self.attempts, || {
                c.blob_response_once(repo, digest, pos)
            })
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
