//! The loopback control port (reference §7.5, `Server/Control.hs`, `Server.hs runCPClient`).
//!
//! Plain text lines over TCP on 127.0.0.1. A connection starts with no role; `auth <password>` selects
//! `admin` or `user` once per connection. The protocol layer here parses lines, enforces roles and
//! limits, and hands each command to a [`ControlHandler`] that the relay core implements.
//!
//! Roles (hush): `stats` and `status` need user or admin; `clients`, `block`, `unblock`, `delete` and
//! `save` need admin. (The reference lets the user role block and unblock; hush keeps every command that
//! changes state or lists connections admin-only.) Unauthorized commands get the line `AUTH`, as in the
//! reference.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::Shutdown;
use crate::config::BasicAuth;

/// Longest accepted command line, in bytes (without the newline). A longer line gets an error line and
/// the connection is closed.
pub const MAX_LINE: usize = 4096;
/// Connections served at once; further ones get an error line and are closed.
pub const MAX_CONNECTIONS: usize = 8;
/// Failed `auth` attempts allowed per connection before it is closed.
pub const MAX_AUTH_FAILURES: u32 = 3;
/// An idle connection is closed after this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The role a control connection has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    None,
    User,
    Admin,
}

impl Role {
    /// The reference's spelling (`CPRNone`, `CPRUser`, `CPRAdmin`), used in `auth` replies.
    fn reference_name(self) -> &'static str {
        match self {
            Role::None => "CPRNone",
            Role::User => "CPRUser",
            Role::Admin => "CPRAdmin",
        }
    }
}

/// A queue named by its sender id (base64url on the wire of the control port). `Debug` hides the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SenderId(pub Vec<u8>);

impl std::fmt::Debug for SenderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SenderId(<{} bytes>)", self.0.len())
    }
}

/// Why a queue is blocked (reference `BlockingReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockingReason {
    Spam,
    Content,
}

/// `reason=spam|content[,notice=<json>]` (reference `BlockingInfo`; `notice` is the JSON of a
/// `ClientNotice`, e.g. `{"ttl":86400}`, kept as text for the core to validate and store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockingInfo {
    pub reason: BlockingReason,
    pub notice: Option<String>,
}

/// A parsed control command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlCommand {
    Auth(Vec<u8>),
    Stats,
    Clients,
    Status(SenderId),
    Block(SenderId, BlockingInfo),
    Unblock(SenderId),
    Delete(SenderId),
    Save,
    Help,
    Quit,
    /// Empty line.
    Skip,
    /// A reference command hush does not implement (`stats-rts`, `threads`, `sockets`, …).
    NotImplemented(&'static str),
}

/// Why a line is not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unknown command {0:?}, 'help' for supported commands")]
    Unknown(String),
    #[error("{0}: missing argument, expected: {1}")]
    MissingArgument(&'static str, &'static str),
    #[error("{0}: unexpected extra argument")]
    ExtraArgument(&'static str),
    #[error("invalid queue id: expected the base64url sender id")]
    BadQueueId,
    #[error("invalid blocking info: expected reason=spam|content[,notice=<json>]")]
    BadBlockingInfo,
    #[error("command is not valid UTF-8")]
    NotUtf8,
}

const REFERENCE_ONLY: &[&str] = &[
    "stats-rts",
    "threads",
    "sockets",
    "socket-threads",
    "server-info",
    "suspend",
    "resume",
];

/// The `help` reply.
pub const HELP: &str =
    "commands: auth, stats, clients, status, block, unblock, delete, save, help, quit";

