//! Built-in tools: every tool of the three demo scenarios, backed by the sample data in
//! [`super::data`], plus `echo_context`. Two of them ask a model through the upstream:
//! `checkEligibilityAndPossiblyInitiateReturn` (a strict assessor) and
//! `getNextResponseFromSupervisor` (the chatSupervisor's supervisor loop, with its three
//! tools). Offline they answer `upstream_not_configured` as a failed result.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::turn::{TurnSpec, run_turn};
use super::{Tool, ToolContext, ToolError, data};
use crate::upstream::responses::message_texts;

/// Tools that stand outside any scenario's agent lists: `(name, description, schema)`.
pub fn extra_declarations() -> Vec<(String, String, Value)> {
    let one = |prop: &str, desc: &str| {
        json!({"type": "object", "properties": {prop: {"type": "string", "description": desc}},
               "required": [prop], "additionalProperties": false})
    };
    vec![
        (
            "lookupPolicyDocument".into(),
            "Find NewTelco policy documents about a topic or keyword.".into(),
            one("topic", "The topic or keyword to look up."),
        ),
        (
            "getUserAccountInfo".into(),
            "Read a NewTelco customer's account (read-only). The phone number comes from the user."
                .into(),
            one(
                "phone_number",
                "The customer's phone number, formatted like (xxx) xxx-xxxx.",
            ),
        ),
        (
            "findNearestStore".into(),
            "Find the NewTelco stores nearest to a 5-digit zip code.".into(),
            one("zip_code", "The customer's 5-digit zip code."),
        ),
        (
            "echo_context".into(),
            "Return the arguments unchanged (for checking the tool path end to end).".into(),
            json!({"type": "object"}),
        ),
    ]
}

/// The built-in implementation of `name`, if there is one.
pub fn implementation(name: &str) -> Option<Arc<dyn Tool>> {
    let fixed = |v: Value| -> Option<Arc<dyn Tool>> { Some(Arc::new(Fixed(v))) };
    match name {
        "authenticate_user_information"
        | "save_or_update_address"
        | "update_user_offer_response"
        | "addToCart" => fixed(json!({"success": true})),
        "lookupOrders" => fixed(data::orders()),
        "retrievePolicy" => fixed(json!({"policy": data::RETURN_POLICY})),
        "checkout" => fixed(json!({"checkoutUrl": "https://example.com/checkout"})),
        "getUserAccountInfo" => fixed(data::account()),
        "lookupNewSales" => Some(Arc::new(Sales)),
        "lookupPolicyDocument" => Some(Arc::new(PolicyDocs)),
        "findNearestStore" => Some(Arc::new(NearestStore)),
        "echo_context" => Some(Arc::new(Echo)),
        "checkEligibilityAndPossiblyInitiateReturn" => Some(Arc::new(ReturnCheck)),
        "getNextResponseFromSupervisor" => Some(Arc::new(Supervisor)),
        _ => None,
    }
}

/// Answers the same value every time.
struct Fixed(Value);

#[async_trait]
impl Tool for Fixed {
    async fn call(&self, _: &ToolContext<'_>, _: Value) -> Result<Value, ToolError> {
        Ok(self.0.clone())
    }
}

struct Echo;

#[async_trait]
impl Tool for Echo {
    async fn call(&self, _: &ToolContext<'_>, args: Value) -> Result<Value, ToolError> {
        Ok(json!({"echo": args}))
    }
}

/// Promotions by category (or all), best discount first.
struct Sales;

#[async_trait]
impl Tool for Sales {
    async fn call(&self, _: &ToolContext<'_>, args: Value) -> Result<Value, ToolError> {
        let category = args["category"].as_str().unwrap_or("any");
        let mut sales: Vec<Value> = data::sales()
            .into_iter()
            .filter(|s| category == "any" || s["type"] == category)
            .collect();
        sales.sort_by(|a, b| {
            let pct = |v: &Value| v["sale_discount_pct"].as_f64().unwrap_or(0.0);
            pct(b).total_cmp(&pct(a))
        });
        Ok(json!({"sales": sales}))
    }
}

/// Policy documents whose topic, name or content mention the topic's words; all of them
/// when nothing matches.
struct PolicyDocs;

#[async_trait]
impl Tool for PolicyDocs {
    async fn call(&self, _: &ToolContext<'_>, args: Value) -> Result<Value, ToolError> {
        let topic = args["topic"].as_str().unwrap_or_default().to_lowercase();
        let words: Vec<&str> = topic.split_whitespace().filter(|w| w.len() > 2).collect();
        let docs = data::policies();
        let all = docs.as_array().cloned().unwrap_or_default();
        let hits: Vec<Value> = all
            .iter()
            .filter(|d| {
                let text = format!("{} {} {}", d["topic"], d["name"], d["content"]).to_lowercase();
                words.iter().any(|w| text.contains(w))
            })
            .cloned()
            .collect();
        Ok(Value::Array(if hits.is_empty() { all } else { hits }))
    }
}

