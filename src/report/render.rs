//! Human renderings of a [`Report`]: a terminal table and GitHub-flavoured Markdown
//! (for CI job summaries).

use std::fmt::Write;

use super::Report;
use crate::units::human_bytes as hb;

fn short(d: &str) -> &str {
    let hex = d.strip_prefix("sha256:").unwrap_or(d);
    &hex[..hex.len().min(12)]
}

fn truncate(s: &str, n: usize) -> String {
    let s = s.trim().replace('\n', " ");
    if s.chars().count() <= n {
        s
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

fn role(r: &Report, i: usize) -> &'static str {
    let l = &r.layers[i];
    if l.base {
        return "base";
    }
    let mut best = ("", 0u64);
    for (c, n) in &l.classes {
        if n.bytes >= best.1 && n.files > 0 {
            best = (c.as_str(), n.bytes);
        }
    }
    match best.0 {
        "" => "-",
        "system" => "system",
        "deps" => "deps",
        "assets" => "assets",
        "code" => "code",
        _ => "base",
    }
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        "0%".into()
    } else {
        format!("{:.0}%", part as f64 * 100.0 / whole as f64)
    }
}

pub fn render_text(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}", r.source.reference);
    let _ = writeln!(
        o,
        "  digest    {}  ({}, {})",
        r.source.digest, r.source.media_type, r.source.platform
    );
    match &r.base {
        Some(b) => {
            let _ = writeln!(
                o,
                "  base      {} @{} — {} of {} layers, {}{}{}",
                b.image,
                short(&b.digest),
                b.layers,
                b.build_layers,
                hb(b.bytes),
                if b.origin == "user" {
                    " (--base-image)"
                } else {
                    ""
                },
                if b.stale { "  [STALE]" } else { "" }
            );
        }
        None => {
            let _ = writeln!(o, "  base      none matched");
        }
    }
    if let Some(m) = &r.base_catalog.message {
        let _ = writeln!(o, "  catalog   {m}");
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "  {:>2}  {:<12}  {:>10}  {:>12}  {:>7}  {:>17}  {:>17}  {:>7}  {:>9}  {:<6}  created by",
        "#",
        "digest",
        "compressed",
        "uncompressed",
        "entries",
        "adds",
        "changes",
        "deletes",
        "wasted",
        "role"
    );
    for (i, l) in r.layers.iter().enumerate() {
        let _ = writeln!(
            o,
            "  {:>2}  {:<12}  {:>10}  {:>12}  {:>7}  {:>17}  {:>17}  {:>7}  {:>9}  {:<6}  {}",
            i,
            short(&l.digest),
            hb(l.compressed_bytes),
            hb(l.uncompressed_bytes),
            l.entries,
            format!("{} / {}", l.added.files, hb(l.added.bytes)),
            format!("{} / {}", l.changed.files, hb(l.changed.bytes)),
            l.deleted.files,
            hb(l.wasted_bytes),
            role(r, i),
            truncate(l.created_by.as_deref().unwrap_or(""), 48)
        );
    }
    let b = &r.before;
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "  total     {} layers, {} compressed, {} uncompressed, {} files",
        b.layers,
        hb(b.compressed_bytes),
        hb(b.uncompressed_bytes),
        b.files
    );
    let _ = writeln!(
        o,
        "  cold start must fetch {} ({} of the compressed image)",
        hb(b.cold_start_bytes),
        pct(b.cold_start_bytes, b.compressed_bytes)
    );
    if let Some(w) = b.wasted_bytes {
        let _ = writeln!(
            o,
            "  wasted    {} shadowed or deleted by later layers",
            hb(w)
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "  content by class (final files)");
    for (c, n) in &r.classes {
        let _ = writeln!(
            o,
            "    {:<7} {:>8} files  {:>10}",
            c.as_str(),
            n.files,
            hb(n.bytes)
        );
    }
    let s = &r.strippable;
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "  strippable ({} profile): {} files, {}",
        s.profile,
        s.files,
        hb(s.bytes)
    );
    for (id, c) in &s.by_rule {
        let _ = writeln!(
            o,
            "    {:<22} {:>7} files  {:>10}  {}",
            id,
            c.files,
            hb(c.bytes),
            c.reason
        );
    }
    if let Some(p) = &r.os_packages {
        os_packages_text(&mut o, p);
    }
    if let Some(opt) = &r.optimize {
        super::render::optimize_text(&mut o, r, opt);
        for e in &opt.edited {
            let _ = writeln!(o, "  edited  {}: {}", e.path, e.why);
        }
    }
    if let Some(s) = &r.smoke {
        let _ = writeln!(o);
        o.push_str(&render_smoke_text(s));
    }
    let _ = writeln!(o);
    if r.findings.is_empty() {
        let _ = writeln!(o, "  findings: none");
    } else {
        let _ = writeln!(
            o,
            "  findings{}",
            if r.optimize.is_some() {
                " (source image)"
            } else {
                ""
            }
        );
        for f in &r.findings {
            let sev = format!("{:?}", f.severity).to_lowercase();
            let _ = writeln!(o, "    {:<7} {:<26} {}", sev, f.id, f.message);
        }
    }
    o
}

