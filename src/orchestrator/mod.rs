//! Orchestration: which agent should be in charge now.
//!
//! The local scorer is explainable: each candidate scores for its declared keywords in the
//! last user message (1 point each) and in the recent transcript (0.3 each), and for the
//! closest of its example messages (up to 1.5 by word overlap). The active agent gets a stay
//! bonus (hysteresis), so a single weak hit does not make the conversation flap between
//! agents. Only the active agent and its handoff targets are candidates, except the
//! scenario's escalation agent, which its escalation phrases reach from anywhere. A
//! scenario may choose the LLM classifier instead (a model picks among the same
//! candidates, constrained by a JSON schema); when the model cannot answer, the local scorer
//! decides and the failure is reported.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::scenario::{Agent, Scenario};
use crate::upstream::UpstreamClient;
use crate::upstream::responses::{CheckError, add_sdk_fields};

/// Score added to the active agent so a switch needs clear evidence.
pub const STAY_BONUS: f64 = 0.75;

/// A decision.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The agent that should be in charge.
    pub chosen: String,
    /// Why, in words (what matched).
    pub reason: String,
    /// In [0, 1].
    pub confidence: f64,
    /// `local` or `llm`.
    pub source: &'static str,
    /// Every candidate's score (local scorer).
    pub scores: Vec<(String, f64)>,
    /// Why the LLM classifier could not decide, when it could not.
    pub failure: Option<String>,
}

/// Lower-cased words of a text, space-joined and padded, for phrase matching.
fn normalize(text: &str) -> String {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    format!(" {} ", words.join(" "))
}

/// The phrases of `keywords` that occur in `norm` (a plural `s` is allowed).
fn hits<'a>(norm: &str, keywords: &'a [String]) -> Vec<&'a str> {
    keywords
        .iter()
        .filter(|k| {
            let k = normalize(k);
            let k = k.trim();
            !k.is_empty() && (norm.contains(&format!(" {k} ")) || norm.contains(&format!(" {k}s ")))
        })
        .map(String::as_str)
        .collect()
}

/// Words too common to say anything about intent.
const STOP_WORDS: &[&str] = &[
    "about", "could", "from", "have", "just", "like", "need", "please", "that", "them", "they",
    "this", "want", "what", "when", "with", "would", "your",
];

/// Word overlap (Jaccard) of two normalized texts, on words of four letters or more that
/// are not stop words.
fn overlap(a: &str, b: &str) -> f64 {
    let words = |t: &str| -> HashSet<String> {
        t.split_whitespace()
            .filter(|w| w.len() > 3 && !STOP_WORDS.contains(w))
            .map(str::to_owned)
            .collect()
    };
    let (wa, wb) = (words(a), words(b));
    if wa.is_empty() || wb.is_empty() {
        return 0.0;
    }
    wa.intersection(&wb).count() as f64 / wa.union(&wb).count() as f64
}

/// The agents that may be chosen from `active`: itself, then its handoff targets.
pub fn candidates<'a>(s: &'a Scenario, active: &'a Agent) -> Vec<&'a Agent> {
    std::iter::once(active)
        .chain(active.handoffs.iter().filter_map(|h| s.agent(h.as_str())))
        .collect()
}

