//! Typed helpers for every party's commands (reference §3.1–§3.3, §3.7, §3.8).

use hush_crypto::DhSecret;
use hush_proto::address::BasicAuth;
use hush_proto::encoding::ShortString;
use hush_proto::smp::{
    BrokerMsg, Command, MsgFlags, NewNtfCreds, NewQueueReq, PublicKeyDer, QueueLinkData, QueueMode,
    QueueReqData, SubscriptionMode,
};
use hush_proto::version::smp_version;

use crate::ClientError;
use crate::client::{Request, SmpClient};
use crate::keys::{AuthAlgorithm, AuthKey, dh_secret, new_dh_key};
use crate::msg::RawMsg;

/// Parameters of `NEW`.
#[derive(Clone, Debug)]
pub struct NewQueueParams {
    /// Algorithm of the recipient key (default Ed25519).
    pub auth: AuthAlgorithm,
    /// `true` = `S` (the creating connection is subscribed), `false` = `C` (create only).
    pub subscribe: bool,
    /// The relay's `create_password`, if it has one.
    pub basic_auth: Option<BasicAuth>,
    /// Queue mode and short-link data (v15+); default: a messaging queue without link.
    pub queue_req_data: Option<QueueReqData>,
    /// Ask for notifier credentials in the same `NEW` (v17+), with this notifier key
    /// algorithm.
    pub notifier: Option<AuthAlgorithm>,
}

impl Default for NewQueueParams {
    fn default() -> Self {
        NewQueueParams {
            auth: AuthAlgorithm::Ed25519,
            subscribe: true,
            basic_auth: None,
            queue_req_data: Some(QueueReqData::Messaging(None)),
            notifier: None,
        }
    }
}

/// A queue just created, with everything the recipient must keep.
#[derive(Clone, Debug)]
pub struct NewQueue {
    pub rcv_id: Vec<u8>,
    pub snd_id: Vec<u8>,
    /// Authorizes the recipient's commands.
    pub rcv_key: AuthKey,
    /// Decrypts `MSG` bodies ([`RawMsg::decrypt`]).
    pub rcv_dh_secret: DhSecret,
    pub queue_mode: Option<QueueMode>,
    pub link_id: Option<Vec<u8>>,
    pub service_id: Option<Vec<u8>>,
    /// Present when notifier credentials were requested and granted (v17+).
    pub notifier: Option<NotifierCreds>,
}

/// A queue's notifier credentials: the notifier id and key go to the NTF server (which sends
/// `NSUB`); the DH secret decrypts `NMSG` metadata ([`crate::decrypt_nmsg`]).
#[derive(Clone, Debug)]
pub struct NotifierCreds {
    pub notifier_id: Vec<u8>,
    pub notifier_key: AuthKey,
    pub rcv_ntf_dh_secret: DhSecret,
}

fn unexpected(command: &'static str, m: &BrokerMsg) -> ClientError {
    ClientError::UnexpectedResponse {
        command,
        tag: m.tag(),
    }
}

fn expect_ok(command: &'static str, r: Result<BrokerMsg, ClientError>) -> Result<(), ClientError> {
    match r? {
        BrokerMsg::Ok => Ok(()),
        m => Err(unexpected(command, &m)),
    }
}

/// `SOK` (v16+) or `OK` (older, and accepted at any version like the reference client).
fn expect_sub(command: &'static str, r: Result<BrokerMsg, ClientError>) -> Result<(), ClientError> {
    match r? {
        BrokerMsg::Ok | BrokerMsg::Sok(_) => Ok(()),
        m => Err(unexpected(command, &m)),
    }
}

fn expect_msg_or_ok(
    command: &'static str,
    r: Result<BrokerMsg, ClientError>,
) -> Result<Option<RawMsg>, ClientError> {
    match r? {
        BrokerMsg::Ok => Ok(None),
        BrokerMsg::Msg { msg_id, body } => Ok(Some(RawMsg {
            msg_id: msg_id.into_vec(),
            enc_body: body,
        })),
        m => Err(unexpected(command, &m)),
    }
}

fn short(b: &[u8]) -> Result<ShortString, ClientError> {
    ShortString::new(b.to_vec()).map_err(|_| ClientError::Auth("id over 255 bytes"))
}

impl SmpClient {
    /// `NEW`: creates a queue with a fresh recipient key and DH key (and notifier keys when
    /// asked), returning the ids and the secrets to keep.
    pub async fn create_queue(&self, params: NewQueueParams) -> Result<NewQueue, ClientError> {
        self.create_queue_corr(params, None).await
    }

