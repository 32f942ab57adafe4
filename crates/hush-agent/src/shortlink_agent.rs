//! [`Agent`] commands for short links (reference §3.9; upstream `Agent.hs` `newRcvConnSrv`
//! with link data, `getConnShortLink'`, `joinConn` with an `LKEY`-secured queue). The pure
//! encodings and crypto are in [`crate::shortlink`].
//!
//! * Creating: the full link is built first, with a sender id the client chooses as the first
//!   24 bytes of SHA3-384(corrId) of the `NEW` that creates the queue; the link data (signed
//!   with a fresh Ed25519 root key, encrypted with the key derived from the link key) goes in
//!   that `NEW`. Invitation: the relay assigns the link id (`IDS`). Contact address: the link
//!   id is derived from the link key.
//! * Joining an invitation: `LKEY` with a fresh sender key reads the data and secures the
//!   queue with that key in one step; the confirmation then goes without `SKEY`. Joining a
//!   contact address: unsigned `LGET`, then the usual contact request.
//! * The data is verified before use (hash, signatures, the link's relay and sender id against
//!   the queue in the data).
//!
//! Limits: the root key is not kept, so the user part of a contact address cannot be updated
//! later (`LSET`), and the short link of an address is returned once (the caller keeps it; the
//! full link can always be rebuilt with [`Agent::contact_address_link`]). Reading an
//! invitation's short link consumes it (the queue is secured with our key): if joining then
//! fails, the invitation cannot be used again, as with the reference.

use hush_client::{AuthAlgorithm, AuthKey, NewQueueParams};
use hush_crypto::{Ed25519Secret, X25519Secret};
use hush_proto::address::{
    ConnReqUriData, ConnShortLink, ConnectionRequestUri, ContactConnType, E2eRatchetParamsUri,
    ProtocolServer, QueueMode, ServiceScheme, ShortLinkScheme, SmpQueueUri,
};
use hush_proto::encoding::ShortString;
use hush_proto::smp::QueueReqData;
use hush_proto::version::{agent_version, smp_client_version};

use super::{Agent, AgentError, gen_x448, x448_public};
use crate::envelope::AGENT_VERSION;
use crate::ratchet::supported_e2e_versions;
use crate::shortlink::{
    ConnLinkData, LinkError, UserContactData, check_link_address, contact_link_id_key,
    decrypt_link_data, encrypt_link_data, inv_link_key, preset_servers, sign_link_data,
};
use crate::store::{ConnId, ConnMode, ConnStatus};

/// A link just created: the short one to share, and the full one it stands for (both work).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedLink {
    pub short: String,
    pub full: String,
}

/// What a short link's data says (after verification).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShortLinkData {
    /// The full connection link.
    pub conn_req: ConnectionRequestUri,
    /// The application's data in the link (the reference chat app puts a profile there).
    pub user_data: Vec<u8>,
}

fn link_err(e: LinkError) -> AgentError {
    AgentError::Link(e.to_string())
}

fn short(b: &[u8]) -> Result<ShortString, AgentError> {
    ShortString::new(b.to_vec()).map_err(|_| AgentError::Link("id too long".into()))
}

impl Agent {
    /// A queue URI on our relay for a sender id we chose.
    fn link_queue_uri(&self, snd_id: &[u8], e2e: &X25519Secret, mode: QueueMode) -> SmpQueueUri {
        SmpQueueUri {
            client_versions: smp_client_version::RANGE,
            server: self.inner.config.server.clone(),
            sender_id: snd_id.to_vec(),
            dh_public_key: e2e.public().to_spki_der(),
            queue_mode: Some(mode),
        }
    }

    /// `NEW` with link data, sent with `corr_id` (the relay checks the sender id against it).
    async fn new_link_queue(
        &self,
        corr_id: &[u8; 24],
        snd_id: &[u8],
        req: QueueReqData,
    ) -> Result<hush_client::NewQueue, AgentError> {
        let mode = req.mode();
        let client = self.inner.pool.client(&self.inner.config.server).await?;
        let params = NewQueueParams {
            auth: AuthAlgorithm::Ed25519,
            subscribe: false,
            queue_req_data: Some(req),
            ..NewQueueParams::default()
        };
        let q = client.create_queue_with_corr_id(corr_id, params).await?;
        if q.queue_mode != Some(mode) || q.snd_id != snd_id {
            // SMP < 15 (no short links) or a relay that ignored our sender id
            let _ = client.delete(&q.rcv_id, &q.rcv_key).await;
            return Err(AgentError::Unsupported(
                "relay without short links (SMP < 15)",
            ));
        }
        Ok(q)
    }

