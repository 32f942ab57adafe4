//! The server information page (reference `[INFORMATION]` and `[WEB]`, `Server/Web.hs` /
//! `apps/smp-server/web/Static.hs`), one implementation for smp-server and ntf-server.
//!
//! * [`read_information`]: the `[INFORMATION]` section (the reference's keys; published only when
//!   `source_code` is set, as in the reference);
//! * [`read_web`]: the `[WEB]` section: `static_path` (where the page is written), `http` and
//!   `https` (ports, or `IP:PORT`), `cert`/`key` (the HTTPS certificate; default: the server's own
//!   TLS certificate), and hush's `refresh_interval` (seconds between statistics updates, 60);
//! * [`render_index`]: the page, static HTML + CSS without scripts; every operator-supplied
//!   string is escaped, and only `http(s)://` and `mailto:` links are made;
//! * [`start`]: writes `index.html` and `style.css` to `static_path`, rewrites them with fresh
//!   statistics every `refresh_interval`, and serves them over HTTP and/or HTTPS (OpenSSL).
//!
//! The embedded web server is deliberately small: HTTP/1.x, one request per connection
//! (`Connection: close`), only `GET`/`HEAD` of `/`, `/index.html` and `/style.css` (404 otherwise,
//! 405 for other methods), a request head of at most [`MAX_REQUEST_HEAD`] bytes that must arrive
//! (TLS handshake included) within [`HEADER_TIMEOUT`], at most [`MAX_CONNECTIONS`] connections and
//! [`MAX_CONNECTIONS_PER_IP`] per IPv4 address / IPv6 /64. Client addresses are never logged.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openssl::pkey::PKey;
use openssl::ssl::{AlpnError, Ssl, SslAcceptor, SslContext, SslMethod};
use openssl::x509::X509;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::ini::{Entry, Ini};
use crate::{IpConnLimiter, Shutdown};

/// Longest accepted request head (request line + headers), bytes.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Time a connection has for the TLS handshake (HTTPS) and the whole request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a response has to be written.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Concurrent connections of the page server (HTTP and HTTPS together); more are closed at accept.
pub const MAX_CONNECTIONS: usize = 256;
/// Concurrent connections from one IPv4 address or IPv6 /64.
pub const MAX_CONNECTIONS_PER_IP: u32 = 16;
/// Default `[WEB] refresh_interval`.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// Longest accepted `[INFORMATION]` value, bytes.
pub const MAX_INFO_VALUE: usize = 2048;

/// The page file and the style sheet, as written to `static_path` and served.
pub const INDEX_FILE: &str = "index.html";
pub const STYLE_FILE: &str = "style.css";

/// The `[WEB]` keys (for the servers' known-key lists).
pub const WEB_KEYS: &[&str] = &[
    "static_path",
    "http",
    "https",
    "cert",
    "key",
    "refresh_interval",
];

/// The `[INFORMATION]` keys (the reference's).
pub const INFORMATION_KEYS: &[&str] = &[
    "source_code",
    "usage_conditions",
    "condition_amendments",
    "server_country",
    "operator",
    "operator_country",
    "website",
    "admin_simplex",
    "admin_email",
    "admin_pgp",
    "admin_pgp_fingerprint",
    "complaints_simplex",
    "complaints_email",
    "complaints_pgp",
    "complaints_pgp_fingerprint",
    "hosting",
    "hosting_country",
    "hosting_type",
];

// ---------------------------------------------------------------------------------------------
// [INFORMATION]

/// `[INFORMATION]`: public server information (reference `ServerPublicInfo`). It is only
/// published when `source_code` is set (as in the reference).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerInformation {
    pub source_code: Option<String>,
    pub usage_conditions: Option<String>,
    pub condition_amendments: Option<String>,
    pub server_country: Option<String>,
    pub operator: Option<String>,
    pub operator_country: Option<String>,
    pub website: Option<String>,
    pub admin_simplex: Option<String>,
    pub admin_email: Option<String>,
    pub admin_pgp: Option<String>,
    pub admin_pgp_fingerprint: Option<String>,
    pub complaints_simplex: Option<String>,
    pub complaints_email: Option<String>,
    pub complaints_pgp: Option<String>,
    pub complaints_pgp_fingerprint: Option<String>,
    pub hosting: Option<String>,
    pub hosting_country: Option<String>,
    pub hosting_type: Option<HostingType>,
}

impl ServerInformation {
    /// True when the information is published (`source_code` is set).
    pub fn published(&self) -> bool {
        self.source_code.is_some()
    }
}

/// `[INFORMATION] hosting_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostingType {
    Virtual,
    Dedicated,
    Colocation,
    Owned,
}

impl HostingType {
    pub fn label(self) -> &'static str {
        match self {
            HostingType::Virtual => "Virtual",
            HostingType::Dedicated => "Dedicated",
            HostingType::Colocation => "Colocation",
            HostingType::Owned => "Owned",
        }
    }
}

/// A malformed `[WEB]` or `[INFORMATION]` value: the server maps it to its own configuration error
/// (file, line, section, key, value, reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    pub line: usize,
    pub section: &'static str,
    pub key: &'static str,
    pub value: String,
    pub reason: String,
}

/// A questionable value that is ignored (line 0 = about the section as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyWarning {
    pub line: usize,
    pub section: &'static str,
    pub key: Option<&'static str>,
    pub message: String,
}

fn key_error(e: &Entry, section: &'static str, key: &'static str, reason: &str) -> KeyError {
    KeyError {
        line: e.line,
        section,
        key,
        value: e.value.clone(),
        reason: reason.into(),
    }
}

