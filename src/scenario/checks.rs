//! Field checks of scenario files that need more than serde: webhook declarations and
//! JSON Schemas.

use super::file::HttpToolFile;
use serde_json::Value;

/// A webhook declaration: an http(s) URL, a known method, a sane timeout, and every
/// referenced environment variable set (so a missing secret fails startup, not a call).
pub fn check_http(h: &HttpToolFile) -> Result<(), (&'static str, String)> {
    let uri: http::Uri = h
        .url
        .parse()
        .map_err(|_| ("url", format!("{:?} is not a URL", h.url)))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(("url", format!("{:?} is not an http(s) URL", h.url)));
    }
    if let Some(m) = &h.method
        && !matches!(m.as_str(), "POST" | "PUT")
    {
        return Err(("method", format!("{m:?}: use POST or PUT")));
    }
    if let Some(t) = h.timeout_ms
        && !(1..=120_000).contains(&t)
    {
        return Err(("timeout_ms", "must be between 1 and 120000".into()));
    }
    for (name, var) in &h.headers {
        if name.parse::<http::HeaderName>().is_err() {
            return Err(("headers", format!("{name:?} is not a header name")));
        }
        if std::env::var(var).is_err() {
            return Err((
                "headers",
                format!("environment variable {var} (for {name}) is not set"),
            ));
        }
    }
    if let Some(var) = &h.hmac_secret_env
        && std::env::var(var).map_or(true, |v| v.is_empty())
    {
        return Err((
            "hmac_secret_env",
            format!("environment variable {var} is not set"),
        ));
    }
    Ok(())
}

/// A tool's `parameters` must be a valid JSON Schema describing an object.
pub fn check_parameters(schema: &Value) -> Result<(), String> {
    if !schema.is_object() {
        return Err("must be a JSON Schema object".into());
    }
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        return Err("must have \"type\": \"object\" (function arguments are an object)".into());
    }
    jsonschema::meta::validate(schema).map_err(|e| format!("not a valid JSON Schema: {e}"))?;
    jsonschema::validator_for(schema)
        .map(|_| ())
        .map_err(|e| format!("not a usable JSON Schema: {e}"))
}
