//! Platforms (`os/arch[/variant]`) and how an index entry is matched to one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

/// Architecture names people type that are not GOARCH names.
fn normalize_arch(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "i386" | "i686" => "386",
        other => other,
    }
}

impl Platform {
    pub fn new(os: &str, arch: &str, variant: Option<&str>) -> Self {
        Platform {
            os: os.to_string(),
            architecture: normalize_arch(arch).to_string(),
            variant: variant.filter(|v| !v.is_empty()).map(str::to_string),
            os_version: None,
        }
    }

    /// arm64's default variant is v8 and amd64's is v1: an empty variant means that.
    fn effective_variant(&self) -> Option<&str> {
        match (self.architecture.as_str(), self.variant.as_deref()) {
            ("arm64", None | Some("v8")) => Some("v8"),
            ("amd64", None | Some("v1")) => Some("v1"),
            (_, v) => v.filter(|v| !v.is_empty()),
        }
    }

    /// Whether an index entry with `self` as its platform satisfies `wanted`.
    /// A wanted platform without a variant accepts any variant.
    pub fn satisfies(&self, wanted: &Platform) -> bool {
        if self.os != wanted.os || normalize_arch(&self.architecture) != wanted.architecture {
            return false;
        }
        match wanted.variant.as_deref() {
            None => true,
            Some(_) => self.effective_variant() == wanted.effective_variant(),
        }
    }

    /// `unknown/unknown` is what BuildKit puts on attestation manifests.
    pub fn is_unknown(&self) -> bool {
        self.os == "unknown" || self.architecture == "unknown"
    }

    /// Lambda's name for the architecture (`x86_64`/`arm64`).
    pub fn lambda_arch(&self) -> Option<&'static str> {
        match self.architecture.as_str() {
            "amd64" => Some("x86_64"),
            "arm64" => Some("arm64"),
            _ => None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() => {
                Ok(Platform::new(os, arch, Some(variant)))
            }
            _ => Err(format!(
                "'{s}' is not a platform (expected os/arch[/variant], e.g. linux/arm64)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm64_variants_are_equivalent() {
        let entry = Platform::new("linux", "arm64", Some("v8"));
        assert!(entry.satisfies(&"linux/arm64".parse().unwrap()));
        let bare = Platform::new("linux", "arm64", None);
        assert!(bare.satisfies(&"linux/arm64/v8".parse().unwrap()));
        assert!(
            !Platform::new("linux", "arm", Some("v7")).satisfies(&"linux/arm/v6".parse().unwrap())
        );
        assert!(Platform::new("linux", "amd64", None).satisfies(&"linux/x86_64".parse().unwrap()));
    }

    #[test]
    fn rejects_bad_strings() {
        assert!("linux".parse::<Platform>().is_err());
        assert!("a/b/c/d".parse::<Platform>().is_err());
    }
}
