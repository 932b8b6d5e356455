//! User tokens from the host app: a JWKS server on loopback (RS256 and ES256 keys), an
//! HS256 shared secret, every way a token can be wrong, and a key rotation picked up without
//! a restart. Refusals happen before any upstream call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::*;

const ISS: &str = "https://idp.test/auth/v1";
const AUD: &str = "switchboard";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/jwt/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn jwk(name: &str) -> Value {
    serde_json::from_slice(&fixture(&format!("{name}.jwk.json"))).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Valid claims for user `sub`; `patch` overrides or adds fields.
fn claims(sub: &str, patch: Value) -> Value {
    let mut c = json!({"sub": sub, "iss": ISS, "aud": AUD, "iat": now(), "exp": now() + 600,
                       "role": "authenticated"});
    for (k, v) in patch.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// Signs with fixture key `key` (`rsa1`, `rsa2`, `ec1`), naming `kid`.
fn sign(key: &str, kid: &str, claims: &Value) -> String {
    let (alg, enc) = if key.starts_with("ec") {
        (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&fixture(&format!("{key}.pem"))).unwrap(),
        )
    } else {
        (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&fixture(&format!("{key}.pem"))).unwrap(),
        )
    };
    let mut h = Header::new(alg);
    h.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&h, claims, &enc).unwrap()
}

fn b64(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A JWKS server whose key set the test can replace; counts fetches.
struct Idp {
    server: MockServer,
    keys: Arc<Mutex<Vec<Value>>>,
}

impl Idp {
    async fn start(keys: Vec<Value>) -> Self {
        let server = MockServer::start().await;
        let keys = Arc::new(Mutex::new(keys));
        let k = keys.clone();
        Mock::given(method("GET"))
            .and(path("/.well-known/jwks.json"))
            .respond_with(move |_: &Request| {
                ResponseTemplate::new(200).set_body_json(json!({"keys": *k.lock().unwrap()}))
            })
            .mount(&server)
            .await;
        Self { server, keys }
    }

    fn url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.server.uri())
    }

    async fn fetches(&self) -> usize {
        received_get(&self.server, "/.well-known/jwks.json").await
    }
}

async fn received_get(server: &MockServer, p: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == p)
        .count()
}

async fn session2(app: &TestApp, bearer: Option<&str>, scenario: &str) -> (u16, Value) {
    let mut req = app
        .client
        .get(app.url(&format!("/api/session2?scenario_id={scenario}")));
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    split(req.send().await.unwrap()).await
}

async fn upstream() -> MockServer {
    upstream_with(
        "/v1/realtime/client_secrets",
        ResponseTemplate::new(200).set_body_json(client_secret_body()),
    )
    .await
}

