//! The summary of an audit's rows (`summary.json`) and its Markdown (`summary.md`).
//! The HTML page (`html`) renders the same summary; `write_outputs` in the module
//! root writes all three, so neither renderer depends on the other.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::units::human_bytes;

pub const SCHEMA: &str = "coldpress.audit/v1";

#[derive(Serialize, Default, Clone, Debug)]
pub struct Bytes {
    pub now: u64,
    pub after_slimming: u64,
}

#[derive(Serialize, Default, Clone, Debug)]
pub struct Group {
    pub images: u64,
    pub cold_start_bytes: Bytes,
}

#[derive(Serialize, Clone, Debug)]
pub struct StaleBase {
    pub image: String,
    pub digest: String,
    pub images: u64,
    pub newer_digest: Option<String>,
}

#[derive(Serialize, Clone, Debug)]
pub struct Failure {
    pub repository: String,
    pub tag: String,
    pub error: String,
}

#[derive(Serialize, Clone, Debug)]
pub struct Summary {
    pub schema: &'static str,
    pub registry: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    pub images: u64,
    pub errors: u64,
    /// Distinct layers (by digest) of the audited images, and their compressed bytes.
    pub unique_layers: u64,
    pub unique_bytes: u64,
    /// Sum over images of what a cold start fetches, now and after `optimize` (estimated).
    pub cold_start_bytes: Bytes,
    pub strippable_bytes: u64,
    pub wasted_bytes: u64,
    /// Per base image (`none` for images on no known base).
    pub bases: BTreeMap<String, Group>,
    pub stale_bases: Vec<StaleBase>,
    /// How many images have each finding.
    pub findings: BTreeMap<String, u64>,
    pub repositories: BTreeMap<String, Group>,
    pub failures: Vec<Failure>,
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

pub fn summarize(registry: &str, shard: Option<&str>, rows: &[Value]) -> Summary {
    let mut s = Summary {
        schema: SCHEMA,
        registry: registry.to_string(),
        shard: shard.map(str::to_string),
        images: 0,
        errors: 0,
        unique_layers: 0,
        unique_bytes: 0,
        cold_start_bytes: Bytes::default(),
        strippable_bytes: 0,
        wasted_bytes: 0,
        bases: BTreeMap::new(),
        stale_bases: Vec::new(),
        findings: BTreeMap::new(),
        repositories: BTreeMap::new(),
        failures: Vec::new(),
    };
    let mut layers: BTreeMap<String, u64> = BTreeMap::new();
    let mut stale: BTreeMap<(String, String), StaleBase> = BTreeMap::new();
    for r in rows {
        let repo = r["repository"].as_str().unwrap_or("").to_string();
        if r["status"] != "ok" {
            s.errors += 1;
            s.failures.push(Failure {
                repository: repo,
                tag: r["tag"].as_str().unwrap_or("").to_string(),
                error: r["error"].as_str().unwrap_or("").to_string(),
            });
            continue;
        }
        s.images += 1;
        let now = u(&r["before"]["cold_start_bytes"]);
        let after = u(&r["strippable"]["estimated_cold_start_bytes_after"]);
        s.cold_start_bytes.now += now;
        s.cold_start_bytes.after_slimming += after;
        s.strippable_bytes += u(&r["strippable"]["bytes"]);
        s.wasted_bytes += u(&r["before"]["wasted_bytes"]);
        for l in r["layers"].as_array().into_iter().flatten() {
            layers.insert(
                l["digest"].as_str().unwrap_or("").to_string(),
                u(&l["compressed_bytes"]),
            );
        }
        let base = r["base"]["image"].as_str().unwrap_or("none").to_string();
        for g in [
            s.bases.entry(base.clone()).or_default(),
            s.repositories.entry(repo).or_default(),
        ] {
            g.images += 1;
            g.cold_start_bytes.now += now;
            g.cold_start_bytes.after_slimming += after;
        }
        if r["base"]["stale"] == true {
            let key = (
                base.clone(),
                r["base"]["digest"].as_str().unwrap_or("").to_string(),
            );
            stale
                .entry(key.clone())
                .or_insert(StaleBase {
                    image: key.0,
                    digest: key.1,
                    images: 0,
                    newer_digest: r["base"]["newer_digest"].as_str().map(str::to_string),
                })
                .images += 1;
        }
        let ids: BTreeSet<&str> = r["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["id"].as_str())
            .collect();
        for id in ids {
            *s.findings.entry(id.to_string()).or_default() += 1;
        }
    }
    s.unique_layers = layers.len() as u64;
    s.unique_bytes = layers.values().sum();
    s.stale_bases = stale.into_values().collect();
    s
}

pub fn markdown(s: &Summary) -> String {
    let mut o = format!("# coldpress audit of `{}`\n\n", s.registry);
    if let Some(sh) = &s.shard {
        o += &format!("Shard {sh}.\n\n");
    }
    o += &format!(
        "- **{}** images ({} failed), {} unique layers, {} unique bytes\n- cold-start bytes: **{}** now, **{}** after slimming (estimated), {} strippable, {} wasted\n\n",
        s.images,
        s.errors,
        s.unique_layers,
        human_bytes(s.unique_bytes),
        human_bytes(s.cold_start_bytes.now),
        human_bytes(s.cold_start_bytes.after_slimming),
        human_bytes(s.strippable_bytes),
        human_bytes(s.wasted_bytes)
    );
    o += "| base | images | cold start now | after slimming |\n|---|---:|---:|---:|\n";
    for (b, g) in &s.bases {
        o += &group_row(b, g);
    }
    if !s.stale_bases.is_empty() {
        o += "\n**Stale bases**\n\n| base | build | images |\n|---|---|---:|\n";
        for b in &s.stale_bases {
            o += &format!(
                "| `{}` | `{}` | {} |\n",
                b.image,
                &b.digest[..b.digest.len().min(19)],
                b.images
            );
        }
    }
    o += "\n| repository | images | cold start now | after slimming |\n|---|---:|---:|---:|\n";
    let mut repos: Vec<(&String, &Group)> = s.repositories.iter().collect();
    repos.sort_by(|a, b| {
        b.1.cold_start_bytes
            .now
            .cmp(&a.1.cold_start_bytes.now)
            .then(a.0.cmp(b.0))
    });
    for (r, g) in repos {
        o += &group_row(r, g);
    }
    if !s.findings.is_empty() {
        o += "\n| finding | images |\n|---|---:|\n";
        for (id, n) in &s.findings {
            o += &format!("| `{id}` | {n} |\n");
        }
    }
    if !s.failures.is_empty() {
        o += "\n**Failures**\n\n| image | error |\n|---|---|\n";
        for f in &s.failures {
            o += &format!(
                "| `{}:{}` | {} |\n",
                f.repository,
                f.tag,
                f.error.replace('|', "\\|")
            );
        }
    }
    o
}

fn group_row(name: &str, g: &Group) -> String {
    format!(
        "| `{name}` | {} | {} | {} |\n",
        g.images,
        human_bytes(g.cold_start_bytes.now),
        human_bytes(g.cold_start_bytes.after_slimming)
    )
}