fn os_packages_text(o: &mut String, p: &crate::analysis::packages::OsPackages) {
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "  {} packages: {} installed, {} added after the base; {} after removing {} build-only",
        p.manager,
        p.before,
        p.added,
        p.after,
        p.removed.len()
    );
    if let Some(u) = &p.undecided {
        let _ = writeln!(o, "    not decided: {u}");
    }
    for (what, rows) in [("remove", &p.removed), ("keep", &p.kept)] {
        for row in rows {
            let _ = writeln!(
                o,
                "    {what:<6} {:<28} {:<24} {:>6} files  {:>10}  {}",
                row.name,
                row.version,
                row.files,
                hb(row.bytes),
                row.reason
            );
        }
    }
}

fn optimize_text(o: &mut String, r: &Report, opt: &super::OptimizeSection) {
    let (b, a) = (&r.before, &opt.after);
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "  {:<18} {:>12} {:>12} {:>8}",
        "", "before", "after", "change"
    );
    for (name, x, y) in [
        ("layers", b.layers as u64, a.layers as u64),
        ("files", b.files, a.files),
    ] {
        let _ = writeln!(o, "  {:<18} {:>12} {:>12} {:>8}", name, x, y, change(x, y));
    }
    for (name, x, y) in [
        ("compressed", b.compressed_bytes, a.compressed_bytes),
        ("uncompressed", b.uncompressed_bytes, a.uncompressed_bytes),
        ("cold-start bytes", b.cold_start_bytes, a.cold_start_bytes),
    ] {
        let _ = writeln!(
            o,
            "  {:<18} {:>12} {:>12} {:>8}",
            name,
            hb(x),
            hb(y),
            change(x, y)
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "  removed {} files, {}",
        opt.removed.files,
        hb(opt.removed.bytes)
    );
    for (id, c) in &opt.removed.by_rule {
        let _ = writeln!(
            o,
            "    {:<22} {:>7} files  {:>10}",
            id,
            c.files,
            hb(c.bytes)
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "  new layers");
    for l in &opt.new_layers {
        let _ = writeln!(
            o,
            "    {:>2}  {:<6}  {:<12}  {:>10}  {:>12}  {:>7} entries  {}{}",
            l.index,
            l.role,
            short(&l.digest),
            hb(l.compressed_bytes),
            hb(l.uncompressed_bytes),
            l.entries,
            l.transfer,
            if l.origin.is_empty() || l.origin == "written" {
                String::new()
            } else {
                format!(" ({})", l.origin)
            }
        );
    }
    if let Some(r) = &opt.redeploy {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "  redeploy   a code-only change uploads {} (layers {:?}); the source would upload {} (layers {:?})",
            hb(r.output.bytes),
            r.output.layers,
            hb(r.source.bytes),
            r.source.layers
        );
    }
    if let Some(nw) = &opt.never_worse {
        let worse: Vec<String> = nw
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{} ({} vs {})", c.id, hb(c.output), hb(c.source)))
            .collect();
        let _ = if worse.is_empty() {
            writeln!(
                o,
                "  never worse than the source: cold-start bytes, code layer, redeploy"
            )
        } else {
            writeln!(o, "  WORSE than the source on {}", worse.join(", "))
        };
    }
    let p = &opt.push;
    let _ = writeln!(o);
    if opt.dry_run {
        let _ = writeln!(o, "  dry run: nothing was written");
    } else {
        let _ = writeln!(
            o,
            "  pushed {} ({} blobs), reused {} ({} blobs); {} @{}{}",
            hb(p.uploaded_bytes),
            p.uploaded_blobs,
            hb(p.reused_bytes),
            p.reused_blobs,
            opt.destination.reference,
            short(&opt.destination.digest),
            if opt.verified { ", verified" } else { "" }
        );
    }
}

fn change(before: u64, after: u64) -> String {
    if before == 0 {
        return "-".into();
    }
    format!(
        "{:+.1}%",
        (after as f64 - before as f64) * 100.0 / before as f64
    )
}

