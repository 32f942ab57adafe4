//! One client transmission in, responses out (reference §3.1–§3.5; `Server.hs` `receive`,
//! `verifyTransmission`, `processCommand`). Delivery decisions are delegated to `delivery.rs`.

use hush_crypto::{SignAlgorithm, TransmissionAuth, X25519Public, X25519Secret};
use hush_proto::encoding::ShortString;
use hush_proto::error::{CommandError, ErrorType};
use hush_proto::handshake::ServiceRole;
use hush_proto::smp::{
    BrokerMsg, Command, NewQueueReq, PublicKeyDer, QueueIdsKeys, QueueMode, QueueReqData,
    ServerNtfCreds, check_client_transmission,
};
use hush_proto::transmission::{Authorized, Layout, decode_transmission_signed};
use hush_proto::version::smp_version;
use hush_store::{
    AppendOutcome, EntityId, ID_LEN, LinkData, Message, NewMessage, NotifierCreds, PendingNtf,
    QueueLink, QueueRecord, QueueStatus, StoreError,
};
use rand::RngCore;

use super::auth::{Authorization, KeyCache};
use super::delivery::{Client, LocalSubs, Outbox, Sent, now_secs};
use super::error::CmdError;
use super::{Response, Shared, proxy};
use crate::metrics::{GetError, NtfSubError, SendError, SubError};

/// The connection-level facts a command needs.
pub struct ConnCtx<'a> {
    pub outbox: &'a Outbox,
    pub local: &'a mut LocalSubs,
    pub version: u16,
    pub session_id: &'a [u8],
    pub session_key: &'a X25519Secret,
    /// Queue keys decoded on this connection (see `auth.rs`).
    pub keys: &'a KeyCache,
    /// Secret shared with an SMP proxy on this connection (for `RFWD`), if the client sent a
    /// hello key.
    pub proxy_secret: Option<&'a hush_crypto::DhSecret>,
    /// The service this connection is a session of (v16 service handshake), if any.
    pub service: Option<&'a hush_transport::PeerService>,
    /// Where a `SEND` whose append still commits leaves its answer, so that the connection
    /// goes on reading meanwhile (answered with [`Shared::send_done`]); `None`: the `SEND`
    /// waits for its commit (forwarded transmissions, whose answer travels inside `RRES`).
    pub deferred: Option<&'a mut Vec<DeferredSend>>,
}

/// A `SEND` waiting for its commit: resolves to what its answer needs.
pub type DeferredSend =
    std::pin::Pin<Box<dyn std::future::Future<Output = SendDone> + Send + 'static>>;

/// A `SEND` whose append's commit ended.
pub struct SendDone {
    corr: Vec<u8>,
    entity: Vec<u8>,
    nid: Option<EntityId>,
    result: Result<AppendOutcome, CmdError>,
}

/// The service role a party's commands need in a service session (reference
/// `partyClientRole`); `None`: allowed in any session.
fn party_role(p: hush_proto::smp::Party) -> Option<ServiceRole> {
    use hush_proto::smp::Party;
    match p {
        Party::IdleClient => None,
        Party::Notifier | Party::NotifierService => Some(ServiceRole::Notifier),
        Party::ProxyService => Some(ServiceRole::Proxy),
        _ => Some(ServiceRole::Messaging),
    }
}

/// Ed25519 signature `sig` by the service key over `msg`.
fn service_verifies(
    service: &hush_transport::PeerService,
    msg: &Authorized<'_>,
    sig: &[u8],
) -> bool {
    hush_crypto::Ed25519Verifier::new(&service.key)
        .is_ok_and(|vk| vk.verify_parts(&msg.parts(), sig).is_ok())
}

fn random_id() -> EntityId {
    let mut id = [0u8; ID_LEN];
    rand::rngs::OsRng.fill_bytes(&mut id);
    id
}

fn id24(b: &[u8]) -> Option<EntityId> {
    b.try_into().ok()
}

fn short(b: &[u8]) -> Result<ShortString, CmdError> {
    ShortString::new(b.to_vec()).map_err(|_| CmdError::Internal("id over 255 bytes"))
}

/// Whether `given` is the configured `create_password` (anything goes when none is set),
/// compared in constant time.
fn password_ok(
    password: &Option<crate::config::BasicAuth>,
    given: Option<&hush_proto::address::BasicAuth>,
) -> bool {
    match password {
        None => true,
        Some(p) => given.is_some_and(|g| p.matches(g.as_str().as_bytes())),
    }
}

fn today() -> i64 {
    let now = now_secs();
    now - now.rem_euclid(86400)
}

impl Shared {
    /// Processes one transmission of a block. Responses (and own-connection events) come back in
    /// the order they must be written.
    pub async fn process_transmission(&self, c: &mut ConnCtx<'_>, bytes: &[u8]) -> Vec<Response> {
        self.process_one(c, bytes, false).await
    }