    /// `NEW` sent with the correlation id `corr_id`: a queue whose short-link data names its
    /// sender id in advance (`QueueReqData` with link data), which the relay accepts only if
    /// it is the first 24 bytes of SHA3-384(corrId) ([`hush_crypto::sender_id_from_corr_id`]).
    pub async fn create_queue_with_corr_id(
        &self,
        corr_id: &[u8; 24],
        params: NewQueueParams,
    ) -> Result<NewQueue, ClientError> {
        self.create_queue_corr(params, Some(corr_id)).await
    }

    async fn create_queue_corr(
        &self,
        params: NewQueueParams,
        corr_id: Option<&[u8; 24]>,
    ) -> Result<NewQueue, ClientError> {
        let rcv_key = AuthKey::generate(params.auth)?;
        let (rcv_dh, rcv_dh_pub) = new_dh_key()?;
        let ntf = match params.notifier {
            Some(alg) if self.version() >= smp_version::NEW_NTF_CREDS => {
                let k = AuthKey::generate(alg)?;
                let (dh, dh_pub) = new_dh_key()?;
                Some((k, dh, dh_pub))
            }
            _ => None,
        };
        let req = NewQueueReq {
            rcv_auth_key: rcv_key.public_der()?,
            rcv_dh_key: rcv_dh_pub,
            basic_auth: params.basic_auth,
            sub_mode: if params.subscribe {
                SubscriptionMode::Subscribe
            } else {
                SubscriptionMode::OnlyCreate
            },
            queue_req_data: params.queue_req_data,
            ntf_creds: match &ntf {
                Some((k, _, dh_pub)) => Some(NewNtfCreds {
                    ntf_auth_key: k.public_der()?,
                    rcv_ntf_dh_key: dh_pub.clone(),
                }),
                None => None,
            },
        };
        let cmd = Command::New(req);
        let r = match corr_id {
            Some(c) => {
                self.request_with_corr_id(c, &[], Some(&rcv_key), &cmd)
                    .await
            }
            None => self.request(&[], Some(&rcv_key), &cmd).await,
        };
        let ids = match r? {
            BrokerMsg::Ids(ids) => ids,
            m => return Err(unexpected("NEW", &m)),
        };
        let rcv_dh_secret = dh_secret(&rcv_dh, &ids.srv_dh_key)?;
        let notifier = match (ntf, ids.server_ntf_creds) {
            (Some((notifier_key, dh, _)), Some(creds)) => Some(NotifierCreds {
                notifier_id: creds.notifier_id.into_vec(),
                notifier_key,
                rcv_ntf_dh_secret: dh_secret(&dh, &creds.srv_ntf_dh_key)?,
            }),
            _ => None,
        };
        Ok(NewQueue {
            rcv_id: ids.rcv_id.into_vec(),
            snd_id: ids.snd_id.into_vec(),
            rcv_key,
            rcv_dh_secret,
            queue_mode: ids.queue_mode,
            link_id: ids.link_id.map(ShortString::into_vec),
            service_id: ids.service_id.map(ShortString::into_vec),
            notifier,
        })
    }

    /// `KEY`: the recipient secures its queue with the sender's public key.
    pub async fn secure_queue(
        &self,
        rcv_id: &[u8],
        rcv_key: &AuthKey,
        sender_key: &PublicKeyDer,
    ) -> Result<(), ClientError> {
        let cmd = Command::Key(sender_key.clone());
        expect_ok("KEY", self.request(rcv_id, Some(rcv_key), &cmd).await)
    }

    /// `SKEY`: the sender secures a messaging queue with its own key (signed by that key).
    pub async fn secure_sender(&self, snd_id: &[u8], snd_key: &AuthKey) -> Result<(), ClientError> {
        let cmd = Command::SKey(snd_key.public_der()?);
        expect_ok("SKEY", self.request(snd_id, Some(snd_key), &cmd).await)
    }

    /// `SUB`: subscribes this connection to the queue. `SOK`/`OK` is the answer; a waiting
    /// message then arrives as [`crate::ServerEvent::Message`].
    pub async fn subscribe(&self, rcv_id: &[u8], rcv_key: &AuthKey) -> Result<(), ClientError> {
        expect_sub(
            "SUB",
            self.request(rcv_id, Some(rcv_key), &Command::Sub).await,
        )
    }

    /// `SUB` for many queues at once (batched into as few blocks as possible).
    pub async fn subscribe_many(
        &self,
        queues: &[(&[u8], &AuthKey)],
    ) -> Vec<Result<(), ClientError>> {
        let reqs: Vec<Request<'_>> = queues
            .iter()
            .map(|(id, k)| Request {
                entity_id: id,
                key: Some(k),
                command: &Command::Sub,
            })
            .collect();
        self.request_batch(&reqs)
            .await
            .into_iter()
            .map(|r| expect_sub("SUB", r))
            .collect()
    }