pub fn render_markdown(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "### coldpress: `{}`\n", r.source.reference);
    let _ = writeln!(o, "- digest `{}` ({})", r.source.digest, r.source.platform);
    match &r.base {
        Some(b) => {
            let _ = writeln!(
                o,
                "- base **{}** (`{}`), {} of {} layers, {}{}",
                b.image,
                short(&b.digest),
                b.layers,
                b.build_layers,
                hb(b.bytes),
                if b.stale { " — **stale**" } else { "" }
            );
        }
        None => {
            let _ = writeln!(o, "- base: none matched");
        }
    }
    let b = &r.before;
    if let Some(opt) = &r.optimize {
        let a = &opt.after;
        let _ = writeln!(o, "\n| | before | after | change |\n|---|---:|---:|---:|");
        let _ = writeln!(
            o,
            "| layers | {} | {} | {} |",
            b.layers,
            a.layers,
            change(b.layers as u64, a.layers as u64)
        );
        let _ = writeln!(
            o,
            "| files | {} | {} | {} |",
            b.files,
            a.files,
            change(b.files, a.files)
        );
        for (name, x, y) in [
            ("compressed", b.compressed_bytes, a.compressed_bytes),
            ("uncompressed", b.uncompressed_bytes, a.uncompressed_bytes),
            (
                "**cold-start bytes**",
                b.cold_start_bytes,
                a.cold_start_bytes,
            ),
        ] {
            let _ = writeln!(o, "| {name} | {} | {} | {} |", hb(x), hb(y), change(x, y));
        }
        let _ = writeln!(
            o,
            "\n**Removed** {} files, {}\n",
            opt.removed.files,
            hb(opt.removed.bytes)
        );
        if !opt.removed.by_rule.is_empty() {
            let _ = writeln!(o, "| rule | files | bytes |\n|---|---:|---:|");
            for (id, c) in &opt.removed.by_rule {
                let _ = writeln!(o, "| `{id}` | {} | {} |", c.files, hb(c.bytes));
            }
        }
        let _ = writeln!(
            o,
            "\n| # | role | digest | compressed | uncompressed | transfer |\n|---:|---|---|---:|---:|---|"
        );
        for l in &opt.new_layers {
            let _ = writeln!(
                o,
                "| {} | {} | `{}` | {} | {} | {} |",
                l.index,
                l.role,
                short(&l.digest),
                hb(l.compressed_bytes),
                hb(l.uncompressed_bytes),
                l.transfer
            );
        }
        if !opt.dry_run {
            let _ = writeln!(
                o,
                "\nPushed {} (reused {}) to `{}` @ `{}`.",
                hb(opt.push.uploaded_bytes),
                hb(opt.push.reused_bytes),
                opt.destination.reference,
                opt.destination.digest
            );
        }
    } else {
        let _ = writeln!(
            o,
            "- {} layers, {} compressed, {} uncompressed; **cold start fetches {}**; wasted {}",
            b.layers,
            hb(b.compressed_bytes),
            hb(b.uncompressed_bytes),
            hb(b.cold_start_bytes),
            hb(b.wasted_bytes.unwrap_or(0))
        );
        let _ = writeln!(
            o,
            "\n| # | digest | compressed | uncompressed | adds | changes | deletes | wasted | role |\n|---:|---|---:|---:|---:|---:|---:|---:|---|"
        );
        for (i, l) in r.layers.iter().enumerate() {
            let _ = writeln!(
                o,
                "| {i} | `{}` | {} | {} | {} | {} | {} | {} | {} |",
                short(&l.digest),
                hb(l.compressed_bytes),
                hb(l.uncompressed_bytes),
                l.added.files,
                l.changed.files,
                l.deleted.files,
                hb(l.wasted_bytes),
                role(r, i)
            );
        }
        let s = &r.strippable;
        let _ = writeln!(
            o,
            "\n**Strippable** ({} profile): {} files, {}\n",
            s.profile,
            s.files,
            hb(s.bytes)
        );
        if !s.by_rule.is_empty() {
            let _ = writeln!(o, "| rule | files | bytes | why |\n|---|---:|---:|---|");
            for (id, c) in &s.by_rule {
                let _ = writeln!(
                    o,
                    "| `{id}` | {} | {} | {} |",
                    c.files,
                    hb(c.bytes),
                    c.reason
                );
            }
        }
    }
    if let Some(p) = &r.os_packages {
        let _ = writeln!(
            o,
            "\n**{} packages**: {} installed, {} added after the base; {} after removing {} build-only\n",
            p.manager,
            p.before,
            p.added,
            p.after,
            p.removed.len()
        );
        if let Some(u) = &p.undecided {
            let _ = writeln!(o, "Not decided: {u}\n");
        }
        if !p.removed.is_empty() || !p.kept.is_empty() {
            let _ = writeln!(
                o,
                "| | package | version | files | bytes | why |\n|---|---|---|---:|---:|---|"
            );
            for (what, rows) in [("remove", &p.removed), ("keep", &p.kept)] {
                for row in rows {
                    let _ = writeln!(
                        o,
                        "| {what} | `{}` | {} | {} | {} | {} |",
                        row.name,
                        row.version,
                        row.files,
                        hb(row.bytes),
                        row.reason.replace('|', "\\|")
                    );
                }
            }
        }
    }
    if let Some(s) = &r.smoke {
        let _ = writeln!(o);
        o.push_str(&render_smoke_markdown(s));
    }
    if !r.findings.is_empty() {
        if r.optimize.is_some() {
            let _ = writeln!(o, "\nFindings on the source image:");
        }
        let _ = writeln!(o, "\n| severity | finding | detail |\n|---|---|---|");
        for f in &r.findings {
            let _ = writeln!(
                o,
                "| {:?} | `{}` | {} |",
                f.severity,
                f.id,
                f.message.replace('|', "\\|")
            );
        }
    }
    o
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |m| format!("{m:.1} ms"))
}

