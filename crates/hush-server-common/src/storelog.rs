//! Reading a reference server's (simplexmq 6.5.x) text store log, for `smp-server import` and
//! `ntf-server import`: the rules both imports share, once.
//!
//! * The log is read whole ([`read`]); a `<log>.start` beside it (the reference was killed while
//!   compacting its log at start, `readWriteStoreLog`) is read instead, with a warning
//!   ([`start_backup`]).
//! * Lines are split on `\n` ([`hush_proto::strtext::lines`]); nothing else is stripped, so a
//!   CRLF line keeps its `\r` and is a parse error like any other stray text.
//! * A line that does not parse is an error naming file and line ([`LogError::Parse`]), except
//!   the last line when it has no newline (the reference killed while writing it): that one is
//!   skipped with a warning and counted in `truncated_lines` ([`each_record`]).
//! * [`replay`] adds the replay loop: every line counts in `log_lines`; a record the replay
//!   refuses (`Err(why)`) is skipped, counted in `records_skipped` and warned about as
//!   `<file>:<line>: <why>`.
//!
//! Warnings go to the import report ([`LogReport`], the first [`MAX_WARNINGS`] are kept) and to
//! the log at warn level. They name files and lines, never ids, keys or tokens.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hush_proto::strtext::lines;

#[doc(hidden)]
pub use tracing as __tracing;

/// How many warnings an import report keeps (all are logged).
pub const MAX_WARNINGS: usize = 100;

