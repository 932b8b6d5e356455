//! Recording what happens in a session: the one entry point every path calls
//! ([`Sessions::note`]) and the readers (timeline, seed turns). Each item gets the session's
//! scenario, user and agent in charge here, its cost from the price table, and (when
//! `SWITCHBOARD_RECORD_REDACT` is on) personal data scrubbed before it is buffered.

use std::sync::Arc;

use serde_json::{Value, json};

use super::Sessions;
use crate::domain::SessionId;
use crate::record::price::{PriceTable, Usage};
use crate::record::{AMEND, Entry, Item, RecordBuffer, RecordError, RecordStore, apply_amend};

/// The record's backends and settings.
pub struct Recorder {
    /// Where accepted entries wait for the database.
    pub buffer: Arc<dyn RecordBuffer>,
    /// The database.
    pub store: Arc<dyn RecordStore>,
    /// Prices of usage.
    pub prices: PriceTable,
    /// Scrub personal data before storing.
    pub redact: bool,
    /// Token budget of a new call's seed.
    pub seed_tokens: usize,
}

/// One thing to record.
#[derive(Debug, Clone)]
pub struct Note<'a> {
    /// One of [`crate::record::KINDS`] (or [`AMEND`]).
    pub kind: &'static str,
    /// The call it belongs to.
    pub call_id: Option<&'a str>,
    /// The agent in charge; `None` reads the session's active agent.
    pub agent: Option<&'a str>,
    /// The upstream item id, for a later amendment.
    pub key: Option<String>,
    /// The kind's fields.
    pub data: Value,
    /// Usage to price: the model and what it used.
    pub usage: Option<(String, Usage)>,
}

impl<'a> Note<'a> {
    /// A note of `kind` with `data` and nothing else set.
    pub fn new(kind: &'static str, data: Value) -> Self {
        Self {
            kind,
            call_id: None,
            agent: None,
            key: None,
            data,
            usage: None,
        }
    }

    /// In call `call_id`.
    pub fn call(mut self, call_id: &'a str) -> Self {
        self.call_id = Some(call_id);
        self
    }

    /// With `agent` in charge.
    pub fn agent(mut self, agent: &'a str) -> Self {
        self.agent = Some(agent);
        self
    }

    /// Keyed by `key` (an upstream item id).
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }
}

/// Scrubs every string in `v`.
fn scrub(v: &mut Value) {
    match v {
        Value::String(s) => *s = crate::moderation::redact::redact(s).0,
        Value::Array(a) => a.iter_mut().for_each(scrub),
        Value::Object(o) => o.values_mut().for_each(scrub),
        _ => {}
    }
}

impl Sessions {
    /// Records `note` in `session`'s record. Never fails the caller: an item that cannot be
    /// buffered is logged and counted (`switchboard_record_errors_total`).
    pub async fn note(&self, session: &SessionId, note: Note<'_>) {
        let Some(rec) = self.record.as_ref() else {
            return;
        };
        let Ok(Some(state)) = self.store.get(session).await else {
            return; // a session that is gone has nothing more to record
        };
        let agent = note
            .agent
            .map(str::to_owned)
            .unwrap_or_else(|| state.active_agent.to_string());
        let mut data = note.data;
        let mut cost = 0;
        if let Some((model, usage)) = &note.usage {
            let priced = rec.prices.cost_nanousd(model, usage);
            cost = priced.unwrap_or(0);
            data["model"] = json!(model);
            data["usage"] = usage.to_json();
            data["priced"] = json!(priced.is_some());
            count_usage(model, state.scenario_id.as_str(), &agent, usage, cost);
        }
        if rec.redact {
            scrub(&mut data);
        }
        let call_id = match note.call_id {
            Some(c) => Some(c.to_owned()),
            None => match self.live_calls.get().and_then(std::sync::Weak::upgrade) {
                Some(calls) => calls.current_call(session).await,
                None => None,
            },
        };
        let entry = Entry {
            seq: 0,
            session_id: session.to_string(),
            at_ms: crate::clock::unix_now_ms() as i64,
            scenario: state.scenario_id.to_string(),
            user_id: state.user_id.clone(),
            call_id,
            agent: Some(agent),
            kind: note.kind.to_owned(),
            key: note.key,
            cost_nanousd: cost,
            data,
        };
        if let Err(e) = rec.buffer.append(entry).await {
            tracing::error!(error = %e, session_id = %session, kind = note.kind, "an item of the conversation record could not be buffered");
        }
    }

    /// Marks the assistant turn `item_id` interrupted (`patch`: `audio_end_ms`, `reason`).
    pub async fn amend_turn(
        &self,
        session: &SessionId,
        call_id: &str,
        item_id: &str,
        patch: Value,
    ) {
        let mut patch = patch;
        patch["interrupted"] = json!(true);
        self.note(session, Note::new(AMEND, patch).call(call_id).key(item_id))
            .await;
    }