#[tokio::test]
async fn jwks_tokens_are_verified_and_every_bad_one_is_refused_before_the_upstream() {
    let idp = Idp::start(vec![jwk("rsa1"), jwk("ec1")]).await;
    let model = upstream().await;
    let jwks = idp.url();
    let app = spawn_online(&model, move |c| {
        c.access.user_jwks_url = Some(jwks);
        c.access.user_jwt_issuer = Some(ISS.into());
        c.access.user_jwt_audience = Some(AUD.into());
        c.access.user_scenarios_claim = Some("scenarios".into());
        c.access.allow_anonymous = Some(false);
    })
    .await;

    let (st, e) = session2(&app, None, "retail").await;
    assert_error(st, &e, 401, "unauthorized");

    let rsa1_pub = fixture("rsa1.pub.pem");
    let hs_confusion = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("rsa1".into());
        jsonwebtoken::encode(
            &h,
            &claims("mallory", json!({})),
            &EncodingKey::from_secret(&rsa1_pub),
        )
        .unwrap()
    };
    let none_alg = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": "rsa1"})),
        b64(&claims("mallory", json!({})))
    );
    let tampered = {
        let good = sign("rsa1", "rsa1", &claims("alice", json!({})));
        let parts: Vec<&str> = good.split('.').collect();
        format!(
            "{}.{}.{}",
            parts[0],
            b64(&claims("admin", json!({}))),
            parts[2]
        )
    };
    let bad = [
        (
            "expired",
            sign(
                "rsa1",
                "rsa1",
                &claims("alice", json!({"exp": now() - 120, "iat": now() - 700})),
            ),
        ),
        (
            "not yet valid",
            sign(
                "rsa1",
                "rsa1",
                &claims("alice", json!({"nbf": now() + 600})),
            ),
        ),
        (
            "wrong iss",
            sign(
                "rsa1",
                "rsa1",
                &claims("alice", json!({"iss": "https://evil.test"})),
            ),
        ),
        (
            "wrong aud",
            sign(
                "rsa1",
                "rsa1",
                &claims("alice", json!({"aud": "other-app"})),
            ),
        ),
        ("alg none", none_alg),
        ("HS256 signed with the public key", hs_confusion),
        (
            "unknown kid",
            sign("rsa2", "rsa2", &claims("alice", json!({}))),
        ),
        (
            "kid of another key",
            sign("rsa2", "rsa1", &claims("alice", json!({}))),
        ),
        ("tampered payload", tampered),
        (
            "no sub",
            sign(
                "rsa1",
                "rsa1",
                &json!({"iss": ISS, "aud": AUD, "exp": now() + 600}),
            ),
        ),
    ];
    for (what, token) in &bad {
        let (st, e) = session2(&app, Some(token), "retail").await;
        assert_error(st, &e, 401, "unauthorized");
        assert!(
            !e.to_string().contains(token.as_str()),
            "{what}: the token is not echoed"
        );
    }
    assert!(
        received(&model, "/v1/realtime/client_secrets")
            .await
            .is_empty(),
        "no refused call reached the upstream"
    );

    // Valid RS256 and ES256 tokens: the session belongs to their `sub`.
    let alice = sign("rsa1", "rsa1", &claims("alice", json!({})));
    let (st, boot) = session2(&app, Some(&alice), "retail").await;
    assert_eq!(st, 200, "{boot}");
    let sid = boot["session_id"].as_str().unwrap();
    let token = boot["events"]["token"].as_str().unwrap();
    let resp = app
        .client
        .get(app.url(&format!("/api/sessions/{sid}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let (_, view) = split(resp).await;
    assert_eq!(view["user_id"], "alice");
    let bob = sign("ec1", "ec1", &claims("bob", json!({})));
    assert_eq!(session2(&app, Some(&bob), "retail").await.0, 200);

    // The scenarios claim restricts what a user may start.
    let carol = sign(
        "rsa1",
        "rsa1",
        &claims("carol", json!({"scenarios": ["simpleHandoff"]})),
    );
    let (st, e) = session2(&app, Some(&carol), "retail").await;
    assert_error(st, &e, 403, "scenario_not_allowed");
    assert_eq!(session2(&app, Some(&carol), "simpleHandoff").await.0, 200);
}

#[tokio::test]
async fn a_key_rotation_is_picked_up_without_a_restart_and_unknown_kids_cannot_flood_the_idp() {
    let idp = Idp::start(vec![jwk("rsa1")]).await;
    let model = upstream().await;
    let jwks = idp.url();
    let app = spawn_online(&model, move |c| {
        c.access.user_jwks_url = Some(jwks);
        c.access.jwks_min_refresh = Duration::from_millis(800);
        c.access.allow_anonymous = Some(false);
    })
    .await;
    let old = sign("rsa1", "rsa1", &claims("alice", json!({})));
    assert_eq!(session2(&app, Some(&old), "retail").await.0, 200);
    assert_eq!(idp.fetches().await, 1, "keys are cached");
    assert_eq!(session2(&app, Some(&old), "retail").await.0, 200);
    assert_eq!(idp.fetches().await, 1);

    // Tokens from a key the IdP does not publish yet: refused, and 20 of them cause at most
    // one fetch.
    let new = sign("rsa2", "rsa2", &claims("alice", json!({})));
    for _ in 0..20 {
        assert_eq!(session2(&app, Some(&new), "retail").await.0, 401);
    }
    assert!(
        idp.fetches().await <= 2,
        "unknown kids re-fetch at most once per interval"
    );

    // The IdP rotates: the new key is accepted once the interval has passed, the old
    // one keeps working while it is still published.
    idp.keys.lock().unwrap().push(jwk("rsa2"));
    tokio::time::sleep(Duration::from_millis(900)).await;
    let (st, boot) = session2(&app, Some(&new), "retail").await;
    assert_eq!(st, 200, "{boot}");
    assert_eq!(session2(&app, Some(&old), "retail").await.0, 200);
    // The IdP drops the old key: after the next refresh it is refused.
    idp.keys.lock().unwrap().remove(0);
    tokio::time::sleep(Duration::from_millis(900)).await;
    let third = sign("ec1", "ec1", &claims("alice", json!({})));
    assert_eq!(
        session2(&app, Some(&third), "retail").await.0,
        401,
        "ec1 is not published (and triggers a refresh)"
    );
    assert_eq!(
        session2(&app, Some(&old), "retail").await.0,
        401,
        "the dropped key no longer verifies"
    );
}

#[tokio::test]
async fn hs256_user_tokens_with_the_shared_secret() {
    const SECRET: &str = "supabase-style-jwt-secret-of-32-bytes-or-more";
    let model = upstream().await;
    let app = spawn_online(&model, |c| {
        c.access.user_jwt_secret = Some(SECRET.to_owned().into());
        c.access.user_jwt_audience = Some("authenticated".into());
        c.access.allow_anonymous = Some(false);
    })
    .await;
    let hs = |secret: &str, c: &Value| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            c,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let supabase_like = claims(
        "6f1c0a9e-3a8b-4c1e-9d2f-1b2c3d4e5f60",
        json!({"aud": "authenticated", "email": "u@example.com"}),
    );
    let (st, boot) = session2(&app, Some(&hs(SECRET, &supabase_like)), "retail").await;
    assert_eq!(st, 200, "{boot}");
    let other_secret = hs("another-secret-that-is-also-32-bytes-long!", &supabase_like);
    assert_eq!(session2(&app, Some(&other_secret), "retail").await.0, 401);
    let rs = sign("rsa1", "rsa1", &supabase_like);
    assert_eq!(
        session2(&app, Some(&rs), "retail").await.0,
        401,
        "no JWKS configured: asymmetric tokens are refused"
    );
}