impl ControlCommand {
    /// Parses one line (without its newline). Never panics.
    pub fn parse(line: &[u8]) -> Result<ControlCommand, ParseError> {
        let line = std::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
        let line = line.trim_end_matches('\r');
        let (word, rest) = match line.split_once(' ') {
            Some((w, r)) => (w, Some(r)),
            None => (line, None),
        };
        let no_args = |name: &'static str, c: ControlCommand| match rest {
            None => Ok(c),
            Some(r) if r.trim().is_empty() => Ok(c),
            Some(_) => Err(ParseError::ExtraArgument(name)),
        };
        let one_id = |name: &'static str| -> Result<SenderId, ParseError> {
            let r = rest.ok_or(ParseError::MissingArgument(name, "<senderId>"))?;
            let r = r.trim();
            if r.is_empty() {
                return Err(ParseError::MissingArgument(name, "<senderId>"));
            }
            if r.contains(' ') {
                return Err(ParseError::ExtraArgument(name));
            }
            parse_sender_id(r)
        };
        match word {
            "" => no_args("", ControlCommand::Skip),
            "auth" => {
                let r = rest.ok_or(ParseError::MissingArgument("auth", "<password>"))?;
                if r.is_empty() {
                    return Err(ParseError::MissingArgument("auth", "<password>"));
                }
                Ok(ControlCommand::Auth(r.as_bytes().to_vec()))
            }
            "stats" => no_args("stats", ControlCommand::Stats),
            "clients" => no_args("clients", ControlCommand::Clients),
            "save" => no_args("save", ControlCommand::Save),
            "help" => no_args("help", ControlCommand::Help),
            "quit" => no_args("quit", ControlCommand::Quit),
            "status" => Ok(ControlCommand::Status(one_id("status")?)),
            "unblock" => Ok(ControlCommand::Unblock(one_id("unblock")?)),
            "delete" => Ok(ControlCommand::Delete(one_id("delete")?)),
            "block" => {
                let r = rest.ok_or(ParseError::MissingArgument(
                    "block",
                    "<senderId> reason=spam|content[,notice=<json>]",
                ))?;
                let (id, info) = r.split_once(' ').ok_or(ParseError::MissingArgument(
                    "block",
                    "<senderId> reason=spam|content[,notice=<json>]",
                ))?;
                Ok(ControlCommand::Block(
                    parse_sender_id(id)?,
                    parse_blocking_info(info)?,
                ))
            }
            w => match REFERENCE_ONLY.iter().find(|c| **c == w) {
                Some(c) => Ok(ControlCommand::NotImplemented(c)),
                None => Err(ParseError::Unknown(truncate(w, 64))),
            },
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn parse_sender_id(s: &str) -> Result<SenderId, ParseError> {
    let bytes = hush_proto::encoding::base64url_decode(s).map_err(|_| ParseError::BadQueueId)?;
    if bytes.is_empty() || bytes.len() > 255 {
        return Err(ParseError::BadQueueId);
    }
    Ok(SenderId(bytes))
}

fn parse_blocking_info(s: &str) -> Result<BlockingInfo, ParseError> {
    let rest = s
        .strip_prefix("reason=")
        .ok_or(ParseError::BadBlockingInfo)?;
    let (reason, rest) = if let Some(r) = rest.strip_prefix("spam") {
        (BlockingReason::Spam, r)
    } else if let Some(r) = rest.strip_prefix("content") {
        (BlockingReason::Content, r)
    } else {
        return Err(ParseError::BadBlockingInfo);
    };
    let notice = if rest.is_empty() {
        None
    } else {
        let json = rest
            .strip_prefix(",notice=")
            .ok_or(ParseError::BadBlockingInfo)?;
        // Only a shape check here (a JSON object); the core decodes it into a ClientNotice.
        if !(json.starts_with('{') && json.ends_with('}')) {
            return Err(ParseError::BadBlockingInfo);
        }
        Some(json.to_string())
    };
    Ok(BlockingInfo { reason, notice })
}

/// What a handler answers: lines to print, or an error printed as `error: <text>`.
pub type ControlReply = Result<Vec<String>, String>;

/// What the relay core implements for the control port. Each method returns the lines to print.
/// Roles are checked before a method is called. Implementations must not log queue ids above debug.
pub trait ControlHandler: Send + Sync + 'static {
    /// `stats`: server statistics, one `label: value` per line.
    fn stats(&self) -> impl Future<Output = ControlReply> + Send;
    /// `clients`: a CSV header line and one line per connected client (admin).
    fn clients(&self) -> impl Future<Output = ControlReply> + Send;
    /// `status <senderId>`: the queue's status.
    fn status(&self, sender_id: SenderId) -> impl Future<Output = ControlReply> + Send;
    /// `block <senderId> reason=…`: block the queue (admin; the handler enforces
    /// `daily_block_queue_quota`).
    fn block(
        &self,
        sender_id: SenderId,
        info: BlockingInfo,
    ) -> impl Future<Output = ControlReply> + Send;
    /// `unblock <senderId>` (admin).
    fn unblock(&self, sender_id: SenderId) -> impl Future<Output = ControlReply> + Send;
    /// `delete <senderId>`: delete the queue and its messages (admin).
    fn delete(&self, sender_id: SenderId) -> impl Future<Output = ControlReply> + Send;
    /// `save`: persist server state now (admin).
    fn save(&self) -> impl Future<Output = ControlReply> + Send;
}

/// Passwords for the two roles (`[AUTH] control_port_admin_password` / `control_port_user_password`).
#[derive(Debug, Clone, Default)]
pub struct ControlAuth {
    pub admin: Option<BasicAuth>,
    pub user: Option<BasicAuth>,
}

impl ControlAuth {
    fn role_for(&self, password: &[u8]) -> Role {
        if self.admin.as_ref().is_some_and(|a| a.matches(password)) {
            Role::Admin
        } else if self.user.as_ref().is_some_and(|u| u.matches(password)) {
            Role::User
        } else {
            Role::None
        }
    }
}

