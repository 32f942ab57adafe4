//! Shared by the `packaging_metrics` tests of smp-server, ntf-server and push-server
//! (`#[path = "../../../packaging/metric_names.rs"] mod metric_names;`): the metric names the
//! Grafana dashboard (packaging/grafana/*.json) and the Prometheus alert rules
//! (packaging/prometheus/*.yml, `expr:` lines) use, and the names a server's `/metrics` output
//! exports, so that each test can check that every name its server owns is really exported.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// packaging/ of this workspace.
pub fn packaging_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging")
}

/// Prometheus' own series, allowed in expressions without being exported by a server.
pub const PROMETHEUS_NAMES: &[&str] = &["up"];

/// Metric-name prefixes and the server that exports them.
pub const OWNERS: &[(&str, &str)] = &[
    ("simplex_smp_", "smp-server"),
    ("hush_smp_", "smp-server"),
    ("simplex_ntf_", "ntf-server"),
    ("hush_ntf_", "ntf-server"),
    ("push_", "push-server"),
];

/// Aggregation operators (they may be followed by `by (...)` before their parenthesis).
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// PromQL words that are not metric names.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
];

/// The metric names one PromQL expression selects: identifiers outside strings, label matchers
/// (`{...}`), range/subquery brackets (`[...]`) and grouping label lists (`by (...)` etc.), that
/// are neither function calls nor keywords.
pub fn promql_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // set after a grouping keyword: the next parenthesised list holds labels
    let mut labels_next = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    i += 1;
                }
                i += 1;
            }
            '(' if labels_next => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
                labels_next = false;
            }
            c if c.is_ascii_digit() || c == '.' => {
                // numbers, durations (5m) and exponents (1e3) as one token
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let lower = word.to_ascii_lowercase();
                if [
                    "by",
                    "without",
                    "on",
                    "ignoring",
                    "group_left",
                    "group_right",
                ]
                .contains(&lower.as_str())
                {
                    labels_next = true;
                } else if KEYWORDS.contains(&lower.as_str())
                    || AGGREGATIONS.contains(&lower.as_str())
                {
                } else if j < chars.len() && chars[j] == '(' {
                    // a function or aggregation call
                } else {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// The PromQL expressions of a Grafana dashboard: every `"expr"` string in the JSON.
pub fn dashboard_exprs(json: &serde_json::Value, out: &mut Vec<String>) {
    match json {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

/// The PromQL expressions of a Prometheus rules file: the value of each `expr:` line (one line
/// each; a block scalar `expr: |` is refused so that no expression is skipped unseen).
pub fn rule_exprs(yaml: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in yaml.lines() {
        let t = line.trim_start();
        if let Some(v) = t.strip_prefix("expr:") {
            let v = v.trim();
            assert!(
                !v.is_empty() && !v.starts_with('|') && !v.starts_with('>'),
                "write each expr on one line: {line}"
            );
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            out.push(v.to_string());
        }
    }
    out
}

/// Every (file, expression) in packaging/grafana/*.json and packaging/prometheus/*.yml.
pub fn packaged_exprs() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (sub, ext) in [("grafana", "json"), ("prometheus", "yml")] {
        let dir = packaging_dir().join(sub);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            let exprs = if ext == "json" {
                let json: serde_json::Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{}: not JSON: {e}", f.display()));
                let mut v = Vec::new();
                dashboard_exprs(&json, &mut v);
                v
            } else {
                rule_exprs(&text)
            };
            out.extend(exprs.into_iter().map(|e| (name.clone(), e)));
        }
    }
    out
}

/// The server that exports `name` (by prefix), if any.
pub fn owner(name: &str) -> Option<&'static str> {
    OWNERS
        .iter()
        .find(|(p, _)| name.starts_with(p))
        .map(|(_, s)| *s)
}

/// The series names a scrape exports: every sample line's name, plus, for a family declared by
/// `# TYPE` but without samples yet (a labelled family nothing was counted in), the names its
/// samples will have — in the Prometheus text format 0.0.4 a counter's samples carry the family
/// name itself, in OpenMetrics `<family>_total`; a histogram's `_bucket`, `_sum`, `_count`.
pub fn exported_names(exposition: &str, openmetrics: bool) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(decl) = line.strip_prefix("# TYPE ") {
            let mut it = decl.split_whitespace();
            let (Some(family), Some(kind)) = (it.next(), it.next()) else {
                continue;
            };
            match kind {
                "counter" if openmetrics => {
                    names.insert(format!("{family}_total"));
                }
                "histogram" | "summary" => {
                    for s in ["_sum", "_count"] {
                        names.insert(format!("{family}{s}"));
                    }
                    if kind == "histogram" {
                        names.insert(format!("{family}_bucket"));
                    }
                }
                _ => {
                    names.insert(family.to_string());
                }
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

/// Checks that every name the packaged dashboard and rules use and that `server` owns is in
/// `exposition` (its `/metrics` body), and that every name used is owned by a server or is
/// Prometheus' own. Returns the names checked (for the test's own assertions).
pub fn check_server(server: &str, exposition: &str, openmetrics: bool) -> BTreeSet<String> {
    let exported = exported_names(exposition, openmetrics);
    let mut checked = BTreeSet::new();
    let mut missing = Vec::new();
    let mut unowned = Vec::new();
    for (file, expr) in packaged_exprs() {
        for name in promql_names(&expr) {
            match owner(&name) {
                Some(s) if s == server => {
                    if !exported.contains(&name) {
                        missing.push(format!("{file}: {name} (in `{expr}`)"));
                    }
                    checked.insert(name);
                }
                Some(_) => {}
                None if PROMETHEUS_NAMES.contains(&name.as_str()) => {}
                None => unowned.push(format!("{file}: {name} (in `{expr}`)")),
            }
        }
    }
    assert!(
        unowned.is_empty(),
        "metric names no server exports:\n{}",
        unowned.join("\n")
    );
    assert!(
        missing.is_empty(),
        "names the packaged dashboard/alerts use that {server}'s /metrics does not export:\n{}\n\n\
         /metrics:\n{exposition}",
        missing.join("\n")
    );
    checked
}

/// `GET /metrics` over a plain TCP connection: (content type, body), retried while nothing
/// listens on `addr` yet (a server may open its metrics listener after its main one) for up to
/// 20 s.
pub fn scrape(addr: std::net::SocketAddr) -> (String, String) {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut s = loop {
        match std::net::TcpStream::connect(addr) {
            Ok(s) => break s,
            Err(e) if std::time::Instant::now() > deadline => panic!("metrics at {addr}: {e}"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    };
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8(raw).expect("UTF-8 metrics");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {text:?}"));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let ctype = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (ctype, body.to_string())
}

/// A loopback port nothing listens on right now (for a metrics address in an ini file).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn promql_names_skips_functions_labels_and_ranges() {
    let names = promql_names(
        "histogram_quantile(0.99, sum by (le, instance) (rate(simplex_smp_x_bucket{job=\"a b\", \
         type=~\"up|down\"}[5m]))) > 0.1 * on (instance) group_left(port) push_y_total \
         and up{job=\"hush-smp\"} == 0 or deriv(z[30m:1m]) > 1e3 unless a_b offset 5m",
    );
    let want: BTreeSet<String> = ["simplex_smp_x_bucket", "push_y_total", "up", "z", "a_b"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, want);
}

#[test]
fn exported_names_follow_the_exposition_format() {
    let text = "# TYPE a counter\n# TYPE b gauge\nb 1\n# TYPE h histogram\n\
                # TYPE c counter\nc_total{x=\"1\"} 2\n";
    let om = exported_names(text, true);
    assert!(om.contains("a_total") && !om.contains("a"), "{om:?}");
    assert!(om.contains("c_total") && om.contains("b") && om.contains("h_bucket"));
    let plain = exported_names(text, false);
    assert!(
        plain.contains("a") && !plain.contains("a_total"),
        "{plain:?}"
    );
    assert!(!plain.contains("h"), "{plain:?}");
}
