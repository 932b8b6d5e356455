//! The conversation record (DESIGN.md §10): every session's ordered timeline of what was said
//! and heard, what was done and what it cost, kept in SQL.
//!
//! An item takes two steps. [`RecordBuffer::append`] gives it the session's next sequence
//! number and keeps it durably (in Redis mode, in the session's Redis keys; in embedded mode,
//! in process memory) before the path that produced it answers. The [`flush`] task then
//! writes buffered items to the [`RecordStore`] (SQLite or Postgres, one SQL implementation in
//! [`sql`]) in batches, with retries, and only then drops them from the buffer. Writes are
//! idempotent (the primary key is `(session_id, seq)`), so an instance killed between the
//! write and the drop costs nothing but a repeated write. Readers merge the buffer into what
//! the database holds, so an item shows in the timeline as soon as it is accepted.
//!
//! An assistant turn can learn after it was recorded that the user interrupted it (a
//! truncation arrives after `response.done`). That arrives as an `amend` entry naming the
//! turn's key (the upstream item id); [`apply_amend`] folds it into the turn, both when it is
//! written and when a reader sees it still buffered.

pub mod buffer;
pub mod flush;
pub mod price;
pub mod redis;
pub mod sql;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The kinds of record items (the timeline's `kind`).
pub const KINDS: &[&str] = &[
    "call.started",
    "call.ended",
    "turn.user",
    "turn.assistant",
    "tool.call",
    "agent.switch",
    "moderation",
    "orchestration",
    "usage",
    "error",
    "delegation",
];

/// The kind of an entry that amends an earlier item instead of adding one.
pub const AMEND: &str = "amend";

/// One buffered record entry: an item, or an amendment of the item with the same `key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the session's record, given by the buffer (0 before).
    #[serde(default)]
    pub seq: u64,
    /// The session.
    pub session_id: String,
    /// When it happened, Unix milliseconds.
    pub at_ms: i64,
    /// The session's scenario (for the session list).
    pub scenario: String,
    /// The host app's user who owns the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The call it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// The agent in charge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// One of [`KINDS`], or [`AMEND`].
    pub kind: String,
    /// A stable key (the upstream item id of a turn), for amendments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What it cost, in billionths of a US dollar.
    #[serde(default)]
    pub cost_nanousd: i64,
    /// The item's fields (or the amendment's).
    pub data: Value,
}

/// One timeline item as readers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Item {
    /// Position in the session's record (the cursor).
    pub seq: u64,
    /// When it happened, RFC 3339 UTC (milliseconds).
    pub at: String,
    /// One of `call.started`, `call.ended`, `turn.user`, `turn.assistant`, `tool.call`,
    /// `agent.switch`, `moderation`, `orchestration`, `usage`, `error`, `delegation`.
    pub kind: String,
    /// The call it belongs to, if any.
    pub call_id: Option<String>,
    /// The agent in charge when it happened.
    pub agent: Option<String>,
    /// What it cost, US dollars as a decimal string (`usage` items; `null` otherwise).
    pub cost_usd: Option<String>,
    /// The kind's fields.
    #[schema(value_type = Object)]
    pub data: Value,
    #[serde(skip)]
    #[schema(ignore)]
    pub(crate) key: Option<String>,
}

impl Item {
    /// The item an entry adds.
    pub fn of(e: &Entry) -> Self {
        Self {
            seq: e.seq,
            at: rfc3339_ms(e.at_ms),
            kind: e.kind.clone(),
            call_id: e.call_id.clone(),
            agent: e.agent.clone(),
            cost_usd: (e.cost_nanousd != 0).then(|| usd(e.cost_nanousd)),
            data: e.data.clone(),
            key: e.key.clone(),
        }
    }
}

/// A session in the record (the session list's row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionRow {
    /// The session.
    pub session_id: String,
    /// Its scenario.
    pub scenario: String,
    /// The host app's user who owns it.
    pub user_id: Option<String>,
    /// First item, RFC 3339.
    pub started_at: String,
    /// Last item, RFC 3339.
    pub last_at: String,
    /// When its last call ended, if one did.
    pub ended_at: Option<String>,
    /// User and assistant turns.
    pub turns: u64,
    /// Tool calls.
    pub tool_calls: u64,
    /// Calls started.
    pub calls: u64,
    /// Total cost, US dollars as a decimal string.
    pub cost_usd: String,
    /// True while the session can still take events (filled in by the caller).
    pub live: bool,
}

