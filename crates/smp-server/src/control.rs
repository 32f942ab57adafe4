//! The relay's control port commands (reference §7.5, `Server/Control.hs`, `Server.hs runCPClient`).
//!
//! The port itself (loopback listener, connection cap, line cap, idle timeout, `auth` with the
//! two roles and its failure limit, `help`, `quit`) is the one of every hush server,
//! [`hush_server_common::control`]. This module is the relay's part: the command parser
//! ([`ControlCommand`]), the [`ControlHandler`] the relay core implements, and the
//! [`command_table`] that joins them.
//!
//! Roles (hush): `stats` and `status` need user or admin; `clients`, `block`, `unblock`, `delete` and
//! `save` need admin. (The reference lets the user role block and unblock; hush keeps every command that
//! changes state or lists connections admin-only.) Unauthorized commands get the line `AUTH`, as in the
//! reference. The reference's `stats-rts`, `threads`, `sockets`, `socket-threads`, `server-info`,
//! `suspend` and `resume` are not offered (not in `help`); they get
//! `error: <name> is not implemented by this server`.

use std::future::Future;
use std::sync::Arc;

use hush_server_common::control::{self, Command, CommandTable, ReplyFuture};
use tokio::net::{TcpListener, TcpStream};

use crate::Shutdown;

use hush_server_common::control::truncate;
pub use hush_server_common::control::{
    ControlAuth, IDLE_TIMEOUT, MAX_AUTH_FAILURES, MAX_CONNECTIONS, MAX_LINE, Role, bind,
};

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
        match line.split_once(' ') {
            Some((w, r)) => Self::parse_parts(w, Some(r)),
            None => Self::parse_parts(line, None),
        }
    }

    /// Parses a command word and what follows its first space (`None` or `Some("")`: nothing).
    pub fn parse_parts(word: &str, rest: Option<&str>) -> Result<ControlCommand, ParseError> {
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
pub type ControlReply = hush_server_common::control::Reply;

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
    /// `save` (admin): the reference writes its in-memory state to disk here; the reply must say
    /// what was done (hush's stores commit every change when it is made).
    fn save(&self) -> impl Future<Output = ControlReply> + Send;
}

/// The relay's command table for the shared control port
/// ([`hush_server_common::control`]): the commands of [`HELP`] answered through `handler`, and
/// the reference's names hush does not implement answered with an error.
pub fn command_table<H: ControlHandler>(handler: Arc<H>) -> CommandTable {
    let entry = |name: &'static str, role: Role, help: &'static str| {
        let h = handler.clone();
        Command::new(name, role, help, move |arg: &str| {
            let cmd = ControlCommand::parse_parts(name, Some(arg)).map_err(|e| e.to_string())?;
            Ok(Box::pin(run(h.clone(), cmd)) as ReplyFuture)
        })
    };
    CommandTable::new("SMP server control port")
        .command(entry(
            "stats",
            Role::User,
            "stats: server statistics (user or admin)",
        ))
        .command(entry(
            "clients",
            Role::Admin,
            "clients: connected clients, CSV (admin)",
        ))
        .command(entry(
            "status",
            Role::User,
            "status <senderId>: the queue's status (user or admin)",
        ))
        .command(entry(
            "block",
            Role::Admin,
            "block <senderId> reason=spam|content[,notice={\"ttl\":<seconds>}]: block the queue (admin, daily_block_queue_quota)",
        ))
        .command(entry(
            "unblock",
            Role::Admin,
            "unblock <senderId>: unblock the queue (admin)",
        ))
        .command(entry(
            "delete",
            Role::Admin,
            "delete <senderId>: delete the queue and its messages (admin)",
        ))
        .command(entry(
            "save",
            Role::Admin,
            "save: say how the server state is stored (every change is committed when it is made: nothing is written) (admin)",
        ))
        .not_supported(REFERENCE_ONLY)
}

async fn run<H: ControlHandler>(handler: Arc<H>, cmd: ControlCommand) -> ControlReply {
    match cmd {
        ControlCommand::Stats => handler.stats().await,
        ControlCommand::Clients => handler.clients().await,
        ControlCommand::Status(id) => handler.status(id).await,
        ControlCommand::Block(id, info) => handler.block(id, info).await,
        ControlCommand::Unblock(id) => handler.unblock(id).await,
        ControlCommand::Delete(id) => handler.delete(id).await,
        ControlCommand::Save => handler.save().await,
        // The table only parses its own names.
        other => Err(format!("unexpected command {other:?}")),
    }
}

/// Serves control connections on `listener` until `shutdown` fires (the shared control port with
/// [`command_table`] and the default [`control::Limits`]).
pub async fn serve<H: ControlHandler>(
    listener: TcpListener,
    handler: Arc<H>,
    auth: ControlAuth,
    shutdown: Shutdown,
) {
    control::serve(
        listener,
        command_table(handler),
        auth,
        control::Limits::default(),
        shutdown,
    )
    .await
}

/// One control connection. Public so that tests and embedders can drive a stream directly.
pub async fn session<H: ControlHandler>(
    stream: TcpStream,
    handler: Arc<H>,
    auth: &ControlAuth,
    shutdown: Shutdown,
) {
    let table = command_table(handler);
    control::session(stream, &table, auth, &control::Limits::default(), shutdown).await
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

    struct NoHandler;

    impl ControlHandler for NoHandler {
        async fn stats(&self) -> ControlReply {
            Err("stats".into())
        }
        async fn clients(&self) -> ControlReply {
            Err("clients".into())
        }
        async fn status(&self, _: SenderId) -> ControlReply {
            Err("status".into())
        }
        async fn block(&self, _: SenderId, _: BlockingInfo) -> ControlReply {
            Err("block".into())
        }
        async fn unblock(&self, _: SenderId) -> ControlReply {
            Err("unblock".into())
        }
        async fn delete(&self, _: SenderId) -> ControlReply {
            Err("delete".into())
        }
        async fn save(&self) -> ControlReply {
            Err("save".into())
        }
    }

    #[test]
    fn the_table_offers_what_help_says() {
        let t = command_table(Arc::new(NoHandler));
        assert_eq!(t.help_line(), HELP);
        let roles: Vec<_> = t.commands().iter().map(|c| (c.name(), c.role())).collect();
        assert_eq!(
            roles,
            [
                ("stats", Role::User),
                ("clients", Role::Admin),
                ("status", Role::User),
                ("block", Role::Admin),
                ("unblock", Role::Admin),
                ("delete", Role::Admin),
                ("save", Role::Admin),
            ]
        );
        // Not offered: not in help, but still recognised by the parser (as not implemented).
        for &name in REFERENCE_ONLY {
            assert!(!HELP.contains(name), "{name}");
            assert_eq!(
                ControlCommand::parse(name.as_bytes()),
                Ok(ControlCommand::NotImplemented(name))
            );
        }
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
