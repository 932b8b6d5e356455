//! Moderation: local rules (deny phrases, PII redaction), the upstream moderation model,
//! and the brand classifier (the public demo's four classes), alone or combined.
//!
//! [`Moderator::moderate`] runs the configured checks and merges them into one
//! [`Decision`]: `allowed` is false when any check flags the text. A check that fails
//! (upstream error, offline) is listed in `failures`; with fail-open (the default, like the
//! demo) the decision stands on the other checks, with fail-closed the text is refused.
//! The HTTP layer adds the session (for the brand's company name and the
//! `moderation.flagged` event).

pub mod redact;

use regex::Regex;
use serde_json::{Map, Value, json};

use crate::upstream::UpstreamClient;
use crate::upstream::responses::{CheckError, add_sdk_fields};

/// Which checks run (the setting's type, owned by `config`).
pub use crate::config::ModerationModes as Modes;

/// The merged result of every check.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    /// False when any check flagged the text (or a check failed under fail-closed).
    pub allowed: bool,
    /// Category flags from every check (`pii`, `denied_phrase`, the upstream's 13 keys, the
    /// brand's four classes).
    pub categories: Map<String, Value>,
    /// The text with PII redacted, when the local check changed it.
    pub sanitized_text: Option<String>,
    /// Which checks flagged it.
    pub flagged_by: Vec<&'static str>,
    /// The brand classifier's reason.
    pub rationale: Option<String>,
    /// Checks that could not run, with why.
    pub failures: Vec<String>,
    /// PII found, counted by kind.
    pub redactions: redact::Counts,
}

/// Runs the configured checks.
pub struct Moderator {
    modes: Modes,
    fail_closed: bool,
    deny: Option<Regex>,
}

impl Moderator {
    /// From settings.
    pub fn new(modes: Modes, fail_closed: bool, deny_phrases: &[String]) -> Self {
        let deny = (!deny_phrases.is_empty()).then(|| {
            let alternatives: Vec<String> = deny_phrases.iter().map(|p| regex::escape(p)).collect();
            Regex::new(&format!(r"(?i)\b(?:{})\b", alternatives.join("|")))
                .expect("escaped phrases form a valid regex")
        });
        Self {
            modes,
            fail_closed,
            deny,
        }
    }

    /// The configured modes.
    pub fn modes(&self) -> Modes {
        self.modes
    }

    /// Judges `text`; `company` names the brand for the brand classifier.
    pub async fn moderate(
        &self,
        text: &str,
        company: &str,
        upstream: Option<&UpstreamClient>,
    ) -> Decision {
        let mut d = Decision {
            allowed: true,
            ..Decision::default()
        };
        if self.modes.local {
            let denied = self.deny.as_ref().is_some_and(|r| r.is_match(text));
            let (clean, counts) = redact::redact(text);
            d.categories.insert("denied_phrase".into(), json!(denied));
            d.categories.insert("pii".into(), json!(!counts.is_empty()));
            if denied {
                d.flagged_by.push("local");
            }
            if clean != text {
                d.sanitized_text = Some(clean);
            }
            d.redactions = counts;
        }
        if self.modes.upstream {
            match upstream_check(upstream, text).await {
                Ok((flagged, cats)) => {
                    d.categories.extend(cats);
                    if flagged {
                        d.flagged_by.push("upstream");
                    }
                }
                Err(e) => d.failures.push(format!("upstream: {e}")),
            }
        }
        if self.modes.brand {
            match brand_check(upstream, text, company).await {
                Ok((category, rationale)) => {
                    for c in crate::scenario::view::GUARDRAIL_CATEGORIES {
                        d.categories.insert(c.into(), json!(c == category));
                    }
                    if category != "NONE" {
                        d.flagged_by.push("brand");
                    }
                    d.rationale = Some(rationale);
                }
                Err(e) => d.failures.push(format!("brand: {e}")),
            }
        }
        let failed_closed = self.fail_closed && !d.failures.is_empty();
        d.allowed = d.flagged_by.is_empty() && !failed_closed;
        d
    }
}

async fn upstream_check(
    upstream: Option<&UpstreamClient>,
    text: &str,
) -> Result<(bool, Map<String, Value>), CheckError> {
    let up = upstream.ok_or(CheckError::Offline)?;
    let resp = up
        .post_json(
            "moderations",
            &json!({"model": "omni-moderation-latest", "input": text}),
        )
        .await?;
    let r = resp.pointer("/results/0").ok_or(CheckError::BadAnswer(
        "the moderation answer has no results",
    ))?;
    let flagged = r["flagged"].as_bool().unwrap_or(false);
    let cats = r["categories"].as_object().cloned().unwrap_or_default();
    Ok((flagged, cats))
}

/// Asks the brand classifier; returns `(category, rationale)`.
async fn brand_check(
    upstream: Option<&UpstreamClient>,
    text: &str,
    company: &str,
) -> Result<(String, String), CheckError> {
    let up = upstream.ok_or(CheckError::Offline)?;
    let prompt = format!(
        "You check what an assistant of {company} is about to say. Classify the message into \
         exactly one class: OFFENSIVE (hate, insults, harassment), OFF_BRAND (disparaging \
         competitors or off-brand content), VIOLENCE (threats or graphic violence), or NONE. \
         Give the reason in at most two sentences.\n\nMessage:\n{text}"
    );
    let schema = json!({
        "type": "object",
        "properties": {
            "moderationRationale": {"type": "string"},
            "moderationCategory": {"type": "string", "enum": crate::scenario::view::GUARDRAIL_CATEGORIES},
            "testText": {"type": ["string", "null"]}
        },
        "required": ["moderationRationale", "moderationCategory", "testText"],
        "additionalProperties": false
    });
    let body = json!({
        "model": "gpt-4o-mini",
        "input": [{"role": "user", "content": prompt}],
        "text": {"format": {"type": "json_schema", "name": "output_format", "strict": true, "schema": schema}}
    });
    let mut resp = up.post_json("responses", &body).await?;
    add_sdk_fields(&mut resp, true);
    let parsed = &resp["output_parsed"];
    let category = parsed["moderationCategory"]
        .as_str()
        .filter(|c| crate::scenario::view::GUARDRAIL_CATEGORIES.contains(c))
        .ok_or(CheckError::BadAnswer(
            "the classifier gave no valid moderationCategory",
        ))?;
    Ok((
        category.to_owned(),
        parsed["moderationRationale"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    ))
}