/// What the session list can filter and sort by.
#[derive(Debug, Clone, Default)]
pub struct SessionQuery {
    /// Started at or after (Unix ms).
    pub from_ms: Option<i64>,
    /// Started before (Unix ms).
    pub to_ms: Option<i64>,
    /// Only this scenario.
    pub scenario: Option<String>,
    /// Only this user's.
    pub user_id: Option<String>,
    /// Sort order.
    pub sort: SessionSort,
    /// Skip this many.
    pub offset: u64,
    /// At most this many.
    pub limit: u64,
}

/// Session list order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SessionSort {
    /// Newest first (the default).
    #[default]
    StartedDesc,
    /// Oldest first.
    StartedAsc,
    /// Most expensive first.
    CostDesc,
    /// Most recent activity first.
    LastDesc,
}

/// A record backend failure: the caller retries (the flusher) or answers 503.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The database or buffer could not be reached, or refused the statement.
    #[error("record store unavailable: {0}")]
    Unavailable(String),
    /// It did not answer in time.
    #[error("record store timed out")]
    Timeout,
}

impl From<sqlx::Error> for RecordError {
    fn from(e: sqlx::Error) -> Self {
        metrics::counter!("switchboard_record_errors_total", "op" => "db").increment(1);
        Self::Unavailable(e.to_string())
    }
}

impl From<fred::error::Error> for RecordError {
    fn from(e: fred::error::Error) -> Self {
        metrics::counter!("switchboard_record_errors_total", "op" => "buffer").increment(1);
        Self::Unavailable(e.to_string())
    }
}

/// Where accepted entries wait for the database.
#[async_trait]
pub trait RecordBuffer: Send + Sync + 'static {
    /// Gives `entry` its session's next `seq` and keeps it; `Ok(None)` when the session's
    /// record was erased (nothing is kept).
    async fn append(&self, entry: Entry) -> Result<Option<u64>, RecordError>;
    /// Claims up to `limit` sessions with buffered entries for `lease` (another flusher
    /// may take them once it passes).
    async fn claim(
        &self,
        limit: usize,
        lease: std::time::Duration,
    ) -> Result<Vec<String>, RecordError>;
    /// The session's buffered entries, oldest first (at most `limit`).
    async fn pending(&self, session: &str, limit: usize) -> Result<Vec<Entry>, RecordError>;
    /// Drops entries up to `seq` (they are in the database) and releases the claim; the
    /// session stays claimable when entries remain.
    async fn ack(&self, session: &str, seq: u64) -> Result<(), RecordError>;
    /// Forgets everything buffered for `session` and refuses its later entries.
    async fn erase(&self, session: &str) -> Result<(), RecordError>;
}

/// The durable record.
#[async_trait]
pub trait RecordStore: Send + Sync + 'static {
    /// Writes entries (items and amendments, in `seq` order) and updates the sessions'
    /// rows. Idempotent: an entry already written changes nothing. Entries of an erased
    /// session are dropped.
    async fn write(&self, entries: &[Entry]) -> Result<(), RecordError>;
    /// Items of `session` after `after` (by `seq`), of `kinds` when given, at most `limit`.
    async fn items(
        &self,
        session: &str,
        after: u64,
        kinds: Option<&[String]>,
        limit: u64,
    ) -> Result<Vec<Item>, RecordError>;
    /// The session's row.
    async fn session(&self, session: &str) -> Result<Option<SessionRow>, RecordError>;
    /// Sessions matching `q`, and how many match in all.
    async fn sessions(&self, q: &SessionQuery) -> Result<(Vec<SessionRow>, u64), RecordError>;
    /// Deletes the session's record and remembers it was erased. False when there was none.
    async fn erase(&self, session: &str) -> Result<bool, RecordError>;
    /// True when the session's record was erased.
    async fn erased(&self, session: &str) -> Result<bool, RecordError>;
    /// Deletes sessions whose last item is older than `before_ms`; returns how many.
    async fn expire(&self, before_ms: i64) -> Result<u64, RecordError>;
    /// The backend answers.
    async fn ping(&self) -> Result<(), RecordError>;
}

