//! The one loopback control port of hush's servers (reference `Server/Control.hs`,
//! `Notifications/Server/Control.hs`, `Server.hs runCPClient`).
//!
//! Plain text lines over TCP on 127.0.0.1. A connection starts with no role; `auth <password>`
//! selects `admin` or `user` once per connection (a later `auth` with another password does not
//! change it, as in the reference). `auth`, `help` (`help <command>`: that command's help line)
//! and `quit` are built in; everything else comes from the server's [`CommandTable`]: each
//! [`Command`] has a name, the [`Role`] it needs, a help line and a handler that checks the
//! argument text (a bad argument is an error line whatever the role, as in the reference, which
//! parses before it checks the role) and returns the future that runs the command. A command the
//! connection's role does not allow gets the line `AUTH`. Names the reference has but the server
//! does not implement ([`CommandTable::not_supported`]) get a clear error line and are not listed
//! in `help`; any other word gets `error: unknown command …`.
//!
//! One policy for every server ([`Limits`]): at most [`MAX_CONNECTIONS`] connections at once (the
//! next one gets one error line and is closed), lines of at most [`MAX_LINE`] bytes (a longer one
//! gets an error line and the connection is closed), [`MAX_AUTH_FAILURES`] failed `auth` per
//! connection, connections idle for [`IDLE_TIMEOUT`] are closed, and a reply that the peer does
//! not read within [`WRITE_TIMEOUT`] closes the connection. Only loopback peers are served.
//! Passwords, ids and addresses are never logged; failed auth and refused commands are logged at
//! warn level without details.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::{AcceptBackoff, BasicAuth, Shutdown, accept};

/// Longest accepted command line, in bytes (without the newline).
pub const MAX_LINE: usize = 4096;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 8;
/// Failed `auth` attempts allowed per connection before it is closed.
pub const MAX_AUTH_FAILURES: u32 = 3;
/// An idle connection is closed after this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// A reply the peer does not read within this long closes the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The line a connection over the cap gets before it is closed.
pub const TOO_MANY_CONNECTIONS: &str = "error: too many control connections";
/// The line after the last allowed failed `auth`, before the connection is closed.
pub const TOO_MANY_AUTH_FAILURES: &str = "error: too many failed auth attempts, closing";
/// The line a connection gets when it is closed for being idle.
pub const IDLE_CLOSED: &str = "error: idle for too long, closing";

/// The limits of a control port (the constants of this module by default; tests shorten them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_line: usize,
    pub max_auth_failures: u32,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            max_line: MAX_LINE,
            max_auth_failures: MAX_AUTH_FAILURES,
            idle_timeout: IDLE_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
        }
    }
}

/// The role of a control connection, and the role a [`Command`] needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Not authenticated (as a command's role: anyone may run it).
    None,
    /// The user password (as a command's role: user or admin may run it).
    User,
    /// The admin password.
    Admin,
}

impl Role {
    /// The reference's spelling (`CPRNone`, `CPRUser`, `CPRAdmin`), used in `auth` replies.
    pub fn reference_name(self) -> &'static str {
        match self {
            Role::None => "CPRNone",
            Role::User => "CPRUser",
            Role::Admin => "CPRAdmin",
        }
    }

    /// True when a connection with role `self` may run a command that needs `needed`.
    pub fn allows(self, needed: Role) -> bool {
        match needed {
            Role::None => true,
            Role::User => self != Role::None,
            Role::Admin => self == Role::Admin,
        }
    }
}

/// Passwords for the two roles (`[AUTH] control_port_admin_password` /
/// `control_port_user_password`). Without a password, no connection gets that role.
#[derive(Debug, Clone, Default)]
pub struct ControlAuth {
    pub admin: Option<BasicAuth>,
    pub user: Option<BasicAuth>,
}

impl ControlAuth {
    /// The role `password` selects (constant-time comparisons).
    pub fn role_for(&self, password: &[u8]) -> Role {
        if self.admin.as_ref().is_some_and(|a| a.matches(password)) {
            Role::Admin
        } else if self.user.as_ref().is_some_and(|u| u.matches(password)) {
            Role::User
        } else {
            Role::None
        }
    }
}

/// What a command answers: lines to print, or an error printed as `error: <text>`.
pub type Reply = Result<Vec<String>, String>;
/// The running part of a command.
pub type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;
type Run = Box<dyn Fn(&str) -> Result<ReplyFuture, String> + Send + Sync>;