/// Reads `[INFORMATION]`. Bad country codes and hosting types are warnings (the value is
/// ignored); values over [`MAX_INFO_VALUE`] bytes and a PGP key without its fingerprint (or the
/// other way round) are errors.
pub fn read_information(ini: &Ini) -> Result<(ServerInformation, Vec<KeyWarning>), KeyError> {
    const S: &str = "INFORMATION";
    let mut info = ServerInformation::default();
    let mut warnings = Vec::new();
    for key in INFORMATION_KEYS {
        if let Some(e) = ini.get(S, key)
            && e.value.len() > MAX_INFO_VALUE
        {
            return Err(key_error(
                e,
                S,
                key,
                &format!("at most {MAX_INFO_VALUE} bytes"),
            ));
        }
    }
    let text = |k: &str| {
        ini.get(S, k)
            .map(|e| e.value.clone())
            .filter(|v| !v.is_empty())
    };
    info.source_code = text("source_code");
    info.usage_conditions = text("usage_conditions");
    info.condition_amendments = text("condition_amendments");
    info.operator = text("operator");
    info.website = text("website");
    info.admin_simplex = text("admin_simplex");
    info.admin_email = text("admin_email");
    info.admin_pgp = text("admin_pgp");
    info.admin_pgp_fingerprint = text("admin_pgp_fingerprint");
    info.complaints_simplex = text("complaints_simplex");
    info.complaints_email = text("complaints_email");
    info.complaints_pgp = text("complaints_pgp");
    info.complaints_pgp_fingerprint = text("complaints_pgp_fingerprint");
    info.hosting = text("hosting");
    // The reference needs both parts of a PGP key.
    for (key, fp_key) in [
        ("admin_pgp", "admin_pgp_fingerprint"),
        ("complaints_pgp", "complaints_pgp_fingerprint"),
    ] {
        match (text(key).is_some(), text(fp_key).is_some()) {
            (true, false) => {
                let e = ini.get(S, key).expect("present");
                let k = INFORMATION_KEYS.iter().find(|k| **k == key).expect("known");
                return Err(key_error(e, S, k, &format!("a PGP key needs {fp_key} too")));
            }
            (false, true) => {
                let e = ini.get(S, fp_key).expect("present");
                let k = INFORMATION_KEYS
                    .iter()
                    .find(|k| **k == fp_key)
                    .expect("known");
                return Err(key_error(
                    e,
                    S,
                    k,
                    &format!("a PGP fingerprint needs {key} (the key's URL) too"),
                ));
            }
            _ => {}
        }
    }
    for (key, slot) in [
        ("server_country", &mut info.server_country),
        ("operator_country", &mut info.operator_country),
        ("hosting_country", &mut info.hosting_country),
    ] {
        if let Some(e) = ini.get(S, key) {
            let v = e.value.as_str();
            if v.len() == 2 && v.chars().all(|c| c.is_ascii_alphabetic()) {
                *slot = Some(v.to_ascii_uppercase());
            } else {
                warnings.push(KeyWarning {
                    line: e.line,
                    section: S,
                    key: INFORMATION_KEYS.iter().find(|k| **k == key).copied(),
                    message: "use an ISO 3166 2-letter country code; ignored".into(),
                });
            }
        }
    }
    if let Some(e) = ini.get(S, "hosting_type") {
        info.hosting_type = match e.value.as_str() {
            "virtual" => Some(HostingType::Virtual),
            "dedicated" => Some(HostingType::Dedicated),
            "colocation" => Some(HostingType::Colocation),
            "owned" => Some(HostingType::Owned),
            _ => {
                warnings.push(KeyWarning {
                    line: e.line,
                    section: S,
                    key: Some("hosting_type"),
                    message: "expected virtual, dedicated, colocation or owned; ignored".into(),
                });
                None
            }
        };
    }
    let unpublished = ini
        .section(S)
        .filter(|s| info.source_code.is_none() && s.entries.iter().any(|e| !e.value.is_empty()));
    if let Some(s) = unpublished {
        warnings.push(KeyWarning {
            line: s.line,
            section: S,
            key: Some("source_code"),
            message: "server information is not published without source_code (AGPLv3 requires it)"
                .into(),
        });
    }
    Ok((info, warnings))
}

// ---------------------------------------------------------------------------------------------
// [WEB]

/// `[WEB]`: the server information page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    /// `static_path`: directory the page is written to (relative paths: under the data directory).
    pub static_path: PathBuf,
    /// `http`: `PORT` (all addresses) or `IP:PORT` to serve the page on over HTTP.
    pub http: Option<SocketAddr>,
    /// `https`: the same over HTTPS.
    pub https: Option<SocketAddr>,
    /// `cert` and `key` (PEM; relative paths: under the configuration directory): the HTTPS
    /// certificate chain and key. Absent: the server's own TLS certificate.
    pub tls: Option<TlsFiles>,
    /// `refresh_interval` (hush, seconds, 60): how often the statistics on the page are updated.
    pub refresh_interval: Duration,
}

/// PEM files of an HTTPS certificate: the chain files in order (leaf first) and the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub chain: Vec<PathBuf>,
    pub key: PathBuf,
}

