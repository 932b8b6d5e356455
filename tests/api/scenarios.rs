use crate::support::{assert_error, spawn_app};

#[tokio::test]
async fn list_has_the_three_demo_scenarios_and_the_live_retail_desk() {
    let app = spawn_app().await;
    let (s, b) = app.get_json("/api/scenarios").await;
    assert_eq!(s, 200);
    let list = b.as_array().unwrap();
    let ids: Vec<&str> = list.iter().map(|x| x["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "chatSupervisor",
            "customerServiceRetail",
            "customerServiceRetailLive",
            "simpleHandoff"
        ]
    );
    assert_eq!(list[1]["voice_api"], "realtime");
    assert_eq!(list[2]["voice_api"], "live");
    let retail = &list[1];
    assert_eq!(retail["default_root"], "authentication");
    assert_eq!(retail["aliases"][0], "retail");
    assert_eq!(
        retail["agents"],
        serde_json::json!(["authentication", "returns", "salesAgent", "simulatedHuman"])
    );
    assert!(retail["label"].as_str().is_some_and(|l| !l.is_empty()));
}

#[tokio::test]
async fn detail_resolves_aliases_and_carries_tools_handoffs_guardrails() {
    let app = spawn_app().await;
    let (s, b) = app.get_json("/api/scenarios/retail").await;
    assert_eq!(s, 200);
    assert_eq!(b["id"], "customerServiceRetail");
    assert_eq!(b["guardrails"][0]["name"], "moderation_guardrail");
    assert_eq!(b["guardrails"][0]["company_name"], "Snowy Peak Boards");
    assert_eq!(
        b["guardrails"][0]["categories"],
        serde_json::json!(["OFFENSIVE", "OFF_BRAND", "VIOLENCE", "NONE"])
    );
    let auth = &b["agents"][0];
    assert_eq!(auth["name"], "authentication");
    assert_eq!(auth["voice"], "sage");
    let names: Vec<&str> = auth["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "authenticate_user_information",
            "save_or_update_address",
            "update_user_offer_response",
            "transfer_to_returns",
            "transfer_to_salesAgent",
            "transfer_to_simulatedHuman"
        ]
    );
    let verify = &auth["tools"][0];
    assert_eq!(verify["type"], "function");
    assert_eq!(
        verify["parameters"]["properties"]["phone_number"]["pattern"],
        r"^\(\d{3}\) \d{3}-\d{4}$"
    );
    assert_eq!(
        verify["parameters"]["required"],
        serde_json::json!([
            "phone_number",
            "date_of_birth",
            "last_4_digits",
            "last_4_digits_type"
        ])
    );
    let transfer = &auth["tools"][3];
    assert_eq!(transfer["strict"], true);
    assert_eq!(
        transfer["parameters"],
        serde_json::json!({"type": "object", "properties": {}, "required": [], "additionalProperties": false})
    );
    assert!(
        transfer["description"]
            .as_str()
            .unwrap()
            .contains("returns")
    );
}

#[tokio::test]
async fn unknown_scenario_is_404_naming_the_valid_ones() {
    let app = spawn_app().await;
    let (s, b) = app.get_json("/api/scenarios/nope").await;
    assert_error(s, &b, 404, "unknown_scenario");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("simpleHandoff")
    );
}
