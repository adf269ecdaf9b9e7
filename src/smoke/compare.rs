//! Comparing two runs' answers, and reading what a failed runtime said.

use serde::Serialize;
use serde_json::Value;

use super::{ImageRun, InvocationResult};

/// A field to leave out of the comparison: `$.a.b`, `$.items[0].id`,
/// `$.items[*].ts` (a leading `$` and `.` are optional).
#[derive(Clone, Debug, PartialEq)]
pub struct JsonPath {
    pub text: String,
    steps: Vec<Step>,
}

#[derive(Clone, Debug, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
    Any,
}

impl std::str::FromStr for JsonPath {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("--smoke-ignore {s:?}: {why} (e.g. '$.timestamp', '$.items[*].id')")
        };
        let mut rest = s.trim();
        rest = rest.strip_prefix('$').unwrap_or(rest);
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                rest = r;
                if rest.starts_with('[') {
                    continue;
                }
                if rest.starts_with('*') {
                    steps.push(Step::Any);
                    rest = &rest[1..];
                    continue;
                }
                let end = rest.find(['.', '[']).unwrap_or(rest.len());
                if end == 0 {
                    return Err(bad("an empty field name"));
                }
                steps.push(Step::Key(rest[..end].to_string()));
                rest = &rest[end..];
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').ok_or_else(|| bad("an unclosed '['"))?;
                let inner = r[..end].trim();
                steps.push(if inner == "*" {
                    Step::Any
                } else if let Ok(i) = inner.parse() {
                    Step::Index(i)
                } else if let Some(k) = inner
                    .strip_prefix('\'')
                    .and_then(|k| k.strip_suffix('\''))
                    .or_else(|| inner.strip_prefix('"').and_then(|k| k.strip_suffix('"')))
                {
                    Step::Key(k.to_string())
                } else {
                    return Err(bad("a bracket that is not an index, '*' or a quoted name"));
                });
                rest = &r[end + 1..];
            } else if steps.is_empty() {
                rest = &rest[0..];
                let end = rest.find(['.', '[']).unwrap_or(rest.len());
                steps.push(Step::Key(rest[..end].to_string()));
                rest = &rest[end..];
            } else {
                return Err(bad("expected '.' or '['"));
            }
        }
        if steps.is_empty() {
            return Err(bad("it names the whole document"));
        }
        Ok(JsonPath {
            text: s.to_string(),
            steps,
        })
    }
}

impl JsonPath {
    /// Remove what the path names from `v`.
    pub fn remove(&self, v: &mut Value) {
        remove(v, &self.steps);
    }
}

fn remove(v: &mut Value, steps: &[Step]) {
    let Some((first, rest)) = steps.split_first() else {
        return;
    };
    let last = rest.is_empty();
    match (first, v) {
        (Step::Key(k), Value::Object(m)) => {
            if last {
                m.shift_remove(k);
            } else if let Some(c) = m.get_mut(k) {
                remove(c, rest);
            }
        }
        (Step::Index(i), Value::Array(a)) => {
            if last {
                if *i < a.len() {
                    a[*i] = Value::Null;
                }
            } else if let Some(c) = a.get_mut(*i) {
                remove(c, rest);
            }
        }
        (Step::Any, Value::Object(m)) => {
            if last {
                m.clear();
            } else {
                m.values_mut().for_each(|c| remove(c, rest));
            }
        }
        (Step::Any, Value::Array(a)) => {
            if last {
                a.clear();
            } else {
                a.iter_mut().for_each(|c| remove(c, rest));
            }
        }
        _ => {}
    }
}

/// One event whose answers differ.
#[derive(Serialize, Clone, Debug)]
pub struct Difference {
    pub event: String,
    pub reason: String,
    pub source: Option<String>,
    pub output: Option<String>,
}

fn describe(i: &InvocationResult) -> String {
    match i.outcome.as_str() {
        "response" => "a response".into(),
        "error" => format!(
            "an error{}",
            i.error_type
                .as_ref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default()
        ),
        other => other.to_string(),
    }
}

/// Whether two answers are the same: byte for byte, or as JSON with `ignore`d
/// fields removed (when both are JSON).
pub fn same_answer(a: &[u8], b: &[u8], ignore: &[JsonPath]) -> bool {
    if ignore.is_empty() {
        return a == b;
    }
    match (
        serde_json::from_slice::<Value>(a),
        serde_json::from_slice::<Value>(b),
    ) {
        (Ok(mut x), Ok(mut y)) => {
            for p in ignore {
                p.remove(&mut x);
                p.remove(&mut y);
            }
            x == y
        }
        _ => a == b,
    }
}

/// Every event whose output answer is not the source's.
pub fn compare_runs(source: &ImageRun, output: &ImageRun, ignore: &[JsonPath]) -> Vec<Difference> {
    let mut out = Vec::new();
    for (s, o) in source.invocations.iter().zip(&output.invocations) {
        let reason = if s.outcome != o.outcome {
            Some(format!(
                "the source gave {}, the output {}",
                describe(s),
                describe(o)
            ))
        } else if s.outcome == "response" || s.outcome == "error" {
            let (a, b) = (
                s.raw.as_deref().unwrap_or_default(),
                o.raw.as_deref().unwrap_or_default(),
            );
            (!same_answer(a, b, ignore)).then(|| {
                if ignore.is_empty() {
                    "the answers differ (byte for byte)".to_string()
                } else {
                    "the answers differ (as JSON, ignored paths left out)".to_string()
                }
            })
        } else {
            None
        };
        if let Some(reason) = reason {
            out.push(Difference {
                event: s.event.clone(),
                reason,
                source: s.body.clone(),
                output: o.body.clone(),
            });
        }
    }
    out
}