/// Binds the control port on loopback. `port` 0 picks a free port (tests).
pub async fn bind(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await
}

/// Serves control connections on `listener` until `shutdown` fires.
pub async fn serve<H: ControlHandler>(
    listener: TcpListener,
    handler: Arc<H>,
    auth: ControlAuth,
    mut shutdown: Shutdown,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let auth = Arc::new(auth);
    let mut backoff = hush_server_common::AcceptBackoff::new("control port");
    loop {
        let Some((mut stream, peer)) =
            hush_server_common::accept(&listener, &mut backoff, &mut shutdown).await
        else {
            return;
        };
        if !peer.ip().is_loopback() {
            // Only reachable if someone bound a non-loopback listener; refuse regardless.
            continue;
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            let _ = stream
                .write_all(b"error: too many control connections\n")
                .await;
            continue;
        };
        let handler = handler.clone();
        let auth = auth.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            session(stream, &*handler, &auth, shutdown).await;
            drop(permit);
        });
    }
}

/// Reads one line of at most [`MAX_LINE`] bytes. `Ok(None)` = EOF, `Err(())` = too long or I/O error.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> Result<Option<()>, LineError> {
    buf.clear();
    let n = r
        .take(MAX_LINE as u64 + 2)
        .read_until(b'\n', buf)
        .await
        .map_err(|_| LineError::Io)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    } else if n > MAX_LINE {
        return Err(LineError::TooLong);
    }
    if buf.len() > MAX_LINE {
        return Err(LineError::TooLong);
    }
    Ok(Some(()))
}

enum LineError {
    Io,
    TooLong,
}

/// One control connection. Public so that tests and embedders can drive a stream directly.
pub async fn session<H: ControlHandler>(
    stream: TcpStream,
    handler: &H,
    auth: &ControlAuth,
    mut shutdown: Shutdown,
) {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut role = Role::None;
    let mut auth_failures = 0u32;
    let mut line = Vec::with_capacity(256);
    if write_lines(
        &mut wr,
        &[
            "SMP server control port".into(),
            "'help' for supported commands".into(),
        ],
    )
    .await
    .is_err()
    {
        return;
    }
    loop {
        let read = tokio::select! {
            _ = shutdown.wait() => return,
            r = tokio::time::timeout(IDLE_TIMEOUT, read_line(&mut rd, &mut line)) => r,
        };
        let cmd = match read {
            Err(_) | Ok(Ok(None)) | Ok(Err(LineError::Io)) => return,
            Ok(Err(LineError::TooLong)) => {
                let _ = write_lines(
                    &mut wr,
                    &[format!(
                        "error: line too long (limit {MAX_LINE} bytes), closing"
                    )],
                )
                .await;
                let _ = wr.shutdown().await;
                linger(&mut rd).await;
                return;
            }
            Ok(Ok(Some(()))) => ControlCommand::parse(&line),
        };
        let out: Vec<String> = match cmd {
            Err(e) => vec![format!("error: {e}")],
            Ok(ControlCommand::Quit) => return,
            Ok(ControlCommand::Skip) => Vec::new(),
            Ok(ControlCommand::Help) => vec![HELP.to_string()],
            Ok(ControlCommand::Auth(pwd)) => {
                let new_role = auth.role_for(&pwd);
                let reply = if role == Role::None {
                    role = new_role;
                    format!("Current role is {}", role.reference_name())
                } else if role == new_role {
                    format!("Current role is {}", role.reference_name())
                } else {
                    format!(
                        "Current role is {}, start new session to change.",
                        role.reference_name()
                    )
                };
                if new_role == Role::None {
                    auth_failures += 1;
                    tracing::warn!("control port: failed auth attempt");
                    if auth_failures >= MAX_AUTH_FAILURES {
                        let _ = write_lines(
                            &mut wr,
                            &[
                                reply,
                                "error: too many failed auth attempts, closing".into(),
                            ],
                        )
                        .await;
                        return;
                    }
                }
                vec![reply]
            }
            Ok(ControlCommand::NotImplemented(c)) => {
                vec![format!("error: {c} is not implemented by this server")]
            }
            Ok(cmd) => {
                let needed = match cmd {
                    ControlCommand::Stats | ControlCommand::Status(_) => Role::User,
                    _ => Role::Admin,
                };
                let allowed = match needed {
                    Role::User => role != Role::None,
                    _ => role == Role::Admin,
                };
                if !allowed {
                    tracing::warn!("control port: unauthorized command");
                    vec!["AUTH".to_string()]
                } else {
                    tracing::info!("control port: {} command", command_name(&cmd));
                    let reply = match cmd {
                        ControlCommand::Stats => handler.stats().await,
                        ControlCommand::Clients => handler.clients().await,
                        ControlCommand::Status(id) => handler.status(id).await,
                        ControlCommand::Block(id, info) => handler.block(id, info).await,
                        ControlCommand::Unblock(id) => handler.unblock(id).await,
                        ControlCommand::Delete(id) => handler.delete(id).await,
                        ControlCommand::Save => handler.save().await,
                        _ => Ok(Vec::new()),
                    };
                    match reply {
                        Ok(lines) => lines,
                        Err(e) => vec![format!("error: {e}")],
                    }
                }
            }
        };
        if write_lines(&mut wr, &out).await.is_err() {
            return;
        }
    }
}