/// Reads `[WEB]`. `None` when the section or its `static_path` is absent (no page, as in the
/// reference); `http`/`https`/`cert`/`key` without `static_path` are errors.
pub fn read_web(
    ini: &Ini,
    data_dir: &Path,
    config_dir: &Path,
) -> Result<Option<WebConfig>, KeyError> {
    const S: &str = "WEB";
    let port = |key: &'static str| -> Result<Option<SocketAddr>, KeyError> {
        let Some(e) = ini.get(S, key) else {
            return Ok(None);
        };
        let v = e.value.trim();
        if let Ok(p) = v.parse::<u16>() {
            return Ok(Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), p)));
        }
        v.parse::<SocketAddr>().map(Some).map_err(|_| {
            key_error(
                e,
                S,
                key,
                "expected a TCP port (0-65535) or IP:PORT, e.g. 8000 or 127.0.0.1:8000",
            )
        })
    };
    let path = |key: &'static str, base: &Path| -> Result<Option<(PathBuf, &Entry)>, KeyError> {
        match ini.get(S, key) {
            None => Ok(None),
            Some(e) if e.value.is_empty() => Err(key_error(e, S, key, "expected a path")),
            Some(e) => Ok(Some((base.join(&e.value), e))),
        }
    };
    let http = port("http")?;
    let https = port("https")?;
    let cert = path("cert", config_dir)?;
    let key = path("key", config_dir)?;
    let static_path = path("static_path", data_dir)?;
    let refresh_interval = match ini.get(S, "refresh_interval") {
        None => DEFAULT_REFRESH_INTERVAL,
        Some(e) => match e.value.parse::<u64>() {
            Ok(n @ 1..=86400) => Duration::from_secs(n),
            _ => {
                return Err(key_error(
                    e,
                    S,
                    "refresh_interval",
                    "expected a whole number of seconds from 1 to 86400",
                ));
            }
        },
    };
    let Some((static_path, _)) = static_path else {
        for key in ["http", "https", "cert", "key"] {
            if let Some(e) = ini.get(S, key) {
                let k = WEB_KEYS.iter().find(|k| **k == key).expect("known");
                return Err(key_error(
                    e,
                    S,
                    k,
                    "needs static_path (the directory the page is written to)",
                ));
            }
        }
        return Ok(None);
    };
    let tls = match (cert, key) {
        (None, None) => None,
        (Some((chain, _)), Some((key, _))) => Some(TlsFiles {
            chain: vec![chain],
            key,
        }),
        (Some((_, e)), None) => return Err(key_error(e, S, "cert", "needs key too")),
        (None, Some((_, e))) => return Err(key_error(e, S, "key", "needs cert too")),
    };
    if tls.is_some() && https.is_none() {
        let e = ini.get(S, "cert").expect("present");
        return Err(key_error(
            e,
            S,
            "cert",
            "cert and key are only used with https",
        ));
    }
    if let (Some(h), Some(s)) = (http, https)
        && h.port() != 0
        && h.port() == s.port()
        && (h.ip() == s.ip() || h.ip().is_unspecified() || s.ip().is_unspecified())
    {
        let e = ini.get(S, "https").expect("present");
        return Err(key_error(e, S, "https", "must differ from http"));
    }
    Ok(Some(WebConfig {
        static_path,
        http,
        https,
        tls,
        refresh_interval,
    }))
}

// ---------------------------------------------------------------------------------------------
// The page

/// What the page shows besides the statistics.
#[derive(Debug, Clone)]
pub struct PageInfo {
    /// "SMP server", "Notification server".
    pub server_kind: String,
    /// Server addresses (`smp://fingerprint@host`), never with a password.
    pub addresses: Vec<String>,
    pub information: ServerInformation,
    /// Configuration facts (label, value): persistence, message expiration, ...
    pub settings: Vec<(String, String)>,
    /// "hush 0.1.0".
    pub software: String,
    /// When the server started.
    pub started: SystemTime,
}

/// One figure of the statistics part: `id` is a stable identifier (HTML `id="stat-<id>"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub id: &'static str,
    pub label: &'static str,
    pub value: String,
}

impl Stat {
    pub fn new(id: &'static str, label: &'static str, value: impl ToString) -> Stat {
        Stat {
            id,
            label,
            value: value.to_string(),
        }
    }
}

/// The statistics, read each time the page is refreshed.
pub type StatsSource = Arc<dyn Fn() -> Vec<Stat> + Send + Sync>;

/// HTML-escapes `s` (text and attribute values).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An `http(s)://` URL becomes a link; anything else is escaped text.
fn link_or_text(v: &str) -> String {
    let lower = v.to_ascii_lowercase();
    let is_url = (lower.starts_with("https://") || lower.starts_with("http://"))
        && !v.chars().any(|c| c.is_whitespace() || c.is_control());
    if is_url {
        format!(
            "<a href=\"{0}\" rel=\"noopener noreferrer nofollow\">{0}</a>",
            escape(v)
        )
    } else {
        escape(v)
    }
}

/// A plain email address becomes a `mailto:` link; anything else is escaped text.
fn email(v: &str) -> String {
    let ok = v.split('@').count() == 2
        && !v.starts_with('@')
        && !v.ends_with('@')
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '-' | '_' | '+'));
    if ok {
        format!("<a href=\"mailto:{0}\">{0}</a>", escape(v))
    } else {
        escape(v)
    }
}

