//! Listings that come in pages: `/v2/_catalog` and `tags/list`, following `Link`.

use reqwest::header::{HeaderMap, LINK};

use super::Client;
use super::auth::Scope;
use crate::error::{Error, RegistryErrorKind, Result};
use crate::ui;

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

/// The distribution spec's error code for a page size the registry will not serve.
fn refuses_page_size(e: &Error) -> bool {
    matches!(e, Error::Registry { message, .. } if message.contains("PAGINATION_NUMBER_INVALID"))
}

impl Client {
    /// Follow `Link` pagination from `first` (a URL without query), collecting one
    /// JSON array field from every page. We ask for pages of 1000 (ECR's maximum);
    /// a registry whose cap is lower may refuse that outright (distribution 2.8.2+
    /// with `catalog.maxentries`: 400 PAGINATION_NUMBER_INVALID), and is then asked
    /// again without `n`, to page at its own size. Each page is one request to the
    /// engine, retried there.
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

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

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
}