/// Reads and drops what the peer is still sending (bounded in bytes and time) so that closing the socket
/// does not reset the connection before the peer has read our last line.
pub(crate) async fn linger<R: tokio::io::AsyncRead + Unpin>(r: &mut R) {
    let mut sink = [0u8; 4096];
    let mut left: usize = 1024 * 1024;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while left > 0 {
            match r.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

fn command_name(c: &ControlCommand) -> &'static str {
    match c {
        ControlCommand::Auth(_) => "auth",
        ControlCommand::Stats => "stats",
        ControlCommand::Clients => "clients",
        ControlCommand::Status(_) => "status",
        ControlCommand::Block(..) => "block",
        ControlCommand::Unblock(_) => "unblock",
        ControlCommand::Delete(_) => "delete",
        ControlCommand::Save => "save",
        ControlCommand::Help => "help",
        ControlCommand::Quit => "quit",
        ControlCommand::Skip => "",
        ControlCommand::NotImplemented(c) => c,
    }
}

async fn write_lines<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    lines: &[String],
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    for l in lines {
        // A handler's line never breaks the framing: embedded newlines are replaced.
        buf.extend(
            l.bytes()
                .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
        );
        buf.push(b'\n');
    }
    w.write_all(&buf).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert_eq!(ControlCommand::parse(b"stats"), Ok(ControlCommand::Stats));
        assert_eq!(ControlCommand::parse(b"stats\r"), Ok(ControlCommand::Stats));
        assert_eq!(ControlCommand::parse(b""), Ok(ControlCommand::Skip));
        assert_eq!(
            ControlCommand::parse(b"auth s3cret pass"),
            Ok(ControlCommand::Auth(b"s3cret pass".to_vec()))
        );
        assert_eq!(
            ControlCommand::parse(b"status AQID"),
            Ok(ControlCommand::Status(SenderId(vec![1, 2, 3])))
        );
        assert_eq!(
            ControlCommand::parse(b"block AQID reason=content,notice={\"ttl\":60}"),
            Ok(ControlCommand::Block(
                SenderId(vec![1, 2, 3]),
                BlockingInfo {
                    reason: BlockingReason::Content,
                    notice: Some("{\"ttl\":60}".into())
                }
            ))
        );
        assert_eq!(
            ControlCommand::parse(b"block AQID reason=spam"),
            Ok(ControlCommand::Block(
                SenderId(vec![1, 2, 3]),
                BlockingInfo {
                    reason: BlockingReason::Spam,
                    notice: None
                }
            ))
        );
        assert_eq!(
            ControlCommand::parse(b"threads"),
            Ok(ControlCommand::NotImplemented("threads"))
        );
    }

    #[test]
    fn rejects_bad_lines() {
        assert!(matches!(
            ControlCommand::parse(b"frobnicate"),
            Err(ParseError::Unknown(_))
        ));
        assert_eq!(
            ControlCommand::parse(b"status"),
            Err(ParseError::MissingArgument("status", "<senderId>"))
        );
        assert_eq!(
            ControlCommand::parse(b"status !!!"),
            Err(ParseError::BadQueueId)
        );
        assert_eq!(
            ControlCommand::parse(b"status AQID extra"),
            Err(ParseError::ExtraArgument("status"))
        );
        assert_eq!(
            ControlCommand::parse(b"block AQID reason=ham"),
            Err(ParseError::BadBlockingInfo)
        );
        assert_eq!(
            ControlCommand::parse(b"block AQID reason=spam,notice=oops"),
            Err(ParseError::BadBlockingInfo)
        );
        assert_eq!(
            ControlCommand::parse(b"stats now"),
            Err(ParseError::ExtraArgument("stats"))
        );
        assert_eq!(ControlCommand::parse(b"\xff"), Err(ParseError::NotUtf8));
        assert_eq!(
            ControlCommand::parse(b"auth"),
            Err(ParseError::MissingArgument("auth", "<password>"))
        );
    }
}
