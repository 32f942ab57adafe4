//! Per-contact notification modes (design §1): `connected` (hush daemon), `push` (instant push
//! through the ntf-server), `periodic`, `off`.

use serde_json::json;

use crate::profile::NotifyMode;
use crate::session::Session;

/// Sets a contact's notification mode.
pub async fn set_mode(s: &mut Session, name: &str, mode: NotifyMode) -> anyhow::Result<()> {
    if !s.profile.set_notify(name, mode)? {
        anyhow::bail!("no contact {name}");
    }
    s.out.emit(
        "notify_mode",
        &format!("{name}: notifications {}", mode.as_str()),
        json!({ "name": name, "mode": mode.as_str() }),
    );
    Ok(())
}
