//! Client delegation, run in the background: the task from the caller's turn, the active
//! agent's answer through [`crate::sessions::Sessions::delegate`], the record an adopter
//! resumes from (with the tools already finished), and the answer sent at most once, ever.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use parking_lot::Mutex;
use proto_events::events::{DelegationCompleted, DelegationStarted};
use serde_json::Value;
use tokio::sync::mpsc;

use super::{
    Fragment, LATE_FRAGMENT_WAIT, Turn, UserTurn, active, append, persona, publish, publish_user,
};
use crate::domain::SessionId;
use crate::realtime::CallDeps;
use crate::sessions::Sessions;
use crate::sessions::delegate::{Delegate, fit_append};

/// Where a call's pending delegations are listed (a JSON array of ids).
const PENDING_KEY: &str = "live:pending";

/// A recorded delegation (what an adopter needs to finish it).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Record {
    pub(super) id: String,
    pub(super) task: String,
    pub(super) offset_ms: u64,
    pub(super) started_ms: u64,
    /// Tools it finished: `(name, arguments, output)`, reused if another instance resumes it.
    #[serde(default)]
    pub(super) tools: Vec<(String, Value, Value)>,
}

pub(super) fn record_key(id: &str) -> String {
    format!("live:deleg:{id}")
}

async fn save_record(sessions: &Sessions, sid: &SessionId, record: &Record) {
    let raw = serde_json::to_string(record).unwrap_or_default();
    let ttl = sessions.settings.session_ttl;
    let key = record_key(&record.id);
    if let Err(e) = sessions.store.put_value(sid, &key, &raw, ttl).await {
        tracing::warn!(error = %e, "recording a delegation failed");
    }
}

/// The key of a delegation's answer-once claim.
pub(super) fn answered_key(id: &str) -> String {
    format!("live:answered:{id}")
}

/// A delegation is over: it is no longer pending and its record goes.
async fn forget(sessions: &Sessions, sid: &SessionId, id: &str) {
    let ids: Vec<String> = (pending(sessions, sid).await.into_iter())
        .filter(|i| i != id)
        .collect();
    set_pending(sessions, sid, &ids).await;
    let _ = sessions.store.delete_value(sid, &record_key(id)).await;
}

pub(super) async fn pending(sessions: &Sessions, sid: &SessionId) -> Vec<String> {
    let raw = sessions
        .store
        .get_value(sid, PENDING_KEY)
        .await
        .ok()
        .flatten();
    raw.and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default()
}

async fn set_pending(sessions: &Sessions, sid: &SessionId, ids: &[String]) {
    let ttl = sessions.settings.session_ttl;
    let raw = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
    if let Err(e) = sessions.store.put_value(sid, PENDING_KEY, &raw, ttl).await {
        tracing::warn!(error = %e, "recording pending delegations failed");
    }
}

/// One client delegation, run in the background.
pub(super) struct Job {
    pub(super) deps: Arc<CallDeps>,
    pub(super) sid: SessionId,
    pub(super) call_id: String,
    pub(super) user: Arc<UserTurn>,
    pub(super) outbox: mpsc::UnboundedSender<Value>,
}

