//! `GET /api/openapi.json`: the OpenAPI document of the REST surface, generated from the
//! handlers' `#[utoipa::path]` annotations.

use axum::Router;
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::Json;
use crate::state::AppState;

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard", description = "Server side of realtime voice-agent apps."),
    paths(
        super::health::health, super::health::ready,
        super::keys::mint, super::responses::create,
        super::scenarios::list, super::scenarios::detail,
        super::session2::bootstrap_get, super::session2::bootstrap_post,
        super::sessions::get_session, super::sessions::admin::renew_token,
        super::sessions::admin::revoke_session,
        super::events::history, super::events::publish, super::batch::publish_batch,
        super::tools::list, super::tools::execute, super::moderate::moderate,
        super::context::snapshot, super::orchestrate::orchestrate,
        super::agent::run,
        super::sdk::create::create, super::sdk::message, super::sdk::transcript, super::sdk::clear,
        super::sdk::pop,
        super::calls::create_call, super::calls::hangup, super::calls::control,
        super::record::timeline, super::record::export, super::record::list, super::record::erase,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail)),
    modifiers(&SessionToken),
)]
pub struct ApiDoc;

struct SessionToken;

impl Modify for SessionToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "server_api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "user_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A user token from the host app (HS256 secret or JWKS)",
                    ))
                    .build(),
            ),
        );
    }
}

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/openapi.json",
        get(|| async { Json(ApiDoc::openapi()) }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented pattern of an event type accepts exactly what the server accepts, so
    /// generated clients (and schemathesis) do not send types the server then refuses.
    #[test]
    fn the_documented_event_type_pattern_matches_validation() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for schema in ["PublishRequest", "BatchItem"] {
            let prop = &doc["components"]["schemas"][schema]["properties"]["type"];
            let pattern = prop["pattern"]
                .as_str()
                .unwrap_or_else(|| panic!("{schema}"));
            let re = regex::Regex::new(pattern).unwrap();
            let samples = proto_events::KNOWN_EVENT_TYPES.iter().copied().chain([
                "x.a",
                "x.call.error",
                "x.",
                "x",
                "agent.switch2",
                "xagent.switch",
                "x.a b",
                "x.ü",
                "",
            ]);
            for s in samples {
                let accepted = s.parse::<proto_events::EventType>().is_ok();
                assert_eq!(re.is_match(s), accepted, "{schema}: {s:?}");
            }
            assert_eq!(prop["maxLength"], proto_events::MAX_EVENT_TYPE_LEN);
        }
    }
}