/// One entry of a server's command table.
pub struct Command {
    name: &'static str,
    role: Role,
    help: &'static str,
    run: Run,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Command {
    /// A command whose handler gets the argument text (what follows `name `, `""` without it).
    /// The handler checks the argument and returns `Err(text)` (printed as `error: <text>`,
    /// before the role is checked) or the future that runs the command (only polled when the
    /// connection's role allows it).
    pub fn new<F>(name: &'static str, role: Role, help: &'static str, run: F) -> Command
    where
        F: Fn(&str) -> Result<ReplyFuture, String> + Send + Sync + 'static,
    {
        Command {
            name,
            role,
            help,
            run: Box::new(run),
        }
    }

    /// A command without arguments (an argument gets `error: <name>: unexpected extra argument`).
    pub fn no_args<F, Fut>(name: &'static str, role: Role, help: &'static str, run: F) -> Command
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Reply> + Send + 'static,
    {
        Command::new(name, role, help, move |arg| {
            no_args(name, arg)?;
            Ok(Box::pin(run()))
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn help(&self) -> &'static str {
        self.help
    }
}

/// `Ok` when `arg` is blank, else the error of a command that takes no argument.
pub fn no_args(name: &str, arg: &str) -> Result<(), String> {
    if arg.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("{name}: unexpected extra argument"))
    }
}

/// A server's control port: its banner, its commands and the reference names it does not offer.
#[derive(Debug)]
pub struct CommandTable {
    banner: &'static str,
    commands: Vec<Command>,
    not_supported: &'static [&'static str],
}

impl CommandTable {
    /// An empty table; `banner` is the first line of every connection (e.g. "SMP server
    /// control port"), followed by `'help' for supported commands`.
    pub fn new(banner: &'static str) -> CommandTable {
        CommandTable {
            banner,
            commands: Vec::new(),
            not_supported: &[],
        }
    }

    /// Adds a command (listed in `help` in the order added).
    ///
    /// # Panics
    /// If the name is empty, contains a space, is built in (`auth`, `help`, `quit`) or is
    /// already in the table: a programming error of the server.
    pub fn command(mut self, c: Command) -> CommandTable {
        assert!(
            !c.name.is_empty()
                && !c.name.contains(' ')
                && !BUILT_IN.contains(&c.name)
                && self.find(c.name).is_none(),
            "bad control command name {:?}",
            c.name
        );
        self.commands.push(c);
        self
    }

    /// Reference command names this server does not implement: they are answered with
    /// `error: <name> is not implemented by this server` and not listed in `help`.
    pub fn not_supported(mut self, names: &'static [&'static str]) -> CommandTable {
        self.not_supported = names;
        self
    }

    /// The `help` line: `commands: auth, <table commands>, help, quit`.
    pub fn help_line(&self) -> String {
        let mut names = vec!["auth"];
        names.extend(self.commands.iter().map(|c| c.name));
        names.extend(["help", "quit"]);
        format!("commands: {}", names.join(", "))
    }

    /// The commands, in `help` order.
    pub fn commands(&self) -> &[Command] {
        &self.commands
    }

    fn find(&self, name: &str) -> Option<&Command> {
        self.commands.iter().find(|c| c.name == name)
    }
}

const BUILT_IN: &[&str] = &["auth", "help", "quit"];
const AUTH_HELP: &str = "auth <password>: select the admin or user role (once per connection)";
const HELP_HELP: &str = "help [<command>]: the commands, or one command's help";
const QUIT_HELP: &str = "quit: close the connection";

/// Binds the control port on loopback. `port` 0 picks a free port (tests).
pub async fn bind(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await
}

/// Serves control connections on `listener` until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    table: CommandTable,
    auth: ControlAuth,
    limits: Limits,
    mut shutdown: Shutdown,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let table = Arc::new(table);
    let auth = Arc::new(auth);
    let mut backoff = AcceptBackoff::new("control port");
    loop {
        let Some((mut stream, peer)) = accept(&listener, &mut backoff, &mut shutdown).await else {
            return;
        };
        if !peer.ip().is_loopback() {
            // Only reachable if someone bound a non-loopback listener; refuse regardless.
            continue;
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!("control port: connection refused, too many connections");
            let line = format!("{TOO_MANY_CONNECTIONS}\n");
            let _ =
                tokio::time::timeout(limits.write_timeout, stream.write_all(line.as_bytes())).await;
            continue;
        };
        let table = table.clone();
        let auth = auth.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            session(stream, &table, &auth, &limits, shutdown).await;
            drop(permit);
        });
    }
}

