//! The typed reader of the servers' configuration files (`smp-server.ini`, `ntf-server.ini`,
//! `push-server.ini`), built on the strict [`crate::ini`] parser. One implementation, so the
//! three servers accept the same spellings and report problems the same way:
//!
//! * booleans are `on` / `off` only, as the reference (`iniOnOff` in simplexmq's
//!   `Server/CLI.hs` accepts exactly these two words and fails on anything else);
//! * numbers, durations, addresses and paths are checked here, with the accepted range in the
//!   message;
//! * every error is a [`ConfigError`] naming the file, the line, `[SECTION] key = "value"` and
//!   the reason; every warning is a [`ConfigWarning`] naming the line, section and key;
//! * [`Reader::check_keys`] compares every key of the file with the server's [`KnownKeys`]:
//!   unknown sections, unknown keys and reference keys hush does not implement are warnings
//!   (printed at start), never silently dropped.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::ini::{Entry, Ini, IniError, MAX_FILE_LEN};

/// An error in a configuration file. `Display` names the file, the line and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", file.display())]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {error}", file.display())]
    Syntax { file: PathBuf, error: IniError },
    #[error("{}: line {line}: [{section}] {key} = {value:?}: {reason}", file.display())]
    Value {
        file: PathBuf,
        line: usize,
        // Boxed: keeps `Result<_, ConfigError>` small (clippy::result_large_err).
        section: Box<str>,
        key: Box<str>,
        /// The value as written (shortened when long; `<redacted>` for secrets).
        value: String,
        reason: String,
    },
}

impl ConfigError {
    /// The 1-based line the error is about, if any.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Syntax { error, .. } => error.line(),
            ConfigError::Value { line, .. } => Some(*line),
        }
    }

    /// `(section, key)` of a value error.
    pub fn key(&self) -> Option<(&str, &str)> {
        match self {
            ConfigError::Value { section, key, .. } => Some((section, key)),
            _ => None,
        }
    }
}

/// Something the operator should look at, but that does not stop the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// 1-based line (0 when the warning is about something absent from the file).
    pub line: usize,
    pub section: String,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => write!(
                f,
                "line {}: [{}] {}: {}",
                self.line, self.section, k, self.message
            ),
            None => write!(
                f,
                "line {}: [{}]: {}",
                self.line, self.section, self.message
            ),
        }
    }
}

/// The keys a server reads, per section, and the reference's keys it knowingly does not
/// implement (warned about with their own message).
#[derive(Debug, Clone, Copy)]
pub struct KnownKeys {
    pub sections: &'static [(&'static str, &'static [&'static str])],
    /// A section listed with `&[]` in `sections` takes any key (e.g. `[CLIENTS]` name = secret).
    pub open_sections: &'static [&'static str],
    pub reference_only: &'static [(&'static str, &'static [&'static str])],
}

const UNKNOWN_KEY: &str = "unknown key; ignored";
const UNKNOWN_SECTION: &str = "unknown section; ignored";
const REFERENCE_ONLY: &str =
    "setting of the reference server that hush does not implement; ignored";

/// Prints the warnings of `file` at start, one line each on stderr, the same way for every
/// server: `warning: <file>: line N: [SECTION] key: message`.
pub fn print_warnings(file: &Path, warnings: &[ConfigWarning]) {
    for w in warnings {
        eprintln!("{}", warning_line(file, w));
    }
}

/// The line [`print_warnings`] prints for `w`.
pub fn warning_line(file: &Path, w: &ConfigWarning) -> String {
    format!("warning: {}: {w}", file.display())
}

