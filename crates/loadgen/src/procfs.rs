//! Reading another process's memory and the fd limits from /proc (Linux only).

use crate::LoadError;

/// Memory figures of one process from `/proc/<pid>/status`, in kB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemStatus {
    /// `VmRSS`: resident set (anonymous + file-backed + shared memory).
    pub vm_rss_kb: u64,
    /// `RssAnon`: the anonymous part (heap, stacks) — what connections cost.
    pub rss_anon_kb: u64,
    /// `VmHWM`: peak resident set.
    pub vm_hwm_kb: u64,
    /// `Threads`.
    pub threads: u64,
}

/// Parses the text of `/proc/<pid>/status`.
pub fn parse_status(text: &str) -> Result<MemStatus, LoadError> {
    let mut m = MemStatus::default();
    let mut seen_rss = false;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let num = || -> Option<u64> { rest.split_whitespace().next()?.parse().ok() };
        match key {
            "VmRSS" => {
                m.vm_rss_kb = num().ok_or_else(|| LoadError::Proc(format!("bad VmRSS: {rest}")))?;
                seen_rss = true;
            }
            "RssAnon" => m.rss_anon_kb = num().unwrap_or(0),
            "VmHWM" => m.vm_hwm_kb = num().unwrap_or(0),
            "Threads" => m.threads = num().unwrap_or(0),
            _ => {}
        }
    }
    if !seen_rss {
        return Err(LoadError::Proc(
            "no VmRSS line (kernel thread or zombie?)".into(),
        ));
    }
    Ok(m)
}

/// Memory figures of process `pid`.
pub fn mem_status(pid: u32) -> Result<MemStatus, LoadError> {
    let path = format!("/proc/{pid}/status");
    let text =
        std::fs::read_to_string(&path).map_err(|e| LoadError::Proc(format!("{path}: {e}")))?;
    parse_status(&text)
}

/// Number of open file descriptors of process `pid` (entries of `/proc/<pid>/fd`).
pub fn open_fds(pid: u32) -> Result<usize, LoadError> {
    let path = format!("/proc/{pid}/fd");
    Ok(std::fs::read_dir(&path)
        .map_err(|e| LoadError::Proc(format!("{path}: {e}")))?
        .count())
}

/// `Max open files` (soft, hard) of process `pid` from `/proc/<pid>/limits`; `None` = unlimited.
pub fn fd_limit(pid: u32) -> Result<(Option<u64>, Option<u64>), LoadError> {
    let path = format!("/proc/{pid}/limits");
    let text =
        std::fs::read_to_string(&path).map_err(|e| LoadError::Proc(format!("{path}: {e}")))?;
    parse_fd_limit(&text).ok_or_else(|| LoadError::Proc(format!("{path}: no 'Max open files'")))
}

/// Parses the `Max open files` line of a limits file.
pub fn parse_fd_limit(text: &str) -> Option<(Option<u64>, Option<u64>)> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut it = line["Max open files".len()..].split_whitespace();
    let val = |s: &str| -> Option<Option<u64>> {
        if s == "unlimited" {
            Some(None)
        } else {
            s.parse().ok().map(Some)
        }
    };
    Some((val(it.next()?)?, val(it.next()?)?))
}

/// CPU time (user + system) of process `pid` so far, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Result<std::time::Duration, LoadError> {
    let path = format!("/proc/{pid}/stat");
    let text =
        std::fs::read_to_string(&path).map_err(|e| LoadError::Proc(format!("{path}: {e}")))?;
    let ticks =
        parse_stat_ticks(&text).ok_or_else(|| LoadError::Proc(format!("{path}: bad format")))?;
    Ok(std::time::Duration::from_secs_f64(
        ticks as f64 / clock_ticks() as f64,
    ))
}

/// utime + stime (clock ticks) from the text of `/proc/<pid>/stat` (fields 14 and 15; the
/// command name in field 2 may hold spaces and parentheses, so count from the last `)`).
pub fn parse_stat_ticks(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `getconf CLK_TCK` (100 when it cannot be run).
pub fn clock_ticks() -> u64 {
    static TCK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    })
}

/// System-wide file handle limit (`/proc/sys/fs/file-max`).
pub fn file_max() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/file-max")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_limits() {
        let s =
            "Name:\tx\nVmHWM:\t  2000 kB\nVmRSS:\t  1234 kB\nRssAnon:\t  1000 kB\nThreads:\t3\n";
        let m = parse_status(s).unwrap();
        assert_eq!(
            m,
            MemStatus {
                vm_rss_kb: 1234,
                rss_anon_kb: 1000,
                vm_hwm_kb: 2000,
                threads: 3
            }
        );
        assert!(parse_status("Name:\tkthread\n").is_err());
        let l = "Limit                     Soft Limit           Hard Limit           Units\n\
                 Max open files            20000                unlimited            files\n";
        assert_eq!(parse_fd_limit(l), Some((Some(20000), None)));
        // Our own process is readable.
        let me = mem_status(std::process::id()).unwrap();
        assert!(me.vm_rss_kb > 0);
        assert!(open_fds(std::process::id()).unwrap() >= 3);
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 1 0 5 0 0";
        assert_eq!(parse_stat_ticks(stat), Some(281));
        assert_eq!(parse_stat_ticks("42 (x) S 1"), None);
        let busy = std::time::Instant::now();
        let mut x = 0u64;
        while busy.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(cpu_time(std::process::id()).unwrap() >= std::time::Duration::from_millis(20));
    }
}