/// Stores sorted by how close their zip code is to the given one.
struct NearestStore;

#[async_trait]
impl Tool for NearestStore {
    async fn call(&self, _: &ToolContext<'_>, args: Value) -> Result<Value, ToolError> {
        let zip: i64 = args["zip_code"]
            .as_str()
            .and_then(|z| z.trim().parse().ok())
            .ok_or_else(|| ToolError::Failed("zip_code must be a 5-digit number".into()))?;
        let mut stores = data::stores().as_array().cloned().unwrap_or_default();
        stores.sort_by_key(|s| {
            let z: i64 = s["zip_code"]
                .as_str()
                .and_then(|z| z.parse().ok())
                .unwrap_or(0);
            (z - zip).abs()
        });
        stores.truncate(3);
        Ok(Value::Array(stores))
    }
}

const ASSESSOR_PROMPT: &str = "You decide whether a Snowy Peak Boards return or exchange is allowed. \
Apply the policy strictly and only to the facts given; treat today's date as 2024-12-26. Answer in \
this format: first line `eligible: true`, `eligible: false` or `eligible: need_more_information`; \
then one or two sentences of reasoning; then, when eligible, the next step for the customer.";

/// Asks a reasoning model whether a return is allowed.
struct ReturnCheck;

#[async_trait]
impl Tool for ReturnCheck {
    async fn call(&self, ctx: &ToolContext<'_>, args: Value) -> Result<Value, ToolError> {
        let up = ctx.upstream.ok_or(ToolError::Offline)?;
        let facts = format!(
            "Requested action: {}\nQuestion: {}\nOrders on file: {}\nPolicy: {}",
            args["userDesiredAction"].as_str().unwrap_or_default(),
            args["question"].as_str().unwrap_or_default(),
            data::orders(),
            data::RETURN_POLICY
        );
        let body = json!({"model": "o4-mini", "input": [
            {"role": "system", "content": ASSESSOR_PROMPT},
            {"role": "user", "content": facts}
        ]});
        let resp = up
            .post_json("responses", &body)
            .await
            .map_err(|e| ToolError::Failed(format!("the eligibility check failed: {e}")))?;
        let text: String = message_texts(&resp).collect();
        Ok(json!({"result": text}))
    }
}

const SUPERVISOR_PROMPT: &str = "You are a senior NewTelco customer service agent. A junior agent is \
on the phone with a customer and will read your answer aloud word for word. Use the tools before \
stating any fact about accounts, policies or stores; never guess. Decline politics, religion, and \
legal, medical or financial advice. Keep the answer to a few short sentences of plain prose, no \
lists, and cite policy documents as [NAME](ID).";

/// Most model round trips of one supervisor answer.
const SUPERVISOR_MAX_TURNS: usize = 6;

/// The chatSupervisor's supervisor: the Responses tool loop over its three tools.
struct Supervisor;

#[async_trait]
impl Tool for Supervisor {
    async fn call(&self, ctx: &ToolContext<'_>, args: Value) -> Result<Value, ToolError> {
        let up = ctx.upstream.ok_or(ToolError::Offline)?;
        let registry = ctx
            .tools
            .ok_or_else(|| ToolError::Failed("the supervisor has no tools to use".into()))?;
        let tools: Vec<String> = extra_declarations()
            .into_iter()
            .map(|(name, ..)| name)
            .filter(|n| n != "echo_context")
            .collect();
        let input = vec![
            json!({"type": "message", "role": "system", "content": SUPERVISOR_PROMPT}),
            json!({"type": "message", "role": "user", "content": format!(
                "What the customer just said, in short: {}",
                args["relevantContextFromLastUserMessage"].as_str().unwrap_or_default()
            )}),
        ];
        let observe = |name: &str, args: &Value, output: &Value| {
            if let Some(trail) = ctx.trail {
                trail.push(format!("supervisor function call: {name}"), args.clone());
                trail.push(
                    format!("supervisor function call result: {name}"),
                    output.clone(),
                );
            }
        };
        let spec = TurnSpec {
            model: "gpt-4.1",
            instructions: "",
            tools: &tools,
            extra_tools: &[],
            input,
            max_iterations: SUPERVISOR_MAX_TURNS,
            parallel_tool_calls: Some(false),
            session_id: ctx.session_id,
            observer: Some(&observe),
            replay: None,
        };
        let turn = run_turn(up, registry, spec)
            .await
            .map_err(|e| ToolError::Failed(format!("the supervisor failed: {e}")))?;
        if turn.capped {
            return Err(ToolError::Failed(format!(
                "the supervisor did not finish within {SUPERVISOR_MAX_TURNS} model turns"
            )));
        }
        Ok(json!({"nextResponse": turn.output_text}))
    }
}
