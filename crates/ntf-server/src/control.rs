//! Loopback control port (reference §7.5 `Notifications/Server/Control.hs`): the port of every
//! hush server ([`hush_server_common::control`]: roles, connection/line/auth-failure/idle limits,
//! `auth`, `help`, `quit`) with one command, `stats` (any authenticated role: counters and
//! counts). The reference's `stats-rts` and `server-info` are not offered; they get
//! `error: <name> is not implemented by this server`. Ids, keys and tokens are never printed.

use std::sync::Arc;

use hush_server_common::control::{self, Command, CommandTable, Role};
use push_api::PushGateway;
use tokio::net::TcpListener;

use crate::core::Core;

/// Passwords of the two roles (`[AUTH] control_port_admin_password` / `..._user_password`).
pub use hush_server_common::control::ControlAuth;

/// Reference commands this server does not implement.
const NOT_SUPPORTED: &[&str] = &["stats-rts", "server-info"];

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

/// The ntf-server's command table.
pub fn command_table<G: PushGateway + 'static>(core: Arc<Core<G>>) -> CommandTable {
    CommandTable::new("NTF server control port")
        .command(Command::no_args(
            "stats",
            Role::User,
            "stats: counters and counts (user or admin)",
            move || {
                let core = core.clone();
                async move { Ok::<_, String>(stats_lines(&core)) }
            },
        ))
        .not_supported(NOT_SUPPORTED)
}

/// Serves control connections until shutdown.
pub async fn serve<G: PushGateway + 'static>(
    listener: TcpListener,
    core: Arc<Core<G>>,
    auth: ControlAuth,
    shutdown: hush_server_common::Shutdown,
) {
    control::serve(
        listener,
        command_table(core),
        auth,
        control::Limits::default(),
        shutdown,
    )
    .await
}