fn entity(name: &str, country: Option<&str>) -> String {
    match country {
        Some(c) => format!("{} ({})", escape(name), escape(c)),
        None => escape(name),
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_text(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    crate::time::Utc::from_unix(i64::try_from(secs).unwrap_or(i64::MAX)).text()
}

fn contacts(
    out: &mut String,
    title: &str,
    simplex: &Option<String>,
    mail: &Option<String>,
    pgp: (&Option<String>, &Option<String>),
) {
    if simplex.is_none() && mail.is_none() && pgp.0.is_none() {
        return;
    }
    let _ = write!(out, "<dt>{}</dt><dd><ul class=\"contacts\">", escape(title));
    if let Some(s) = simplex {
        let _ = write!(out, "<li>SimpleX: {}</li>", link_or_text(s));
    }
    if let Some(m) = mail {
        let _ = write!(out, "<li>Email: {}</li>", email(m));
    }
    if let (Some(k), Some(fp)) = pgp {
        let _ = write!(
            out,
            "<li>PGP key: {} <span class=\"fp\">{}</span></li>",
            link_or_text(k),
            escape(fp)
        );
    }
    out.push_str("</ul></dd>");
}

fn dl_item(out: &mut String, id: &str, label: &str, value_html: &str) {
    let _ = write!(
        out,
        "<dt>{}</dt><dd id=\"{}\">{}</dd>",
        escape(label),
        escape(id),
        value_html
    );
}

/// Renders `index.html`.
pub fn render_index(page: &PageInfo, stats: &[Stat], refresh: Duration, now: SystemTime) -> String {
    let info = &page.information;
    let mut s = String::with_capacity(8192);
    let title = match &info.operator {
        Some(op) if info.published() => format!("{} — {}", page.server_kind, op),
        _ => page.server_kind.clone(),
    };
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>{}</title>\n<link rel=\"stylesheet\" href=\"{STYLE_FILE}\">\n</head>\n<body>\n<main>\n\
         <header><h1>{}</h1><p class=\"sub\">{}</p></header>\n",
        escape(&title),
        escape(&page.server_kind),
        escape(&page.software),
    );

    s.push_str("<section id=\"address\">\n<h2>Server address</h2>\n");
    if page.addresses.is_empty() {
        s.push_str("<p>The operator has not configured a host name for this server.</p>\n");
    } else {
        for (i, a) in page.addresses.iter().enumerate() {
            let _ = writeln!(
                s,
                "<p><code class=\"address\" id=\"server-address{}\">{}</code></p>",
                if i == 0 {
                    String::new()
                } else {
                    format!("-{i}")
                },
                escape(a)
            );
        }
        s.push_str(
            "<p class=\"note\">Add this address to your app's network settings to use this server.</p>\n",
        );
    }
    s.push_str("</section>\n");

    s.push_str("<section id=\"information\">\n<h2>Server information</h2>\n");
    if info.published() {
        s.push_str("<dl>\n");
        if let Some(op) = &info.operator {
            dl_item(
                &mut s,
                "operator",
                "Operator",
                &entity(op, info.operator_country.as_deref()),
            );
        }
        if let Some(w) = &info.website {
            dl_item(&mut s, "website", "Website", &link_or_text(w));
        }
        if let Some(c) = &info.server_country {
            dl_item(&mut s, "server-country", "Server country", &escape(c));
        }
        if let Some(h) = &info.hosting {
            dl_item(
                &mut s,
                "hosting",
                "Hosting provider",
                &entity(h, info.hosting_country.as_deref()),
            );
        }
        if let Some(t) = info.hosting_type {
            dl_item(&mut s, "hosting-type", "Hosting type", t.label());
        }
        if let Some(c) = &info.usage_conditions {
            dl_item(
                &mut s,
                "usage-conditions",
                "Usage conditions",
                &link_or_text(c),
            );
        }
        if let Some(c) = &info.condition_amendments {
            dl_item(
                &mut s,
                "condition-amendments",
                "Amendments to the conditions",
                &link_or_text(c),
            );
        }
        contacts(
            &mut s,
            "Administrator",
            &info.admin_simplex,
            &info.admin_email,
            (&info.admin_pgp, &info.admin_pgp_fingerprint),
        );
        contacts(
            &mut s,
            "Complaints",
            &info.complaints_simplex,
            &info.complaints_email,
            (&info.complaints_pgp, &info.complaints_pgp_fingerprint),
        );
        if let Some(c) = &info.source_code {
            dl_item(&mut s, "source-code", "Source code", &link_or_text(c));
        }
        s.push_str("</dl>\n");
    } else {
        s.push_str(
            "<p>The operator has not published server information (it is published when \
             <code>source_code</code> is set in <code>[INFORMATION]</code>).</p>\n",
        );
    }
    s.push_str("</section>\n");

    s.push_str("<section id=\"configuration\">\n<h2>Configuration</h2>\n<dl>\n");
    for (label, value) in &page.settings {
        let _ = write!(s, "<dt>{}</dt><dd>{}</dd>", escape(label), escape(value));
    }
    s.push_str("\n</dl>\n</section>\n");

    s.push_str("<section id=\"statistics\">\n<h2>Statistics</h2>\n<dl>\n");
    dl_item(
        &mut s,
        "stat-started",
        "Running since",
        &escape(&utc_text(page.started)),
    );
    for st in stats {
        dl_item(
            &mut s,
            &format!("stat-{}", st.id),
            st.label,
            &escape(&st.value),
        );
    }
    let _ = write!(
        s,
        "\n</dl>\n<p class=\"note\" id=\"updated\">Updated {} (every {} s).</p>\n</section>\n",
        escape(&utc_text(now)),
        refresh.as_secs()
    );
    s.push_str("</main>\n</body>\n</html>\n");
    s
}

/// The style sheet (light and dark, no web fonts, no scripts).
pub const STYLE_CSS: &str = "\
:root { color-scheme: light dark; --fg: #1b1f24; --muted: #5b6470; --bg: #ffffff; --card: #f4f6f8; --accent: #0053d6; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6e8eb; --muted: #a3abb5; --bg: #111418; --card: #1b2027; --accent: #70a7ff; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 16px/1.5 system-ui, -apple-system, \"Segoe UI\", Roboto, \"Helvetica Neue\", Arial, sans-serif; }
main { max-width: 860px; margin: 0 auto; padding: 32px 20px 48px; }
header h1 { margin: 0; font-size: 2rem; }
header .sub { margin: 4px 0 0; color: var(--muted); }
section { background: var(--card); border-radius: 12px; padding: 16px 24px; margin-top: 24px; }
h2 { margin: 0 0 12px; font-size: 1.25rem; }
dl { display: grid; grid-template-columns: minmax(160px, max-content) 1fr; gap: 6px 24px; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
code.address { display: block; padding: 10px 12px; border-radius: 8px; background: var(--bg);
  font: 14px/1.4 ui-monospace, \"SFMono-Regular\", Menlo, Consolas, monospace; overflow-wrap: anywhere; }
ul.contacts { margin: 0; padding-left: 18px; }
.fp { font-family: ui-monospace, monospace; color: var(--muted); }
.note { color: var(--muted); font-size: 0.9rem; margin: 8px 0 0; }
a { color: var(--accent); }
";

// ---------------------------------------------------------------------------------------------
// Files and serving

/// Why the page could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("cannot write the server page to {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr} for the server page: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTPS certificate for the server page: {0}")]
    Tls(String),
}

/// The current bytes of the served files.
struct Site {
    index: Arc<[u8]>,
}

/// A started page: bound addresses and the serving and refresh tasks (they end at shutdown).
#[derive(Debug)]
pub struct WebServer {
    pub http_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
    pub tasks: Vec<JoinHandle<()>>,
}

/// Writes a page file: atomically replaced (hush-server-common `private`), then made readable by
/// others (0644): the page is public, and a web server running as another user may serve it.
fn write_public(path: &Path, data: &[u8]) -> Result<(), WebError> {
    let err = |source| WebError::Write {
        path: path.to_path_buf(),
        source,
    };
    crate::private::write_private(path, data).map_err(err)?;
    crate::private::set_mode(path, 0o644).map_err(err)
}

fn write_site(dir: &Path, index: &[u8]) -> Result<(), WebError> {
    std::fs::create_dir_all(dir).map_err(|source| WebError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    write_public(&dir.join(INDEX_FILE), index)?;
    write_public(&dir.join(STYLE_FILE), STYLE_CSS.as_bytes())
}

/// Builds the HTTPS context from PEM files (chain leaf first; every certificate of every file, in
/// order). Any key type OpenSSL supports; HTTP/1.1 only.
pub fn tls_context(files: &TlsFiles) -> Result<SslContext, WebError> {
    let tls = |what: &str, p: &Path, e: &dyn std::fmt::Display| {
        WebError::Tls(format!("{what} {}: {e}", p.display()))
    };
    let mut certs = Vec::new();
    for p in &files.chain {
        let pem = std::fs::read(p).map_err(|e| tls("cannot read", p, &e))?;
        let stack = X509::stack_from_pem(&pem).map_err(|e| tls("bad certificate PEM in", p, &e))?;
        if stack.is_empty() {
            return Err(tls("no certificate in", p, &"empty"));
        }
        certs.extend(stack);
    }
    let key_pem = std::fs::read(&files.key).map_err(|e| tls("cannot read", &files.key, &e))?;
    let key = PKey::private_key_from_pem(&key_pem)
        .map_err(|e| tls("bad private key PEM in", &files.key, &e))?;
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
        .map_err(|e| WebError::Tls(e.to_string()))?;
    let mut it = certs.into_iter();
    let leaf = it
        .next()
        .ok_or_else(|| WebError::Tls("no certificate".into()))?;
    b.set_certificate(&leaf)
        .map_err(|e| WebError::Tls(e.to_string()))?;
    for c in it {
        b.add_extra_chain_cert(c)
            .map_err(|e| WebError::Tls(e.to_string()))?;
    }
    b.set_private_key(&key)
        .map_err(|e| WebError::Tls(e.to_string()))?;
    b.check_private_key()
        .map_err(|_| WebError::Tls("the key does not match the certificate".into()))?;
    b.set_alpn_select_callback(|_, client| {
        openssl::ssl::select_next_proto(b"\x08http/1.1", client).ok_or(AlpnError::NOACK)
    });
    Ok(b.build().into_context())
}

/// Writes the page to `cfg.static_path`, binds `cfg.http` / `cfg.https` and spawns the server and
/// the statistics refresh. `default_tls` is the server's own certificate, used for HTTPS when
/// `[WEB]` has no `cert`/`key`.
pub async fn start(
    cfg: &WebConfig,
    default_tls: Option<TlsFiles>,
    page: PageInfo,
    stats: StatsSource,
    shutdown: Shutdown,
) -> Result<WebServer, WebError> {
    let refresh = cfg.refresh_interval;
    let index: Arc<[u8]> = render_index(&page, &stats(), refresh, SystemTime::now())
        .into_bytes()
        .into();
    write_site(&cfg.static_path, &index)?;
    let site = Arc::new(RwLock::new(Site { index }));
    let tls = match cfg.https {
        None => None,
        Some(_) => {
            let files = cfg
                .tls
                .clone()
                .or(default_tls)
                .ok_or_else(|| WebError::Tls("https needs cert and key in [WEB]".into()))?;
            Some(tls_context(&files)?)
        }
    };
    let limits = Arc::new(Limits {
        permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        per_ip: IpConnLimiter::new(MAX_CONNECTIONS_PER_IP),
    });
    let mut out = WebServer {
        http_addr: None,
        https_addr: None,
        tasks: Vec::new(),
    };
    for (addr, tls) in [(cfg.http, None), (cfg.https, tls)] {
        let Some(addr) = addr else { continue };
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| WebError::Bind { addr, source })?;
        let bound = l
            .local_addr()
            .map_err(|source| WebError::Bind { addr, source })?;
        if tls.is_some() {
            out.https_addr = Some(bound);
        } else {
            out.http_addr = Some(bound);
        }
        out.tasks.push(tokio::spawn(serve(
            l,
            tls,
            site.clone(),
            limits.clone(),
            shutdown.clone(),
        )));
    }
    out.tasks.push(tokio::spawn(refresh_loop(
        cfg.static_path.clone(),
        page,
        stats,
        refresh,
        site,
        shutdown,
    )));
    Ok(out)
}

async fn refresh_loop(
    dir: PathBuf,
    page: PageInfo,
    stats: StatsSource,
    every: Duration,
    site: Arc<RwLock<Site>>,
    mut shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // immediate; the page was just written
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        let index: Arc<[u8]> = render_index(&page, &stats(), every, SystemTime::now())
            .into_bytes()
            .into();
        let (d, i) = (dir.clone(), index.clone());
        match tokio::task::spawn_blocking(move || write_site(&d, &i)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "server page not updated on disk"),
            Err(e) => tracing::warn!(error = %e, "server page update task failed"),
        }
        match site.write() {
            Ok(mut s) => s.index = index,
            Err(p) => p.into_inner().index = index,
        }
    }
}