/// Reads `file` (bounded by [`MAX_FILE_LEN`]) and parses it.
pub fn load(file: &Path) -> Result<Ini, ConfigError> {
    let io = |source| ConfigError::Io {
        file: file.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(file).map_err(io)?;
    let too_large = |len: usize| ConfigError::Syntax {
        file: file.to_path_buf(),
        error: IniError::FileTooLarge {
            len,
            max: MAX_FILE_LEN,
        },
    };
    if meta.len() > MAX_FILE_LEN as u64 {
        return Err(too_large(usize::try_from(meta.len()).unwrap_or(usize::MAX)));
    }
    // Bounded read: the file may have grown since the size check.
    let bytes = read_bounded(file, MAX_FILE_LEN + 1).map_err(io)?;
    parse(&bytes, file)
}

/// Parses file bytes; `file` is only used in messages.
pub fn parse(bytes: &[u8], file: &Path) -> Result<Ini, ConfigError> {
    Ini::parse(bytes).map_err(|error| ConfigError::Syntax {
        file: file.to_path_buf(),
        error,
    })
}

/// Reads at most `max` bytes of `path`.
pub fn read_bounded(path: &Path, max: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut buf = Vec::new();
    std::fs::File::open(path)?
        .take(max as u64)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

/// A value as it appears in messages: at most 200 bytes.
pub fn truncate_for_message(v: &str) -> String {
    const MAX: usize = 200;
    if v.len() <= MAX {
        return v.to_string();
    }
    let mut end = MAX;
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &v[..end], v.len())
}

/// Typed access to a parsed file; collects warnings.
pub struct Reader<'a> {
    ini: &'a Ini,
    file: &'a Path,
    warnings: Vec<ConfigWarning>,
}