/// The local scorer.
pub fn score_local(
    s: &Scenario,
    active: &Agent,
    last_user_text: &str,
    tail: &[String],
) -> Decision {
    let text = normalize(last_user_text);
    if let Some(target) = s.orchestration.escalate_to.as_deref()
        && target != active.name.as_str()
    {
        let matched = hits(&text, &s.orchestration.escalate_keywords);
        if !matched.is_empty() {
            return Decision {
                chosen: target.to_owned(),
                reason: format!("escalation: the user said {}", quote(&matched)),
                confidence: 0.9,
                source: "local",
                scores: Vec::new(),
                failure: None,
            };
        }
    }
    let tail_text = normalize(&tail.join(" "));
    let mut scores = Vec::new();
    let mut explain = Vec::new();
    for a in candidates(s, active) {
        let in_text = hits(&text, &a.keywords);
        let in_tail = hits(&tail_text, &a.keywords);
        let example = a
            .examples
            .iter()
            .map(|e| overlap(&text, &normalize(e)))
            .fold(0.0, f64::max);
        let example_score = if example >= 0.25 { 1.5 * example } else { 0.0 };
        let stay = if a.name == active.name {
            STAY_BONUS
        } else {
            0.0
        };
        let score = in_text.len() as f64 + 0.3 * in_tail.len() as f64 + example_score + stay;
        if !in_text.is_empty() {
            explain.push(format!("{} matched {}", a.name, quote(&in_text)));
        }
        scores.push((a.name.to_string(), (score * 100.0).round() / 100.0));
    }
    // Highest score wins; the active agent (listed first) wins ties.
    let mut best = 0;
    for (i, (_, sc)) in scores.iter().enumerate() {
        if *sc > scores[best].1 {
            best = i;
        }
    }
    let chosen = scores[best].0.clone();
    let total: f64 = scores.iter().map(|(_, s)| s).sum();
    let confidence = if total > 0.0 {
        scores[best].1 / total
    } else {
        1.0
    };
    let reason = if chosen == active.name.as_str() {
        if explain.is_empty() {
            format!("nothing points away from {chosen}; staying")
        } else {
            format!("{}; not enough to leave {chosen}", explain.join("; "))
        }
    } else {
        explain.join("; ")
    };
    Decision {
        chosen,
        reason,
        confidence: (confidence * 100.0).round() / 100.0,
        source: "local",
        scores,
        failure: None,
    }
}

fn quote(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| format!("{w:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decides with the scenario's classifier.
pub async fn decide(
    s: &Scenario,
    active: &Agent,
    last_user_text: &str,
    tail: &[String],
    upstream: Option<&UpstreamClient>,
) -> Decision {
    let local = score_local(s, active, last_user_text, tail);
    if s.orchestration.classifier != Some(crate::scenario::model::Classifier::Llm) {
        return local;
    }
    match llm(s, active, last_user_text, tail, upstream).await {
        Ok(d) => d,
        Err(e) => Decision {
            failure: Some(e.to_string()),
            ..local
        },
    }
}

async fn llm(
    s: &Scenario,
    active: &Agent,
    last_user_text: &str,
    tail: &[String],
    upstream: Option<&UpstreamClient>,
) -> Result<Decision, CheckError> {
    let up = upstream.ok_or(CheckError::Offline)?;
    let mut names: Vec<String> = candidates(s, active)
        .iter()
        .map(|a| a.name.to_string())
        .collect();
    if let Some(e) = &s.orchestration.escalate_to
        && !names.contains(e)
    {
        names.push(e.clone());
    }
    let roster: Vec<String> = names
        .iter()
        .filter_map(|n| s.agent(n))
        .map(|a| format!("- {}: {}", a.name, a.handoff_description.trim()))
        .collect();
    let prompt = format!(
        "Pick the agent that should handle the conversation now. The current agent is {}; keep it \
         unless the user clearly needs another one.\nAgents:\n{}\nRecent transcript:\n{}\nLast user \
         message: {last_user_text}",
        active.name,
        roster.join("\n"),
        tail.join("\n")
    );
    let schema = json!({"type": "object", "properties": {
            "agent": {"type": "string", "enum": names},
            "reason": {"type": "string"},
            "confidence": {"type": "number"}},
        "required": ["agent", "reason", "confidence"], "additionalProperties": false});
    let body = json!({"model": "gpt-4.1-mini", "input": [{"role": "user", "content": prompt}],
        "text": {"format": {"type": "json_schema", "name": "agent_choice", "strict": true, "schema": schema}}});
    let mut resp = up.post_json("responses", &body).await?;
    add_sdk_fields(&mut resp, true);
    let p: &Value = &resp["output_parsed"];
    let agent = p["agent"]
        .as_str()
        .filter(|a| names.iter().any(|n| n == a))
        .ok_or(CheckError::BadAnswer("the classifier named no valid agent"))?;
    Ok(Decision {
        chosen: agent.to_owned(),
        reason: p["reason"].as_str().unwrap_or_default().to_owned(),
        confidence: p["confidence"].as_f64().unwrap_or(0.5).clamp(0.0, 1.0),
        source: "llm",
        scores: Vec::new(),
        failure: None,
    })
}