    /// `forwarded`: the transmission came inside `RFWD`; only `SEND`, `SKEY`, `LKEY`, `LGET` are
    /// allowed there (`CMD PROHIBITED` otherwise).
    async fn process_one(
        &self,
        c: &mut ConnCtx<'_>,
        bytes: &[u8],
        forwarded: bool,
    ) -> Vec<Response> {
        let (t, signed) = match decode_transmission_signed(bytes, Layout::smp(c.version)) {
            Ok(t) => t,
            Err(_) => return vec![Response::err(&[], &[], ErrorType::Block)],
        };
        let (_, cmd) = match check_client_transmission(&t, c.version, c.session_id) {
            Ok(x) => x,
            Err(r) => {
                let entity = if r.keep_entity { t.entity_id } else { &[] };
                return vec![Response::err(t.corr_id, entity, r.error)];
            }
        };
        let tag = cmd.tag();
        if forwarded && !cmd.allowed_forwarded() {
            return vec![Response::err(
                t.corr_id,
                t.entity_id,
                ErrorType::Cmd(CommandError::Prohibited),
            )];
        }
        // Service sessions (reference `verifyQueueTransmission`): a command of another role
        // than the service's is prohibited; NEW/SUB/NSUB carry a service signature in a service
        // session and only there, no other command carries one.
        if let (Some(svc), Some(role)) = (c.service, party_role(cmd.party()))
            && svc.role != role
        {
            return vec![Response::err(
                t.corr_id,
                t.entity_id,
                ErrorType::Cmd(CommandError::Prohibited),
            )];
        }
        // The session id is this connection's tls-unique (never over 255 bytes).
        let Some(mut authorized) = Authorized::new(c.session_id, signed) else {
            return vec![Response::err(t.corr_id, t.entity_id, ErrorType::Internal)];
        };
        let service_ok = if cmd.uses_service_auth() {
            match (c.service, t.service_sig) {
                (Some(svc), Some(sig)) => service_verifies(svc, &authorized, sig),
                (None, None) => true,
                _ => false,
            }
        } else {
            t.service_sig.is_none()
        };
        if !service_ok {
            return vec![Response::err(t.corr_id, t.entity_id, ErrorType::Service)];
        }
        // With a service signature the entity key signs the service certificate's hash too.
        if let (Some(svc), Some(_)) = (c.service, t.service_sig) {
            authorized = authorized.with_cert_hash(&svc.cert_hash);
        }
        let service_cmd = matches!(cmd, Command::Subs | Command::NSubs);
        if service_cmd {
            // `verifyServiceCmd`: an Ed25519 signature by the service key, no service slot,
            // entity = the service id.
            let ok = match (c.service, TransmissionAuth::parse(t.authorization)) {
                (Some(svc), Ok(Some(TransmissionAuth::Signature(SignAlgorithm::Ed25519, sig)))) => {
                    t.service_sig.is_none()
                        && t.entity_id == svc.service_id.as_slice()
                        && service_verifies(svc, &authorized, &sig)
                }
                _ => false,
            };
            if !ok {
                return vec![Response::err(t.corr_id, t.entity_id, ErrorType::Service)];
            }
        }
        let auth = Authorization {
            auth: TransmissionAuth::parse(t.authorization).ok().flatten(),
            authorized,
            corr_id: t.corr_id,
            session_key: c.session_key,
            keys: c.keys,
        };
        match self.command(c, &auth, t.corr_id, t.entity_id, cmd).await {
            Ok(r) => r,
            Err(e) => {
                e.log(tag);
                self.count_error(tag, &e);
                vec![Response::err(t.corr_id, t.entity_id, e.to_protocol())]
            }
        }
    }

    /// Error metrics, by the label [`CmdError::label`] assigns.
    fn count_error(&self, tag: &str, e: &CmdError) {
        match (tag, e.label()) {
            ("SEND", "auth") => self.metrics.send_error(SendError::Auth),
            ("SEND", "quota") => self.metrics.send_error(SendError::Quota),
            ("SEND", "large") => self.metrics.send_error(SendError::Large),
            ("SEND", "block") => self.metrics.send_error(SendError::Block),
            ("SUB", "auth") => self.metrics.subscription_error(SubError::Auth),
            ("GET", "auth") => self.metrics.get_error(GetError::Auth),
            ("NSUB", "auth") => self.metrics.ntf_subscription_error(NtfSubError::Auth),
            _ => {}
        }
    }

