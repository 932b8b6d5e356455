//! What the SDKs synthesize client-side on a Responses API answer: `output_text` (every
//! `output_text` part of every `message` item, joined without separator) and, for
//! `text.format.type == "json_schema"`, `output_parsed` (the first message text that parses
//! as JSON, else `null`). Used by the `/api/responses` proxy and by every domain caller of
//! the Responses API (agents, classifiers, tools).

use serde_json::Value;

use super::UpstreamError;

/// Why a model-backed check (a moderation or an orchestration classifier) gave no answer.
/// Its text is what the caller reports as the check's failure.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// No upstream key is configured.
    #[error("upstream_not_configured")]
    Offline,
    /// The model call failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The model answered, but not with what the check asked for.
    #[error("{0}")]
    BadAnswer(&'static str),
}

/// Adds `output_text` and, when asked, `output_parsed` to a Responses API answer.
pub fn add_sdk_fields(resp: &mut Value, wants_parsed: bool) {
    let texts: Vec<&str> = message_texts(resp).collect();
    let output_text = texts.concat();
    let parsed = if wants_parsed {
        Some(
            texts
                .iter()
                .filter_map(|t| serde_json::from_str::<Value>(t).ok())
                .find(|v| !v.is_null())
                .unwrap_or(Value::Null),
        )
    } else {
        None
    };
    if let Some(obj) = resp.as_object_mut() {
        obj.insert("output_text".into(), Value::String(output_text));
        if let Some(p) = parsed {
            obj.insert("output_parsed".into(), p);
        }
    }
}

/// The `output_text` parts of the `message` items, in order.
pub fn message_texts(resp: &Value) -> impl Iterator<Item = &str> {
    resp.get("output")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|item| item.get("type").and_then(Value::as_str) == Some("message"))
        .filter_map(|item| item.get("content").and_then(Value::as_array))
        .flatten()
        .filter(|part| part.get("type").and_then(Value::as_str) == Some("output_text"))
        .filter_map(|part| part.get("text").and_then(Value::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn output_text_joins_message_parts_and_parsed_skips_refusals() {
        let mut r = json!({"output": [
            {"type": "reasoning", "summary": []},
            {"type": "message", "content": [
                {"type": "refusal", "refusal": "no"},
                {"type": "output_text", "text": "{\"a\":"},
            ]},
            {"type": "message", "content": [{"type": "output_text", "text": "1}"}]},
        ]});
        add_sdk_fields(&mut r, true);
        assert_eq!(r["output_text"], "{\"a\":1}");
        // Neither part alone is JSON, so nothing parses.
        assert_eq!(r["output_parsed"], Value::Null);

        let mut r = json!({"output": [{"type": "message", "content": [
            {"type": "output_text", "text": "{\"category\":\"NONE\"}"}]}]});
        add_sdk_fields(&mut r, true);
        assert_eq!(r["output_parsed"]["category"], "NONE");

        let mut r = json!({"output": []});
        add_sdk_fields(&mut r, false);
        assert_eq!(r["output_text"], "");
        assert!(r.get("output_parsed").is_none());
    }
}
