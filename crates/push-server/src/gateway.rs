//! The [`PushGateway`] implementations that need a push-server: [`InProcessGateway`] (direct
//! calls into a [`PushService`] running in the same process) and [`AnyGateway`] (it or a
//! [`RemoteGateway`]). The trait and its types are push-api's ([`push_api::gateway`], re-exported
//! here); an ntf-server that only talks to a remote push-server uses push-api alone.

pub use push_api::gateway::*;
use push_api::{PushJob, RemoteGateway};

use crate::service::PushService;

/// Direct calls into a [`PushService`] running in the same process.
#[derive(Clone, Debug)]
pub struct InProcessGateway {
    service: PushService,
    client: String,
}

impl InProcessGateway {
    /// `client` names the ntf-server (feedback is kept per client).
    pub fn new(service: PushService, client: impl Into<String>) -> InProcessGateway {
        InProcessGateway {
            service,
            client: client.into(),
        }
    }
}

impl PushGateway for InProcessGateway {
    async fn submit(&self, job: PushJob) -> Result<SubmitOutcome, GatewayError> {
        self.service.submit(&self.client, job).await
    }

    async fn feedback(&self, after: u64, max: u32) -> Result<Vec<FeedbackEvent>, GatewayError> {
        self.service.feedback(&self.client, after, max).await
    }

    async fn ack_feedback(&self, up_to: u64) -> Result<(), GatewayError> {
        self.service.ack_feedback(&self.client, up_to).await
    }
}

/// Either implementation, so that the ntf-server can hold one type.
#[derive(Debug)]
pub enum AnyGateway {
    InProcess(InProcessGateway),
    Remote(RemoteGateway),
}

impl PushGateway for AnyGateway {
    async fn submit(&self, job: PushJob) -> Result<SubmitOutcome, GatewayError> {
        match self {
            AnyGateway::InProcess(g) => g.submit(job).await,
            AnyGateway::Remote(g) => g.submit(job).await,
        }
    }

    async fn feedback(&self, after: u64, max: u32) -> Result<Vec<FeedbackEvent>, GatewayError> {
        match self {
            AnyGateway::InProcess(g) => g.feedback(after, max).await,
            AnyGateway::Remote(g) => g.feedback(after, max).await,
        }
    }

    async fn ack_feedback(&self, up_to: u64) -> Result<(), GatewayError> {
        match self {
            AnyGateway::InProcess(g) => g.ack_feedback(up_to).await,
            AnyGateway::Remote(g) => g.ack_feedback(up_to).await,
        }
    }
}