    async fn command(
        &self,
        c: &mut ConnCtx<'_>,
        auth: &Authorization<'_>,
        corr: &[u8],
        entity: &[u8],
        cmd: Command,
    ) -> Result<Vec<Response>, CmdError> {
        let one = |msg: BrokerMsg| Ok(vec![Response::new(corr, entity, msg)]);
        match cmd {
            Command::Ping => Ok(vec![Response::new(corr, &[], BrokerMsg::Pong)]),
            Command::New(req) => self.create_queue(c, auth, corr, req).await,
            Command::Send { flags, body } => {
                let q = self.sender_queue(entity, auth, None).await?;
                self.send(c, q, corr, entity, flags.notification, body)
                    .await
            }
            Command::SKey(k) => {
                let q = self.sender_queue(entity, auth, Some(&k)).await?;
                check_not_blocked(&q)?;
                if q.mode != Some(hush_store::QueueMode::Messaging) {
                    return Err(CmdError::Auth);
                }
                self.store
                    .secure_queue(q.recipient_id, k.as_bytes().to_vec())
                    .await?;
                self.metrics.queues_secured.inc();
                one(BrokerMsg::Ok)
            }
            Command::NSub => {
                let q = match id24(entity) {
                    Some(id) => self.store.get_by_notifier(id).await?,
                    None => None,
                };
                // NSUB works on blocked queues too, as in the reference (no status check).
                let nid = match q.as_ref().and_then(|q| q.notifier.as_ref()) {
                    Some(n) if auth.verify(&n.notifier_key) => n.notifier_id,
                    Some(_) => return Err(CmdError::Auth),
                    None => {
                        auth.dummy();
                        return Err(CmdError::Auth);
                    }
                };
                let Some(q) = q else {
                    return Err(CmdError::Auth);
                };
                self.nsub(c, &q, nid, corr, entity).await
            }
            Command::Sub
            | Command::Get
            | Command::Ack(_)
            | Command::Key(_)
            | Command::RKey(_)
            | Command::NKey { .. }
            | Command::NDel
            | Command::Off
            | Command::Del
            | Command::Que
            | Command::LSet { .. }
            | Command::LDel => {
                let q = self.recipient_queue(entity, auth).await?;
                self.recipient_command(c, q, corr, entity, cmd).await
            }
            // Verified above (`verifyServiceCmd`). Recipient service subscriptions are not
            // served by the reference either ("TODO [certs rcv]"): `CMD PROHIBITED`.
            Command::Subs => Err(CmdError::prohibited()),
            Command::NSubs => {
                let sid = id24(entity).ok_or(CmdError::Service)?;
                let n = self
                    .subscribe_notifier_service(
                        Client {
                            outbox: c.outbox,
                            local: c.local,
                        },
                        sid,
                    )
                    .await?;
                one(BrokerMsg::Soks(n))
            }
            Command::LKey(k) => {
                let q = self.link_queue(entity, auth, Some(&k)).await?;
                check_not_blocked(&q)?;
                self.store
                    .secure_queue(q.recipient_id, k.as_bytes().to_vec())
                    .await?;
                self.metrics.queues_secured.inc();
                one(link_response(&q, entity)?)
            }
            Command::LGet => {
                let q = self.link_queue(entity, auth, None).await?;
                check_not_blocked(&q)?;
                one(link_response(&q, entity)?)
            }
            // A transmission forwarded by another server's SMP proxy.
            Command::RFwd(enc) if c.proxy_secret.is_some() => {
                let msg = match Box::pin(self.forwarded(c, corr, &enc)).await {
                    Ok(m) => m,
                    Err(e) => BrokerMsg::Err(e),
                };
                Ok(vec![Response::new(corr, &[], msg)])
            }
            // RFWD without a proxy secret (no hello key): reference `TENoServerAuth`.
            Command::RFwd(_) => Ok(vec![Response::err(
                corr,
                &[],
                ErrorType::Proxy(hush_proto::error::ProxyError::Broker(
                    hush_proto::error::BrokerErrorType::Transport(
                        hush_proto::error::TransportError::NoAuth,
                    ),
                )),
            )]),
            // Acting as an SMP proxy for our clients.
            Command::Prxy { server, basic_auth } => {
                let password = &self.config.auth.create_password;
                let allowed = password_ok(password, basic_auth.as_ref());
                let own = crate::metrics::ProxyOutcome::Request;
                self.metrics.relay_session(false, own);
                // Without a password anyone may use the proxy: one connection may keep links to
                // at most `max_links_per_client` destinations.
                let mut within_budget = || {
                    password.is_some()
                        || c.local.limits.allow_proxy_destination(
                            &server.to_text(),
                            self.config.proxy.max_links_per_client,
                            |d| self.proxy.has_live_link(d),
                        )
                };
                let msg = if !allowed {
                    BrokerMsg::Err(ErrorType::Proxy(hush_proto::error::ProxyError::BasicAuth))
                } else if !within_budget() {
                    self.proxy.refused(proxy::Refusal::ClientLinks);
                    self.metrics
                        .relay_session(false, crate::metrics::ProxyOutcome::ErrorConnect);
                    BrokerMsg::Err(proxy::network_error())
                } else {
                    match self.proxy.session(&server).await {
                        Ok(m) => {
                            self.metrics
                                .relay_session(false, crate::metrics::ProxyOutcome::Success);
                            m
                        }
                        Err(e) => {
                            self.metrics
                                .relay_session(false, crate::metrics::ProxyOutcome::ErrorConnect);
                            BrokerMsg::Err(e)
                        }
                    }
                };
                Ok(vec![Response::new(corr, &[], msg)])
            }
            Command::PFwd {
                version,
                key,
                enc_transmission,
            } => {
                // Forwarding waits for another relay: it runs in its own task (at most
                // PROXIED_CONCURRENCY per connection) and answers through the outbox, so the
                // connection keeps serving its other commands meanwhile.
                let permit = c
                    .outbox
                    .client
                    .proxied()
                    .acquire_owned()
                    .await
                    .map_err(|_| CmdError::Internal("proxy semaphore closed"))?;
                self.metrics
                    .relay_message(false, crate::metrics::ProxyOutcome::Request);
                let proxy = self.proxy.clone();
                let metrics = self.metrics.clone();
                let outbox = c.outbox.clone();
                let (corr, entity) = (corr.to_vec(), entity.to_vec());
                tokio::spawn(async move {
                    let msg = match proxy
                        .forward(&entity, &corr, version, key.as_bytes(), &enc_transmission)
                        .await
                    {
                        Ok(m) => {
                            metrics.relay_message(false, crate::metrics::ProxyOutcome::Success);
                            m
                        }
                        Err(e) => {
                            metrics.relay_message(false, crate::metrics::ProxyOutcome::ErrorOther);
                            BrokerMsg::Err(e)
                        }
                    };
                    outbox.send_response(&corr, &entity, &msg).await;
                    drop(permit);
                });
                Ok(Vec::new())
            }
        }
    }