struct Limits {
    permits: Arc<Semaphore>,
    per_ip: IpConnLimiter,
}

async fn serve(
    listener: TcpListener,
    tls: Option<SslContext>,
    site: Arc<RwLock<Site>>,
    limits: Arc<Limits>,
    mut shutdown: Shutdown,
) {
    let name = if tls.is_some() {
        "web https"
    } else {
        "web http"
    };
    let mut backoff = crate::AcceptBackoff::new(name);
    loop {
        let Some((tcp, peer)) = crate::accept(&listener, &mut backoff, &mut shutdown).await else {
            return;
        };
        let Some(ip_slot) = limits.per_ip.try_acquire(peer.ip()) else {
            tracing::debug!("server page: connection limit per address reached");
            continue;
        };
        let Ok(permit) = limits.permits.clone().try_acquire_owned() else {
            tracing::debug!("server page: connection limit reached");
            continue;
        };
        // The response and (HTTPS) close_notify are separate small writes: without NODELAY the
        // second waits for the client's delayed ACK (~40 ms each).
        let _ = tcp.set_nodelay(true);
        let site = site.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slots = (permit, ip_slot);
            match tls {
                None => connection(tcp, &site).await,
                Some(ctx) => {
                    let handshake = async {
                        let ssl = Ssl::new(&ctx).ok()?;
                        let mut s = tokio_openssl::SslStream::new(ssl, tcp).ok()?;
                        Pin::new(&mut s).accept().await.ok()?;
                        Some(s)
                    };
                    // The handshake counts against the header timeout too.
                    let start = tokio::time::Instant::now();
                    match tokio::time::timeout(HEADER_TIMEOUT, handshake).await {
                        Ok(Some(s)) => {
                            connection_within(
                                s,
                                &site,
                                HEADER_TIMEOUT.saturating_sub(start.elapsed()),
                            )
                            .await
                        }
                        _ => tracing::debug!("server page: TLS handshake failed or timed out"),
                    }
                }
            }
        });
    }
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(stream: S, site: &RwLock<Site>) {
    connection_within(stream, site, HEADER_TIMEOUT).await
}

