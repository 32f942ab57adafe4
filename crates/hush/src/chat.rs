//! `hush chat`: a line-oriented interactive session on stdin/stdout (so tests and scripts can
//! drive it). Every received message is printed as `name: text` or `#group name: text`.
//!
//! Input lines:
//!
//! ```text
//! @name message           send to a contact
//! #group message          send to every member of a group (member to member)
//! /invite                 print a one-time invitation link (short, then full)
//! /connect <link>         use an invitation link or a contact address (short or full)
//! /address                print (creating it once) this profile's contact address
//! /accept <name>          accept a contact request
//! /contacts  /requests  /groups  /status
//! /history <name|#group> [n]
//! /delete <name>
//! /group create <g>   /group invite <g> <name>   /members <g>
//! /notify <name> connected|push|periodic|off [split]
//! /switch <name>          rotate the receive queue of a contact's connection
//! /sync <name>            re-synchronise the ratchet with a contact (forced)
//! /quit                   (end of input does the same)
//! ```

use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncBufReadExt;

use crate::profile::NotifyMode;
use crate::session::Session;

async fn command(s: &mut Session, line: &str) -> anyhow::Result<bool> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(true);
    }
    if let Some(rest) = line.strip_prefix('@') {
        let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
        s.send_text(name, text.trim())?;
        return Ok(true);
    }
    if let Some(rest) = line.strip_prefix('#') {
        let (g, text) = rest.split_once(' ').unwrap_or((rest, ""));
        let n = s.group_send(g, text.trim())?;
        if n == 0 {
            s.out.error(&format!("#{g} has no connected members yet"));
        }
        return Ok(true);
    }
    let mut words = line.split_whitespace();
    let cmd = words.next().unwrap_or("");
    let args: Vec<&str> = words.collect();
    let arg = |i: usize| -> anyhow::Result<&str> {
        args.get(i)
            .copied()
            .ok_or_else(|| anyhow::anyhow!("{cmd}: missing argument"))
    };
    match cmd {
        "/quit" | "/q" => return Ok(false),
        "/invite" => {
            s.invite().await?;
        }
        "/connect" => {
            s.connect(arg(0)?).await?;
        }
        "/address" => {
            s.address().await?;
        }
        "/accept" => s.accept(arg(0)?).await?,
        "/contacts" => s.contacts()?,
        "/requests" => {
            let rs = s.profile.requests()?;
            s.out.emit(
                "requests",
                &rs.iter()
                    .map(|r| format!("request from {}", r.name))
                    .collect::<Vec<_>>()
                    .join("\n"),
                json!({ "requests": rs }),
            );
        }
        "/groups" => {
            let gs = s.profile.groups()?;
            s.out.emit(
                "groups",
                &gs.iter()
                    .map(|g| format!("#{}", g.name))
                    .collect::<Vec<_>>()
                    .join("\n"),
                json!({ "groups": gs }),
            );
        }
        "/members" => {
            let g = s
                .profile
                .group_by_name(arg(0)?)?
                .ok_or_else(|| anyhow::anyhow!("no such group"))?;
            let ms = s.profile.members(&g.gid)?;
            s.out.emit(
                "members",
                &ms.iter()
                    .map(|m| format!("{} {}", m.name, m.status))
                    .collect::<Vec<_>>()
                    .join("\n"),
                json!({ "members": ms }),
            );
        }
        "/status" => s.status().await?,
        "/history" => {
            let n = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(20);
            s.history(arg(0)?, n)?;
        }
        "/delete" => s.delete(arg(0)?).await?,
        "/group" => match arg(0)? {
            "create" => s.group_create(arg(1)?)?,
            "invite" => s.group_invite(arg(1)?, arg(2)?)?,
            other => anyhow::bail!("unknown /group command {other}"),
        },
        "/notify" => {
            let name = arg(0)?;
            let mode = NotifyMode::parse(arg(1)?)
                .ok_or_else(|| anyhow::anyhow!("mode: connected, push, periodic or off"))?;
            let split = args.get(2) == Some(&"split");
            crate::push::set_mode(s, name, mode, split).await?;
        }
        "/switch" | "/sync" => {
            let name = arg(0)?;
            let c = s
                .profile
                .contact_by_name(name)?
                .ok_or_else(|| anyhow::anyhow!("no contact {name}"))?;
            if cmd == "/switch" {
                s.agent.switch_queue(c.conn_id).await?;
                s.out.emit(
                    "switch",
                    &format!("{name}: switching to a new receive queue"),
                    json!({ "name": name }),
                );
            } else {
                let st = s.agent.sync_ratchet(c.conn_id, true)?;
                s.out.emit(
                    "ratchet_sync",
                    &format!("{name}: ratchet re-synchronisation {}", st.text()),
                    json!({ "name": name, "state": st.text() }),
                );
            }
        }
        other => {
            anyhow::bail!("unknown command {other} (try @name text, /invite, /connect <link>)")
        }
    }
    Ok(true)
}

/// Runs the interactive session until `/quit` or end of input, then delivers what is pending.
pub async fn run(mut s: Session) -> anyhow::Result<()> {
    let n = s.agent.subscribe_all().await?;
    s.out.emit(
        "ready",
        &format!("ready ({n} queue(s) subscribed)"),
        json!({ "queues": n }),
    );
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                match line {
                    Ok(Some(l)) => match command(&mut s, &l).await {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => s.out.error(&format!("{e:#}")),
                    },
                    Ok(None) | Err(_) => break,
                }
            }
            ev = s.events.recv() => match ev {
                Some(ev) => {
                    if let Err(e) = s.handle(ev).await {
                        s.out.error(&format!("{e:#}"));
                    }
                }
                None => break,
            },
        }
    }
    if let Err(e) = s.flush(Duration::from_secs(10)).await {
        s.out.error(&format!("{e:#}"));
    }
    s.close().await;
    Ok(())
}