    /// `RFWD` (reference `processForwardedCommand`, §3.10): decrypt the proxy layer with the
    /// proxy ↔ relay secret (nonce = the RFWD corrId), then the client layer with
    /// X25519(client command key, our session key) (nonce = the forwarded corrId), process exactly
    /// one transmission at the client's version, and encrypt the response back in both layers with
    /// the reversed nonces. Answer: `RRES`.
    async fn forwarded(
        &self,
        c: &mut ConnCtx<'_>,
        corr: &[u8],
        enc: &[u8],
    ) -> Result<BrokerMsg, ErrorType> {
        use hush_crypto::{cb_decrypt, cb_decrypt_no_pad, cb_encrypt, cb_encrypt_no_pad, cb_nonce};
        let sess = c.proxy_secret.ok_or(ErrorType::Internal)?;
        let proxy_nonce = cb_nonce(corr);
        let fwd = cb_decrypt_no_pad(sess, &proxy_nonce, enc).map_err(|_| ErrorType::Crypto)?;
        let syntax = ErrorType::Cmd(CommandError::Syntax);
        let mut p = hush_proto::Parser::new(&fwd);
        let fwd_corr = p.short_string().map_err(|_| syntax.clone())?;
        let fwd_version = p.word16().map_err(|_| syntax.clone())?;
        let fwd_key = p
            .short_string()
            .ok()
            .and_then(|k| X25519Public::from_spki_der(k).ok())
            .ok_or(syntax)?;
        let et = p.tail();
        let client_secret = c.session_key.dh(&fwd_key);
        let client_nonce = cb_nonce(fwd_corr);
        let block = cb_decrypt(&client_secret, &client_nonce, et).map_err(|_| ErrorType::Crypto)?;
        // A block that decodes to no transmission is answered inside RRES, encrypted like any
        // response, as an `ERR BLOCK` with empty corrId and entity (reference: `tDecodeServer`
        // → `tError "" PEBlock`, returned by `rejectOrVerify`); several transmissions are
        // refused with a plain `ERR BLOCK` (reference: `throwE BLOCK`).
        let responses = match hush_proto::transmission::decode_batch(&block) {
            Ok(items) if items.len() > 1 => return Err(ErrorType::Block),
            Ok(items) if items.len() == 1 => {
                let mut fc = ConnCtx {
                    outbox: c.outbox,
                    local: &mut *c.local,
                    version: fwd_version,
                    session_id: c.session_id,
                    session_key: c.session_key,
                    keys: c.keys,
                    // a nested RFWD is refused
                    proxy_secret: None,
                    service: None,
                    // the answer travels inside RRES: wait for the commit
                    deferred: None,
                };
                self.process_one(&mut fc, items[0], true).await
            }
            _ => vec![Response::err(&[], &[], ErrorType::Block)],
        };
        // The response to the forwarded command (an event for this connection, if any, is not
        // forwarded: a proxy connection does not subscribe).
        let r = responses
            .iter()
            .find(|r| !r.corr_id.is_empty())
            .or_else(|| responses.first())
            .ok_or(ErrorType::Internal)?;
        let encoded = super::delivery::encode_response(
            c.session_id,
            &r.corr_id,
            &r.entity_id,
            &r.msg,
            fwd_version,
        );
        let content =
            hush_proto::transmission::batch_one(&[&encoded], hush_proto::version::SMP_BLOCK_SIZE)
                .map_err(|_| ErrorType::Block)?;
        let mut reversed = client_nonce;
        reversed.reverse();
        let r2 = cb_encrypt(&client_secret, &reversed, &content, PADDED_PROXIED_LEN)
            .map_err(|_| ErrorType::Block)?;
        let mut fr = Vec::with_capacity(1 + fwd_corr.len() + r2.len());
        fr.push(fwd_corr.len() as u8);
        fr.extend_from_slice(fwd_corr);
        fr.extend_from_slice(&r2);
        let mut reversed = proxy_nonce;
        reversed.reverse();
        self.metrics.relay_messages_received.inc();
        Ok(BrokerMsg::RRes(cb_encrypt_no_pad(sess, &reversed, &fr)))
    }

    /// Looks up a queue by recipient id and verifies the authorization against its recipient keys
    /// (a dummy verification when the queue does not exist).
    async fn recipient_queue(
        &self,
        entity: &[u8],
        auth: &Authorization<'_>,
    ) -> Result<QueueRecord, CmdError> {
        let q = match id24(entity) {
            Some(id) => self.store.get_by_recipient(id).await?,
            None => None,
        };
        let q = found_or_dummy(q, auth)?;
        if auth.verify_any(&q.recipient_keys) {
            Ok(q)
        } else {
            Err(CmdError::Auth)
        }
    }

    /// Looks up a queue by sender id. `SKEY k`: verified with `k` if the queue may be secured with
    /// it; `SEND`: verified with the sender key once secured, must be unsigned before.
    async fn sender_queue(
        &self,
        entity: &[u8],
        auth: &Authorization<'_>,
        securing_key: Option<&PublicKeyDer>,
    ) -> Result<QueueRecord, CmdError> {
        let q = match id24(entity) {
            Some(id) => self.store.get_by_sender(id).await?,
            None => None,
        };
        let q = found_or_dummy(q, auth)?;
        let ok = match securing_key {
            Some(k) => verify_securing_key(&q, auth, k),
            None => match &q.sender_key {
                Some(k) => auth.verify(k),
                None if auth.is_present() => {
                    auth.dummy();
                    false
                }
                None => true,
            },
        };
        if ok { Ok(q) } else { Err(CmdError::Auth) }
    }

    /// Looks up a queue by link id. `LKEY k`: verified with `k` if the (messaging) queue may be
    /// secured with it; `LGET`: unsigned, contact queues only.
    async fn link_queue(
        &self,
        entity: &[u8],
        auth: &Authorization<'_>,
        securing_key: Option<&PublicKeyDer>,
    ) -> Result<QueueRecord, CmdError> {
        let q = match id24(entity) {
            Some(id) => self.store.get_by_link(id).await?,
            None => None,
        };
        let q = found_or_dummy(q, auth)?;
        let ok = match securing_key {
            Some(k) => verify_securing_key(&q, auth, k),
            None => is_contact_queue(&q),
        };
        if ok { Ok(q) } else { Err(CmdError::Auth) }
    }