enum LineError {
    Io,
    TooLong,
}

/// Reads one line of at most `max` bytes (`\n` or `\r\n` removed). `Ok(None)` = EOF.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<Option<()>, LineError> {
    buf.clear();
    let n = r
        .take(max as u64 + 2)
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
    } else if n > max {
        return Err(LineError::TooLong);
    }
    if buf.len() > max {
        return Err(LineError::TooLong);
    }
    Ok(Some(()))
}

/// What one line asks the session to do.
enum Step {
    Reply(Vec<String>),
    /// Reply, then close (too many failed auth attempts).
    ReplyAndClose(Vec<String>),
    Quit,
}

/// One control connection (public so that tests and embedders can drive a stream directly).
pub async fn session(
    stream: TcpStream,
    table: &CommandTable,
    auth: &ControlAuth,
    limits: &Limits,
    mut shutdown: Shutdown,
) {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut state = Session {
        role: Role::None,
        auth_failures: 0,
    };
    let mut line = Vec::with_capacity(256);
    let banner = [
        table.banner.to_string(),
        "'help' for supported commands".to_string(),
    ];
    if write_lines(&mut wr, &banner, limits).await.is_err() {
        return;
    }
    loop {
        let read = tokio::select! {
            _ = shutdown.wait() => return,
            r = tokio::time::timeout(limits.idle_timeout, read_line(&mut rd, &mut line, limits.max_line)) => r,
        };
        let step = match read {
            Err(_) => {
                let _ = write_lines(&mut wr, &[IDLE_CLOSED.to_string()], limits).await;
                return;
            }
            Ok(Ok(None)) | Ok(Err(LineError::Io)) => return,
            Ok(Err(LineError::TooLong)) => {
                let msg = format!(
                    "error: line too long (limit {} bytes), closing",
                    limits.max_line
                );
                let _ = write_lines(&mut wr, &[msg], limits).await;
                let _ = wr.shutdown().await;
                linger(&mut rd).await;
                return;
            }
            Ok(Ok(Some(()))) => state.step(&line, table, auth, limits).await,
        };
        match step {
            Step::Quit => return,
            Step::Reply(out) => {
                if write_lines(&mut wr, &out, limits).await.is_err() {
                    return;
                }
            }
            Step::ReplyAndClose(out) => {
                let _ = write_lines(&mut wr, &out, limits).await;
                return;
            }
        }
    }
}

struct Session {
    role: Role,
    auth_failures: u32,
}