    /// [`Agent::create_invitation`] with a short link (`https://<relay>/i#<linkId>/<linkKey>`):
    /// the invitation's full link (and `user_data`, e.g. a profile, at most 13,000 bytes or so)
    /// is stored encrypted on the relay. Returns the connection and both links.
    pub async fn create_invitation_with_short_link(
        &self,
        conn_info: &[u8],
        user_data: &[u8],
    ) -> Result<(ConnId, CreatedLink), AgentError> {
        let corr_id = hush_crypto::random_nonce();
        let snd_id = hush_crypto::sender_id_from_corr_id(&corr_id);
        let e2e = X25519Secret::generate();
        let (r1, r2) = (gen_x448()?, gen_x448()?);
        let conn_req = ConnectionRequestUri::Invitation {
            data: ConnReqUriData {
                scheme: ServiceScheme::Simplex,
                agent_versions: agent_version::RANGE,
                smp_queues: vec![self.link_queue_uri(&snd_id, &e2e, QueueMode::Messaging)],
                client_data: None,
            },
            e2e: E2eRatchetParamsUri {
                versions: supported_e2e_versions(),
                key1: x448_public(&r1)?.to_spki_der(),
                key2: x448_public(&r2)?.to_spki_der(),
                kem: None,
            },
        };
        let root = Ed25519Secret::generate();
        let signed = sign_link_data(
            &root,
            agent_version::RANGE,
            &conn_req,
            None,
            &ConnLinkData::Invitation {
                agent_versions: agent_version::RANGE,
                user_data: user_data.to_vec(),
            },
        )
        .map_err(link_err)?;
        let data = encrypt_link_data(&inv_link_key(&signed.link_key), &signed).map_err(link_err)?;
        let q = self
            .new_link_queue(
                &corr_id,
                &snd_id,
                QueueReqData::Messaging(Some((short(&snd_id)?, data))),
            )
            .await?;
        let link_id = q
            .link_id
            .clone()
            .ok_or(AgentError::Link("the relay assigned no link id".into()))?;
        let rq = self.with_tx(|tx| {
            let conn =
                tx.create_connection(ConnMode::Invitation, ConnStatus::Created, AGENT_VERSION)?;
            tx.set_x3dh_keys(conn, &r1, &r2)?;
            tx.set_own_info(conn, conn_info)?;
            let rq = self.rcv_queue_record(conn, &q, &e2e);
            tx.add_rcv_queue(&rq)?;
            Ok(rq)
        })?;
        self.subscribe_queue(&rq).await?;
        let short_link = ConnShortLink::Invitation {
            scheme: ShortLinkScheme::Server,
            server: self.inner.config.server.clone(),
            link_id,
            link_key: signed.link_key.to_vec(),
        }
        .shorten(&preset_servers());
        Ok((
            rq.conn_id,
            CreatedLink {
                short: short_link.to_text(),
                full: conn_req.to_text(),
            },
        ))
    }

    /// [`Agent::create_contact_address`] with a short link (`https://<relay>/a#<linkKey>`);
    /// `user_data` (e.g. a profile) is readable by anyone with the link.
    pub async fn create_contact_address_with_short_link(
        &self,
        user_data: &[u8],
    ) -> Result<(ConnId, CreatedLink), AgentError> {
        let corr_id = hush_crypto::random_nonce();
        let snd_id = hush_crypto::sender_id_from_corr_id(&corr_id);
        let e2e = X25519Secret::generate();
        let conn_req = ConnectionRequestUri::Contact {
            data: ConnReqUriData {
                scheme: ServiceScheme::Simplex,
                agent_versions: agent_version::RANGE,
                smp_queues: vec![self.link_queue_uri(&snd_id, &e2e, QueueMode::Contact)],
                client_data: None,
            },
        };
        let root = Ed25519Secret::generate();
        let signed = sign_link_data(
            &root,
            agent_version::RANGE,
            &conn_req,
            None,
            &ConnLinkData::Contact {
                agent_versions: agent_version::RANGE,
                data: UserContactData::direct(user_data),
            },
        )
        .map_err(link_err)?;
        let (link_id, key) = contact_link_id_key(&signed.link_key);
        let data = encrypt_link_data(&key, &signed).map_err(link_err)?;
        let q = self
            .new_link_queue(
                &corr_id,
                &snd_id,
                QueueReqData::Contact(Some((short(&link_id)?, short(&snd_id)?, data))),
            )
            .await?;
        if q.link_id.as_deref() != Some(&link_id[..]) {
            let _ = self.delete_queue_quietly(&q).await;
            return Err(AgentError::Link("the relay changed the link id".into()));
        }
        let rq = self.with_tx(|tx| {
            let conn =
                tx.create_connection(ConnMode::Address, ConnStatus::Address, AGENT_VERSION)?;
            let rq = self.rcv_queue_record(conn, &q, &e2e);
            tx.add_rcv_queue(&rq)?;
            Ok(rq)
        })?;
        self.subscribe_queue(&rq).await?;
        let short_link = ConnShortLink::Contact {
            scheme: ShortLinkScheme::Server,
            conn_type: ContactConnType::Contact,
            server: self.inner.config.server.clone(),
            link_key: signed.link_key.to_vec(),
        }
        .shorten(&preset_servers());
        Ok((
            rq.conn_id,
            CreatedLink {
                short: short_link.to_text(),
                full: conn_req.to_text(),
            },
        ))
    }