    /// The session's timeline after `after`, of `kinds` when given, at most `limit` items:
    /// what the database holds, merged with what is still buffered.
    pub async fn timeline(
        &self,
        session: &str,
        after: u64,
        kinds: Option<&[String]>,
        limit: u64,
    ) -> Result<Vec<Item>, RecordError> {
        let Some(rec) = self.record.as_ref() else {
            return Ok(vec![]);
        };
        let pending = rec.buffer.pending(session, 100_000).await?;
        let mut items = rec.store.items(session, after, kinds, limit).await?;
        let last_db = items.last().map(|i| i.seq).unwrap_or(after);
        let full_page = items.len() as u64 >= limit;
        for e in &pending {
            if e.kind == AMEND {
                continue;
            }
            let wanted = kinds.is_none_or(|k| k.contains(&e.kind));
            let fresh = e.seq > after && !(full_page && e.seq > last_db);
            if wanted && fresh && !items.iter().any(|i| i.seq == e.seq) {
                items.push(Item::of(e));
            }
        }
        items.sort_by_key(|i| i.seq);
        items.truncate(limit as usize);
        for e in pending.iter().filter(|e| e.kind == AMEND) {
            for i in items
                .iter_mut()
                .filter(|i| i.key.is_some() && i.key == e.key && i.seq < e.seq)
            {
                apply_amend(&mut i.data, &e.data);
            }
        }
        Ok(items)
    }

    /// What call `call_id` of `session` cost so far, in billionths of a dollar (its usage
    /// items, buffered or written).
    pub async fn call_cost(&self, session: &SessionId, call_id: &str) -> i64 {
        let kinds = ["usage".to_owned()];
        let (mut after, mut nanos) = (0, 0);
        loop {
            let Ok(page) = self
                .timeline(session.as_str(), after, Some(&kinds), 500)
                .await
            else {
                return nanos;
            };
            let Some(last) = page.last().map(|i| i.seq) else {
                return nanos;
            };
            after = last;
            nanos += page
                .iter()
                .filter(|i| i.call_id.as_deref() == Some(call_id))
                .filter_map(|i| i.cost_usd.as_deref())
                .map(crate::record::parse_usd)
                .sum::<i64>();
        }
    }

    /// The session's recent turns within the seed budget, oldest first: `(role, text)`, the
    /// assistant's as heard.
    pub async fn seed_turns(&self, session: &SessionId, not_call: &str) -> Vec<(String, String)> {
        let Some(rec) = self.record.as_ref() else {
            return vec![];
        };
        if rec.seed_tokens == 0 {
            return vec![];
        }
        let kinds = ["turn.user".to_owned(), "turn.assistant".to_owned()];
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let page = match self
                .timeline(session.as_str(), after, Some(&kinds), 500)
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, session_id = %session, "reading earlier turns failed; the call starts without them");
                    return vec![];
                }
            };
            let Some(last) = page.last().map(|i| i.seq) else {
                break;
            };
            after = last;
            all.extend(page);
        }
        let mut budget = rec.seed_tokens;
        let mut kept = Vec::new();
        for i in all
            .iter()
            .rev()
            .filter(|i| i.call_id.as_deref() != Some(not_call))
        {
            let text = i.data["text"].as_str().unwrap_or_default().trim();
            if text.is_empty() {
                continue;
            }
            let cost = text.len().div_ceil(4) + 4;
            if cost > budget {
                break;
            }
            budget -= cost;
            let role = if i.kind == "turn.user" {
                "user"
            } else {
                "assistant"
            };
            kept.push((role.to_owned(), text.to_owned()));
        }
        kept.reverse();
        kept
    }
}

fn count_usage(model: &str, scenario: &str, agent: &str, u: &Usage, cost: i64) {
    let labels = |kind: &'static str| {
        [
            ("model", model.to_owned()),
            ("scenario", scenario.to_owned()),
            ("agent", agent.to_owned()),
            ("kind", kind.to_owned()),
        ]
    };
    for (kind, n) in [
        (
            "input_text",
            u.input_text_tokens.saturating_sub(u.cached_text_tokens),
        ),
        (
            "input_audio",
            u.input_audio_tokens.saturating_sub(u.cached_audio_tokens),
        ),
        ("cached_text", u.cached_text_tokens),
        ("cached_audio", u.cached_audio_tokens),
        ("output_text", u.output_text_tokens),
        ("output_audio", u.output_audio_tokens),
    ] {
        if n > 0 {
            metrics::counter!("switchboard_tokens_total", &labels(kind)).increment(n);
        }
    }
    if u.billed_ms > 0 {
        let l = [
            ("model", model.to_owned()),
            ("scenario", scenario.to_owned()),
            ("agent", agent.to_owned()),
        ];
        metrics::counter!("switchboard_voice_billed_ms_total", &l).increment(u.billed_ms);
    }
    if cost > 0 {
        let l = [
            ("model", model.to_owned()),
            ("scenario", scenario.to_owned()),
            ("agent", agent.to_owned()),
        ];
        metrics::counter!("switchboard_cost_nanousd_total", &l).increment(cost as u64);
    }
}