async fn connection_within<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    site: &RwLock<Site>,
    head_time: Duration,
) {
    let response = match tokio::time::timeout(head_time, read_head(&mut stream)).await {
        Err(_) => simple(408, "Request Timeout"),
        Ok(Err(HeadError::Io)) => return,
        Ok(Err(HeadError::TooLarge)) => simple(431, "Request Header Fields Too Large"),
        Ok(Err(HeadError::Malformed)) => simple(400, "Bad Request"),
        Ok(Ok(head)) => {
            let index = match site.read() {
                Ok(s) => s.index.clone(),
                Err(p) => p.into_inner().index.clone(),
            };
            respond(&head, &index)
        }
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&response).await?;
        stream.flush().await?;
        stream.shutdown().await
    })
    .await;
}

enum HeadError {
    Io,
    TooLarge,
    Malformed,
}

async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end);
            return Ok(buf);
        }
        if buf.len() > MAX_REQUEST_HEAD {
            return Err(HeadError::TooLarge);
        }
        let n = stream.read(&mut chunk).await.map_err(|_| HeadError::Io)?;
        if n == 0 {
            return Err(if buf.is_empty() {
                HeadError::Io
            } else {
                HeadError::Malformed
            });
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_REQUEST_HEAD + 4 {
            return Err(HeadError::TooLarge);
        }
    }
}

const SECURITY_HEADERS: &str = "Content-Security-Policy: default-src 'none'; style-src 'self'; \
     img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n\
     X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\nX-Frame-Options: DENY\r\n";

fn simple(code: u16, reason: &str) -> Vec<u8> {
    let body = format!("{code} {reason}\n");
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n{SECURITY_HEADERS}Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The response to one request head (without the final blank line).
fn respond(head: &[u8], index: &[u8]) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(head) else {
        return simple(400, "Bad Request");
    };
    let request_line = text.split("\r\n").next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return simple(400, "Bad Request");
    };
    if !version.starts_with("HTTP/1.") {
        return simple(505, "HTTP Version Not Supported");
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let mut r = simple(405, "Method Not Allowed");
            // Insert `Allow` after the status line.
            let pos = r.windows(2).position(|w| w == b"\r\n").unwrap_or(0) + 2;
            r.splice(pos..pos, b"Allow: GET, HEAD\r\n".iter().copied());
            return r;
        }
    };
    let path = target.split(['?', '#']).next().unwrap_or("");
    let (body, content_type): (&[u8], &str) = match path {
        "/" | "/index.html" => (index, "text/html; charset=utf-8"),
        "/style.css" => (STYLE_CSS.as_bytes(), "text/css; charset=utf-8"),
        _ => {
            let mut r = simple(404, "Not Found");
            if head_only {
                strip_body(&mut r);
            }
            return r;
        }
    };
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-cache\r\n{SECURITY_HEADERS}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        r.extend_from_slice(body);
    }
    r
}