    async fn delete_queue_quietly(&self, q: &hush_client::NewQueue) -> Result<(), AgentError> {
        let client = self.inner.pool.client(&self.inner.config.server).await?;
        client.delete(&q.rcv_id, &q.rcv_key).await?;
        Ok(())
    }

    /// The relay of a short link, with port and key hash restored for the reference's preset
    /// servers; a link without a key hash on another relay cannot be used (the relay's
    /// identity would be unknown).
    fn short_link_server(link: ConnShortLink) -> Result<ConnShortLink, AgentError> {
        let link = link.restore(&preset_servers());
        if link.server().key_hash().is_empty() {
            return Err(AgentError::Link(
                "short link without the relay's key hash (not a preset server): use the full link"
                    .into(),
            ));
        }
        Ok(link)
    }

    /// Reads and verifies a short link's data. For a one-time invitation this is `LKEY` with
    /// `snd_key`, which secures the invitation's queue (the link cannot be read with another
    /// key afterwards).
    async fn read_short_link(
        &self,
        link: &ConnShortLink,
        snd_key: &AuthKey,
    ) -> Result<ShortLinkData, AgentError> {
        let server: &ProtocolServer = link.server();
        let client = self.inner.pool.client(server).await?;
        let (link_key, (sender_id, data), key, invitation) = match link {
            ConnShortLink::Invitation {
                link_id, link_key, ..
            } => (
                link_key,
                client.secure_get_link(link_id, snd_key).await?,
                inv_link_key(link_key),
                true,
            ),
            ConnShortLink::Contact { link_key, .. } => {
                let (link_id, key) = contact_link_id_key(link_key);
                (link_key, client.get_link(&link_id).await?, key, false)
            }
        };
        let (fixed, user) =
            decrypt_link_data(link_key, &key, &data, invitation).map_err(link_err)?;
        if let ConnLinkData::Contact { data, .. } = &user
            && !data.direct
        {
            // a channel reached only through chat relays (reference: CEUnsupportedConnReq)
            return Err(AgentError::Unsupported(
                "link allows no direct connection (chat relays only)",
            ));
        }
        let conn_req = check_link_address(server, &sender_id, fixed.conn_req).map_err(link_err)?;
        Ok(ShortLinkData {
            conn_req,
            user_data: user.user_data().to_vec(),
        })
    }

    /// Reads a contact address's short link (`/a#`, `/c#`, `/g#`, `/r#`; unsigned `LGET`,
    /// nothing changes on the relay): its full link and user data. One-time invitations are
    /// read only when joining them ([`Agent::join`]), because reading secures their queue.
    pub async fn contact_short_link_data(&self, link: &str) -> Result<ShortLinkData, AgentError> {
        let link =
            ConnShortLink::parse(link.trim()).map_err(|e| AgentError::Link(e.to_string()))?;
        if matches!(link, ConnShortLink::Invitation { .. }) {
            return Err(AgentError::Link(
                "a one-time invitation is read only when joining it".into(),
            ));
        }
        let link = Self::short_link_server(link)?;
        // (no key is used for LGET)
        let unused = AuthKey::generate(AuthAlgorithm::Ed25519)?;
        self.read_short_link(&link, &unused).await
    }

    /// Joins by a short link ([`Agent::join`] / [`Agent::join_with_request`] call this for
    /// short links): reads and verifies the link data, then joins the full link inside.
    pub(super) async fn join_short_link(
        &self,
        link: &str,
        request_info: &[u8],
        conn_info: &[u8],
    ) -> Result<ConnId, AgentError> {
        let link =
            ConnShortLink::parse(link.trim()).map_err(|e| AgentError::Link(e.to_string()))?;
        let link = Self::short_link_server(link)?;
        let snd_key = AuthKey::generate(AuthAlgorithm::Ed25519)?;
        let d = self.read_short_link(&link, &snd_key).await?;
        match d.conn_req {
            ConnectionRequestUri::Invitation { data, e2e } => {
                self.join_invitation_keyed(&data, &e2e, conn_info, Some(snd_key))
                    .await
            }
            ConnectionRequestUri::Contact { data } => {
                self.join_contact(&data, request_info, conn_info).await
            }
        }
    }
}
