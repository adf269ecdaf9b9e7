//! Manifests: GET by tag or digest with their exact bytes, PUT as the last step.

use reqwest::Method;
use reqwest::header::CONTENT_TYPE;

use super::Client;
use super::auth::Scope;
use super::retry::{Attempts, Failure};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{MAX_MANIFEST_BYTES, MediaType, RawManifest};
use crate::transport::manifest_from_bytes;

/// The manifest types we ask for. Schema 1 is included so we can say clearly that
/// it is unsupported instead of getting a confusing 404.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.5, application/vnd.docker.distribution.manifest.v1+json;q=0.5";

impl Client {
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

    pub fn put_manifest(&self, repo: &str, reference: &str, manifest: &RawManifest) -> Result<()> {
        let what = format!("pushing manifest {} to {repo}:{reference}", manifest.digest);
        let url = self.repo_url(repo, &format!("manifests/{reference}"));
        let mt = manifest.media_type.as_str();
        self.run(&mut Attempts::new(), || {
            let resp =
                self.send_once(Method::PUT, &url, &[Scope::Push(repo.into())], &what, |r| {
                    Ok(r.header(CONTENT_TYPE, mt).body(manifest.bytes.clone()))
                })?;
            if !resp.status().is_success() {
                return Err(Failure::fail(self.status_error(&what, resp)));
            }
            Ok(())
        })
    }
}
