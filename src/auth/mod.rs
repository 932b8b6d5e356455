//! Credentials. Three kinds: the server API key (operators and back ends), session tokens
//! (a browser acting on one session), and user tokens from the host app ([`user`]).
//! The HTTP edge (`http::caller`) classifies a request and enforces anonymous access and
//! rate limits on the model-backed endpoints.
//!
//! Session tokens are HS256 JWTs that let a browser act on one session.
//!
//! Claims are `sid` (session id), `scn` (scenario id), `root` (root agent, so a session
//! whose state was lost can be re-created from its token), `iat` and `exp`. A token is
//! taken from `Authorization: Bearer`, or from `?token=` on the WebSocket and SSE routes only
//! (browsers cannot set headers there). Tokens are never logged.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::clock::unix_now_ms;
use crate::config::Config;
use crate::domain::SessionId;

pub mod user;

/// Claims of a session token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionClaims {
    /// Session id.
    pub sid: String,
    /// Scenario id.
    pub scn: String,
    /// Root agent at bootstrap.
    #[serde(default)]
    pub root: String,
    /// Issued at (unix seconds).
    pub iat: u64,
    /// Issued at (unix milliseconds), to compare with the store's dataset age.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iatm: Option<u64>,
    /// Expires at (unix seconds).
    pub exp: u64,
    /// The host app's user (`sub` of the user token that created the session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token was sent.
    #[error("a session token is required (Authorization: Bearer <token>)")]
    Missing,
    /// The token has expired.
    #[error("the session token has expired")]
    Expired,
    /// Bad signature, wrong algorithm, malformed, or issued for another session.
    #[error("the session token is not valid for this session")]
    Invalid,
}

/// Signs and verifies session tokens.
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl TokenIssuer {
    /// From the configured secret; embedded mode without one gets a random per-process
    /// secret (tokens then do not survive a restart, which the startup log says).
    pub fn from_config(config: &Config) -> (Self, bool) {
        let (secret, generated) = match &config.session_secret {
            Some(s) => (s.expose_secret().as_bytes().to_vec(), false),
            None => {
                let mut buf = vec![0u8; 32];
                rand::rng().fill_bytes(&mut buf);
                (buf, true)
            }
        };
        (Self::new(&secret, config.token_ttl), generated)
    }

    /// An issuer for a secret and token lifetime.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sid"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    /// A token for a session; returns it with its expiry (unix seconds).
    pub fn issue(&self, sid: &SessionId, scenario: &str, root: &str) -> (String, u64) {
        self.issue_for(sid.as_str(), scenario, root, None)
    }

    /// A token for a session created by (or for) user `uid`.
    pub fn issue_user(
        &self,
        sid: &SessionId,
        scenario: &str,
        root: &str,
        uid: Option<&str>,
    ) -> (String, u64) {
        self.issue_for(sid.as_str(), scenario, root, uid)
    }

    /// A token for server-side agent session `id`. Its subject is `agent:<id>`, which no
    /// realtime session id can be (they have no `:`), so the two kinds never stand in for
    /// each other.
    pub fn issue_agent(&self, id: &str) -> (String, u64) {
        self.issue_for(&format!("agent:{id}"), "", "", None)
    }

    /// Verifies a token issued by [`Self::issue_agent`] for `id`.
    pub fn verify_agent(&self, token: &str, id: &str) -> Result<SessionClaims, TokenError> {
        self.verify(token, &format!("agent:{id}"))
    }

    fn issue_for(&self, sid: &str, scenario: &str, root: &str, uid: Option<&str>) -> (String, u64) {
        let iatm = unix_now_ms();
        let iat = iatm / 1000;
        let exp = iat + self.ttl.as_secs();
        let claims = SessionClaims {
            sid: sid.to_owned(),
            scn: scenario.to_owned(),
            root: root.to_owned(),
            iat,
            iatm: Some(iatm),
            exp,
            uid: uid.map(str::to_owned),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail");
        (token, exp)
    }

    /// Verifies a token and checks it belongs to `sid`.
    pub fn verify(&self, token: &str, sid: &str) -> Result<SessionClaims, TokenError> {
        let claims = self.verify_any(token)?;
        if claims.sid != sid {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }

    /// Verifies a token for whichever session it names.
    pub fn verify_any(&self, token: &str) -> Result<SessionClaims, TokenError> {
        let data = jsonwebtoken::decode::<SessionClaims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid,
        })?;
        Ok(data.claims)
    }
}

/// True when `given` is one of the configured server API keys. Every key is compared, in
/// constant time, so neither the match nor its position shows in the timing.
pub fn is_api_key(config: &Config, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    let mut found = subtle::Choice::from(0);
    for k in &config.api_keys {
        found |= given.as_bytes().ct_eq(k.expose_secret().as_bytes());
    }
    found.into()
}

impl SessionClaims {
    /// When the token was issued, in unix ms (the end of `iat`'s second when only `iat` is
    /// known, so an ambiguous token counts as the newer one).
    pub fn issued_ms(&self) -> u64 {
        self.iatm.unwrap_or(self.iat * 1000 + 999)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_for_their_session_and_secret() {
        let issuer = TokenIssuer::new(&[7u8; 32], Duration::from_secs(60));
        let a: SessionId = "a".parse().unwrap();
        let (t, exp) = issuer.issue(&a, "simpleHandoff", "greeter");
        assert!(exp > crate::clock::unix_now());
        let claims = issuer.verify(&t, "a").unwrap();
        assert_eq!(
            (claims.scn.as_str(), claims.root.as_str()),
            ("simpleHandoff", "greeter")
        );
        assert_eq!(issuer.verify(&t, "b"), Err(TokenError::Invalid));
        let other = TokenIssuer::new(&[8u8; 32], Duration::from_secs(60));
        assert_eq!(other.verify(&t, "a"), Err(TokenError::Invalid));
        assert_eq!(issuer.verify("garbage", "a"), Err(TokenError::Invalid));
        let expired = TokenIssuer::new(&[7u8; 32], Duration::ZERO);
        let (old, _) = expired.issue(&a, "s", "r");
        let mut strict = TokenIssuer::new(&[7u8; 32], Duration::from_secs(60));
        strict.validation.leeway = 0;
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(strict.verify(&old, "a"), Err(TokenError::Expired));
    }
}
