//! The output's config: the source's, byte for byte where nothing changed, with
//! the new layers' diff_ids and history entries and coldpress's labels (where it
//! came from, which version wrote it, the memo keys of its layers).

use serde_json::{Map, Value, json};

use super::image::config_bytes;
use super::memo::{KEYS_LABEL, keys_label};
use super::output::{Origin, OutLayer};
use crate::analysis::Analysis;
use crate::digest::Digest;
use crate::error::{Error, Result};

pub const SOURCE_DIGEST_LABEL: &str = "dev.coldpress.source.digest";
pub const VERSION_LABEL: &str = "dev.coldpress.version";
pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
pub const BASE_NAME: &str = "org.opencontainers.image.base.name";

/// The source config with the base's diff_ids and history kept, the upper
/// layers' replaced by `written`, and the labels set.
pub fn rewrite_config(a: &Analysis, written: &[OutLayer]) -> Result<Vec<u8>> {
    let what = "the source config";
    let mut cfg: Value =
        serde_json::from_slice(&a.image.config_bytes).map_err(|e| Error::invalid(what, e))?;
    let base_count = a.base_layer_count();
    let obj = cfg
        .as_object_mut()
        .ok_or_else(|| Error::invalid(what, "not a JSON object"))?;
    let created = obj.get("created").cloned();

    let mut diff_ids: Vec<Value> = a.image.config.rootfs.diff_ids[..base_count]
        .iter()
        .map(|d| json!(d.to_string()))
        .collect();
    diff_ids.extend(written.iter().map(|w| json!(w.diff_id.to_string())));
    let rootfs = obj
        .entry("rootfs")
        .or_insert_with(|| json!({"type": "layers"}));
    rootfs["diff_ids"] = Value::Array(diff_ids);

    let empty = |h: &Value| {
        h.get("empty_layer")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let old: Vec<Value> = obj
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut history = Vec::new();
    let mut seen = 0;
    let mut idx = 0;
    while seen < base_count && idx < old.len() {
        if !empty(&old[idx]) {
            seen += 1;
        }
        history.push(old[idx].clone());
        idx += 1;
    }
    while seen < base_count {
        history.push(json!({"created_by": format!("base layer {seen}")}));
        seen += 1;
    }
    // Configuration steps of the source (ENV, CMD…) are not layers: keep them.
    history.extend(old[idx..].iter().filter(|h| empty(h)).cloned());
    for w in written {
        let mut h = Map::new();
        if let Some(c) = &created {
            h.insert("created".into(), c.clone());
        }
        let how = match w.origin {
            Origin::PassedThrough(n) => {
                format!(", source layer {n} unchanged")
            }
            _ => String::new(),
        };
        h.insert(
            "created_by".into(),
            json!(format!(
                "coldpress optimize: {} layer ({} entries{how})",
                w.class.as_str(),
                w.entries
            )),
        );
        h.insert(
            "comment".into(),
            json!(format!("coldpress {}", env!("CARGO_PKG_VERSION"))),
        );
        history.push(Value::Object(h));
    }
    obj.insert("history".into(), Value::Array(history));

    let config = obj.entry("config").or_insert_with(|| json!({}));
    if config.is_null() {
        *config = json!({});
    }
    let labels = config
        .as_object_mut()
        .ok_or_else(|| Error::invalid(what, "config is not an object"))?
        .entry("Labels")
        .or_insert_with(|| json!({}));
    if labels.is_null() {
        *labels = json!({});
    }
    let labels = labels
        .as_object_mut()
        .ok_or_else(|| Error::invalid(what, "Labels is not an object"))?;
    if let Some(b) = &a.base {
        labels.insert(BASE_DIGEST.into(), json!(b.digest.to_string()));
        labels.insert(BASE_NAME.into(), json!(b.image));
    }
    labels.insert(
        SOURCE_DIGEST_LABEL.into(),
        json!(a.image.manifest.digest.to_string()),
    );
    labels.insert(VERSION_LABEL.into(), json!(env!("CARGO_PKG_VERSION")));
    let keys: Vec<(String, Digest)> = written
        .iter()
        .filter_map(|w| Some((w.key.clone()?, w.desc.digest.clone())))
        .collect();
    if keys.is_empty() {
        labels.remove(KEYS_LABEL);
    } else {
        labels.insert(KEYS_LABEL.into(), json!(keys_label(&keys)));
    }
    Ok(config_bytes(&cfg))
}