impl<'a> Reader<'a> {
    pub fn new(ini: &'a Ini, file: &'a Path) -> Reader<'a> {
        Reader {
            ini,
            file,
            warnings: Vec::new(),
        }
    }

    pub fn ini(&self) -> &'a Ini {
        self.ini
    }

    pub fn file(&self) -> &'a Path {
        self.file
    }

    /// The warnings collected so far.
    pub fn warnings(&self) -> &[ConfigWarning] {
        &self.warnings
    }

    pub fn into_warnings(self) -> Vec<ConfigWarning> {
        self.warnings
    }

    /// Warns about every section and key of the file that is not in `keys`.
    pub fn check_keys(&mut self, keys: &KnownKeys) {
        for s in &self.ini.sections {
            let Some((_, known)) = keys.sections.iter().find(|(n, _)| *n == s.name) else {
                self.warnings.push(ConfigWarning {
                    line: s.line,
                    section: s.name.clone(),
                    key: None,
                    message: UNKNOWN_SECTION.into(),
                });
                continue;
            };
            if keys.open_sections.contains(&s.name.as_str()) {
                continue;
            }
            let reference_only = keys
                .reference_only
                .iter()
                .find(|(n, _)| *n == s.name)
                .map(|(_, k)| *k)
                .unwrap_or(&[]);
            for e in &s.entries {
                if known.contains(&e.key.as_str()) {
                    continue;
                }
                let message = if reference_only.contains(&e.key.as_str()) {
                    REFERENCE_ONLY
                } else {
                    UNKNOWN_KEY
                };
                self.warnings.push(ConfigWarning {
                    line: e.line,
                    section: s.name.clone(),
                    key: Some(e.key.clone()),
                    message: message.into(),
                });
            }
        }
    }

    /// A warning about `key` (at the line of `e`, or line 0 when it is absent from the file).
    pub fn warn_at(&mut self, e: Option<&Entry>, section: &str, key: &str, message: &str) {
        self.warnings.push(ConfigWarning {
            line: e.map(|e| e.line).unwrap_or(0),
            section: section.into(),
            key: Some(key.into()),
            message: message.into(),
        });
    }

    /// Adds a warning made elsewhere (e.g. by [`crate::web::read_information`]).
    pub fn push_warning(&mut self, w: ConfigWarning) {
        self.warnings.push(w);
    }

    /// A value error about entry `e` of `section`.
    pub fn error(&self, section: &str, e: &Entry, reason: impl Into<String>) -> ConfigError {
        self.error_with_value(section, e, truncate_for_message(&e.value), reason)
    }

    /// A value error that does not repeat the value (passwords, connection strings).
    pub fn error_redacted(
        &self,
        section: &str,
        e: &Entry,
        reason: impl Into<String>,
    ) -> ConfigError {
        self.error_with_value(section, e, "<redacted>".into(), reason)
    }

    fn error_with_value(
        &self,
        section: &str,
        e: &Entry,
        value: String,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Value {
            file: self.file.to_path_buf(),
            line: e.line,
            section: section.into(),
            key: e.key.as_str().into(),
            value,
            reason: reason.into(),
        }
    }

    pub fn get(&self, section: &str, key: &str) -> Option<&'a Entry> {
        self.ini.get(section, key)
    }

    /// The value of `key`, `None` when absent or empty.
    pub fn string(&self, section: &str, key: &str) -> Option<String> {
        self.get(section, key)
            .map(|e| e.value.clone())
            .filter(|v| !v.is_empty())
    }

    /// A path; a relative one is taken relative to `base`. `None` when absent or empty.
    pub fn path(&self, section: &str, key: &str, base: &Path) -> Option<PathBuf> {
        self.string(section, key).map(|v| base.join(v))
    }

    /// The value of `key` converted by `f`, whose `Err` is the reason.
    pub fn parse_with<T>(
        &self,
        section: &str,
        key: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.get(section, key) {
            None => Ok(None),
            Some(e) => f(&e.value).map(Some).map_err(|r| self.error(section, e, r)),
        }
    }

    /// `on` / `off`.
    pub fn on_off(&self, section: &str, key: &str) -> Result<Option<bool>, ConfigError> {
        self.get(section, key)
            .map(|e| self.on_off_at(section, e))
            .transpose()
    }

    /// `on` / `off` of entry `e`.
    pub fn on_off_at(&self, section: &str, e: &Entry) -> Result<bool, ConfigError> {
        match e.value.as_str() {
            "on" => Ok(true),
            "off" => Ok(false),
            _ => Err(self.error(section, e, "expected on or off")),
        }
    }

    /// A whole number in `min..=max`.
    pub fn number<T>(
        &self,
        section: &str,
        key: &str,
        min: T,
        max: T,
    ) -> Result<Option<T>, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        self.get(section, key)
            .map(|e| self.number_at(section, e, min, max))
            .transpose()
    }

    /// A whole number in `min..=max` of entry `e`.
    pub fn number_at<T>(&self, section: &str, e: &Entry, min: T, max: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        match e.value.parse::<T>() {
            Ok(v) if v >= min && v <= max => Ok(v),
            _ => Err(self.error(
                section,
                e,
                format!("expected a whole number from {min} to {max}"),
            )),
        }
    }

    /// A decimal number in `min..=max` (rates).
    pub fn decimal(
        &self,
        section: &str,
        key: &str,
        min: f64,
        max: f64,
    ) -> Result<Option<f64>, ConfigError> {
        self.get(section, key)
            .map(|e| self.decimal_at(section, e, min, max))
            .transpose()
    }

    /// A decimal number in `min..=max` of entry `e`.
    pub fn decimal_at(
        &self,
        section: &str,
        e: &Entry,
        min: f64,
        max: f64,
    ) -> Result<f64, ConfigError> {
        match e.value.parse::<f64>() {
            Ok(v) if v >= min && v <= max => Ok(v),
            _ => Err(self.error(section, e, format!("expected a number from {min} to {max}"))),
        }
    }

    /// A rate in events per second (`0` = no limit), at most 10^9.
    pub fn rate(&self, section: &str, key: &str) -> Result<Option<f64>, ConfigError> {
        self.get(section, key)
            .map(|e| self.rate_at(section, e))
            .transpose()
    }

    /// A rate in events per second of entry `e`.
    pub fn rate_at(&self, section: &str, e: &Entry) -> Result<f64, ConfigError> {
        match e.value.parse::<f64>() {
            Ok(v) if (0.0..=1e9).contains(&v) => Ok(v),
            _ => Err(self.error(
                section,
                e,
                "expected a number of events per second (0 = no limit)",
            )),
        }
    }

    /// A duration written in (possibly fractional) seconds, in `min..=max`.
    pub fn seconds(
        &self,
        section: &str,
        key: &str,
        min: Duration,
        max: Duration,
    ) -> Result<Option<Duration>, ConfigError> {
        self.get(section, key)
            .map(|e| self.seconds_at(section, e, min, max))
            .transpose()
    }

    /// A duration in seconds of entry `e`, in `min..=max`.
    pub fn seconds_at(
        &self,
        section: &str,
        e: &Entry,
        min: Duration,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        let reason = || {
            format!(
                "expected a number of seconds from {} to {}",
                min.as_secs_f64(),
                max.as_secs_f64()
            )
        };
        let v: f64 = e
            .value
            .parse()
            .map_err(|_| self.error(section, e, reason()))?;
        if !v.is_finite() || v < 0.0 {
            return Err(self.error(section, e, reason()));
        }
        let d = Duration::try_from_secs_f64(v).map_err(|_| self.error(section, e, reason()))?;
        if d < min || d > max {
            return Err(self.error(section, e, reason()));
        }
        Ok(d)
    }

    /// `[INFORMATION]` (the server page's and `/server-info`'s details), with its warnings.
    pub fn information(&mut self) -> Result<crate::web::ServerInformation, ConfigError> {
        let (info, warnings) =
            crate::web::read_information(self.ini).map_err(|e| self.key_error(e))?;
        self.warnings
            .extend(warnings.into_iter().map(|w| ConfigWarning {
                line: w.line,
                section: w.section.into(),
                key: w.key.map(Into::into),
                message: w.message,
            }));
        Ok(info)
    }

    /// `[WEB]` (the server information page); relative paths are taken relative to the
    /// directories given.
    pub fn web(
        &self,
        data_dir: &Path,
        config_dir: &Path,
    ) -> Result<Option<crate::web::WebConfig>, ConfigError> {
        crate::web::read_web(self.ini, data_dir, config_dir).map_err(|e| self.key_error(e))
    }

    fn key_error(&self, e: crate::web::KeyError) -> ConfigError {
        ConfigError::Value {
            file: self.file.to_path_buf(),
            line: e.line,
            section: e.section.into(),
            key: e.key.into(),
            value: truncate_for_message(&e.value),
            reason: e.reason,
        }
    }

    /// A duration in seconds (fractions allowed), more than 0 and at most `max`.
    pub fn positive_seconds(
        &self,
        section: &str,
        key: &str,
        max: Duration,
    ) -> Result<Option<Duration>, ConfigError> {
        self.get(section, key)
            .map(|e| self.positive_seconds_at(section, e, max))
            .transpose()
    }

    /// A duration in seconds of entry `e`, more than 0 and at most `max`.
    pub fn positive_seconds_at(
        &self,
        section: &str,
        e: &Entry,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        match e.value.parse::<f64>().map(Duration::try_from_secs_f64) {
            Ok(Ok(d)) if !d.is_zero() && d <= max => Ok(d),
            _ => Err(self.error(
                section,
                e,
                format!(
                    "expected seconds, more than 0 and at most {}",
                    max.as_secs_f64()
                ),
            )),
        }
    }

    /// `ip:port` (IPv6 in brackets).
    pub fn socket_addr(&self, section: &str, key: &str) -> Result<Option<SocketAddr>, ConfigError> {
        self.parse_with(section, key, |v| {
            v.parse()
                .map_err(|_| "expected ip:port (IPv6 as [ip]:port)".to_string())
        })
    }

    /// An IP address.
    pub fn ip_addr(&self, section: &str, key: &str) -> Result<Option<IpAddr>, ConfigError> {
        self.parse_with(section, key, |v| {
            v.parse().map_err(|_| "expected an IP address".to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: KnownKeys = KnownKeys {
        sections: &[("A", &["b", "n", "d", "s", "addr"]), ("OPEN", &[])],
        open_sections: &["OPEN"],
        reference_only: &[("A", &["legacy"])],
    };

    fn with<T>(text: &str, f: impl FnOnce(&mut Reader<'_>) -> T) -> T {
        let ini = parse(text.as_bytes(), Path::new("x.ini")).unwrap();
        let mut r = Reader::new(&ini, Path::new("x.ini"));
        f(&mut r)
    }

    #[test]
    fn booleans_are_on_off_only() {
        with("[A]\nb = on\nd = off\n", |r| {
            assert_eq!(r.on_off("A", "b").unwrap(), Some(true));
            assert_eq!(r.on_off("A", "d").unwrap(), Some(false));
            assert_eq!(r.on_off("A", "missing").unwrap(), None);
        });
        for bad in ["yes", "true", "ON", "1", ""] {
            let e = with(&format!("[A]\nb = {bad}\n"), |r| {
                r.on_off("A", "b").unwrap_err()
            });
            assert_eq!(e.line(), Some(2));
            assert_eq!(e.key(), Some(("A", "b")));
            assert_eq!(
                e.to_string(),
                format!("x.ini: line 2: [A] b = {bad:?}: expected on or off")
            );
        }
    }

    #[test]
    fn numbers_durations_addresses() {
        with(
            "[A]\nn = 7\nd = 1.5\naddr = 127.0.0.1:9\ns = rel/p\n",
            |r| {
                assert_eq!(r.number("A", "n", 1u32, 10).unwrap(), Some(7));
                assert_eq!(
                    r.seconds("A", "d", Duration::ZERO, Duration::from_secs(2))
                        .unwrap(),
                    Some(Duration::from_millis(1500))
                );
                assert_eq!(
                    r.socket_addr("A", "addr").unwrap(),
                    Some("127.0.0.1:9".parse().unwrap())
                );
                assert_eq!(
                    r.path("A", "s", Path::new("/base")),
                    Some(PathBuf::from("/base/rel/p"))
                );
                let e = r.number("A", "n", 8u32, 10).unwrap_err().to_string();
                assert_eq!(
                    e,
                    "x.ini: line 2: [A] n = \"7\": expected a whole number from 8 to 10"
                );
                let e = r
                    .seconds("A", "d", Duration::ZERO, Duration::from_secs(1))
                    .unwrap_err()
                    .to_string();
                assert!(
                    e.ends_with("expected a number of seconds from 0 to 1"),
                    "{e}"
                );
                assert!(r.ip_addr("A", "addr").is_err());
            },
        );
        for v in ["-1", "NaN", "inf", "1e400", "x"] {
            with(&format!("[A]\nd = {v}\n"), |r| {
                assert!(
                    r.seconds("A", "d", Duration::ZERO, Duration::MAX).is_err(),
                    "{v}"
                );
            });
        }
    }

    #[test]
    fn unknown_sections_and_keys_are_warned_with_lines() {
        let w = with(
            "[A]\nb = on\ncolour = red\nlegacy = 1\n[OPEN]\nanything = x\n[NOPE]\nk = v\n",
            |r| {
                r.check_keys(&KEYS);
                r.warnings().to_vec()
            },
        );
        assert_eq!(w.len(), 3, "{w:?}");
        assert_eq!(w[0].to_string(), "line 3: [A] colour: unknown key; ignored");
        assert_eq!((w[1].line, w[1].message.as_str()), (4, REFERENCE_ONLY));
        assert_eq!(w[2].to_string(), "line 7: [NOPE]: unknown section; ignored");
    }

    #[test]
    fn secrets_are_not_repeated_and_long_values_are_cut() {
        with("[A]\ns = hunter2\n", |r| {
            let e = r.get("A", "s").unwrap();
            let msg = r.error_redacted("A", e, "bad password").to_string();
            assert!(
                !msg.contains("hunter2") && msg.contains("<redacted>"),
                "{msg}"
            );
        });
        let long = "é".repeat(300);
        let t = truncate_for_message(&long);
        assert!(t.len() < 220 && t.ends_with("(600 bytes)"), "{t}");
    }

    #[test]
    fn load_names_the_file() {
        let e = load(Path::new("/nonexistent/dir/x.ini")).unwrap_err();
        assert!(matches!(e, ConfigError::Io { .. }));
        assert!(
            e.to_string()
                .starts_with("/nonexistent/dir/x.ini: cannot read")
        );
    }
}