/// `errorType: errorMessage` of an AWS-style error document, or its text.
pub fn error_summary(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let t = v.get("errorType").and_then(Value::as_str);
        let m = v.get("errorMessage").and_then(Value::as_str);
        match (t, m) {
            (Some(t), Some(m)) => return format!("{t}: {m}"),
            (None, Some(m)) => return m.to_string(),
            _ => {}
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.chars().count() > 300 {
        format!("{}…", text.chars().take(300).collect::<String>())
    } else {
        text.to_string()
    }
}

/// The text between `start` and the next `end` after it.
fn between<'a>(text: &'a str, start: &str, end: char) -> Option<&'a str> {
    let at = text.find(start)? + start.len();
    let rest = &text[at..];
    let stop = rest.find(end)?;
    Some(&rest[..stop]).filter(|s| !s.is_empty())
}

/// The first missing module or file a runtime reported: Python's
/// `No module named 'x'`, Node.js's `Cannot find module 'x'`, a missing shared
/// library, or an ENOENT path.
pub fn first_missing(text: &str) -> Option<String> {
    // JSON error documents escape quotes; the patterns read the plain text.
    let text = text.replace("\\'", "'").replace("\\\"", "\"");
    let mut found: Vec<(usize, String)> = Vec::new();
    let mut look = |start: &str, end: char, label: &str| {
        if let Some(at) = text.find(start)
            && let Some(name) = between(&text, start, end)
        {
            found.push((at, format!("{label} {name}")));
        }
    };
    look("No module named '", '\'', "module");
    look("Cannot find module '", '\'', "module");
    look("Cannot find package '", '\'', "module");
    look("No such file or directory: '", '\'', "file");
    look("no such file or directory, open '", '\'', "file");
    look(
        "error while loading shared libraries: ",
        ':',
        "shared library",
    );
    look("ImportError: ", ':', "shared library");
    // What is left of a package whose files were removed but whose directory was
    // not: Python imports it as an empty namespace package.
    if let Some(at) = text.find("AttributeError: module '")
        && let Some(name) = between(&text, "AttributeError: module '", '\'')
        && text[at..].contains("has no attribute")
    {
        found.push((
            at,
            format!("module {name} (incomplete: only an empty package is left)"),
        ));
    }
    found.retain(|(_, s)| !s.starts_with("shared library ") || s.contains(".so"));
    found.sort();
    found.into_iter().next().map(|(_, s)| s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_paths() {
        let p: JsonPath = "$.meta.ts".parse().unwrap();
        let mut v = json!({"meta": {"ts": 1, "k": 2}, "ts": 3});
        p.remove(&mut v);
        assert_eq!(v, json!({"meta": {"k": 2}, "ts": 3}));
        let p: JsonPath = "$.items[*].id".parse().unwrap();
        let mut v = json!({"items": [{"id": 1, "x": 1}, {"id": 2, "x": 2}]});
        p.remove(&mut v);
        assert_eq!(v, json!({"items": [{"x": 1}, {"x": 2}]}));
        let p: JsonPath = "requestId".parse().unwrap();
        let mut v = json!({"requestId": "a", "b": 1});
        p.remove(&mut v);
        assert_eq!(v, json!({"b": 1}));
        let p: JsonPath = "$['odd key'][1]".parse().unwrap();
        let mut v = json!({"odd key": [1, 2, 3]});
        p.remove(&mut v);
        assert_eq!(v, json!({"odd key": [1, null, 3]}));
        assert!("$".parse::<JsonPath>().is_err());
        assert!("$.a[x]".parse::<JsonPath>().is_err());
    }

    #[test]
    fn answers_compare_bytes_or_json() {
        let ts: JsonPath = "$.ts".parse().unwrap();
        assert!(same_answer(br#"{"a":1}"#, br#"{"a":1}"#, &[]));
        assert!(
            !same_answer(br#"{"a":1}"#, br#"{"a": 1}"#, &[]),
            "bytes by default"
        );
        assert!(same_answer(
            br#"{"a":1,"ts":5}"#,
            br#"{"ts":6, "a":1}"#,
            std::slice::from_ref(&ts)
        ));
        assert!(!same_answer(
            br#"{"a":1,"ts":5}"#,
            br#"{"a":2,"ts":5}"#,
            &[ts]
        ));
    }

    #[test]
    fn missing_modules_and_files() {
        let py = r#"{"errorMessage": "Unable to import module 'handler': No module named 'numpy'", "errorType": "Runtime.ImportModuleError"}"#;
        assert_eq!(first_missing(py).as_deref(), Some("module numpy"));
        let node = "Error: Cannot find module 'ms'\nRequire stack:\n- /var/task/index.js";
        assert_eq!(first_missing(node).as_deref(), Some("module ms"));
        let so = "python3: error while loading shared libraries: libpython3.11.so.1.0: cannot open shared object file";
        assert_eq!(
            first_missing(so).as_deref(),
            Some("shared library libpython3.11.so.1.0")
        );
        let f = "FileNotFoundError: [Errno 2] No such file or directory: '/var/task/data.csv'";
        assert_eq!(first_missing(f).as_deref(), Some("file /var/task/data.csv"));
        assert_eq!(first_missing("all fine"), None);
        let partial = r#"{"errorMessage": "module 'numpy' has no attribute 'array'", "errorType": "AttributeError", "stackTrace": ["AttributeError: module 'numpy' has no attribute 'array'"]}"#;
        assert_eq!(
            first_missing(partial).as_deref(),
            Some("module numpy (incomplete: only an empty package is left)")
        );
        assert_eq!(
            error_summary(py.as_bytes()),
            "Runtime.ImportModuleError: Unable to import module 'handler': No module named 'numpy'"
        );
    }
}