fn strip_body(r: &mut Vec<u8>) {
    if let Some(end) = r.windows(4).position(|w| w == b"\r\n\r\n") {
        r.truncate(end + 4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(info: ServerInformation) -> PageInfo {
        PageInfo {
            server_kind: "SMP server".into(),
            addresses: vec!["smp://abc@relay.example".into()],
            information: info,
            settings: vec![("Persistence".into(), "Queues and messages".into())],
            software: "hush 0.1.0".into(),
            started: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        }
    }

    #[test]
    fn operator_strings_are_escaped_and_links_are_safe() {
        let info = ServerInformation {
            source_code: Some("javascript:alert(1)".into()),
            operator: Some("<script>alert('x')</script> & Co".into()),
            website: Some("https://example.com/?a=1&b=\"2\"".into()),
            admin_email: Some("a\"b@x.y".into()),
            complaints_email: Some("abuse@example.com".into()),
            ..Default::default()
        };
        let html = render_index(
            &page(info),
            &[Stat::new("q", "Queues", 5)],
            DEFAULT_REFRESH_INTERVAL,
            UNIX_EPOCH,
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; Co"));
        assert!(!html.contains("href=\"javascript"), "{html}");
        assert!(html.contains("<dd id=\"source-code\">javascript:alert(1)</dd>"));
        assert!(html.contains("href=\"https://example.com/?a=1&amp;b=&quot;2&quot;\""));
        assert!(!html.contains("mailto:a&quot;"), "{html}");
        assert!(html.contains("Email: a&quot;b@x.y</li>"), "{html}");
        assert!(html.contains("href=\"mailto:abuse@example.com\""));
        assert!(html.contains("<dd id=\"stat-q\">5</dd>"));
        assert!(html.contains("smp://abc@relay.example"));
        assert!(html.contains("2023-11-14 22:13:20 UTC"), "{html}");
    }

    #[test]
    fn unpublished_information_is_not_shown() {
        let info = ServerInformation {
            operator: Some("Hidden Ltd".into()),
            ..Default::default()
        };
        let html = render_index(&page(info), &[], DEFAULT_REFRESH_INTERVAL, UNIX_EPOCH);
        assert!(!html.contains("Hidden Ltd"));
        assert!(html.contains("has not published server information"));
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc_text(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            utc_text(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29 00:00:00 UTC"
        );
        assert_eq!(
            utc_text(UNIX_EPOCH + Duration::from_secs(4_102_444_799)),
            "2099-12-31 23:59:59 UTC"
        );
    }

    fn status(r: &[u8]) -> &str {
        let t = std::str::from_utf8(r).unwrap();
        t.split("\r\n").next().unwrap()
    }

    #[test]
    fn only_get_and_head_of_known_files() {
        let idx = b"<html>page</html>";
        let r = respond(b"GET / HTTP/1.1\r\nHost: x", idx);
        assert_eq!(status(&r), "HTTP/1.1 200 OK");
        assert!(r.ends_with(idx));
        let r = respond(b"GET /index.html?x=1 HTTP/1.0", idx);
        assert_eq!(status(&r), "HTTP/1.1 200 OK");
        let r = respond(b"HEAD / HTTP/1.1", idx);
        assert_eq!(status(&r), "HTTP/1.1 200 OK");
        assert!(r.ends_with(b"\r\n\r\n"));
        assert!(String::from_utf8_lossy(&r).contains(&format!("Content-Length: {}", idx.len())));
        let r = respond(b"GET /style.css HTTP/1.1", idx);
        assert!(String::from_utf8_lossy(&r).contains("text/css"));
        for bad in [
            &b"GET /../etc/passwd HTTP/1.1"[..],
            b"GET /index.html/ HTTP/1.1",
            b"GET //index.html HTTP/1.1",
            b"GET /smp-server.ini HTTP/1.1",
        ] {
            assert_eq!(status(&respond(bad, idx)), "HTTP/1.1 404 Not Found");
        }
        let r = respond(b"POST / HTTP/1.1", idx);
        assert_eq!(status(&r), "HTTP/1.1 405 Method Not Allowed");
        assert!(String::from_utf8_lossy(&r).contains("Allow: GET, HEAD\r\n"));
        assert_eq!(
            status(&respond(b"GET / SPDY/3", idx)),
            "HTTP/1.1 505 HTTP Version Not Supported"
        );
        assert_eq!(status(&respond(b"GET /", idx)), "HTTP/1.1 400 Bad Request");
        assert_eq!(
            status(&respond(b"\xff\xfe", idx)),
            "HTTP/1.1 400 Bad Request"
        );
    }

    fn web(text: &str) -> Result<Option<WebConfig>, KeyError> {
        read_web(
            &Ini::parse(text.as_bytes()).unwrap(),
            Path::new("/data"),
            Path::new("/cfg"),
        )
    }

    #[test]
    fn web_section_values() {
        assert_eq!(web("").unwrap(), None);
        assert_eq!(web("[WEB]\n").unwrap(), None);
        let c = web("[WEB]\nstatic_path = www\nhttp = 8000\nhttps = 127.0.0.1:8443\ncert = web.crt\nkey = /k/web.key\nrefresh_interval = 5\n")
            .unwrap()
            .unwrap();
        assert_eq!(c.static_path, Path::new("/data/www"));
        assert_eq!(c.http, Some("0.0.0.0:8000".parse().unwrap()));
        assert_eq!(c.https, Some("127.0.0.1:8443".parse().unwrap()));
        assert_eq!(
            c.tls,
            Some(TlsFiles {
                chain: vec!["/cfg/web.crt".into()],
                key: "/k/web.key".into()
            })
        );
        assert_eq!(c.refresh_interval, Duration::from_secs(5));
        let c = web("[WEB]\nstatic_path = /var/www\n").unwrap().unwrap();
        assert_eq!((c.http, c.https, c.tls), (None, None, None));
        assert_eq!(c.refresh_interval, DEFAULT_REFRESH_INTERVAL);
    }

    #[test]
    fn bad_web_values_name_line_and_key() {
        let cases: &[(&str, usize, &str, &str)] = &[
            (
                "[WEB]\nstatic_path = w\nhttp = eighty\n",
                3,
                "http",
                "TCP port",
            ),
            (
                "[WEB]\nstatic_path = w\nhttp = 70000\n",
                3,
                "http",
                "TCP port",
            ),
            (
                "[WEB]\nstatic_path = w\nhttps = :443\n",
                3,
                "https",
                "TCP port",
            ),
            ("[WEB]\nhttp = 8000\n", 2, "http", "needs static_path"),
            (
                "[WEB]\nstatic_path =\n",
                2,
                "static_path",
                "expected a path",
            ),
            (
                "[WEB]\nstatic_path = w\nhttps = 443\ncert = c.pem\n",
                4,
                "cert",
                "needs key",
            ),
            (
                "[WEB]\nstatic_path = w\nhttps = 443\n\nkey = k.pem\n",
                5,
                "key",
                "needs cert",
            ),
            (
                "[WEB]\nstatic_path = w\ncert = c\nkey = k\n",
                3,
                "cert",
                "only used with https",
            ),
            (
                "[WEB]\nstatic_path = w\nhttp = 80\nhttps = 80\n",
                4,
                "https",
                "differ",
            ),
            (
                "[WEB]\nstatic_path = w\nrefresh_interval = 0\n",
                3,
                "refresh_interval",
                "1 to 86400",
            ),
            (
                "[WEB]\nstatic_path = w\nrefresh_interval = 1m\n",
                3,
                "refresh_interval",
                "1 to 86400",
            ),
        ];
        for (text, line, key, why) in cases {
            let e = web(text).unwrap_err();
            assert_eq!((e.line, e.key, e.section), (*line, *key, "WEB"), "{text:?}");
            assert!(e.reason.contains(why), "{text:?}: {}", e.reason);
        }
    }

    #[test]
    fn information_values() {
        let ini = Ini::parse(
            b"[INFORMATION]\nsource_code = https://x\nserver_country = de\nhosting_type = owned\n\
              admin_pgp = https://k\nadmin_pgp_fingerprint = ABCD\n",
        )
        .unwrap();
        let (i, w) = read_information(&ini).unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(i.server_country.as_deref(), Some("DE"));
        assert_eq!(i.hosting_type, Some(HostingType::Owned));
        assert_eq!(i.admin_pgp_fingerprint.as_deref(), Some("ABCD"));
        for (text, line, key) in [
            (
                &b"[INFORMATION]\nadmin_pgp = https://k\n"[..],
                2,
                "admin_pgp",
            ),
            (
                b"[INFORMATION]\n\ncomplaints_pgp_fingerprint = AB\n",
                3,
                "complaints_pgp_fingerprint",
            ),
        ] {
            let e = read_information(&Ini::parse(text).unwrap()).unwrap_err();
            assert_eq!((e.line, e.key), (line, key));
        }
        let long = format!(
            "[INFORMATION]\noperator = {}\n",
            "o".repeat(MAX_INFO_VALUE + 1)
        );
        let e = read_information(&Ini::parse(long.as_bytes()).unwrap()).unwrap_err();
        assert_eq!((e.line, e.key), (2, "operator"));
        assert!(e.reason.contains("at most"));
    }

    #[tokio::test(start_paused = true)]
    async fn silent_and_oversized_requests_get_an_error_and_are_closed() {
        let site = RwLock::new(Site {
            index: Arc::from(&b"page"[..]),
        });
        // Nothing sent: 408 once the header timeout passes (paused clock advances by itself).
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let t = tokio::spawn(async move { connection(server, &site).await });
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        assert!(out.starts_with(b"HTTP/1.1 408 Request Timeout\r\n"));
        t.await.unwrap();
        // A head over the limit: 431 without waiting for the end of it.
        let site = RwLock::new(Site {
            index: Arc::from(&b"page"[..]),
        });
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let t = tokio::spawn(async move { connection(server, &site).await });
        client
            .write_all(
                format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_REQUEST_HEAD + 10)).as_bytes(),
            )
            .await
            .unwrap();
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        assert!(out.starts_with(b"HTTP/1.1 431 "));
        t.await.unwrap();
    }

    #[tokio::test]
    async fn per_address_cap_and_files_on_disk() {
        let dir = std::env::temp_dir().join(format!("hush-web-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = WebConfig {
            static_path: dir.join("www"),
            http: Some("127.0.0.1:0".parse().unwrap()),
            https: None,
            tls: None,
            refresh_interval: Duration::from_secs(3600),
        };
        let (trigger, shutdown) = crate::shutdown_channel();
        let stats: StatsSource = Arc::new(|| vec![Stat::new("n", "N", 7)]);
        let server = start(
            &cfg,
            None,
            page(ServerInformation::default()),
            stats,
            shutdown,
        )
        .await
        .unwrap();
        let addr = server.http_addr.unwrap();
        let html = std::fs::read_to_string(dir.join("www").join(INDEX_FILE)).unwrap();
        assert!(html.contains("<dd id=\"stat-n\">7</dd>"));
        assert_eq!(
            crate::private::mode_of(&dir.join("www").join(INDEX_FILE)).unwrap(),
            0o644
        );
        // MAX_CONNECTIONS_PER_IP idle connections are held; one more is closed at once.
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS_PER_IP {
            held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), extra.read_to_end(&mut buf))
            .await
            .expect("the connection over the cap is closed")
            .unwrap_or(0);
        assert_eq!(n, 0, "no response over the cap");
        // Once one is released, a new connection is served.
        drop(held.pop());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut ok = tokio::net::TcpStream::connect(addr).await.unwrap();
        ok.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = Vec::new();
        ok.read_to_end(&mut buf).await.unwrap();
        assert!(buf.starts_with(b"HTTP/1.1 200 OK\r\n"));
        trigger.trigger();
        for t in server.tasks {
            tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .unwrap()
                .unwrap();
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