    /// `GET`: the head message without subscribing (`None` = queue empty). Not on a
    /// connection that subscribed the queue.
    pub async fn get(
        &self,
        rcv_id: &[u8],
        rcv_key: &AuthKey,
    ) -> Result<Option<RawMsg>, ClientError> {
        expect_msg_or_ok(
            "GET",
            self.request(rcv_id, Some(rcv_key), &Command::Get).await,
        )
    }

    /// `ACK`: acknowledges (deletes) the delivered message; on a subscribed connection the
    /// answer is the next message, if any.
    pub async fn ack(
        &self,
        rcv_id: &[u8],
        rcv_key: &AuthKey,
        msg_id: &[u8],
    ) -> Result<Option<RawMsg>, ClientError> {
        let cmd = Command::Ack(short(msg_id)?);
        expect_msg_or_ok("ACK", self.request(rcv_id, Some(rcv_key), &cmd).await)
    }

    /// `OFF`: suspends the queue (further `SEND`s fail with `AUTH`).
    pub async fn suspend(&self, rcv_id: &[u8], rcv_key: &AuthKey) -> Result<(), ClientError> {
        expect_ok(
            "OFF",
            self.request(rcv_id, Some(rcv_key), &Command::Off).await,
        )
    }

    /// `DEL`: deletes the queue and its messages.
    pub async fn delete(&self, rcv_id: &[u8], rcv_key: &AuthKey) -> Result<(), ClientError> {
        expect_ok(
            "DEL",
            self.request(rcv_id, Some(rcv_key), &Command::Del).await,
        )
    }

    /// `QUE`: the relay's debugging information about the queue (`INFO` JSON text).
    pub async fn queue_info(
        &self,
        rcv_id: &[u8],
        rcv_key: &AuthKey,
    ) -> Result<String, ClientError> {
        match self.request(rcv_id, Some(rcv_key), &Command::Que).await? {
            BrokerMsg::Info(json) => Ok(String::from_utf8_lossy(&json).into_owned()),
            m => Err(unexpected("QUE", &m)),
        }
    }

    /// `SEND`: unsigned before the queue is secured (and always on contact queues), signed
    /// with the sender key after. `notification` asks the relay to notify the recipient's
    /// notifier.
    pub async fn send(
        &self,
        snd_id: &[u8],
        snd_key: Option<&AuthKey>,
        notification: bool,
        body: &[u8],
    ) -> Result<(), ClientError> {
        let cmd = Command::Send {
            flags: MsgFlags { notification },
            body: body.to_vec(),
        };
        expect_ok("SEND", self.request(snd_id, snd_key, &cmd).await)
    }

    /// `NKEY` with given keys: returns the notifier id and the relay's notification DH key.
    pub async fn nkey(
        &self,
        rcv_id: &[u8],
        rcv_key: &AuthKey,
        notifier_key: &PublicKeyDer,
        rcv_ntf_dh_key: &PublicKeyDer,
    ) -> Result<(Vec<u8>, PublicKeyDer), ClientError> {
        let cmd = Command::NKey {
            notifier_key: notifier_key.clone(),
            rcv_ntf_dh_key: rcv_ntf_dh_key.clone(),
        };
        match self.request(rcv_id, Some(rcv_key), &cmd).await? {
            BrokerMsg::Nid {
                notifier_id,
                srv_ntf_dh_key,
            } => Ok((notifier_id.into_vec(), srv_ntf_dh_key)),
            m => Err(unexpected("NKEY", &m)),
        }
    }

    /// `NKEY` with fresh keys: creates (or replaces) the queue's notifier credentials.
    pub async fn enable_notifications(
        &self,
        rcv_id: &[u8],
        rcv_key: &AuthKey,
        notifier_alg: AuthAlgorithm,
    ) -> Result<NotifierCreds, ClientError> {
        let notifier_key = AuthKey::generate(notifier_alg)?;
        let (dh, dh_pub) = new_dh_key()?;
        let (notifier_id, srv_key) = self
            .nkey(rcv_id, rcv_key, &notifier_key.public_der()?, &dh_pub)
            .await?;
        Ok(NotifierCreds {
            notifier_id,
            notifier_key,
            rcv_ntf_dh_secret: dh_secret(&dh, &srv_key)?,
        })
    }

    /// `NDEL`: removes the queue's notifier credentials.
    pub async fn disable_notifications(
        &self,
        rcv_id: &[u8],
        rcv_key: &AuthKey,
    ) -> Result<(), ClientError> {
        expect_ok(
            "NDEL",
            self.request(rcv_id, Some(rcv_key), &Command::NDel).await,
        )
    }

