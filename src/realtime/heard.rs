//! What a Realtime call's sideband learns about speech and playback, for the record: when
//! the user spoke (`input_audio_buffer.speech_started`/`stopped`), how long the assistant's
//! audio played (`output_audio_buffer.started`/`stopped`), and which answers the user cut off
//! (`output_audio_buffer.cleared`, `conversation.item.truncated {audio_end_ms}`, a
//! `response.done` that is `cancelled` or `incomplete`). An interruption can arrive before or
//! after the answer's transcript: before, it is folded into the turn when it is recorded;
//! after, it becomes an amendment of the recorded turn.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use serde_json::{Value, json};

/// Most entries each map keeps (older ones are dropped).
const KEEP: usize = 64;

/// The sideband's view of speech and playback.
#[derive(Default)]
pub struct Heard {
    speech: HashMap<String, (Option<u64>, Option<u64>)>,
    playing: HashMap<String, Instant>,
    played_ms: HashMap<String, u64>,
    response_of: HashMap<String, String>,
    items_of: HashMap<String, Vec<String>>,
    pending: HashMap<String, Value>,
    recorded: HashSet<String>,
    exact: HashSet<String>,
}

fn bounded<K: Clone + Eq + std::hash::Hash, V>(m: &mut HashMap<K, V>) {
    if m.len() > KEEP {
        m.clear();
    }
}

impl Heard {
    /// Takes in one server event; returns amendments `(item_id, patch)` for turns already
    /// recorded.
    pub fn on_event(&mut self, ev: &Value) -> Vec<(String, Value)> {
        let s = |k: &str| ev[k].as_str().unwrap_or_default().to_owned();
        match ev["type"].as_str().unwrap_or_default() {
            "input_audio_buffer.speech_started" => {
                bounded(&mut self.speech);
                self.speech.entry(s("item_id")).or_default().0 = ev["audio_start_ms"].as_u64();
            }
            "input_audio_buffer.speech_stopped" => {
                self.speech.entry(s("item_id")).or_default().1 = ev["audio_end_ms"].as_u64();
            }
            "response.output_item.added" | "response.output_item.done"
                if ev["item"]["type"] == "message" =>
            {
                let (item, resp) = (
                    ev["item"]["id"].as_str().unwrap_or_default(),
                    s("response_id"),
                );
                if !item.is_empty() && !resp.is_empty() {
                    bounded(&mut self.response_of);
                    bounded(&mut self.items_of);
                    self.response_of.insert(item.to_owned(), resp.clone());
                    let items = self.items_of.entry(resp).or_default();
                    if !items.iter().any(|i| i == item) {
                        items.push(item.to_owned());
                    }
                }
            }
            "output_audio_buffer.started" => {
                bounded(&mut self.playing);
                self.playing.insert(s("response_id"), Instant::now());
            }
            "output_audio_buffer.stopped" => {
                if let Some(t) = self.playing.remove(&s("response_id")) {
                    bounded(&mut self.played_ms);
                    self.played_ms
                        .insert(s("response_id"), t.elapsed().as_millis() as u64);
                }
            }
            "output_audio_buffer.cleared" => {
                let resp = s("response_id");
                let mut patch = json!({"interrupted": true, "reason": "audio_cleared"});
                if let Some(t) = self.playing.remove(&resp) {
                    patch["audio_end_ms"] = json!(t.elapsed().as_millis() as u64);
                }
                return self.interrupt_response(&resp, &patch, false);
            }
            "conversation.item.truncated" => {
                let patch = json!({"interrupted": true, "reason": "truncated",
                                   "audio_end_ms": ev["audio_end_ms"].as_u64()});
                return self
                    .interrupt(&s("item_id"), patch, true)
                    .into_iter()
                    .collect();
            }
            "response.done" => {
                let r = &ev["response"];
                let status = r["status"].as_str().unwrap_or_default();
                if status == "cancelled" || status == "incomplete" {
                    let resp = r["id"].as_str().unwrap_or_default().to_owned();
                    for item in r["output"].as_array().into_iter().flatten() {
                        if item["type"] == "message"
                            && let Some(id) = item["id"].as_str()
                        {
                            self.response_of.insert(id.to_owned(), resp.clone());
                            let items = self.items_of.entry(resp.clone()).or_default();
                            if !items.iter().any(|i| i == id) {
                                items.push(id.to_owned());
                            }
                        }
                    }
                    let patch = json!({"interrupted": true, "reason": status});
                    return self.interrupt_response(&resp, &patch, false);
                }
            }
            _ => {}
        }
        vec![]
    }

    fn interrupt_response(
        &mut self,
        resp: &str,
        patch: &Value,
        exact: bool,
    ) -> Vec<(String, Value)> {
        let items = self.items_of.get(resp).cloned().unwrap_or_default();
        items
            .iter()
            .filter_map(|i| self.interrupt(i, patch.clone(), exact))
            .collect()
    }

    /// Notes an interruption of `item`; an amendment when its turn is already recorded.
    fn interrupt(&mut self, item: &str, mut patch: Value, exact: bool) -> Option<(String, Value)> {
        if item.is_empty() {
            return None;
        }
        if exact {
            self.exact.insert(item.to_owned());
        } else if self.exact.contains(item)
            && let Some(o) = patch.as_object_mut()
        {
            // A truncation said exactly where playback stopped; keep that.
            o.remove("audio_end_ms");
        }
        if self.recorded.contains(item) {
            return Some((item.to_owned(), patch));
        }
        bounded(&mut self.pending);
        let p = self
            .pending
            .entry(item.to_owned())
            .or_insert_with(|| json!({}));
        if let (Some(p), Some(n)) = (p.as_object_mut(), patch.as_object()) {
            for (k, v) in n {
                p.insert(k.clone(), v.clone());
            }
        }
        None
    }

    /// The fields of a user turn.
    pub fn user_turn(&mut self, item_id: &str, text: &str) -> Value {
        let (start, stop) = self.speech.remove(item_id).unwrap_or_default();
        json!({"text": text, "item_id": item_id, "speech_started_ms": start, "speech_stopped_ms": stop})
    }

    /// The fields of an assistant turn, with any interruption seen before it folded in.
    pub fn assistant_turn(&mut self, item_id: &str, response_id: &str, text: &str) -> Value {
        if self.recorded.len() > KEEP {
            self.recorded.clear();
        }
        self.recorded.insert(item_id.to_owned());
        let audio_ms = self.played_ms.get(response_id).copied();
        let mut data = json!({"text": text, "generated_text": text, "item_id": item_id,
                              "response_id": response_id, "interrupted": false, "audio_ms": audio_ms});
        if let Some(patch) = self.pending.remove(item_id) {
            crate::record::apply_amend(&mut data, &patch);
        }
        data
    }
}
