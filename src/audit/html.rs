//! A self-contained HTML page for an audit: no external scripts, fonts or styles.

use serde_json::Value;

use super::summary::Summary;
use crate::units::human_bytes;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const STYLE: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem;color:#1d2330;background:#fafbfc}
h1{font-size:1.4rem;margin:0 0 .2rem}h2{font-size:1.1rem;margin:2rem 0 .6rem}
.sub{color:#5a6272;margin-bottom:1.2rem}
.cards{display:flex;flex-wrap:wrap;gap:.8rem}
.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:.7rem 1rem;min-width:9rem}
.card b{display:block;font-size:1.25rem}.card span{color:#5a6272;font-size:.85rem}
table{border-collapse:collapse;background:#fff;border:1px solid #dde1e7;width:100%}
th,td{padding:.35rem .6rem;border-bottom:1px solid #eef0f3;text-align:left;white-space:nowrap}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f2f4f7;cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" \25B2"}th[aria-sort=descending]::after{content:" \25BC"}
.stale{color:#b54708;font-weight:600}.err{color:#b42318}
.legend span{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 1rem;vertical-align:middle}
svg text{font-size:12px;fill:#1d2330}
"#;

const SCRIPT: &str = r#"
document.querySelectorAll('table.sortable th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0];
    var dir = th.getAttribute('aria-sort') === 'ascending' ? 'descending' : 'ascending';
    table.querySelectorAll('th').forEach(function (h) { h.setAttribute('aria-sort', 'none'); });
    th.setAttribute('aria-sort', dir);
    var numeric = th.classList.contains('n');
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].getAttribute('data-sort') || a.cells[col].textContent;
      var y = b.cells[col].getAttribute('data-sort') || b.cells[col].textContent;
      var c = numeric ? Number(x) - Number(y) : x.localeCompare(y);
      return dir === 'ascending' ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"#;

fn card(value: &str, label: &str) -> String {
    format!(
        "<div class=card><b>{}</b><span>{}</span></div>",
        esc(value),
        esc(label)
    )
}

/// Horizontal bars, cold-start bytes now and after slimming, per repository.
fn chart(s: &Summary) -> String {
    let mut repos: Vec<(&String, &super::summary::Group)> = s.repositories.iter().collect();
    repos.sort_by(|a, b| {
        b.1.cold_start_bytes
            .now
            .cmp(&a.1.cold_start_bytes.now)
            .then(a.0.cmp(b.0))
    });
    repos.truncate(40);
    let max = repos
        .iter()
        .map(|(_, g)| g.cold_start_bytes.now)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let label_w = 240.0;
    let bar_w = 560.0;
    let row_h = 30.0;
    let height = row_h * repos.len() as f64 + 10.0;
    let mut svg = format!(
        "<svg role=img aria-label=\"cold-start bytes per repository\" width=\"{}\" height=\"{height}\" viewBox=\"0 0 {} {height}\">",
        label_w + bar_w + 120.0,
        label_w + bar_w + 120.0
    );
    for (i, (repo, g)) in repos.iter().enumerate() {
        let y = i as f64 * row_h + 4.0;
        let now = g.cold_start_bytes.now as f64 / max * bar_w;
        let after = g.cold_start_bytes.after_slimming as f64 / max * bar_w;
        svg += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=end>{}</text><rect class=now x=\"{label_w}\" y=\"{y}\" width=\"{now:.1}\" height=\"11\" fill=\"#9aa4b5\"><title>now {}</title></rect><rect class=after x=\"{label_w}\" y=\"{}\" width=\"{after:.1}\" height=\"11\" fill=\"#2e7d5b\"><title>after slimming {}</title></rect><text x=\"{}\" y=\"{}\">{} → {}</text>",
            label_w - 8.0,
            y + 15.0,
            esc(repo),
            human_bytes(g.cold_start_bytes.now),
            y + 12.0,
            human_bytes(g.cold_start_bytes.after_slimming),
            label_w + now.max(after) + 6.0,
            y + 15.0,
            human_bytes(g.cold_start_bytes.now),
            human_bytes(g.cold_start_bytes.after_slimming)
        );
    }
    svg + "</svg>"
}

fn top_findings(r: &Value) -> String {
    let ids: Vec<&str> = r["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["severity"] != "info")
        .filter_map(|f| f["id"].as_str())
        .take(3)
        .collect();
    ids.join(", ")
}

pub fn page(s: &Summary, rows: &[Value]) -> String {
    let mut o = String::from(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width, initial-scale=1\">",
    );
    o += &format!(
        "<title>coldpress audit: {}</title><style>{STYLE}</style></head><body>",
        esc(&s.registry)
    );
    o += &format!("<h1>coldpress audit of {}</h1>", esc(&s.registry));
    o += &format!(
        "<div class=sub>{} images{} · coldpress {}</div>",
        s.images,
        s.shard
            .as_ref()
            .map(|sh| format!(" · shard {}", esc(sh)))
            .unwrap_or_default(),
        env!("CARGO_PKG_VERSION")
    );
    o += "<div class=cards>";
    o += &card(&s.images.to_string(), "images");
    o += &card(
        &human_bytes(s.unique_bytes),
        &format!("unique bytes in {} layers", s.unique_layers),
    );
    o += &card(&human_bytes(s.cold_start_bytes.now), "cold-start bytes now");
    o += &card(
        &human_bytes(s.cold_start_bytes.after_slimming),
        "after slimming (estimated)",
    );
    o += &card(&human_bytes(s.strippable_bytes), "strippable");
    o += &card(&s.stale_bases.len().to_string(), "stale base builds");
    o += &card(&s.errors.to_string(), "images that failed");
    o += "</div>";
    o += "<h2>Cold-start bytes per repository</h2><div class=legend><span style=\"background:#9aa4b5\"></span>now<span style=\"background:#2e7d5b\"></span>after slimming</div>";
    o += &chart(s);
    o += "<h2>Images</h2><table id=images class=sortable><thead><tr><th>repository</th><th>tag</th><th>base</th><th>stale</th><th class=n>cold-start bytes</th><th class=n>after slimming</th><th class=n>strippable</th><th>top findings</th></tr></thead><tbody>";
    for r in rows.iter().filter(|r| r["status"] == "ok") {
        let num = |v: &Value| v.as_u64().unwrap_or(0);
        let stale = r["base"]["stale"] == true;
        o += &format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td{}>{}</td><td class=n data-sort={}>{}</td><td class=n data-sort={}>{}</td><td class=n data-sort={}>{}</td><td>{}</td></tr>",
            esc(r["repository"].as_str().unwrap_or("")),
            esc(r["tag"].as_str().unwrap_or("")),
            esc(r["base"]["image"].as_str().unwrap_or("none")),
            if stale { " class=stale" } else { "" },
            if stale { "stale" } else { "" },
            num(&r["before"]["cold_start_bytes"]),
            human_bytes(num(&r["before"]["cold_start_bytes"])),
            num(&r["strippable"]["estimated_cold_start_bytes_after"]),
            human_bytes(num(&r["strippable"]["estimated_cold_start_bytes_after"])),
            num(&r["strippable"]["bytes"]),
            human_bytes(num(&r["strippable"]["bytes"])),
            esc(&top_findings(r))
        );
    }
    o += "</tbody></table>";
    if !s.failures.is_empty() {
        o += "<h2>Failures</h2><table id=failures class=sortable><thead><tr><th>repository</th><th>tag</th><th>error</th></tr></thead><tbody>";
        for f in &s.failures {
            o += &format!(
                "<tr><td>{}</td><td>{}</td><td class=err>{}</td></tr>",
                esc(&f.repository),
                esc(&f.tag),
                esc(&f.error)
            );
        }
        o += "</tbody></table>";
    }
    o += &format!("<script>{SCRIPT}</script></body></html>\n");
    o
}