    /// `NSUB` (notifier party, e.g. the NTF server): `NMSG`s then arrive as
    /// [`crate::ServerEvent::Notification`].
    pub async fn subscribe_notifier(
        &self,
        notifier_id: &[u8],
        notifier_key: &AuthKey,
    ) -> Result<(), ClientError> {
        expect_sub(
            "NSUB",
            self.request(notifier_id, Some(notifier_key), &Command::NSub)
                .await,
        )
    }

    /// `NSUB` for many notifiers at once (batched).
    pub async fn subscribe_notifiers(
        &self,
        notifiers: &[(&[u8], &AuthKey)],
    ) -> Vec<Result<(), ClientError>> {
        let reqs: Vec<Request<'_>> = notifiers
            .iter()
            .map(|(id, k)| Request {
                entity_id: id,
                key: Some(k),
                command: &Command::NSub,
            })
            .collect();
        self.request_batch(&reqs)
            .await
            .into_iter()
            .map(|r| expect_sub("NSUB", r))
            .collect()
    }

    /// `NSUB` for many notifiers at once (batched), each answer's service id: `Some` when
    /// the relay associated the notifier with this connection's service (`SOK serviceId`, a
    /// service session, v16+), `None` for a plain `SOK`/`OK`.
    pub async fn subscribe_notifiers_service(
        &self,
        notifiers: &[(&[u8], &AuthKey)],
    ) -> Vec<Result<Option<Vec<u8>>, ClientError>> {
        let reqs: Vec<Request<'_>> = notifiers
            .iter()
            .map(|(id, k)| Request {
                entity_id: id,
                key: Some(k),
                command: &Command::NSub,
            })
            .collect();
        self.request_batch(&reqs)
            .await
            .into_iter()
            .map(|r| match r? {
                BrokerMsg::Ok | BrokerMsg::Sok(None) => Ok(None),
                BrokerMsg::Sok(Some(id)) => Ok(Some(id.into_vec())),
                m => Err(unexpected("NSUB", &m)),
            })
            .collect()
    }

    /// `NSUBS` (notifier service session only): subscribes every notifier the relay has
    /// associated with this service, signed by the session's service key with the service id
    /// as entity. Returns `n` of `SOKS n` (how many the relay subscribed); `NMSG`s then
    /// arrive as for `NSUB`. A later `NSUBS` from another connection ends this one's
    /// ([`crate::ServerEvent::ServiceEnd`], `ENDS n`).
    pub async fn subscribe_service_notifiers(&self) -> Result<i64, ClientError> {
        let svc = self
            .service()
            .ok_or(ClientError::Auth("NSUBS needs a service session"))?;
        let key = AuthKey::Ed25519(svc.key.clone());
        let service_id = svc.service_id.clone();
        // A relay walking many associations takes longer than one command.
        let timeout = self
            .config()
            .command_timeout
            .max(std::time::Duration::from_secs(60));
        let r = self
            .request_batch_timeout(
                &[Request {
                    entity_id: &service_id,
                    key: Some(&key),
                    command: &Command::NSubs,
                }],
                timeout,
            )
            .await
            .pop()
            .unwrap_or(Err(ClientError::Closed));
        match r? {
            BrokerMsg::Soks(n) => Ok(n),
            m => Err(unexpected("NSUBS", &m)),
        }
    }

    /// `LKEY` (short links, v15): reads a one-time invitation's link data and secures its
    /// queue with `snd_key` in one step (signed by that key). Returns the queue's sender id and
    /// the encrypted link data. Repeating it with the same key reads the data again; another
    /// key gets `AUTH`.
    pub async fn secure_get_link(
        &self,
        link_id: &[u8],
        snd_key: &AuthKey,
    ) -> Result<(Vec<u8>, QueueLinkData), ClientError> {
        let cmd = Command::LKey(snd_key.public_der()?);
        match self.request(link_id, Some(snd_key), &cmd).await? {
            BrokerMsg::Lnk { sender_id, data } => Ok((sender_id.into_vec(), data)),
            m => Err(unexpected("LKEY", &m)),
        }
    }

    /// `LGET` (short links, v15, unsigned): reads a contact address's link data. Returns the
    /// queue's sender id and the encrypted link data.
    pub async fn get_link(&self, link_id: &[u8]) -> Result<(Vec<u8>, QueueLinkData), ClientError> {
        match self.request(link_id, None, &Command::LGet).await? {
            BrokerMsg::Lnk { sender_id, data } => Ok((sender_id.into_vec(), data)),
            m => Err(unexpected("LGET", &m)),
        }
    }

    /// `PING` → `PONG`.
    pub async fn ping(&self) -> Result<(), ClientError> {
        match self.request(&[], None, &Command::Ping).await? {
            BrokerMsg::Pong => Ok(()),
            m => Err(unexpected("PING", &m)),
        }
    }
}
