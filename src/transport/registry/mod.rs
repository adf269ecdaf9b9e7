//! Images in a registry (OCI distribution API).
//!
//! The request engine is `http` (one attempt: auth, send, classify) and `retry`
//! (the table, the budget, the one loop); `auth`, `manifests`, `blobs` and
//! `paginate` are its callers, one job each.

mod auth;
mod blobs;
pub mod credentials;
mod http;
mod manifests;
mod paginate;
mod retry;

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex, OnceLock};

pub use auth::Scope;
pub use blobs::BlobStream;
pub use http::{Client, RegistryOptions};
pub use retry::RetryPolicy;

use super::{BlobContent, BlobOutcome, FromSource, Sink, Source};
use crate::error::{Error, Result};
use crate::image::{Descriptor, RawManifest};
use crate::reference::RegistryRef;

/// One client per registry host for the whole process, so sources and sinks on
/// the same registry share connections, the learned auth challenge and tokens.
pub fn client_for(r: &RegistryRef, opts: &RegistryOptions) -> Result<Arc<Client>> {
    static CLIENTS: OnceLock<Mutex<HashMap<String, Arc<Client>>>> = OnceLock::new();
    let mut map = CLIENTS
        .get_or_init(Default::default)
        .lock()
        .expect("not poisoned");
    if let Some(c) = map.get(&r.registry) {
        return Ok(c.clone());
    }
    let c = Client::new(&r.registry, r.api_host(), opts)?;
    map.insert(r.registry.clone(), c.clone());
    Ok(c)
}

pub struct RegistrySource {
    r: RegistryRef,
    client: Arc<Client>,
}

impl RegistrySource {
    pub fn new(r: RegistryRef, opts: &RegistryOptions) -> Result<Self> {
        let client = client_for(&r, opts)?;
        Ok(RegistrySource { r, client })
    }

    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }
}

impl Source for RegistrySource {
    fn describe(&self) -> String {
        self.r.to_string()
    }

    fn root(&self) -> Result<RawManifest> {
        self.client.get_manifest(
            &self.r.repository,
            &self.r.manifest_ref(),
            self.r.digest.as_ref(),
        )
    }

    fn manifest(&self, desc: &Descriptor) -> Result<RawManifest> {
        self.client.get_manifest(
            &self.r.repository,
            &desc.digest.to_string(),
            Some(&desc.digest),
        )
    }

    fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send>> {
        if desc.media_type.is_nondistributable() && desc.urls.is_some() {
            return Err(Error::unsupported(
                format!("{}: blob {}", self.describe(), desc.digest),
                "foreign layers with external URLs are not fetched",
            ));
        }
        Ok(Box::new(self.client.open_blob(&self.r.repository, desc)?))
    }

    fn tagged(&self, tag: &str) -> Result<Option<RawManifest>> {
        match self.client.get_manifest(&self.r.repository, tag, None) {
            Ok(m) => Ok(Some(m)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn registry_ref(&self) -> Option<&RegistryRef> {
        Some(&self.r)
    }
}

pub struct RegistrySink {
    r: RegistryRef,
    client: Arc<Client>,
}

impl RegistrySink {
    pub fn new(r: RegistryRef, opts: &RegistryOptions) -> Result<Self> {
        if r.digest.is_some() && r.tag.is_none() {
            return Err(Error::Usage(format!(
                "destination {r} names a digest; give a tag to push to (the digest is computed)"
            )));
        }
        let client = client_for(&r, opts)?;
        Ok(RegistrySink { r, client })
    }
}

impl Sink for RegistrySink {
    fn describe(&self) -> String {
        self.r.to_string()
    }

    fn has_blob(&self, desc: &Descriptor) -> Result<bool> {
        self.client.blob_exists(&self.r.repository, &desc.digest)
    }

    fn put_blob(&self, desc: &Descriptor, content: &dyn BlobContent) -> Result<BlobOutcome> {
        if self.has_blob(desc)? {
            return Ok(BlobOutcome::Existed);
        }
        self.client
            .upload_blob(&self.r.repository, desc, content, None)?;
        Ok(BlobOutcome::Uploaded)
    }

    fn copy_blob(&self, desc: &Descriptor, from: &dyn Source) -> Result<BlobOutcome> {
        if self.has_blob(desc)? {
            return Ok(BlobOutcome::Existed);
        }
        let content = FromSource {
            source: from,
            desc: desc.clone(),
        };
        // Same registry, other repository: ask for a mount first. A 202 means the
        // registry would rather have the bytes; it hands us an upload session.
        if let Some(src) = from.registry_ref()
            && src.registry == self.r.registry
            && src.repository != self.r.repository
        {
            match self
                .client
                .mount_blob(&self.r.repository, &src.repository, &desc.digest)
            {
                Ok(None) => return Ok(BlobOutcome::Mounted),
                Ok(Some(location)) => {
                    self.client
                        .upload_blob(&self.r.repository, desc, &content, Some(location))?;
                    return Ok(BlobOutcome::Uploaded);
                }
                Err(e) => crate::ui::trace(|| {
                    format!(
                        "mount of {} failed ({}); uploading instead",
                        desc.digest,
                        crate::error::Chain(&e)
                    )
                }),
            }
        }
        self.client
            .upload_blob(&self.r.repository, desc, &content, None)?;
        Ok(BlobOutcome::Uploaded)
    }

    fn put_manifest(&self, manifest: &RawManifest) -> Result<()> {
        let reference = self
            .r
            .tag
            .clone()
            .unwrap_or_else(|| manifest.digest.to_string());
        self.client
            .put_manifest(&self.r.repository, &reference, manifest)
    }

    fn put_tagged(&self, manifest: &RawManifest, tag: Option<&str>) -> Result<()> {
        let reference = tag.map_or_else(|| manifest.digest.to_string(), str::to_string);
        self.client
            .put_manifest(&self.r.repository, &reference, manifest)
    }
}