impl Job {
    pub(super) async fn run(self, mut record: Record, resumed: bool) {
        let sessions = self.deps.sessions.clone();
        if !resumed {
            record.task = self.task(record.offset_ms).await;
            save_record(&sessions, &self.sid, &record).await;
            let mut ids = pending(&sessions, &self.sid).await;
            ids.push(record.id.clone());
            set_pending(&sessions, &self.sid, &ids).await;
        }
        let agent = active(&sessions, &self.sid)
            .await
            .map(|(_, a)| a)
            .unwrap_or_default();
        let started = DelegationStarted {
            call_id: self.call_id.clone(),
            delegation_id: record.id.clone(),
            agent,
            task: record.task.clone(),
        };
        if !resumed {
            // A resumed delegation was announced by the owner that recorded it.
            publish(&sessions, &self.sid, &started).await;
        }
        // Finished tools are recorded by one writer, in order, so an adopter can reuse them.
        let finished = Arc::new(Mutex::new(record.clone()));
        let (dirty, mut writes) = mpsc::unbounded_channel::<()>();
        let writer = {
            let (sessions, sid, finished) = (sessions.clone(), self.sid.clone(), finished.clone());
            tokio::spawn(async move {
                while writes.recv().await.is_some() {
                    while writes.try_recv().is_ok() {}
                    let snapshot = finished.lock().clone();
                    save_record(&sessions, &sid, &snapshot).await;
                }
            })
        };
        let outbox = self.outbox.clone();
        let id = record.id.clone();
        let progress = {
            let finished = finished.clone();
            move |tool: &str, args: &Value, output: &Value| {
                let note = format!("Looked up {tool}; preparing the answer.");
                let _ = outbox.send(append("session.thinking.append", Some(&id), &note));
                let done = (tool.to_owned(), args.clone(), output.clone());
                finished.lock().tools.push(done);
                let _ = dirty.send(());
            }
        };
        let earlier = record.tools.clone();
        let replay = move |tool: &str, args: &Value| {
            (earlier.iter())
                .find(|(t, a, _)| t == tool && a == args)
                .map(|(_, _, output)| output.clone())
        };
        let task = if record.task.is_empty() {
            "(the caller said nothing I could hear)"
        } else {
            &record.task
        };
        let asked = Delegate {
            session: &self.sid,
            task,
            observer: Some(&progress),
            replay: Some(&replay),
            call_id: Some(&self.call_id),
        };
        let (answer, agent) = match sessions.delegate(asked).await {
            Ok(done) => {
                for (_, to) in &done.handoffs {
                    if let Some((scn, _)) = active(&sessions, &self.sid).await
                        && let Some(a) = scn.agent(to)
                    {
                        let _ = self.outbox.send(append(
                            "session.instructions.append",
                            None,
                            &persona(a),
                        ));
                    }
                }
                let (i, o) = (done.input_tokens, done.output_tokens);
                if let Err(e) = sessions.add_usage(&self.sid, None, i, o).await {
                    tracing::warn!(error = %e, "recording delegation usage failed");
                }
                (done.answer, done.agent)
            }
            Err(e) => {
                tracing::warn!(error = %e, call_id = %self.call_id, "a delegation failed");
                let agent = active(&sessions, &self.sid)
                    .await
                    .map(|(_, a)| a)
                    .unwrap_or_default();
                (
                    "I'm sorry, I can't look that up right now. Please try again in a moment."
                        .to_owned(),
                    agent,
                )
            }
        };
        drop(progress);
        let _ = writer.await;
        self.answer(&record, answer, agent).await;
    }

    /// The caller's current turn: the user's fragments up to the delegation's offset
    /// (waiting briefly for one that covers it); the turn ends here.
    async fn task(&self, offset_ms: u64) -> String {
        let deadline = tokio::time::Instant::now() + LATE_FRAGMENT_WAIT;
        loop {
            let arrived = self.user.arrived.notified();
            let covered = (self.user.turn.lock().0.iter()).any(|f| f.start_ms >= offset_ms);
            if covered {
                break;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                break;
            }
        }
        let taken: Vec<Fragment> = {
            let mut turn = self.user.turn.lock();
            let (taken, rest) = turn.0.drain(..).partition(|f| f.start_ms <= offset_ms);
            turn.0 = rest;
            taken
        };
        let text = Turn(taken).text();
        publish_user(&self.deps, &self.sid, &self.call_id, text.clone()).await;
        text
    }

    /// Sends the answer once, ever, and publishes `delegation.completed`.
    async fn answer(&self, record: &Record, answer: String, agent: String) {
        let sessions = &self.deps.sessions;
        let key = answered_key(&record.id);
        let claim = crate::sessions::claim::Claim {
            store: sessions.store.as_ref(),
            session: &self.sid,
            key: &key,
            ttl: sessions.settings.session_ttl,
        };
        match claim.first().await {
            Ok(true) => {}
            // Another instance answered it: nothing is left to finish.
            Ok(false) => return forget(sessions, &self.sid, &record.id).await,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim a delegation's answer; not answering twice");
                return;
            }
        }
        let content = fit_append(&answer);
        let _ = (self.outbox).send(append(
            "session.commentary.append",
            Some(&record.id),
            &content,
        ));
        let late = self.user.latest_start.load(Ordering::SeqCst) > record.offset_ms;
        let done = DelegationCompleted {
            call_id: self.call_id.clone(),
            delegation_id: record.id.clone(),
            agent,
            duration_ms: crate::clock::unix_now_ms().saturating_sub(record.started_ms),
            output: content,
            late,
        };
        publish(sessions, &self.sid, &done).await;
        let data = serde_json::json!({
            "delegation_id": done.delegation_id, "task": record.task, "answer": done.output,
            "duration_ms": done.duration_ms, "late": done.late,
        });
        let note = crate::sessions::record::Note::new("delegation", data)
            .call(&self.call_id)
            .agent(&done.agent);
        sessions.note(&self.sid, note).await;
        forget(sessions, &self.sid, &record.id).await;
    }
}