impl Session {
    async fn step(
        &mut self,
        line: &[u8],
        table: &CommandTable,
        auth: &ControlAuth,
        limits: &Limits,
    ) -> Step {
        let err = |e: String| Step::Reply(vec![format!("error: {e}")]);
        let Ok(line) = std::str::from_utf8(line) else {
            return err("command is not valid UTF-8".into());
        };
        let line = line.trim_end_matches('\r');
        let (word, arg) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "" => match no_args("", arg) {
                Ok(()) => Step::Reply(Vec::new()),
                Err(e) => err(e),
            },
            "quit" => match no_args("quit", arg) {
                Ok(()) => Step::Quit,
                Err(e) => err(e),
            },
            "help" => match arg.trim() {
                "" => Step::Reply(vec![table.help_line()]),
                "auth" => Step::Reply(vec![AUTH_HELP.into()]),
                "help" => Step::Reply(vec![HELP_HELP.into()]),
                "quit" => Step::Reply(vec![QUIT_HELP.into()]),
                name => match table.find(name) {
                    Some(c) => Step::Reply(vec![c.help.to_string()]),
                    None => err(format!("help: no command {:?}", truncate(name, 64))),
                },
            },
            "auth" if arg.is_empty() => err("auth: missing argument, expected: <password>".into()),
            "auth" => self.auth(arg.as_bytes(), auth, limits),
            name => match table.find(name) {
                Some(c) => match (c.run)(arg) {
                    Err(e) => err(e),
                    Ok(_) if !self.role.allows(c.role) => {
                        tracing::warn!("control port: unauthorized command");
                        Step::Reply(vec!["AUTH".into()])
                    }
                    Ok(run) => {
                        tracing::info!("control port: {} command", c.name);
                        match run.await {
                            Ok(lines) => Step::Reply(lines),
                            Err(e) => err(e),
                        }
                    }
                },
                None if table.not_supported.contains(&name) => {
                    err(format!("{name} is not implemented by this server"))
                }
                None => err(format!(
                    "unknown command {:?}, 'help' for supported commands",
                    truncate(name, 64)
                )),
            },
        }
    }

    /// `auth <password>` (reference `controlPortAuth`): the first `auth` sets the role; later
    /// ones only report it.
    fn auth(&mut self, password: &[u8], auth: &ControlAuth, limits: &Limits) -> Step {
        let new_role = auth.role_for(password);
        let reply = if self.role == Role::None {
            self.role = new_role;
            format!("Current role is {}", self.role.reference_name())
        } else if self.role == new_role {
            format!("Current role is {}", self.role.reference_name())
        } else {
            format!(
                "Current role is {}, start new session to change.",
                self.role.reference_name()
            )
        };
        if new_role == Role::None {
            self.auth_failures += 1;
            tracing::warn!("control port: failed auth attempt");
            if self.auth_failures >= limits.max_auth_failures {
                return Step::ReplyAndClose(vec![reply, TOO_MANY_AUTH_FAILURES.into()]);
            }
        }
        Step::Reply(vec![reply])
    }
}

