//! The local profile: a private directory (0700) with the agent database (`agent.db`, owned by
//! hush-agent) and hush's own database (`hush.db`): settings (display name, relay), contacts and
//! their notification mode, contact requests, groups and their members, and message history.
//! Nothing here leaves the machine, and both databases are 0600 from creation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

pub const AGENT_DB: &str = "agent.db";
pub const HUSH_DB: &str = "hush.db";

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("no profile in {0} (run `hush init --name <name>` first)")]
    NotInitialized(PathBuf),
}

/// How the user wants to learn about a contact's messages (design §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyMode {
    /// `hush daemon` keeps the relay connection open and notifies at once.
    Connected,
    /// Instant push through the ntf-server.
    Push,
    /// Periodic background check.
    Periodic,
    /// No notification (messages are still received).
    Off,
}

impl NotifyMode {
    pub fn parse(s: &str) -> Option<NotifyMode> {
        Some(match s {
            "connected" | "always" | "always-connected" => NotifyMode::Connected,
            "push" | "instant" | "instant-push" => NotifyMode::Push,
            "periodic" => NotifyMode::Periodic,
            "off" | "none" => NotifyMode::Off,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyMode::Connected => "connected",
            NotifyMode::Push => "push",
            NotifyMode::Periodic => "periodic",
            NotifyMode::Off => "off",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Contact {
    pub conn_id: i64,
    pub name: Option<String>,
    /// `invited` (our link, not used yet), `joining`, `connected`, `requested`.
    pub status: String,
    pub notify: NotifyMode,
}

#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub gid: String,
    pub name: String,
    pub conn_id: i64,
    /// `contact` (the member is our contact), `pending`, `connected`.
    pub status: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub gid: String,
    pub name: String,
    /// Our contact who invited us (`None` = we created it).
    pub owner: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryItem {
    pub ts_ms: i64,
    /// `in` or `out`.
    pub dir: String,
    pub peer: String,
    pub group: Option<String>,
    pub text: String,
    /// Our direct messages: `pending` (in the outbox), `sent` (the relay accepted it),
    /// `delivered` (the contact's delivery receipt arrived). `None` for others.
    pub status: Option<String>,
}

/// Where a history row came from or went to, so receipts, edits and deletions find it.
#[derive(Debug, Clone, Default)]
pub struct HistoryMeta<'a> {
    /// The agent connection.
    pub conn_id: Option<i64>,
    /// The agent's message id (ours: what receipts refer to).
    pub agent_msg_id: Option<i64>,
    /// The chat `msgId` (base64), what edits and deletions refer to.
    pub shared_id: Option<&'a str>,
    pub status: Option<&'a str>,
}

/// What a peer speaks, learnt from its connection info and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerChat {
    /// The peer's chat version range (`min`, `max`) from its last chat message.
    pub vrange: Option<(u16, u16)>,
    /// An old hush client (`{"name":…}` conn info, `{"t":…}` bodies).
    pub legacy: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Request {
    pub id: i64,
    pub name: String,
}

/// hush.db.
pub struct Profile {
    pub dir: PathBuf,
    db: Connection,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS contacts (
  conn_id INTEGER PRIMARY KEY, name TEXT UNIQUE, status TEXT NOT NULL,
  notify TEXT NOT NULL DEFAULT 'connected', created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS requests (id INTEGER PRIMARY KEY, name TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS groups (gid TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, owner TEXT);
CREATE TABLE IF NOT EXISTS members (
  gid TEXT NOT NULL, name TEXT NOT NULL, conn_id INTEGER NOT NULL, status TEXT NOT NULL,
  PRIMARY KEY (gid, name));
CREATE TABLE IF NOT EXISTS history (
  id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, dir TEXT NOT NULL, peer TEXT NOT NULL,
  gid TEXT, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS peer_chat (
  conn_id INTEGER PRIMARY KEY, vmin INTEGER, vmax INTEGER, legacy INTEGER NOT NULL DEFAULT 0);
";

/// Columns added to `history` after its first version (added to older databases at open).
const HISTORY_COLUMNS: &[(&str, &str)] = &[
    ("conn_id", "INTEGER"),
    ("agent_msg_id", "INTEGER"),
    ("shared_id", "TEXT"),
    ("status", "TEXT"),
];

impl Profile {
    /// Opens an existing profile.
    pub fn open(dir: &Path) -> Result<Profile, ProfileError> {
        if !dir.join(HUSH_DB).exists() {
            return Err(ProfileError::NotInitialized(dir.to_path_buf()));
        }
        Self::open_or_create(dir)
    }

    /// Opens or creates the profile database. The directory is private (0700; a looser one is
    /// tightened, logged at info) and `hush.db` is created 0600 before SQLite opens it, so it
    /// and its -wal/-shm are never readable by others (the agent does the same for `agent.db`).
    pub fn open_or_create(dir: &Path) -> Result<Profile, ProfileError> {
        hush_server_common::private_start::prepare_private_dir(dir, "profile directory")?;
        let db_path = dir.join(HUSH_DB);
        hush_server_common::private_start::prepare_private_db(&db_path, true, "profile database")?;
        let db = Connection::open(db_path)?;
        db.busy_timeout(Duration::from_secs(5))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.execute_batch(SCHEMA)?;
        let have: Vec<String> = db
            .prepare("SELECT name FROM pragma_table_info('history')")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for (col, ty) in HISTORY_COLUMNS {
            if !have.iter().any(|h| h == col) {
                db.execute_batch(&format!("ALTER TABLE history ADD COLUMN {col} {ty}"))?;
            }
        }
        db.execute_batch(
            "CREATE INDEX IF NOT EXISTS history_conn_msg ON history (conn_id, agent_msg_id);
             CREATE INDEX IF NOT EXISTS history_conn_shared ON history (conn_id, shared_id);",
        )?;
        Ok(Profile {
            dir: dir.to_path_buf(),
            db,
        })
    }

    pub fn agent_db(&self) -> PathBuf {
        self.dir.join(AGENT_DB)
    }

    pub fn setting(&self, key: &str) -> Result<Option<String>, ProfileError> {
        Ok(self
            .db
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), ProfileError> {
        self.db.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    pub fn name(&self) -> Result<String, ProfileError> {
        Ok(self.setting("name")?.unwrap_or_else(|| "me".into()))
    }

    // ---- contacts

    pub fn add_contact(
        &self,
        conn_id: i64,
        name: Option<&str>,
        status: &str,
    ) -> Result<(), ProfileError> {
        self.db.execute(
            "INSERT INTO contacts (conn_id, name, status, created_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(conn_id) DO UPDATE SET status = excluded.status",
            params![conn_id, name, status, now_ms()],
        )?;
        Ok(())
    }

    fn row_contact(r: &rusqlite::Row<'_>) -> rusqlite::Result<Contact> {
        let notify: String = r.get(3)?;
        Ok(Contact {
            conn_id: r.get(0)?,
            name: r.get(1)?,
            status: r.get(2)?,
            notify: NotifyMode::parse(&notify).unwrap_or(NotifyMode::Connected),
        })
    }

    pub fn contact_by_conn(&self, conn_id: i64) -> Result<Option<Contact>, ProfileError> {
        Ok(self
            .db
            .query_row(
                "SELECT conn_id, name, status, notify FROM contacts WHERE conn_id = ?1",
                [conn_id],
                Self::row_contact,
            )
            .optional()?)
    }

    pub fn contact_by_name(&self, name: &str) -> Result<Option<Contact>, ProfileError> {
        Ok(self
            .db
            .query_row(
                "SELECT conn_id, name, status, notify FROM contacts WHERE name = ?1",
                [name],
                Self::row_contact,
            )
            .optional()?)
    }

    pub fn contacts(&self) -> Result<Vec<Contact>, ProfileError> {
        let mut s = self.db.prepare(
            "SELECT conn_id, name, status, notify FROM contacts ORDER BY created_ms, conn_id",
        )?;
        let v = s
            .query_map([], Self::row_contact)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(v)
    }

    /// A free display name based on `wanted` (`bob`, `bob2`, `bob3`…).
    pub fn free_name(&self, wanted: &str) -> Result<String, ProfileError> {
        let base: String = wanted
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
            .take(32)
            .collect();
        let base = if base.is_empty() {
            "contact".to_string()
        } else {
            base
        };
        let mut n = 1;
        loop {
            let cand = if n == 1 {
                base.clone()
            } else {
                format!("{base}{n}")
            };
            if self.contact_by_name(&cand)?.is_none() {
                return Ok(cand);
            }
            n += 1;
        }
    }

    /// Marks a contact connected, giving it a name if it has none; returns the name.
    pub fn contact_connected(&self, conn_id: i64, wanted: &str) -> Result<String, ProfileError> {
        if let Some(c) = self.contact_by_conn(conn_id)?
            && let Some(n) = c.name
        {
            self.db.execute(
                "UPDATE contacts SET status = 'connected' WHERE conn_id = ?1",
                [conn_id],
            )?;
            return Ok(n);
        }
        let name = self.free_name(wanted)?;
        self.db.execute(
            "INSERT INTO contacts (conn_id, name, status, created_ms) VALUES (?1, ?2, 'connected', ?3)
             ON CONFLICT(conn_id) DO UPDATE SET name = excluded.name, status = 'connected'",
            params![conn_id, name, now_ms()],
        )?;
        Ok(name)
    }

    pub fn set_notify(&self, name: &str, mode: NotifyMode) -> Result<bool, ProfileError> {
        Ok(self.db.execute(
            "UPDATE contacts SET notify = ?2 WHERE name = ?1",
            params![name, mode.as_str()],
        )? > 0)
    }

    pub fn delete_contact(&self, conn_id: i64) -> Result<(), ProfileError> {
        self.db
            .execute("DELETE FROM contacts WHERE conn_id = ?1", [conn_id])?;
        Ok(())
    }

    // ---- requests

    pub fn add_request(&self, id: i64, name: &str) -> Result<(), ProfileError> {
        self.db.execute(
            "INSERT OR REPLACE INTO requests (id, name, created_ms) VALUES (?1, ?2, ?3)",
            params![id, name, now_ms()],
        )?;
        Ok(())
    }

    pub fn requests(&self) -> Result<Vec<Request>, ProfileError> {
        let mut s = self
            .db
            .prepare("SELECT id, name FROM requests ORDER BY id")?;
        let v = s
            .query_map([], |r| {
                Ok(Request {
                    id: r.get(0)?,
                    name: r.get(1)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(v)
    }

    pub fn delete_request(&self, id: i64) -> Result<(), ProfileError> {
        self.db
            .execute("DELETE FROM requests WHERE id = ?1", [id])?;
        Ok(())
    }

    // ---- groups

    pub fn add_group(
        &self,
        gid: &str,
        name: &str,
        owner: Option<&str>,
    ) -> Result<(), ProfileError> {
        self.db.execute(
            "INSERT OR IGNORE INTO groups (gid, name, owner) VALUES (?1, ?2, ?3)",
            params![gid, name, owner],
        )?;
        Ok(())
    }

    fn row_group(r: &rusqlite::Row<'_>) -> rusqlite::Result<Group> {
        Ok(Group {
            gid: r.get(0)?,
            name: r.get(1)?,
            owner: r.get(2)?,
        })
    }

    pub fn group_by_name(&self, name: &str) -> Result<Option<Group>, ProfileError> {
        Ok(self
            .db
            .query_row(
                "SELECT gid, name, owner FROM groups WHERE name = ?1",
                [name],
                Self::row_group,
            )
            .optional()?)
    }

    pub fn group_by_id(&self, gid: &str) -> Result<Option<Group>, ProfileError> {
        Ok(self
            .db
            .query_row(
                "SELECT gid, name, owner FROM groups WHERE gid = ?1",
                [gid],
                Self::row_group,
            )
            .optional()?)
    }

    pub fn groups(&self) -> Result<Vec<Group>, ProfileError> {
        let mut s = self
            .db
            .prepare("SELECT gid, name, owner FROM groups ORDER BY name")?;
        let v = s
            .query_map([], Self::row_group)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(v)
    }

    pub fn set_member(
        &self,
        gid: &str,
        name: &str,
        conn_id: i64,
        status: &str,
    ) -> Result<(), ProfileError> {
        self.db.execute(
            "INSERT INTO members (gid, name, conn_id, status) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(gid, name) DO UPDATE SET conn_id = excluded.conn_id, status = excluded.status",
            params![gid, name, conn_id, status],
        )?;
        Ok(())
    }

    pub fn members(&self, gid: &str) -> Result<Vec<Member>, ProfileError> {
        let mut s = self.db.prepare(
            "SELECT gid, name, conn_id, status FROM members WHERE gid = ?1 ORDER BY name",
        )?;
        let v = s
            .query_map([gid], |r| {
                Ok(Member {
                    gid: r.get(0)?,
                    name: r.get(1)?,
                    conn_id: r.get(2)?,
                    status: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(v)
    }

    /// The group member record of a member-to-member connection.
    pub fn member_by_conn(&self, conn_id: i64) -> Result<Option<Member>, ProfileError> {
        Ok(self
            .db
            .query_row(
                "SELECT gid, name, conn_id, status FROM members WHERE conn_id = ?1 AND status != 'contact'",
                [conn_id],
                |r| {
                    Ok(Member {
                        gid: r.get(0)?,
                        name: r.get(1)?,
                        conn_id: r.get(2)?,
                        status: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    // ---- history

    pub fn add_history(
        &self,
        dir: &str,
        peer: &str,
        gid: Option<&str>,
        text: &str,
    ) -> Result<(), ProfileError> {
        self.add_history_meta(dir, peer, gid, text, &HistoryMeta::default())
    }

    pub fn add_history_meta(
        &self,
        dir: &str,
        peer: &str,
        gid: Option<&str>,
        text: &str,
        meta: &HistoryMeta<'_>,
    ) -> Result<(), ProfileError> {
        self.db.execute(
            "INSERT INTO history (ts_ms, dir, peer, gid, text, conn_id, agent_msg_id, shared_id, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                now_ms(),
                dir,
                peer,
                gid,
                text,
                meta.conn_id,
                meta.agent_msg_id,
                meta.shared_id,
                meta.status
            ],
        )?;
        Ok(())
    }

    /// Moves our message `agent_msg_id` on `conn_id` to `status` (`sent`, `delivered`); a
    /// message already delivered stays so. Returns (peer, text) of the message, `None` when no
    /// message of ours has that id (e.g. a receipt or other control message).
    pub fn set_history_status(
        &self,
        conn_id: i64,
        agent_msg_id: i64,
        status: &str,
    ) -> Result<Option<(String, String)>, ProfileError> {
        let row: Option<(i64, String, String, Option<String>)> = self
            .db
            .query_row(
                "SELECT id, peer, text, status FROM history
                 WHERE conn_id = ?1 AND agent_msg_id = ?2 AND dir = 'out'",
                params![conn_id, agent_msg_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((id, peer, text, old)) = row else {
            return Ok(None);
        };
        if old.as_deref() != Some("delivered") {
            self.db.execute(
                "UPDATE history SET status = ?2 WHERE id = ?1",
                params![id, status],
            )?;
        }
        Ok(Some((peer, text)))
    }

    /// Replaces the text of the message `shared_id` received on `conn_id` (an edit, or a
    /// deletion shown as `[deleted]`; the latest one if a sender reused an id). Returns whether
    /// there was such a message.
    pub fn edit_received(
        &self,
        conn_id: i64,
        shared_id: &str,
        text: &str,
        status: Option<&str>,
    ) -> Result<bool, ProfileError> {
        Ok(self.db.execute(
            "UPDATE history SET text = ?3, status = ?4 WHERE id = (
               SELECT MAX(id) FROM history WHERE conn_id = ?1 AND shared_id = ?2 AND dir = 'in')",
            params![conn_id, shared_id, text, status],
        )? > 0)
    }

    // ---- what peers speak

    pub fn set_peer_chat(&self, conn_id: i64, peer: PeerChat) -> Result<(), ProfileError> {
        let (vmin, vmax) = match peer.vrange {
            Some((a, b)) => (Some(a), Some(b)),
            None => (None, None),
        };
        self.db.execute(
            "INSERT INTO peer_chat (conn_id, vmin, vmax, legacy) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(conn_id) DO UPDATE SET
               vmin = COALESCE(excluded.vmin, vmin), vmax = COALESCE(excluded.vmax, vmax),
               legacy = excluded.legacy",
            params![conn_id, vmin, vmax, peer.legacy],
        )?;
        Ok(())
    }

    pub fn peer_chat(&self, conn_id: i64) -> Result<Option<PeerChat>, ProfileError> {
        Ok(self
            .db
            .query_row(
                "SELECT vmin, vmax, legacy FROM peer_chat WHERE conn_id = ?1",
                [conn_id],
                |r| {
                    let vmin: Option<u16> = r.get(0)?;
                    let vmax: Option<u16> = r.get(1)?;
                    Ok(PeerChat {
                        vrange: vmin.zip(vmax),
                        legacy: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    /// The last `limit` messages with `peer` (direct) or in group `gid`, oldest first.
    pub fn history(
        &self,
        peer: Option<&str>,
        gid: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HistoryItem>, ProfileError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut s = self.db.prepare(
            "SELECT h.ts_ms, h.dir, h.peer, g.name, h.text, h.status FROM history h
             LEFT JOIN groups g ON g.gid = h.gid
             WHERE (?1 IS NULL OR (h.peer = ?1 AND h.gid IS NULL)) AND (?2 IS NULL OR h.gid = ?2)
             ORDER BY h.id DESC LIMIT ?3",
        )?;
        let mut v = s
            .query_map(params![peer, gid, limit], |r| {
                Ok(HistoryItem {
                    ts_ms: r.get(0)?,
                    dir: r.get(1)?,
                    peer: r.get(2)?,
                    group: r.get(3)?,
                    text: r.get(4)?,
                    status: r.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        v.reverse();
        Ok(v)
    }
}