/// Why reading a reference log failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A line that is not a record of the reference's format.
    #[error("{}:{line}: {msg}", file.display())]
    Parse {
        file: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl LogError {
    /// A parse error at `file:line`.
    pub fn parse(file: &Path, line: usize, msg: impl Into<String>) -> Self {
        LogError::Parse {
            file: file.to_path_buf(),
            line,
            msg: msg.into(),
        }
    }

    /// An I/O error about `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        LogError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The counters and warnings an import report keeps about the logs it reads. Implement it with
/// [`log_report!`](crate::log_report) on a report with the fields `log_lines`,
/// `truncated_lines`, `records_skipped` (`u64`) and `warnings` (`Vec<String>`).
pub trait LogReport {
    /// Logs `w` at warn level and keeps it if fewer than [`MAX_WARNINGS`] are kept.
    fn warn(&mut self, w: String);
    /// Store-log lines read (records, including skipped ones).
    fn log_lines(&mut self) -> &mut u64;
    /// Incomplete last lines skipped.
    fn truncated_lines(&mut self) -> &mut u64;
    /// Records skipped with a warning.
    fn records_skipped(&mut self) -> &mut u64;
}

/// Implements [`LogReport`](crate::storelog::LogReport) for an import report type with the
/// fields `log_lines`, `truncated_lines`, `records_skipped` and `warnings`. Its warnings are
/// logged under the calling module's target.
#[macro_export]
macro_rules! log_report {
    ($report:ty) => {
        impl $crate::storelog::LogReport for $report {
            fn warn(&mut self, w: String) {
                $crate::storelog::__tracing::warn!("import: {w}");
                if self.warnings.len() < $crate::storelog::MAX_WARNINGS {
                    self.warnings.push(w);
                }
            }
            fn log_lines(&mut self) -> &mut u64 {
                &mut self.log_lines
            }
            fn truncated_lines(&mut self) -> &mut u64 {
                &mut self.truncated_lines
            }
            fn records_skipped(&mut self) -> &mut u64 {
                &mut self.records_skipped
            }
        }
    };
}

/// The file's bytes; an error names the file.
pub fn read(path: &Path) -> Result<Vec<u8>, LogError> {
    std::fs::read(path).map_err(|source| LogError::io(path, source))
}

/// The log to read: `<store_log>.start` when it exists (the reference `who` was stopped while
/// compacting its log at start; it restores from that file, and so does the import — with a
/// warning), else `store_log`.
pub fn start_backup(store_log: &Path, who: &str, report: &mut impl LogReport) -> PathBuf {
    let start_backup = PathBuf::from(format!("{}.start", store_log.display()));
    if start_backup.exists() {
        report.warn(format!(
            "{} exists (the reference {who} was stopped while compacting its log): importing it instead",
            start_backup.display()
        ));
        start_backup
    } else {
        store_log.to_path_buf()
    }
}

/// A line as text (the reference's logs are UTF-8).
pub fn utf8(line: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(line).map_err(|_| "not UTF-8 text".to_string())
}

/// Parses every line of `text` (the file `path`) with `parse` and hands each record to `each`
/// with the report and its line number. A line that does not parse stops the read with
/// [`LogError::Parse`] naming `path` and the line, unless it is the last line and has no
/// newline: then it is skipped with a warning and counted in `truncated_lines`.
pub fn each_record<Rep: LogReport, R>(
    path: &Path,
    text: &[u8],
    report: &mut Rep,
    mut parse: impl FnMut(&str) -> Result<R, String>,
    mut each: impl FnMut(&mut Rep, usize, R),
) -> Result<(), LogError> {
    for (line_no, line, complete) in lines(text) {
        match utf8(line).and_then(&mut parse) {
            Ok(rec) => each(report, line_no, rec),
            Err(_) if !complete => {
                *report.truncated_lines() += 1;
                report.warn(format!(
                    "{}:{line_no}: incomplete last line skipped",
                    path.display()
                ));
            }
            Err(msg) => return Err(LogError::parse(path, line_no, msg)),
        }
    }
    Ok(())
}

/// Replays a store log: [`each_record`], counting every line in `log_lines`, with `apply`
/// applying each record in order; a record `apply` refuses (`Err(why)`) is skipped, counted in
/// `records_skipped` and warned about as `<file>:<line>: <why>`.
pub fn replay<Rep: LogReport, R>(
    path: &Path,
    text: &[u8],
    report: &mut Rep,
    mut parse: impl FnMut(&str) -> Result<R, String>,
    mut apply: impl FnMut(&mut Rep, R) -> Result<(), String>,
) -> Result<(), LogError> {
    let mut read = 0u64;
    let counted = |s: &str| {
        read += 1;
        parse(s)
    };
    let r = each_record(path, text, report, counted, |report, line_no, rec| {
        if let Err(why) = apply(report, rec) {
            *report.records_skipped() += 1;
            report.warn(format!("{}:{line_no}: {why}", path.display()));
        }
    });
    *report.log_lines() += read;
    r
}

/// A progress printer for the CLI: `line(p)` on stderr at most once a second, and always when
/// `finished(p)` (the last one of a phase).
pub fn stderr_progress<P>(
    finished: impl Fn(&P) -> bool,
    line: impl Fn(&P) -> String,
) -> impl FnMut(P) {
    let mut last: Option<Instant> = None;
    move |p: P| {
        if !finished(&p) && last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        last = Some(Instant::now());
        eprintln!("{}", line(&p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default)]
    struct Report {
        log_lines: u64,
        truncated_lines: u64,
        records_skipped: u64,
        warnings: Vec<String>,
    }
    crate::log_report!(Report);

    /// A record is a number; odd numbers are refused by the replay.
    fn parse(s: &str) -> Result<u32, String> {
        s.parse().map_err(|_| format!("bad number `{s}`"))
    }

    fn apply(seen: &mut Vec<u32>) -> impl FnMut(&mut Report, u32) -> Result<(), String> + '_ {
        |_, n| {
            if n % 2 == 1 {
                return Err(format!("odd {n}, skipped"));
            }
            seen.push(n);
            Ok(())
        }
    }

    /// Replays `text` as `x.log` with [`apply`]: the report and the records applied.
    fn replayed(text: &[u8]) -> (Report, Vec<u32>) {
        let (mut r, mut seen) = (Report::default(), Vec::new());
        replay(Path::new("x.log"), text, &mut r, parse, apply(&mut seen)).unwrap();
        (r, seen)
    }

    #[test]
    fn replay_applies_in_order_and_warns_about_refused_records() {
        let (r, seen) = replayed(b"2\n3\n4\n");
        assert_eq!(seen, [2, 4]);
        let counts = (r.log_lines, r.records_skipped, r.truncated_lines);
        assert_eq!(counts, (3, 1, 0));
        assert_eq!(r.warnings, ["x.log:2: odd 3, skipped"]);
    }

    #[test]
    fn a_truncated_last_line_is_skipped_with_a_warning() {
        let (r, seen) = replayed(b"2\n4\n6x");
        assert_eq!(seen, [2, 4]);
        let counts = (r.log_lines, r.records_skipped, r.truncated_lines);
        assert_eq!(counts, (3, 0, 1));
        assert_eq!(r.warnings, ["x.log:3: incomplete last line skipped"]);
        // a last line without newline that parses is a record like any other
        let (r, seen) = replayed(b"2\n6");
        assert_eq!((seen, r.truncated_lines), (vec![2, 6], 0));
    }

    #[test]
    fn a_bad_line_with_its_newline_is_an_error_naming_file_and_line() {
        let mut r = Report::default();
        let e = replay(
            Path::new("d/x.log"),
            b"2\nzz\n4\n",
            &mut r,
            parse,
            |_, _| Ok(()),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "d/x.log:2: bad number `zz`");
        assert!(matches!(e, LogError::Parse { line: 2, .. }));
        // a bad last line is an error too when its newline is there
        let e = replay(Path::new("x.log"), b"2\nzz\n", &mut r, parse, |_, _| Ok(())).unwrap_err();
        assert_eq!(e.to_string(), "x.log:2: bad number `zz`");
        // not UTF-8
        let e = replay(Path::new("x.log"), b"\xff\n", &mut r, parse, |_, _| Ok(())).unwrap_err();
        assert_eq!(e.to_string(), "x.log:1: not UTF-8 text");
    }

    #[test]
    fn crlf_lines_keep_their_cr_and_do_not_parse() {
        let mut r = Report::default();
        let e = replay(Path::new("x.log"), b"2\r\n4\r\n", &mut r, parse, |_, _| {
            Ok(())
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "x.log:1: bad number `2\r`");
    }

    #[test]
    fn each_record_counts_no_lines_and_hands_over_line_numbers() {
        let mut r = Report::default();
        let mut got = Vec::new();
        each_record(Path::new("m.log"), b"7\n\n", &mut r, parse, |_, n, v| {
            got.push((n, v))
        })
        .unwrap_err();
        assert_eq!(got, [(1, 7)]);
        let mut got = Vec::new();
        each_record(Path::new("m.log"), b"7\n9\n1", &mut r, parse, |_, n, v| {
            got.push((n, v))
        })
        .unwrap();
        assert_eq!(got, [(1, 7), (2, 9), (3, 1)]);
        assert_eq!((r.log_lines, r.records_skipped), (0, 0));
    }

    #[test]
    fn warnings_kept_are_capped() {
        let mut r = Report::default();
        for i in 0..MAX_WARNINGS + 5 {
            r.warn(format!("w{i}"));
        }
        assert_eq!(r.warnings.len(), MAX_WARNINGS);
        assert_eq!(r.warnings.last().map(String::as_str), Some("w99"));
    }

    #[test]
    fn the_start_backup_is_read_instead_with_a_warning() {
        let dir = std::env::temp_dir().join(format!("hush-storelog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("s.log");
        std::fs::write(&log, b"2\n").unwrap();
        let mut r = Report::default();
        assert_eq!(start_backup(&log, "relay", &mut r), log);
        assert!(r.warnings.is_empty());
        let start = dir.join("s.log.start");
        std::fs::write(&start, b"4\n").unwrap();
        assert_eq!(start_backup(&log, "relay", &mut r), start);
        assert_eq!(
            r.warnings,
            [format!(
                "{} exists (the reference relay was stopped while compacting its log): importing it instead",
                start.display()
            )]
        );
        assert_eq!(read(&start).unwrap(), b"4\n");
        std::fs::remove_dir_all(&dir).unwrap();
        let e = read(&log).unwrap_err();
        assert!(
            matches!(&e, LogError::Io { path, .. } if *path == log),
            "{e}"
        );
        assert!(e.to_string().starts_with(&format!("{}: ", log.display())));
    }
}
