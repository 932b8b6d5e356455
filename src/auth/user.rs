//! User tokens from the host app: HS256 with a shared secret (e.g. a Supabase access
//! token), or RS256/ES256 (and their larger siblings) checked against the identity
//! provider's JWKS. Keys are cached; a token naming an unknown `kid` triggers a re-fetch at
//! most once per `SWITCHBOARD_USER_JWKS_MIN_REFRESH`, so a key rotation is picked up without
//! a restart and a flood of made-up `kid`s cannot hammer the provider. The cache is also
//! refreshed when it is older than an hour.
//!
//! The algorithm comes from the token header but is only ever checked against a key of the
//! matching kind: HS* against the configured secret, asymmetric ones against JWKS keys.
//! `none` does not parse, and an HS256 token "signed" with a public key has no secret to
//! match.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

use crate::config::AccessSettings;

/// What a verified user token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserClaims {
    /// The user (`sub`).
    pub sub: String,
    /// Scenarios the user may start; `None` is any.
    pub scenarios: Option<Vec<String>>,
}

/// Why a user token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserTokenError {
    /// Bad signature, algorithm, claims, issuer, audience, or an unknown key.
    #[error("the user token is not valid: {0}")]
    Invalid(String),
    /// The token has expired.
    #[error("the user token has expired")]
    Expired,
    /// The identity provider's keys could not be fetched.
    #[error("the identity provider's keys are unavailable: {0}")]
    Unavailable(String),
}

const MAX_CACHE_AGE: Duration = Duration::from_secs(3600);

struct Jwks {
    url: String,
    http: reqwest::Client,
    keys: RwLock<HashMap<String, DecodingKey>>,
    /// When the key set was last fetched, and when a fetch was last attempted.
    times: Mutex<(Option<Instant>, Option<Instant>)>,
    min_refresh: Duration,
}

/// Verifies user tokens.
pub struct UserVerifier {
    secret: Option<DecodingKey>,
    jwks: Option<Jwks>,
    issuer: Option<String>,
    audience: Option<String>,
    scenarios_claim: Option<String>,
}

impl UserVerifier {
    /// `None` when no user-token setting is configured.
    pub fn from_settings(a: &AccessSettings) -> Option<Self> {
        if !a.user_tokens() {
            return None;
        }
        Some(Self {
            secret: a
                .user_jwt_secret
                .as_ref()
                .map(|s| DecodingKey::from_secret(s.expose_secret().as_bytes())),
            jwks: a.user_jwks_url.as_ref().map(|url| Jwks {
                url: url.clone(),
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .expect("a plain reqwest client builds"),
                keys: RwLock::default(),
                times: Mutex::default(),
                min_refresh: a.jwks_min_refresh,
            }),
            issuer: a.user_jwt_issuer.clone(),
            audience: a.user_jwt_audience.clone(),
            scenarios_claim: a.user_scenarios_claim.clone(),
        })
    }

    /// Verifies a token and returns its user.
    pub async fn verify(&self, token: &str) -> Result<UserClaims, UserTokenError> {
        let invalid = |m: &str| UserTokenError::Invalid(m.to_owned());
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed"))?;
        let key = match header.alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => self
                .secret
                .clone()
                .ok_or_else(|| invalid("HMAC tokens are not accepted"))?,
            _ => {
                let jwks = self
                    .jwks
                    .as_ref()
                    .ok_or_else(|| invalid("asymmetric tokens need SWITCHBOARD_USER_JWKS_URL"))?;
                let kid = header.kid.as_deref().ok_or_else(|| invalid("no kid"))?;
                jwks.key(kid).await?
            }
        };
        let mut v = Validation::new(header.alg);
        v.leeway = 30;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "sub"]);
        match &self.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
        }
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &v)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => UserTokenError::Expired,
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => invalid("not yet valid"),
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => invalid("wrong issuer"),
                jsonwebtoken::errors::ErrorKind::InvalidAudience => invalid("wrong audience"),
                _ => invalid("bad signature or claims"),
            })?;
        let claims = data.claims;
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .ok_or_else(|| invalid("no usable sub"))?
            .to_owned();
        let scenarios = self
            .scenarios_claim
            .as_ref()
            .and_then(|c| claims.get(c))
            .map(|v| match v {
                Value::Array(a) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                Value::String(s) => s
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
                _ => Vec::new(),
            });
        Ok(UserClaims { sub, scenarios })
    }
}

impl Jwks {
    async fn key(&self, kid: &str) -> Result<DecodingKey, UserTokenError> {
        let stale = self
            .times
            .lock()
            .await
            .0
            .is_none_or(|t| t.elapsed() > MAX_CACHE_AGE);
        if !stale && let Some(k) = self.keys.read().await.get(kid) {
            return Ok(k.clone());
        }
        self.refresh().await?;
        self.keys
            .read()
            .await
            .get(kid)
            .cloned()
            .ok_or_else(|| UserTokenError::Invalid(format!("unknown kid {kid:?}")))
    }

    /// Re-fetches the key set, at most once per `min_refresh` (successful or not).
    async fn refresh(&self) -> Result<(), UserTokenError> {
        let mut times = self.times.lock().await;
        if times.1.is_some_and(|t| t.elapsed() < self.min_refresh) {
            return match times.0 {
                Some(_) => Ok(()),
                None => Err(UserTokenError::Unavailable(
                    "the last JWKS fetch failed; retrying shortly".into(),
                )),
            };
        }
        times.1 = Some(Instant::now());
        let unavailable = |e: &dyn std::fmt::Display| UserTokenError::Unavailable(e.to_string());
        let resp = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        if !resp.status().is_success() {
            return Err(unavailable(&format!("JWKS answered {}", resp.status())));
        }
        let set: JwkSet = resp.json().await.map_err(|e| unavailable(&e))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = &jwk.common.key_id else {
                continue;
            };
            if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
                continue; // shared secrets never come from a JWKS
            }
            match DecodingKey::from_jwk(jwk) {
                Ok(k) => {
                    keys.insert(kid.clone(), k);
                }
                Err(e) => tracing::warn!(kid, error = %e, "skipping an unusable JWKS key"),
            }
        }
        tracing::info!(keys = keys.len(), "fetched the user-token JWKS");
        *self.keys.write().await = keys;
        times.0 = Some(Instant::now());
        Ok(())
    }
}
