//! Local notifications of `hush daemon`: a desktop notification through `notify-send`
//! (freedesktop D-Bus notifications) when a session bus is available, else the `--on-message`
//! command hook; a log line always.
//!
//! The hook runs `sh -c <command>` with `HUSH_FROM`, `HUSH_GROUP` (empty for direct messages),
//! `HUSH_TEXT` and `HUSH_NOTIFY_MODE` in its environment; it never gets the text on its command
//! line.

use crate::profile::NotifyMode;
use crate::session::Incoming;

#[derive(Debug, Clone)]
pub struct Notifier {
    /// `--on-message` command.
    pub hook: Option<String>,
    /// Use `notify-send` (found on PATH and a session bus is set).
    pub desktop: bool,
}

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
        .unwrap_or(false)
}

impl Notifier {
    /// `hook` if given; desktop notifications unless `no_desktop` or unavailable.
    pub fn new(hook: Option<String>, no_desktop: bool) -> Notifier {
        let desktop = !no_desktop
            && std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some()
            && on_path("notify-send");
        Notifier { hook, desktop }
    }

    pub fn describe(&self) -> String {
        let mut v = vec!["log"];
        if self.desktop {
            v.push("notify-send");
        }
        if self.hook.is_some() {
            v.push("--on-message hook");
        }
        v.join(" + ")
    }

    /// Raises the notification for `m` (unless its contact's mode is `off`).
    pub fn notify(&self, m: &Incoming) {
        if m.notify == NotifyMode::Off {
            return;
        }
        let title = match &m.group {
            Some(g) => format!("#{g} {}", m.from),
            None => m.from.clone(),
        };
        // The log line names the sender only (no content in logs).
        eprintln!("hush daemon: new message from {title}");
        if self.desktop {
            let r = std::process::Command::new("notify-send")
                .arg("--app-name=hush")
                .arg(&title)
                .arg(&m.text)
                .stdin(std::process::Stdio::null())
                .spawn();
            if let Ok(mut c) = r {
                std::thread::spawn(move || {
                    let _ = c.wait();
                });
            }
        }
        if let Some(cmd) = &self.hook {
            let r = std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .env("HUSH_FROM", &m.from)
                .env("HUSH_GROUP", m.group.as_deref().unwrap_or(""))
                .env("HUSH_TEXT", &m.text)
                .env("HUSH_NOTIFY_MODE", m.notify.as_str())
                .stdin(std::process::Stdio::null())
                .spawn();
            match r {
                Ok(mut c) => {
                    std::thread::spawn(move || {
                        let _ = c.wait();
                    });
                }
                Err(e) => eprintln!("hush daemon: --on-message hook failed: {e}"),
            }
        }
    }
}
