//! Manifests and configs we author. Keys are written in a fixed order and nothing
//! depends on the clock, so the same inputs give the same digests.

use serde_json::{Map, Value, json};

use crate::digest::Digest;
use crate::image::{Descriptor, MediaType, RawManifest};

/// A manifest over `config` and `layers`, in the Docker v2s2 or OCI family.
pub fn manifest(
    docker: bool,
    config: &Descriptor,
    layers: &[Descriptor],
    annotations: Option<&Map<String, Value>>,
) -> RawManifest {
    let (mt, cfg_mt) = if docker {
        (MediaType::DockerManifest, MediaType::DockerConfig)
    } else {
        (MediaType::OciManifest, MediaType::OciConfig)
    };
    let desc = |d: &Descriptor, media_type: &MediaType| {
        let mut o = Map::new();
        o.insert("mediaType".into(), json!(media_type.as_str()));
        o.insert("digest".into(), json!(d.digest.to_string()));
        o.insert("size".into(), json!(d.size));
        if let Some(a) = &d.annotations {
            o.insert("annotations".into(), json!(a));
        }
        Value::Object(o)
    };
    let mut m = Map::new();
    m.insert("schemaVersion".into(), json!(2));
    m.insert("mediaType".into(), json!(mt.as_str()));
    m.insert("config".into(), desc(config, &cfg_mt));
    m.insert(
        "layers".into(),
        Value::Array(layers.iter().map(|l| desc(l, &l.media_type)).collect()),
    );
    if let Some(a) = annotations.filter(|a| !a.is_empty() && !docker) {
        m.insert("annotations".into(), Value::Object(a.clone()));
    }
    let bytes = serde_json::to_vec_pretty(&Value::Object(m)).expect("JSON values serialize");
    RawManifest {
        digest: Digest::of(&bytes),
        bytes,
        media_type: mt,
    }
}

/// Serialize a config `Value` once, deterministically.
pub fn config_bytes(config: &Value) -> Vec<u8> {
    serde_json::to_vec(config).expect("JSON values serialize")
}
