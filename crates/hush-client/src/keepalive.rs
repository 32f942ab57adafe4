//! Kernel TCP keep-alive for relay sockets ([`TcpKeepalive`]).
//!
//! An idle SMP connection can be kept in NAT/firewall tables, and a relay that vanished without
//! a FIN or RST (host gone, traffic silently dropped) can be detected, by the kernel alone:
//! after `idle` without traffic it sends an empty probe segment (≈ 52 B on IPv4 with
//! timestamps, answered by an ≈ 52 B ACK) every `interval`, and after `count` unanswered probes
//! it aborts the connection; the next read fails (`ETIMEDOUT`) and the pool reconnects. The
//! process is not woken up for any of this. `TCP_USER_TIMEOUT` bounds the other case, data
//! sent but never acknowledged (a `SUB` or `ACK` written into a dead path), which keep-alive
//! does not cover: the retransmissions give up after `user_timeout`. On Linux, once set, the
//! user timeout also decides when unanswered keep-alive probes end the connection, so it is
//! set to `idle + interval × count` by default and both cases share one bound.
//!
//! Compare an SMP `PING`: one 16 KB block each way (≈ 32.8 KB per round trip, TLS included)
//! and two process wake-ups.

use std::io;
use std::time::Duration;

/// Kernel keep-alive settings of a relay socket (`SO_KEEPALIVE`, `TCP_KEEPIDLE`,
/// `TCP_KEEPINTVL`, `TCP_KEEPCNT`, `TCP_USER_TIMEOUT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpKeepalive {
    /// Silence before the first probe (`TCP_KEEPIDLE`, whole seconds, at least 1).
    pub idle: Duration,
    /// Between unanswered probes (`TCP_KEEPINTVL`, whole seconds, at least 1).
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped (`TCP_KEEPCNT`, 1..=127).
    pub count: u32,
    /// `TCP_USER_TIMEOUT` (milliseconds precision): unacknowledged data (and, on Linux,
    /// unanswered probes) end the connection after this long. `None` leaves the system's
    /// default (retransmissions for ≈ 15 minutes).
    pub user_timeout: Option<Duration>,
}

impl TcpKeepalive {
    /// Probes after `idle`, then every `interval`; dead after `count` unanswered probes; the
    /// user timeout is the same bound, `idle + interval × count`.
    pub fn new(idle: Duration, interval: Duration, count: u32) -> TcpKeepalive {
        TcpKeepalive {
            idle,
            interval,
            count,
            user_timeout: Some(idle + interval * count),
        }
    }

    /// The always-connected receiver's setting (`hush daemon`): idle 45 s, interval 15 s, 4
    /// probes, user timeout 105 s — a silent relay is detected within 105 s of its last
    /// answer; idle, one probe and its ACK per 45 s (≈ 8.3 KB/h on IPv4).
    pub fn receiver() -> TcpKeepalive {
        TcpKeepalive::new(Duration::from_secs(45), Duration::from_secs(15), 4)
    }

    /// Longest time from the last segment received to the kernel dropping the connection.
    pub fn detection_bound(&self) -> Duration {
        match self.user_timeout {
            // Linux: probes stop counting; the first unanswered probe past the user timeout
            // ends the connection.
            Some(u) => u.max(self.idle + self.interval),
            None => self.idle + self.interval * self.count,
        }
    }

    /// Checks the values against the kernel's limits (whole seconds ≥ 1 for idle and
    /// interval, up to 32767 s; count 1..=127; user timeout up to `i32::MAX` ms).
    pub fn validate(&self) -> Result<(), String> {
        let secs = |d: Duration, what: &str| -> Result<(), String> {
            if d.subsec_nanos() != 0 || d.as_secs() == 0 || d.as_secs() > 32767 {
                return Err(format!(
                    "keep-alive {what} must be whole seconds between 1 s and 32767 s"
                ));
            }
            Ok(())
        };
        secs(self.idle, "idle")?;
        secs(self.interval, "interval")?;
        if !(1..=127).contains(&self.count) {
            return Err("keep-alive count must be between 1 and 127".into());
        }
        if let Some(u) = self.user_timeout
            && (u.is_zero() || u.as_millis() > i32::MAX as u128)
        {
            return Err("TCP user timeout must be between 1 ms and 24 days".into());
        }
        Ok(())
    }

