//! The operator API's containment calls: detections, an identity's
//! quarantines and detections, quarantine and release
//! (`/v1/leash/detections`, `/v1/leash/identities`).
//!
//! Identities travel in query values (percent-encoded by
//! [`crate::path::query_value`]) or JSON bodies, never as raw URL text.

use leash_api::{
    Applied, DetectionPage, DetectionView, IdentityRef, IdentityView, QuarantineRequest,
};
use reqwest::Method;

use super::{LeashClient, TokenUse, required};
use crate::ClientError;
use crate::path;
use crate::types::Envelope;

impl LeashClient {
    /// `GET /v1/leash/detections?after=SEQ&limit=N`: detections with a seq
    /// above `after` (all with `None`), ascending; the broker caps `limit`
    /// at 1000. The page's `next_after` is set when it was full.
    pub async fn detections(
        &self,
        after: Option<i64>,
        limit: u32,
    ) -> Result<DetectionPage, ClientError> {
        let url = match after {
            Some(a) => format!("/v1/leash/detections?after={a}&limit={limit}"),
            None => format!("/v1/leash/detections?limit={limit}"),
        };
        let env: Envelope<DetectionPage> = self
            .envelope(Method::GET, &url, None, TokenUse::Send)
            .await?;
        required(env.data, "data")
    }

    /// `GET /v1/leash/detections/<id>`: one detection, `None` when the
    /// broker has none with this id (404).
    pub async fn detection(&self, id: &str) -> Result<Option<DetectionView>, ClientError> {
        let url = format!(
            "/v1/leash/detections/{}",
            path::segment(id, "the detection id")?
        );
        match self
            .envelope::<DetectionView>(Method::GET, &url, None, TokenUse::Send)
            .await
        {
            Ok(env) => required(env.data, "data").map(Some),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/leash/identities?workload=W&issuer=I&subject=S`: the
    /// identity's quarantine in force, its quarantine history and its
    /// recent detections.
    pub async fn identity(&self, who: &IdentityRef) -> Result<IdentityView, ClientError> {
        let url = format!(
            "/v1/leash/identities?workload={}&issuer={}&subject={}",
            path::query_value(&who.workload, "the workload")?,
            path::query_value(&who.issuer, "the issuer")?,
            path::query_value(&who.subject, "the subject")?,
        );
        let env: Envelope<IdentityView> = self
            .envelope(Method::GET, &url, None, TokenUse::Send)
            .await?;
        required(env.data, "data")
    }

    /// `POST /v1/leash/identities/quarantine`: refuses the identity's
    /// logins, on every replica, until released or for `req.duration`.
    /// Returns 1 when a quarantine was placed, 0 when one was already in
    /// force. Sessions already open stay open: revoke them with
    /// [`LeashClient::admin_revoke_workload`] or `admin_revoke_accessor`.
    pub async fn quarantine(&self, req: &QuarantineRequest) -> Result<u64, ClientError> {
        self.applied("/v1/leash/identities/quarantine", req).await
    }

    /// `POST /v1/leash/identities/release`: ends every quarantine of the
    /// identity in force now; returns how many.
    pub async fn release(&self, who: &IdentityRef) -> Result<u64, ClientError> {
        self.applied("/v1/leash/identities/release", who).await
    }

    async fn applied(&self, url: &str, body: &impl serde::Serialize) -> Result<u64, ClientError> {
        let body =
            serde_json::to_value(body).map_err(|e| ClientError::InvalidInput(e.to_string()))?;
        let env: Envelope<Applied> = self
            .envelope(Method::POST, url, Some(&body), TokenUse::Send)
            .await?;
        Ok(required(env.data, "data")?.applied)
    }
}
