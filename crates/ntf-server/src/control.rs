//! Loopback control port (reference §7.5 `Notifications/Server/Control.hs`): plain text lines.
//! `auth <password>` selects the admin or user role; `stats` (any authenticated role) prints
//! counters and counts; `help`; `quit`. Ids, keys and tokens are never printed.

use std::sync::Arc;

use hush_server_common::BasicAuth;
use push_api::PushGateway;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::core::Core;

/// Passwords of the two roles (`[AUTH] control_port_admin_password` / `..._user_password`).
#[derive(Clone, Debug, Default)]
pub struct ControlAuth {
    pub admin: Option<BasicAuth>,
    pub user: Option<BasicAuth>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    None,
    User,
    Admin,
}

const MAX_LINE: u64 = 4096;

/// The lines `stats` prints.
pub fn stats_lines<G>(core: &Core<G>) -> Vec<String> {
    let m = &core.metrics;
    let c = core.store.counts();
    vec![
        format!("tokens: {}", c.tokens),
        format!("subscriptions: {}", c.subscriptions),
        format!("last notifications: {}", c.last_notifications),
        format!("tokens created: {}", m.tokens_created.get()),
        format!("tokens verified: {}", m.tokens_verified.get()),
        format!("subscriptions created: {}", m.subscriptions_created.get()),
        format!("notifications received: {}", m.notifications_received.get()),
        format!(
            "notifications delivered: {}",
            m.notifications_delivered.get()
        ),
        format!("notifications failed: {}", m.notifications_failed.get()),
        format!("pushes silent: {}", m.push_count("silent")),
        format!("pushes alert: {}", m.push_count("alert")),
        format!("policy coalesced: {}", m.policy_count("coalesced")),
    ]
}

/// Serves control connections until shutdown.
pub async fn serve<G: PushGateway + 'static>(
    listener: TcpListener,
    core: Arc<Core<G>>,
    auth: ControlAuth,
    mut shutdown: hush_server_common::Shutdown,
) {
    let auth = Arc::new(auth);
    // at most this many control sessions at once (a task each)
    let permits = Arc::new(tokio::sync::Semaphore::new(16));
    let mut backoff = hush_server_common::AcceptBackoff::new("control port");
    loop {
        let Some((stream, peer)) =
            hush_server_common::accept(&listener, &mut backoff, &mut shutdown).await
        else {
            return;
        };
        if !peer.ip().is_loopback() {
            continue;
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue;
        };
        let core = core.clone();
        let auth = auth.clone();
        let mut sd = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (rd, mut wr) = stream.into_split();
            let mut rd = BufReader::new(rd);
            let mut role = Role::None;
            let _ = wr
                .write_all(b"NTF server control port\n'help' for supported commands\n")
                .await;
            loop {
                let mut line = String::new();
                let mut limited = (&mut rd).take(MAX_LINE);
                let n = tokio::select! {
                    _ = sd.wait() => return,
                    n = limited.read_line(&mut line) => n,
                };
                match n {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let line = line.trim();
                let (cmd, arg) = line.split_once(' ').unwrap_or((line, ""));
                let reply: Vec<String> = match cmd {
                    "auth" => {
                        let pw = arg.trim().as_bytes();
                        role = if auth.admin.as_ref().is_some_and(|a| a.matches(pw)) {
                            Role::Admin
                        } else if auth.user.as_ref().is_some_and(|u| u.matches(pw)) {
                            Role::User
                        } else {
                            Role::None
                        };
                        vec![match role {
                            Role::Admin => "Current role is CPRAdmin".into(),
                            Role::User => "Current role is CPRUser".into(),
                            Role::None => "CPRNone".into(),
                        }]
                    }
                    "stats" if role != Role::None => stats_lines(&core),
                    "stats" => vec!["AUTH".into()],
                    "help" => vec!["commands: auth <password>, stats, help, quit".into()],
                    "quit" => return,
                    "" => continue,
                    _ => vec!["unknown command".into()],
                };
                let mut out = reply.join("\n");
                out.push('\n');
                if wr.write_all(out.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}