fn one_line(s: &str, n: usize) -> String {
    truncate(&s.replace('\n', " "), n)
}

/// The smoke section as text: verdict, isolation, init and invoke times per image.
pub fn render_smoke_text(s: &crate::smoke::SmokeSection) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "  smoke: {} ({})",
        if s.passed { "passed" } else { "FAILED" },
        s.verdict
    );
    let _ = writeln!(o, "    {}", s.message);
    if let Some(r) = s.runs.first() {
        let _ = writeln!(o, "    sandbox: {}", r.isolation);
    }
    for r in &s.runs {
        let _ = writeln!(
            o,
            "    {:<7} init {:>10}  materialise {:>9.1} ms  sandbox {:>7.1} ms  ({} files)",
            r.role,
            opt_ms(r.init_ms),
            r.materialise_ms,
            r.sandbox_ms,
            r.files
        );
        for i in &r.invocations {
            let _ = writeln!(
                o,
                "      {:<24} {:<9} {:>10}  {}",
                truncate(&i.event, 24),
                i.outcome,
                opt_ms(i.invoke_ms),
                one_line(i.body.as_deref().unwrap_or(""), 60)
            );
        }
        if let Some(m) = &r.missing {
            let _ = writeln!(o, "      first missing: {m}");
        }
        if !r.answered_all() && !r.stderr_tail.is_empty() {
            let _ = writeln!(o, "      output (last lines):");
            for l in r.stderr_tail.lines() {
                let _ = writeln!(o, "        {l}");
            }
        }
    }
    for d in &s.differences {
        let _ = writeln!(o, "    differs: {}: {}", d.event, d.reason);
        let _ = writeln!(
            o,
            "      source: {}",
            one_line(d.source.as_deref().unwrap_or("-"), 200)
        );
        let _ = writeln!(
            o,
            "      output: {}",
            one_line(d.output.as_deref().unwrap_or("-"), 200)
        );
    }
    let _ = writeln!(o, "    smoke run took {:.0} ms in all", s.total_ms);
    o
}

/// The smoke section as Markdown, with init and invoke times side by side.
pub fn render_smoke_markdown(s: &crate::smoke::SmokeSection) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "#### Smoke run: {} ({})\n",
        if s.passed { "passed" } else { "**failed**" },
        s.verdict
    );
    let _ = writeln!(o, "{}\n", s.message.replace('|', "\\|"));
    if let Some(r) = s.runs.first() {
        let _ = writeln!(o, "Sandbox: {}.\n", r.isolation);
    }
    let _ = writeln!(
        o,
        "| image | init | invoke (per event) | materialise | files |\n|---|---:|---|---:|---:|"
    );
    for r in &s.runs {
        let invokes: Vec<String> = r
            .invocations
            .iter()
            .map(|i| format!("{}: {} {}", i.event, i.outcome, opt_ms(i.invoke_ms)))
            .collect();
        let _ = writeln!(
            o,
            "| {} | {} | {} | {:.0} ms | {} |",
            r.role,
            opt_ms(r.init_ms),
            invokes.join("<br>").replace('|', "\\|"),
            r.materialise_ms,
            r.files
        );
    }
    for r in s.runs.iter().filter(|r| !r.answered_all()) {
        if let Some(m) = &r.missing {
            let _ = writeln!(o, "\nFirst missing in the {}: **{m}**", r.role);
        }
        let _ = writeln!(
            o,
            "\nLast output of the {}:\n\n```\n{}\n```",
            r.role, r.stderr_tail
        );
    }
    for d in &s.differences {
        let _ = writeln!(
            o,
            "\nEvent `{}`: {}\n\n- source: `{}`\n- output: `{}`",
            d.event,
            d.reason,
            one_line(d.source.as_deref().unwrap_or("-"), 300).replace('`', "'"),
            one_line(d.output.as_deref().unwrap_or("-"), 300).replace('`', "'")
        );
    }
    let _ = writeln!(o, "\nThe smoke run took {:.0} ms in all.", s.total_ms);
    o
}
