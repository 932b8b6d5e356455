//! Judging a text for a session: the moderator's checks, and for a session a refused text
//! published as `moderation.flagged`. REST (`/api/moderate`) and the sideband (each finished
//! assistant transcript) both come through here.

use proto_events::events::ModerationFlagged;

use super::{SessionError, Sessions};
use crate::domain::SessionId;
use crate::moderation::Decision;

/// Where a judged text came from (the `source` of `moderation.flagged`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextSource {
    /// The end user.
    User,
    /// The assistant (a call's transcript, a server agent's answer).
    Assistant,
    /// A caller of the API.
    Api,
}

impl TextSource {
    /// Parses `user`, `assistant` or `api`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Self::User),
            "assistant" => Some(Self::Assistant),
            "api" => Some(Self::Api),
            _ => None,
        }
    }

    /// As published.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Api => "api",
        }
    }
}

/// A decision and, for a session's refused text, the seq of its `moderation.flagged`.
#[derive(Debug, Clone)]
pub struct Moderated {
    /// What the checks decided.
    pub decision: Decision,
    /// Seq of the `moderation.flagged` event, when one was published.
    pub event_seq: Option<u64>,
}

impl Sessions {
    /// Judges what the assistant said on a session's call (published when refused).
    pub async fn moderate_answer(
        &self,
        session: &SessionId,
        text: &str,
        company: &str,
    ) -> Result<Moderated, SessionError> {
        self.moderate(Some(session), text, company, TextSource::Assistant)
            .await
    }

    /// Judges `text` for the brand `company`; a refused text of a session is published.
    pub async fn moderate(
        &self,
        session: Option<&SessionId>,
        text: &str,
        company: &str,
        source: TextSource,
    ) -> Result<Moderated, SessionError> {
        let decision = self
            .moderator
            .moderate(text, company, self.upstream.as_ref())
            .await;
        let mut event_seq = None;
        if let Some(sid) = session {
            let data = serde_json::json!({
                "source": source.as_str(),
                "allowed": decision.allowed,
                "categories": decision.categories,
                "sanitized_text": decision.sanitized_text,
            });
            self.note(sid, super::record::Note::new("moderation", data))
                .await;
        }
        if let Some(sid) = session
            && !decision.allowed
        {
            let data = ModerationFlagged {
                categories: decision.categories.clone(),
                sanitized_text: decision.sanitized_text.clone(),
                source: Some(source.as_str().to_owned()),
            };
            event_seq = Some(self.publish(sid, &data).await?.seq);
        }
        Ok(Moderated {
            decision,
            event_seq,
        })
    }
}