/// `s` cut to at most `max` bytes at a character boundary, with `…` when cut (what a control
/// port echoes of a peer's word).
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Reads and drops what the peer is still sending (bounded in bytes and time) so that closing the
/// socket does not reset the connection before the peer has read the last line.
pub async fn linger<R: tokio::io::AsyncRead + Unpin>(r: &mut R) {
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

async fn write_lines<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    lines: &[String],
    limits: &Limits,
) -> std::io::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut buf = Vec::new();
    for l in lines {
        // A handler's line never breaks the framing: embedded newlines are replaced.
        buf.extend(
            l.bytes()
                .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
        );
        buf.push(b'\n');
    }
    tokio::time::timeout(limits.write_timeout, async {
        w.write_all(&buf).await?;
        w.flush().await
    })
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::ControlClient;
    use crate::{ShutdownTrigger, shutdown_channel};
    use std::sync::Mutex;

    /// A table with a user command (`count`), an admin command with an argument (`echo <word>`)
    /// and one reference name it does not offer; `calls` records what ran.
    fn table(calls: Arc<Mutex<Vec<String>>>) -> CommandTable {
        let c1 = calls.clone();
        CommandTable::new("TEST server control port")
            .command(Command::no_args(
                "count",
                Role::User,
                "count: how many commands ran",
                move || {
                    let c = c1.clone();
                    async move {
                        let mut c = c.lock().unwrap();
                        c.push("count".into());
                        Ok::<_, String>(vec![format!("count: {}", c.len())])
                    }
                },
            ))
            .command(Command::new(
                "echo",
                Role::Admin,
                "echo <word>: the word back",
                move |arg| {
                    if arg.is_empty() || arg.contains(' ') {
                        return Err("echo: expected one word".into());
                    }
                    let (c, w) = (calls.clone(), arg.to_string());
                    Ok(Box::pin(async move {
                        c.lock().unwrap().push(format!("echo {w}"));
                        if w == "fail" {
                            Err("it failed".to_string())
                        } else {
                            Ok(vec![w, "second\nline".to_string()])
                        }
                    }))
                },
            ))
            .not_supported(&["threads"])
    }

    struct Server {
        addr: SocketAddr,
        calls: Arc<Mutex<Vec<String>>>,
        trigger: ShutdownTrigger,
        task: tokio::task::JoinHandle<()>,
    }

    async fn server(limits: Limits) -> Server {
        let listener = bind(0).await.unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(addr.ip().is_loopback());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let auth = ControlAuth {
            admin: Some(BasicAuth::new("admin-pw").unwrap()),
            user: Some(BasicAuth::new("user-pw").unwrap()),
        };
        let (trigger, shutdown) = shutdown_channel();
        let task = tokio::spawn(serve(
            listener,
            table(calls.clone()),
            auth,
            limits,
            shutdown,
        ));
        Server {
            addr,
            calls,
            trigger,
            task,
        }
    }

    /// The shared control-port test client, under this module's test server name.
    struct Client;

    impl Client {
        async fn raw(addr: SocketAddr) -> ControlClient {
            ControlClient::raw(addr).await
        }
        async fn connect(addr: SocketAddr) -> ControlClient {
            ControlClient::connect(addr, "TEST server").await
        }
    }

    #[tokio::test]
    async fn roles_table_and_built_ins() {
        let s = server(Limits::default()).await;
        let mut c = Client::connect(s.addr).await;
        assert_eq!(
            c.cmd("help").await,
            "commands: auth, count, echo, help, quit"
        );
        assert_eq!(c.cmd("help echo").await, "echo <word>: the word back");
        assert_eq!(
            c.cmd("help auth").await,
            "auth <password>: select the admin or user role (once per connection)"
        );
        assert_eq!(c.cmd("help nope").await, "error: help: no command \"nope\"");
        // No role: both commands refused, nothing ran.
        assert_eq!(c.cmd("count").await, "AUTH");
        assert_eq!(c.cmd("echo hi").await, "AUTH");
        // The argument is checked before the role (as the reference parses first).
        assert_eq!(c.cmd("echo").await, "error: echo: expected one word");
        assert_eq!(
            c.cmd("count now").await,
            "error: count: unexpected extra argument"
        );
        assert_eq!(
            c.cmd("threads").await,
            "error: threads is not implemented by this server"
        );
        assert_eq!(
            c.cmd("frobnicate").await,
            "error: unknown command \"frobnicate\", 'help' for supported commands"
        );
        c.send_bytes(b"\xff\n").await.unwrap();
        assert_eq!(
            c.line().await.as_deref(),
            Some("error: command is not valid UTF-8")
        );
        assert_eq!(
            c.cmd("auth").await,
            "error: auth: missing argument, expected: <password>"
        );
        assert!(s.calls.lock().unwrap().is_empty());

        // User role: the user command runs, the admin command is refused.
        assert_eq!(c.cmd("auth user-pw").await, "Current role is CPRUser");
        assert_eq!(c.cmd("count").await, "count: 1");
        assert_eq!(c.cmd("echo hi").await, "AUTH");
        // The role cannot change within a session.
        assert_eq!(
            c.cmd("auth admin-pw").await,
            "Current role is CPRUser, start new session to change."
        );
        assert_eq!(c.cmd("echo hi").await, "AUTH");
        assert_eq!(*s.calls.lock().unwrap(), ["count"]);

        // Admin: everything; a reply line with a newline does not break the framing; a
        // handler error is one error line; empty lines and CRLF are fine.
        let mut a = Client::connect(s.addr).await;
        assert_eq!(a.cmd("auth admin-pw").await, "Current role is CPRAdmin");
        assert_eq!(a.cmd("echo hi").await, "hi");
        assert_eq!(a.line().await.as_deref(), Some("second line"));
        assert_eq!(a.cmd("echo fail").await, "error: it failed");
        a.send_bytes(b"\r\n\ncount\r\n").await.unwrap();
        assert_eq!(a.line().await.as_deref(), Some("count: 4"));
        assert_eq!(
            a.cmd("quit now").await,
            "error: quit: unexpected extra argument"
        );
        a.send("quit").await;
        assert_eq!(a.line().await, None);
    }

    #[tokio::test]
    async fn the_connection_over_the_cap_is_refused_with_a_line() {
        let s = server(Limits::default()).await;
        let mut open = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            open.push(Client::connect(s.addr).await);
        }
        let mut ninth = Client::raw(s.addr).await;
        assert_eq!(ninth.line().await.as_deref(), Some(TOO_MANY_CONNECTIONS));
        assert_eq!(ninth.line().await, None);
        // The others still work; once one leaves, a new connection is served.
        assert_eq!(open[0].cmd("auth user-pw").await, "Current role is CPRUser");
        let mut first = open.remove(0);
        first.send("quit").await;
        assert_eq!(first.line().await, None);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut c = Client::raw(s.addr).await;
            match c.line().await.as_deref() {
                Some("TEST server control port") => break,
                Some(TOO_MANY_CONNECTIONS) if tokio::time::Instant::now() < deadline => {
                    // The session task may not have released its slot yet.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn failed_auths_close_the_connection() {
        let s = server(Limits::default()).await;
        let mut c = Client::connect(s.addr).await;
        assert_eq!(c.cmd("auth a").await, "Current role is CPRNone");
        assert_eq!(c.cmd("auth b").await, "Current role is CPRNone");
        assert_eq!(c.cmd("auth c").await, "Current role is CPRNone");
        assert_eq!(c.line().await.as_deref(), Some(TOO_MANY_AUTH_FAILURES));
        assert_eq!(c.line().await, None);
        // Two failures, then the right password: the role is set (failures are per connection).
        let mut c = Client::connect(s.addr).await;
        assert_eq!(c.cmd("auth a").await, "Current role is CPRNone");
        assert_eq!(c.cmd("auth b").await, "Current role is CPRNone");
        assert_eq!(c.cmd("auth admin-pw").await, "Current role is CPRAdmin");
        assert_eq!(c.cmd("echo x").await, "x");
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed() {
        let limits = Limits {
            idle_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let s = server(limits).await;
        let mut c = Client::connect(s.addr).await;
        // Activity resets the timer.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            assert_eq!(
                c.cmd("help").await,
                "commands: auth, count, echo, help, quit"
            );
        }
        let started = tokio::time::Instant::now();
        assert_eq!(c.line().await.as_deref(), Some(IDLE_CLOSED));
        assert_eq!(c.line().await, None);
        assert!(started.elapsed() >= Duration::from_millis(250));
    }

    #[tokio::test]
    async fn a_line_over_the_cap_closes_the_connection() {
        let limits = Limits {
            max_line: 64,
            ..Limits::default()
        };
        let s = server(limits).await;
        // Exactly the limit: still a command (refused: no role).
        let mut c = Client::connect(s.addr).await;
        let exact = format!("echo {}", "a".repeat(64 - 5));
        assert_eq!(c.cmd(&exact).await, "AUTH");
        // One byte more: an error line, then closed.
        let long = format!("echo {}", "a".repeat(64 - 4));
        c.send(&long).await;
        assert_eq!(
            c.line().await.as_deref(),
            Some("error: line too long (limit 64 bytes), closing")
        );
        assert_eq!(c.line().await, None);
        // A stream without a newline is cut off too.
        let mut c = Client::connect(s.addr).await;
        let _ = c.send_bytes(&[b'x'; 10_000]).await;
        let l = c.line().await.unwrap();
        assert!(l.starts_with("error: line too long"), "{l}");
        assert!(s.calls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn shutdown_ends_sessions_and_the_listener() {
        let s = server(Limits::default()).await;
        let mut c = Client::connect(s.addr).await;
        s.trigger.trigger();
        assert_eq!(c.line().await, None);
        tokio::time::timeout(Duration::from_secs(5), s.task)
            .await
            .expect("serve did not stop")
            .unwrap();
    }

    #[test]
    fn table_names_must_be_new() {
        let t = || CommandTable::new("x");
        let ok = |n: &'static str| {
            Command::no_args(n, Role::None, "", || async { Ok::<_, String>(Vec::new()) })
        };
        for bad in ["help", "auth", "quit", "", "a b"] {
            let r = std::panic::catch_unwind(|| t().command(ok(bad)));
            assert!(r.is_err(), "{bad:?} accepted");
        }
        let r = std::panic::catch_unwind(|| t().command(ok("x")).command(ok("x")));
        assert!(r.is_err());
        assert_eq!(
            t().command(ok("a")).command(ok("b")).help_line(),
            "commands: auth, a, b, help, quit"
        );
    }

    #[test]
    fn roles() {
        assert!(Role::None.allows(Role::None));
        assert!(!Role::None.allows(Role::User));
        assert!(Role::User.allows(Role::User) && !Role::User.allows(Role::Admin));
        assert!(Role::Admin.allows(Role::User) && Role::Admin.allows(Role::Admin));
        let auth = ControlAuth {
            admin: Some(BasicAuth::new("a").unwrap()),
            user: None,
        };
        assert_eq!(auth.role_for(b"a"), Role::Admin);
        assert_eq!(auth.role_for(b""), Role::None);
        assert_eq!(ControlAuth::default().role_for(b"a"), Role::None);
    }
}