    async fn touch(&self, q: &QueueRecord) -> Result<(), CmdError> {
        let t = today();
        if q.updated_at != Some(t) {
            match self.store.touch_queue(q.recipient_id, t).await {
                Ok(()) | Err(StoreError::Busy) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// `NSUB` (reference `subscribeNotifications`): in a service session the queue's notifier
    /// side is associated with the service (stored once; `SOK serviceId`); outside one an
    /// existing association is removed (`SOK` without id).
    async fn nsub(
        &self,
        c: &mut ConnCtx<'_>,
        q: &QueueRecord,
        nid: EntityId,
        corr: &[u8],
        entity: &[u8],
    ) -> Result<Vec<Response>, CmdError> {
        use hush_store::ServiceParty;
        let rid = q.recipient_id;
        let current = self
            .store
            .get_queue_service(rid, ServiceParty::Notifier)
            .await?;
        let service = match c.service {
            Some(svc) => Some(id24(&svc.service_id).ok_or(CmdError::Internal("service id"))?),
            None => None,
        };
        if current != service {
            self.store
                .set_queue_service(rid, ServiceParty::Notifier, service)
                .await?;
        }
        let client = Client {
            outbox: c.outbox,
            local: c.local,
        };
        let new = self.subscribe_notifier(
            Client {
                outbox: client.outbox,
                local: client.local,
            },
            nid,
        );
        let sok = match service {
            Some(sid) => {
                self.hold_notifier_service(&client, sid);
                if new {
                    self.count_service_notifier(&client);
                }
                Some(short(&sid)?)
            }
            None => None,
        };
        Ok(vec![Response::new(corr, entity, BrokerMsg::Sok(sok))])
    }

    async fn recipient_command(
        &self,
        c: &mut ConnCtx<'_>,
        q: QueueRecord,
        corr: &[u8],
        entity: &[u8],
        cmd: Command,
    ) -> Result<Vec<Response>, CmdError> {
        let one = |msg: BrokerMsg| Ok(vec![Response::new(corr, entity, msg)]);
        let rid = q.recipient_id;
        if !matches!(cmd, Command::Off | Command::Del) {
            check_not_blocked(&q)?;
            self.touch(&q).await?;
        }
        let client = Client {
            outbox: c.outbox,
            local: c.local,
        };
        match cmd {
            Command::Sub => {
                let mut r = self.subscribe(client, &q, corr).await?;
                // In a service session the answer names the service (`SOK serviceId`).
                if let Some(svc) = c.service {
                    for x in &mut r {
                        if x.corr_id == corr && matches!(x.msg, BrokerMsg::Sok(None)) {
                            x.msg = BrokerMsg::Sok(Some(short(&svc.service_id)?));
                        }
                    }
                }
                Ok(r)
            }
            Command::Get => self.get(client, &q, corr).await,
            Command::Ack(id) => self.ack(client, &q, corr, id.as_bytes()).await,
            Command::Key(k) => {
                self.store.secure_queue(rid, k.as_bytes().to_vec()).await?;
                self.metrics.queues_secured.inc();
                one(BrokerMsg::Ok)
            }
            Command::RKey(keys) => {
                if q.mode != Some(hush_store::QueueMode::Contact) {
                    return Err(CmdError::Auth);
                }
                let keys = keys
                    .into_vec()
                    .into_iter()
                    .map(|k| k.as_bytes().to_vec())
                    .collect();
                self.store.set_recipient_keys(rid, keys).await?;
                one(BrokerMsg::Ok)
            }
            Command::NKey {
                notifier_key,
                rcv_ntf_dh_key,
            } => {
                let (creds, srv_key) = new_notifier(&rcv_ntf_dh_key)?;
                let nid = creds.notifier_id;
                let mut attempts = 3;
                let replaced = loop {
                    let creds = NotifierCreds {
                        notifier_id: if attempts == 3 { nid } else { random_id() },
                        notifier_key: notifier_key.as_bytes().to_vec(),
                        rcv_ntf_dh_secret: creds.rcv_ntf_dh_secret,
                    };
                    let id = creds.notifier_id;
                    match self.store.set_notifier(rid, creds).await {
                        Ok(r) => break (r, id),
                        Err(StoreError::DuplicateId) if attempts > 1 => attempts -= 1,
                        Err(e) => return Err(e.into()),
                    }
                };
                let (old, nid) = replaced;
                if let Some(old) = old {
                    self.notifier_deleted(Some(c.outbox.id()), old);
                }
                self.metrics.queues_notify_created.inc();
                one(BrokerMsg::Nid {
                    notifier_id: short(&nid)?,
                    srv_ntf_dh_key: srv_key,
                })
            }
            Command::NDel => {
                if let Some(old) = self.store.delete_notifier(rid).await? {
                    self.notifier_deleted(Some(c.outbox.id()), old);
                    self.metrics.queues_notify_deleted.inc();
                }
                one(BrokerMsg::Ok)
            }
            Command::Off => {
                self.store.suspend_queue(rid).await?;
                one(BrokerMsg::Ok)
            }
            Command::Del => {
                let deleted = self.store.delete_queue(rid).await?;
                self.queue_deleted(Some(c.outbox.id()), &deleted);
                self.metrics.queue_deleted(deleted.sender_key.is_some());
                one(BrokerMsg::Ok)
            }
            Command::LSet { link_id, data } => {
                let link_id = id24(link_id.as_bytes()).ok_or(CmdError::Auth)?;
                if is_secured_msg_queue(&q) {
                    return Err(CmdError::Auth);
                }
                if q.link.as_ref().is_some_and(|l| l.link_id != link_id) {
                    return Err(CmdError::Auth);
                }
                self.store
                    .set_link(
                        rid,
                        QueueLink {
                            link_id,
                            data: link_data(&data),
                        },
                    )
                    .await?;
                one(BrokerMsg::Ok)
            }
            Command::LDel => {
                if q.link.is_some() {
                    self.store.delete_link(rid).await?;
                }
                one(BrokerMsg::Ok)
            }
            Command::Que => {
                let client = Client {
                    outbox: c.outbox,
                    local: c.local,
                };
                let sub = self.local_sub_info(&client, &rid);
                let size = self.store.message_count(rid).await?;
                let head = self.store.peek_message(rid).await?;
                one(BrokerMsg::Info(queue_info_json(
                    &q,
                    sub,
                    size,
                    head.as_ref(),
                )))
            }
            _ => Err(CmdError::Internal("not a recipient command")),
        }
    }

    async fn send(
        &self,
        c: &mut ConnCtx<'_>,
        q: QueueRecord,
        corr: &[u8],
        entity: &[u8],
        notification: bool,
        body: Vec<u8>,
    ) -> Result<Vec<Response>, CmdError> {
        if body.len() > smp_version::max_send_body(c.version) {
            return Err(CmdError::LargeMsg);
        }
        match q.status {
            QueueStatus::Off => return Err(CmdError::Auth),
            QueueStatus::Blocked(info) => return Err(CmdError::Blocked(info)),
            QueueStatus::Active => {}
        }
        self.touch(&q).await?;
        // A one-time link dies once its queue is secured and used.
        if q.link.is_some() && is_secured_msg_queue(&q) {
            let _ = self.store.delete_link(q.recipient_id).await;
        }
        if self.config.store.expire_messages_on_send {
            self.expire_on_send().await;
        }
        let msg = NewMessage {
            msg_id: random_id(),
            ts: now_secs(),
            flags: u8::from(notification),
            body,
        };
        let ntf = match (&q.notifier, notification) {
            (Some(n), true) => Some(pending_ntf(n, &msg)?),
            _ => None,
        };
        let nid = ntf.as_ref().and(q.notifier.as_ref().map(|n| n.notifier_id));
        let client = Client {
            outbox: c.outbox,
            local: c.local,
        };
        let (sent, mut out) = self.send_message_deferred(client, &q, msg, ntf).await?;
        let result = match sent {
            Sent::Durable(r) => r,
            Sent::Pending(durable) => match c.deferred.as_deref_mut() {
                Some(list) => {
                    let (corr, entity) = (corr.to_vec(), entity.to_vec());
                    list.push(Box::pin(async move {
                        SendDone {
                            corr,
                            entity,
                            nid,
                            result: durable.await.map_err(CmdError::from),
                        }
                    }));
                    return Ok(out);
                }
                None => durable.await.map_err(CmdError::from),
            },
        };
        match result? {
            AppendOutcome::Appended { .. } => {
                self.message_stored(nid);
                out.push(Response::new(corr, entity, BrokerMsg::Ok));
                Ok(out)
            }
            AppendOutcome::QuotaExceeded { .. } => Err(CmdError::Quota),
        }
    }

    fn message_stored(&self, nid: Option<EntityId>) {
        self.metrics.messages_sent.inc();
        if let Some(nid) = nid {
            self.metrics.messages_notify_sent.inc();
            self.notify.mark(nid);
        }
    }

    /// The answer to a deferred `SEND` whose commit ended: `OK`, or its error.
    pub fn send_done(&self, d: SendDone) -> Vec<Response> {
        let e = match d.result {
            Ok(AppendOutcome::Appended { .. }) => {
                self.message_stored(d.nid);
                return vec![Response::new(&d.corr, &d.entity, BrokerMsg::Ok)];
            }
            Ok(AppendOutcome::QuotaExceeded { .. }) => CmdError::Quota,
            Err(e) => e,
        };
        e.log("SEND");
        self.count_error("SEND", &e);
        vec![Response::err(&d.corr, &d.entity, e.to_protocol())]
    }

    async fn create_queue(
        &self,
        c: &mut ConnCtx<'_>,
        auth: &Authorization<'_>,
        corr: &[u8],
        req: NewQueueReq,
    ) -> Result<Vec<Response>, CmdError> {
        if !auth.verify(req.rcv_auth_key.as_bytes()) {
            return Err(CmdError::Auth);
        }
        // A service creates queues it subscribes (reference: `SMOnlyCreate` in a service
        // session → `CMD PROHIBITED`).
        if c.service.is_some() && req.sub_mode != hush_proto::smp::SubscriptionMode::Subscribe {
            return Err(CmdError::prohibited());
        }
        let password = &self.config.auth.create_password;
        let allowed = self.config.auth.new_queues && password_ok(password, req.basic_auth.as_ref());
        if !allowed {
            return Err(CmdError::Auth);
        }
        // Without a password anyone may create queues: a connection gets a budget of them, and
        // all connections from one address share another (reconnecting does not renew it).
        if password.is_none()
            && (!c
                .local
                .limits
                .allow_new_queue(self.config.limits.new_queues_per_minute)
                || c.local
                    .limits
                    .peer()
                    .is_some_and(|peer| !self.new_queues_per_ip.allow(&peer)))
        {
            self.metrics.queues_new_refused.inc();
            return Err(CmdError::Quota);
        }
        let rcv_dh = X25519Public::from_spki_der(req.rcv_dh_key.as_bytes())
            .map_err(|_| CmdError::Cmd(CommandError::Syntax))?;
        let srv_dh = X25519Secret::generate();
        let rcv_dh_secret = *srv_dh.dh(&rcv_dh).as_bytes();
        let srv_dh_key = PublicKeyDer::dh_key(srv_dh.public().to_spki_der())
            .map_err(|_| CmdError::Internal("server DH key"))?;
        let ntf = match &req.ntf_creds {
            Some(n) => Some((
                n.ntf_auth_key.as_bytes().to_vec(),
                new_notifier(&n.rcv_ntf_dh_key)?,
            )),
            None => None,
        };
        let mode = req.queue_mode().map(|m| match m {
            QueueMode::Messaging => hush_store::QueueMode::Messaging,
            QueueMode::Contact => hush_store::QueueMode::Contact,
        });
        // Client-supplied sender id (short links) must be derived from the corrId.
        let client_ids: Option<(EntityId, Option<EntityId>, LinkData)> = match &req.queue_req_data {
            Some(QueueReqData::Messaging(Some((sid, d)))) => {
                Some((id_or_prohibited(sid.as_bytes())?, None, link_data(d)))
            }
            Some(QueueReqData::Contact(Some((lid, sid, d)))) => Some((
                id_or_prohibited(sid.as_bytes())?,
                Some(id_or_prohibited(lid.as_bytes())?),
                link_data(d),
            )),
            _ => None,
        };
        if let Some((sid, _, _)) = &client_ids
            && *sid != hush_crypto::sender_id_from_corr_id(corr)
        {
            return Err(CmdError::prohibited());
        }
        for _ in 0..3 {
            let (sender_id, link) = match &client_ids {
                Some((sid, lid, data)) => (
                    *sid,
                    Some(QueueLink {
                        link_id: lid.unwrap_or_else(random_id),
                        data: data.clone(),
                    }),
                ),
                None => (random_id(), None),
            };
            let notifier = ntf.as_ref().map(|(key, (creds, _))| NotifierCreds {
                notifier_id: random_id(),
                notifier_key: key.clone(),
                rcv_ntf_dh_secret: creds.rcv_ntf_dh_secret,
            });
            let record = QueueRecord {
                recipient_id: random_id(),
                recipient_keys: vec![req.rcv_auth_key.as_bytes().to_vec()],
                rcv_dh_secret,
                sender_id,
                sender_key: None,
                mode,
                link: link.clone(),
                notifier: notifier.clone(),
                status: QueueStatus::Active,
                updated_at: Some(today()),
            };
            let rid = record.recipient_id;
            match self.store.create_queue(record).await {
                Ok(()) => {}
                Err(StoreError::DuplicateId) if client_ids.is_some() => {
                    return Err(CmdError::Auth);
                }
                Err(StoreError::DuplicateId) => continue,
                Err(e) => return Err(e.into()),
            }
            // In a service session the queue's recipient side belongs to the service
            // (reference `rcvServiceId = clntServiceId`).
            let service_id = match c.service {
                Some(svc) => {
                    let sid = id24(&svc.service_id).ok_or(CmdError::Internal("service id"))?;
                    self.store
                        .set_queue_service(rid, hush_store::ServiceParty::Recipient, Some(sid))
                        .await?;
                    Some(short(&sid)?)
                }
                None => None,
            };
            self.metrics.queues_created.inc();
            if notifier.is_some() {
                self.metrics.queues_notify_new_created.inc();
            }
            if req.sub_mode == hush_proto::smp::SubscriptionMode::Subscribe {
                self.subscribe_new(
                    Client {
                        outbox: c.outbox,
                        local: c.local,
                    },
                    rid,
                );
            }
            let server_ntf_creds = match (&notifier, &ntf) {
                (Some(n), Some((_, (_, key)))) => Some(ServerNtfCreds {
                    notifier_id: short(&n.notifier_id)?,
                    srv_ntf_dh_key: key.clone(),
                }),
                _ => None,
            };
            let ids = QueueIdsKeys {
                rcv_id: short(&rid)?,
                snd_id: short(&sender_id)?,
                srv_dh_key,
                queue_mode: req.queue_mode(),
                link_id: match &link {
                    Some(l) => Some(short(&l.link_id)?),
                    None => None,
                },
                service_id,
                server_ntf_creds,
            };
            return Ok(vec![Response::new(corr, &[], BrokerMsg::Ids(ids))]);
        }
        Err(CmdError::Internal("could not allocate unique queue ids"))
    }
}

/// Padded length of a proxied transmission block (reference `paddedProxiedTLength`).
const PADDED_PROXIED_LEN: usize = 16226;

fn id_or_prohibited(b: &[u8]) -> Result<EntityId, CmdError> {
    id24(b).ok_or_else(CmdError::prohibited)
}

fn link_data(d: &hush_proto::smp::QueueLinkData) -> LinkData {
    LinkData {
        fixed: d.fixed.as_bytes().to_vec(),
        user: d.user.as_bytes().to_vec(),
    }
}

/// A looked-up queue, or (when it does not exist) `AUTH` after a dummy verification, so that a
/// missing queue takes as long as a wrong signature.
fn found_or_dummy(
    q: Option<QueueRecord>,
    auth: &Authorization<'_>,
) -> Result<QueueRecord, CmdError> {
    match q {
        Some(q) => Ok(q),
        None => {
            auth.dummy();
            Err(CmdError::Auth)
        }
    }
}

/// `SKEY k` / `LKEY k`: verified with `k` when `q` is a messaging queue not secured with another
/// key; otherwise a dummy verification (same work) and a refusal.
fn verify_securing_key(q: &QueueRecord, auth: &Authorization<'_>, k: &PublicKeyDer) -> bool {
    let allowed = q.mode == Some(hush_store::QueueMode::Messaging)
        && q.sender_key.as_ref().is_none_or(|s| s == k.as_bytes());
    if allowed {
        auth.verify(k.as_bytes())
    } else {
        auth.dummy();
        false
    }
}

/// Reference `isContactQueue`: contact mode, or a legacy queue that was never secured.
fn is_contact_queue(q: &QueueRecord) -> bool {
    match q.mode {
        Some(hush_store::QueueMode::Messaging) => false,
        Some(hush_store::QueueMode::Contact) => true,
        None => q.sender_key.is_none(),
    }
}

/// Reference `isSecuredMsgQueue`.
fn is_secured_msg_queue(q: &QueueRecord) -> bool {
    q.mode != Some(hush_store::QueueMode::Contact) && q.sender_key.is_some()
}

/// `LNK senderId fixed user` for the queue's link named by `link_id`.
fn link_response(q: &QueueRecord, link_id: &[u8]) -> Result<BrokerMsg, CmdError> {
    let l = q
        .link
        .as_ref()
        .filter(|l| l.link_id.as_slice() == link_id)
        .ok_or(CmdError::Auth)?;
    let large = |b: &[u8]| {
        hush_proto::encoding::Large::new(b.to_vec()).map_err(|_| CmdError::Internal("link data"))
    };
    Ok(BrokerMsg::Lnk {
        sender_id: short(&q.sender_id)?,
        data: hush_proto::smp::QueueLinkData {
            fixed: large(&l.data.fixed)?,
            user: large(&l.data.user)?,
        },
    })
}

fn check_not_blocked(q: &QueueRecord) -> Result<(), CmdError> {
    match q.status {
        QueueStatus::Blocked(info) => Err(CmdError::Blocked(info)),
        _ => Ok(()),
    }
}

/// New notifier credentials for a recipient's DH key: (creds with a random id, server DH public key).
fn new_notifier(rcv_ntf_dh_key: &PublicKeyDer) -> Result<(NotifierCreds, PublicKeyDer), CmdError> {
    let peer = X25519Public::from_spki_der(rcv_ntf_dh_key.as_bytes())
        .map_err(|_| CmdError::Cmd(CommandError::Syntax))?;
    let srv = X25519Secret::generate();
    let secret = *srv.dh(&peer).as_bytes();
    let key = PublicKeyDer::dh_key(srv.public().to_spki_der())
        .map_err(|_| CmdError::Internal("server DH key"))?;
    Ok((
        NotifierCreds {
            notifier_id: random_id(),
            notifier_key: Vec::new(),
            rcv_ntf_dh_secret: secret,
        },
        key,
    ))
}

/// `NMsgMeta = shortString(msgId) ‖ Int64 ts`, boxed for the notifier (§3.8).
fn pending_ntf(n: &NotifierCreds, msg: &NewMessage) -> Result<PendingNtf, CmdError> {
    let mut meta = Vec::with_capacity(33);
    meta.push(ID_LEN as u8);
    meta.extend_from_slice(&msg.msg_id);
    hush_proto::encoding::put_int64(&mut meta, msg.ts);
    let nonce = hush_crypto::random_nonce();
    let secret = hush_crypto::DhSecret::from_bytes(n.rcv_ntf_dh_secret);
    let enc_meta = hush_crypto::encrypt_nmsg_meta(&secret, &nonce, &meta)
        .map_err(|_| CmdError::Internal("notification metadata"))?;
    Ok(PendingNtf {
        msg_id: msg.msg_id,
        ts: msg.ts,
        nonce,
        enc_meta,
    })
}

fn base64_std(b: &[u8]) -> String {
    hush_proto::encoding::base64url_encode(b)
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SSZ` for unix seconds (proleptic Gregorian, UTC).
pub fn utc_text(secs: i64) -> String {
    hush_server_common::time::Utc::from_unix(secs).iso8601()
}

/// `QUE` answer: the reference's `QueueInfo` JSON (absent optional fields omitted).
fn queue_info_json(
    q: &QueueRecord,
    sub: Option<(&'static str, Option<[u8; 24]>)>,
    size: usize,
    head: Option<&Message>,
) -> Vec<u8> {
    let mut s = format!(
        "{{\"qiSnd\":{},\"qiNtf\":{}",
        q.sender_key.is_some(),
        q.notifier.is_some()
    );
    if let Some((thread, delivered)) = sub {
        s.push_str(&format!(",\"qiSub\":{{\"qSubThread\":\"{thread}\""));
        if let Some(d) = delivered {
            s.push_str(&format!(",\"qDelivered\":\"{}\"", base64_std(&d)));
        }
        s.push('}');
    }
    s.push_str(&format!(",\"qiSize\":{size}"));
    if let Some(m) = head {
        s.push_str(&format!(
            ",\"qiMsg\":{{\"msgId\":\"{}\",\"msgTs\":\"{}\",\"msgType\":\"{}\"}}",
            base64_std(m.msg_id()),
            utc_text(m.ts()),
            if m.is_quota_marker() {
                "quota"
            } else {
                "message"
            }
        ));
    }
    s.push('}');
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::delivery::ClientShared;
    use proptest::prelude::*;
    use std::sync::Arc;

    fn run(bytes: Vec<u8>) -> Vec<Response> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let shared = Shared::for_tests();
            let client = Arc::new(ClientShared::new(1, 18, vec![1; 32], 4));
            let outbox = Outbox::new(client);
            let mut local = LocalSubs::default();
            let key = X25519Secret::generate();
            let secret = key.dh(&X25519Secret::generate().public());
            let keys = KeyCache::default();
            let mut c = ConnCtx {
                outbox: &outbox,
                local: &mut local,
                version: 18,
                session_id: &[1; 32],
                session_key: &key,
                keys: &keys,
                proxy_secret: Some(&secret),
                service: None,
                deferred: None,
            };
            shared.process_transmission(&mut c, &bytes).await
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Garbage never panics and always gets exactly one answer.
        #[test]
        fn garbage_transmissions_get_one_answer(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(run(bytes).len(), 1);
        }

        /// Well-framed transmissions with random tags and parameters: one answer, never a panic.
        #[test]
        fn random_commands_get_one_answer(
            tag in prop::sample::select(hush_proto::smp::COMMAND_TAGS.to_vec()),
            params in proptest::collection::vec(any::<u8>(), 0..200),
            auth_len in prop::sample::select(vec![0usize, 64, 80, 114, 7]),
            entity in proptest::collection::vec(any::<u8>(), 0..30),
        ) {
            let mut t = vec![auth_len as u8];
            t.extend(std::iter::repeat_n(3u8, auth_len));
            if auth_len > 0 {
                t.push(b'0');
            }
            t.push(24);
            t.extend([9u8; 24]);
            t.push(entity.len() as u8);
            t.extend(&entity);
            t.extend(tag.as_bytes());
            if !params.is_empty() {
                t.push(b' ');
                t.extend(&params);
            }
            prop_assert_eq!(run(t).len(), 1);
        }
    }

    #[test]
    fn utc_text_known_dates() {
        assert_eq!(utc_text(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_text(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_text(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc_text(-1), "1969-12-31T23:59:59Z");
    }
}