/// Folds an amendment into an item's fields. An interruption (`interrupted: true`, with
/// `audio_end_ms` when the truncation said where playback stopped) keeps the generated text
/// apart (`generated_text`) and shows as said only the share of it that was heard: the text
/// up to `audio_end_ms` of `audio_ms` when the audio length is known, otherwise at an
/// assumed speaking rate. That text is an estimate and says so (`heard`).
pub fn apply_amend(data: &mut Value, patch: &Value) {
    let Some(obj) = data.as_object_mut() else {
        return;
    };
    if let Some(p) = patch.as_object() {
        for (k, v) in p {
            obj.insert(k.clone(), v.clone());
        }
    }
    if obj.get("interrupted") != Some(&json!(true)) {
        return;
    }
    let generated = obj
        .get("generated_text")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_default();
    let Some(end) = obj.get("audio_end_ms").and_then(Value::as_u64) else {
        // Interrupted, but where is unknown: nothing can be shown as heard for sure.
        obj.insert("heard".into(), json!("unknown"));
        return;
    };
    let (share, basis) = match obj.get("audio_ms").and_then(Value::as_u64) {
        Some(total) if total > 0 => ((end as f64 / total as f64).min(1.0), "audio_length"),
        _ => {
            let spoken = generated.chars().count() as f64 / CHARS_PER_SECOND;
            (
                (end as f64 / 1000.0 / spoken.max(0.001)).min(1.0),
                "speaking_rate",
            )
        }
    };
    obj.insert("text".into(), json!(heard_prefix(&generated, share)));
    obj.insert("heard".into(), json!("estimate"));
    obj.insert("heard_basis".into(), json!(basis));
}

/// The assumed speaking rate for estimating heard text (about 150 words a minute).
pub const CHARS_PER_SECOND: f64 = 15.0;

/// The first `share` of `text`, cut back to a word boundary.
pub fn heard_prefix(text: &str, share: f64) -> String {
    if share >= 1.0 {
        return text.to_owned();
    }
    let n = (text.chars().count() as f64 * share).floor() as usize;
    let cut: String = text.chars().take(n).collect();
    match cut.rfind(char::is_whitespace) {
        Some(i) if n < text.chars().count() => cut[..i].trim_end().to_owned(),
        _ => cut,
    }
}

/// Billionths of a dollar as a decimal string (`"0.012345"`, at least two decimals).
pub fn usd(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let frac = format!("{:09}", n % 1_000_000_000);
    let frac = frac.trim_end_matches('0');
    let frac = if frac.len() < 2 {
        format!("{frac:0<2}")
    } else {
        frac.to_owned()
    };
    format!("{sign}{}.{frac}", n / 1_000_000_000)
}

/// A decimal dollar string back to billionths (`"0.04924"` → 49 240 000).
pub fn parse_usd(s: &str) -> i64 {
    let (sign, s) = match s.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, s),
    };
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let frac: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    sign * (whole.parse::<i64>().unwrap_or(0) * 1_000_000_000 + frac.parse::<i64>().unwrap_or(0))
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

/// Parses an RFC 3339 time in UTC (`2026-12-02T10:00:00Z`, optional fraction) to Unix ms.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let at = humantime::parse_rfc3339(s.trim()).ok()?;
    let ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    i64::try_from(ms).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_are_decimal_strings() {
        assert_eq!(usd(0), "0.00");
        assert_eq!(usd(1_500_000_000), "1.50");
        assert_eq!(usd(12_345), "0.000012345");
        assert_eq!(usd(4_000_000), "0.004");
        for n in [0, 1, 49_240_000, 1_500_000_000, 12_345] {
            assert_eq!(parse_usd(&usd(n)), n);
        }
    }

    #[test]
    fn times_round_trip() {
        let ms = 1_796_212_800_123; // 2026-12-02T...
        let s = rfc3339_ms(ms);
        assert!(s.ends_with(".123Z"), "{s}");
        assert_eq!(parse_rfc3339_ms(&s), Some(ms));
        assert_eq!(
            parse_rfc3339_ms("2026-12-02T00:00:00Z"),
            Some(1_796_169_600_000)
        );
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
        assert_eq!(parse_rfc3339_ms("¶}Æ%ª\u{d921c}Í¤rALpÆ¾"), None);
    }

    #[test]
    fn an_interruption_shows_only_the_heard_share() {
        let mut d = json!({"text": "one two three four five six seven eight",
                           "generated_text": "one two three four five six seven eight",
                           "audio_ms": 4000});
        apply_amend(&mut d, &json!({"interrupted": true, "audio_end_ms": 1000}));
        assert_eq!(d["text"], "one two");
        assert_eq!(d["heard"], "estimate");
        assert_eq!(d["heard_basis"], "audio_length");
        assert_eq!(
            d["generated_text"],
            "one two three four five six seven eight"
        );
    }
}
