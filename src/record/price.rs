//! The price table: US dollars per million tokens by direction, modality and cache, and per
//! second for voice billed by time. Built in from `prices.json`; `SWITCHBOARD_PRICES` adds
//! or replaces models. Costs are integers of billionths of a dollar, so sums are exact.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The built-in table.
pub const DEFAULT_PRICES: &str = include_str!("prices.json");

/// One model's prices (dollars per million tokens; `per_second` in dollars).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    #[serde(default)]
    pub text_input: f64,
    #[serde(default)]
    pub text_cached_input: f64,
    #[serde(default)]
    pub text_output: f64,
    #[serde(default)]
    pub audio_input: f64,
    #[serde(default)]
    pub audio_cached_input: f64,
    #[serde(default)]
    pub audio_output: f64,
    #[serde(default)]
    pub per_second: f64,
}

#[derive(Debug, Deserialize)]
struct File {
    models: BTreeMap<String, ModelPrice>,
}

/// Usage normalized from the APIs' shapes: tokens by direction, modality and cache, and
/// billed seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_text_tokens: u64,
    pub input_audio_tokens: u64,
    pub cached_text_tokens: u64,
    pub cached_audio_tokens: u64,
    pub output_text_tokens: u64,
    pub output_audio_tokens: u64,
    /// Billed time in milliseconds (kept whole so sums are exact).
    #[serde(default)]
    pub billed_ms: u64,
}

impl Usage {
    /// A Realtime `response.done`'s `response.usage`, or a Responses `usage`
    /// (`input_tokens_details.cached_tokens`, no modality split: all text).
    pub fn from_api(u: &Value) -> Self {
        let n = |v: &Value| v.as_u64().unwrap_or(0);
        let input = n(&u["input_tokens"]);
        let output = n(&u["output_tokens"]);
        let ind = &u["input_token_details"];
        let outd = &u["output_token_details"];
        if ind.is_object() || outd.is_object() {
            let cached = &ind["cached_tokens_details"];
            let (ct, ca) = if cached.is_object() {
                (n(&cached["text_tokens"]), n(&cached["audio_tokens"]))
            } else {
                (n(&ind["cached_tokens"]), 0)
            };
            Self {
                input_text_tokens: n(&ind["text_tokens"]),
                input_audio_tokens: n(&ind["audio_tokens"]),
                cached_text_tokens: ct,
                cached_audio_tokens: ca,
                output_text_tokens: n(&outd["text_tokens"]),
                output_audio_tokens: n(&outd["audio_tokens"]),
                billed_ms: 0,
            }
        } else {
            Self {
                input_text_tokens: input,
                cached_text_tokens: n(&u["input_tokens_details"]["cached_tokens"]),
                output_text_tokens: output,
                ..Self::default()
            }
        }
    }

    /// Billed time.
    pub fn billed_ms(ms: u64) -> Self {
        Self {
            billed_ms: ms,
            ..Self::default()
        }
    }

    /// The usage as record fields.
    pub fn to_json(&self) -> Value {
        json!({
            "input_text_tokens": self.input_text_tokens,
            "input_audio_tokens": self.input_audio_tokens,
            "cached_text_tokens": self.cached_text_tokens,
            "cached_audio_tokens": self.cached_audio_tokens,
            "output_text_tokens": self.output_text_tokens,
            "output_audio_tokens": self.output_audio_tokens,
            "seconds": self.billed_ms as f64 / 1000.0,
        })
    }
}

/// The loaded table.
#[derive(Debug, Clone)]
pub struct PriceTable {
    models: BTreeMap<String, ModelPrice>,
}

/// A price file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("price table {path}: {message}")]
pub struct PriceError {
    pub path: String,
    pub message: String,
}

impl Default for PriceTable {
    fn default() -> Self {
        let f: File =
            serde_json::from_str(DEFAULT_PRICES).expect("the built-in price table parses");
        Self { models: f.models }
    }
}

impl PriceTable {
    /// The built-in table with `extra`'s models added or replaced.
    pub fn load(extra: Option<&Path>) -> Result<Self, PriceError> {
        let mut t = Self::default();
        if let Some(p) = extra {
            let err = |message: String| PriceError {
                path: p.display().to_string(),
                message,
            };
            let text = std::fs::read_to_string(p).map_err(|e| err(e.to_string()))?;
            let f: File = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
            for (name, price) in &f.models {
                let all = [
                    price.text_input,
                    price.text_cached_input,
                    price.text_output,
                    price.audio_input,
                    price.audio_cached_input,
                    price.audio_output,
                    price.per_second,
                ];
                if all.iter().any(|v| !v.is_finite() || *v < 0.0) {
                    return Err(err(format!("{name}: prices must be numbers of 0 or more")));
                }
            }
            t.models.extend(f.models);
        }
        Ok(t)
    }

    /// The price of `model`: its own entry, or that of its longest listed prefix.
    pub fn price(&self, model: &str) -> Option<&ModelPrice> {
        if let Some(p) = self.models.get(model) {
            return Some(p);
        }
        self.models
            .iter()
            .filter(|(name, _)| model.starts_with(name.as_str()))
            .max_by_key(|(name, _)| name.len())
            .map(|(_, p)| p)
    }

    /// What `usage` on `model` costs, in billionths of a dollar; `None` for a model the
    /// table does not know.
    pub fn cost_nanousd(&self, model: &str, u: &Usage) -> Option<i64> {
        let p = self.price(model)?;
        let per_m = |tokens: u64, dollars: f64| tokens as f64 * dollars * 1000.0;
        let text_in = u.input_text_tokens.saturating_sub(u.cached_text_tokens);
        let audio_in = u.input_audio_tokens.saturating_sub(u.cached_audio_tokens);
        let nanos = per_m(text_in, p.text_input)
            + per_m(u.cached_text_tokens, p.text_cached_input)
            + per_m(audio_in, p.audio_input)
            + per_m(u.cached_audio_tokens, p.audio_cached_input)
            + per_m(u.output_text_tokens, p.text_output)
            + per_m(u.output_audio_tokens, p.audio_output)
            + u.billed_ms as f64 / 1000.0 * p.per_second * 1e9;
        Some(nanos.round() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realtime_usage_is_priced_by_modality_and_cache() {
        let u = Usage::from_api(&json!({
            "input_tokens": 1200, "output_tokens": 300,
            "input_token_details": {"text_tokens": 200, "audio_tokens": 1000, "cached_tokens": 100,
                "cached_tokens_details": {"text_tokens": 100, "audio_tokens": 0}},
            "output_token_details": {"text_tokens": 50, "audio_tokens": 250}
        }));
        let t = PriceTable::default();
        // 100 text at $4/M, 100 cached text at $0.40/M, 1000 audio at $32/M,
        // 50 text out at $16/M, 250 audio out at $64/M.
        let want = 100.0 * 4.0 + 100.0 * 0.4 + 1000.0 * 32.0 + 50.0 * 16.0 + 250.0 * 64.0;
        assert_eq!(
            t.cost_nanousd("gpt-realtime-2025-08-28", &u),
            Some((want * 1000.0) as i64)
        );
        assert_eq!(t.cost_nanousd("no-such-model", &u), None);
    }
}