    /// Sets the options on a TCP socket.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub fn apply<S: std::os::fd::AsRawFd>(&self, socket: &S) -> io::Result<()> {
        self.validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let fd = socket.as_raw_fd();
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
        setsockopt_int(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_KEEPIDLE,
            self.idle.as_secs() as i32,
        )?;
        setsockopt_int(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_KEEPINTVL,
            self.interval.as_secs() as i32,
        )?;
        setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, self.count as i32)?;
        let user_ms = self.user_timeout.map(|u| u.as_millis() as i32).unwrap_or(0);
        setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, user_ms)?;
        Ok(())
    }

    /// Not available on this platform (the connection is used without keep-alive).
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub fn apply<S>(&self, _socket: &S) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "TCP keep-alive settings are implemented for Linux only",
        ))
    }

    /// Reads the settings back from a socket (`getsockopt`): `None` when `SO_KEEPALIVE` is
    /// off. For tests and statistics.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub fn read_from(fd: std::os::fd::RawFd) -> io::Result<Option<TcpKeepalive>> {
        if getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE)? == 0 {
            return Ok(None);
        }
        let idle = getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE)?;
        let interval = getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL)?;
        let count = getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT)?;
        let user = getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT)?;
        Ok(Some(TcpKeepalive {
            idle: Duration::from_secs(idle.max(0) as u64),
            interval: Duration::from_secs(interval.max(0) as u64),
            count: count.max(0) as u32,
            user_timeout: (user > 0).then(|| Duration::from_millis(user as u64)),
        }))
    }

    /// Not available on this platform.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    pub fn read_from(_fd: i32) -> io::Result<Option<TcpKeepalive>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "TCP keep-alive settings are implemented for Linux only",
        ))
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[allow(unsafe_code)] // one libc call, SAFETY below
fn setsockopt_int(fd: i32, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: setsockopt with a pointer to a live i32 and its exact size; a bad fd at worst
    // returns an error.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[allow(unsafe_code)] // one libc call, SAFETY below
fn getsockopt_int(fd: i32, level: i32, name: i32) -> io::Result<i32> {
    let mut value: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: getsockopt into a live i32 with its exact size; a bad fd at worst returns an
    // error.
    let r = unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut i32).cast(), &mut len) };
    if r == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_setting_detects_within_two_minutes() {
        let k = TcpKeepalive::receiver();
        assert_eq!(k.detection_bound(), Duration::from_secs(105));
        assert!(k.validate().is_ok());
    }

    #[test]
    fn validate_rejects_kernel_out_of_range_values() {
        let mut k = TcpKeepalive::receiver();
        k.idle = Duration::from_millis(1500);
        assert!(k.validate().unwrap_err().contains("idle"));
        let mut k = TcpKeepalive::receiver();
        k.interval = Duration::ZERO;
        assert!(k.validate().unwrap_err().contains("interval"));
        let mut k = TcpKeepalive::receiver();
        k.count = 0;
        assert!(k.validate().unwrap_err().contains("count"));
        let mut k = TcpKeepalive::receiver();
        k.user_timeout = Some(Duration::ZERO);
        assert!(k.validate().unwrap_err().contains("user timeout"));
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn apply_then_read_back() {
        use std::os::fd::AsRawFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert_eq!(TcpKeepalive::read_from(s.as_raw_fd()).unwrap(), None);
        let k = TcpKeepalive::new(Duration::from_secs(7), Duration::from_secs(3), 5);
        k.apply(&s).unwrap();
        let back = TcpKeepalive::read_from(s.as_raw_fd()).unwrap().unwrap();
        assert_eq!(back, k);
        assert_eq!(back.user_timeout, Some(Duration::from_secs(22)));
    }
}
