//! Scenario validation: every rule, one broken file each; startup fails naming file and field.

use switchboard::Application;

use crate::support::{spawn_app_with, test_config};

const GOOD: &str = r#"
id: demo
label: Demo
company_name: Acme
default_root: first
agents:
  - name: first
    instructions: Say hello.
    tools: [lookup]
    handoffs: [second]
  - name: second
    instructions: Say goodbye.
tools:
  - name: lookup
    description: Look something up.
    parameters:
      type: object
      properties:
        q: {type: string}
      required: [q]
      additionalProperties: false
    http:
      url: http://127.0.0.1:9/lookup
"#;

/// Starts the app with one scenario file and returns the startup error text.
async fn startup_error(yaml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.yaml"), yaml).unwrap();
    let mut config = test_config();
    config.scenarios_dir = Some(dir.path().to_owned());
    match Application::build(config).await {
        Ok(_) => panic!("startup should fail for:\n{yaml}"),
        Err(e) => format!("{e:#}"),
    }
}

async fn assert_rejected(yaml: &str, field: &str, words: &str) {
    let err = startup_error(yaml).await;
    assert!(err.contains("broken.yaml"), "no file name in: {err}");
    assert!(err.contains(field), "no field {field:?} in: {err}");
    assert!(err.contains(words), "no {words:?} in: {err}");
}

#[tokio::test]
async fn the_reference_file_is_valid_and_extends_the_builtins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("demo.yaml"), GOOD).unwrap();
    let path = dir.path().to_owned();
    let app = spawn_app_with(move |c| c.scenarios_dir = Some(path)).await;
    let (s, b) = app.get_json("/api/scenarios").await;
    assert_eq!(s, 200);
    assert_eq!(
        b.as_array().unwrap().len(),
        5,
        "the four built-ins and the file's"
    );
    let b = app.session2("demo").await;
    assert_eq!(
        b["initial_agents"][0]["tools"][1]["name"],
        "transfer_to_second"
    );
}

#[tokio::test]
async fn a_file_with_a_builtin_id_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = GOOD.replace("id: demo", "id: simpleHandoff");
    std::fs::write(dir.path().join("mine.yml"), yaml).unwrap();
    let path = dir.path().to_owned();
    let app = spawn_app_with(move |c| c.scenarios_dir = Some(path)).await;
    let (_, b) = app.get_json("/api/scenarios/simpleHandoff").await;
    assert_eq!(b["company_name"], "Acme");
    assert_eq!(b["agents"][0]["name"], "first");
}

#[tokio::test]
async fn yaml_syntax_error() {
    assert_rejected("id: [unclosed", "line", "").await;
}

#[tokio::test]
async fn unknown_field() {
    assert_rejected(
        &GOOD.replace("label: Demo", "label: Demo\nlabell: typo"),
        "line",
        "labell",
    )
    .await;
}

#[tokio::test]
async fn missing_required_field() {
    assert_rejected(
        &GOOD.replace("company_name: Acme\n", ""),
        "",
        "company_name",
    )
    .await;
}

#[tokio::test]
async fn duplicate_agent_name() {
    assert_rejected(
        &GOOD.replace("- name: second", "- name: first"),
        "agents[1].name",
        "twice",
    )
    .await;
}

#[tokio::test]
async fn invalid_agent_name() {
    let yaml = GOOD
        .replace("- name: second", "- name: second_agent")
        .replace("handoffs: [second]", "handoffs: []");
    assert_rejected(&yaml, "agents[1].name", "A-Za-z0-9").await;
}

#[tokio::test]
async fn unknown_handoff_target() {
    assert_rejected(
        &GOOD.replace("handoffs: [second]", "handoffs: [third]"),
        "agents[0].handoffs[0]",
        "third",
    )
    .await;
}

#[tokio::test]
async fn handoff_to_itself() {
    assert_rejected(
        &GOOD.replace("handoffs: [second]", "handoffs: [first]"),
        "agents[0].handoffs[0]",
        "itself",
    )
    .await;
}

#[tokio::test]
async fn unknown_tool() {
    assert_rejected(
        &GOOD.replace("tools: [lookup]", "tools: [lookup, search]"),
        "agents[0].tools[1]",
        "search",
    )
    .await;
}

#[tokio::test]
async fn unknown_default_root() {
    assert_rejected(
        &GOOD.replace("default_root: first", "default_root: boss"),
        "default_root",
        "boss",
    )
    .await;
}

#[tokio::test]
async fn invalid_json_schema() {
    assert_rejected(
        &GOOD.replace("q: {type: string}", "q: {type: 12}"),
        "tools[0].parameters",
        "JSON Schema",
    )
    .await;
}

#[tokio::test]
async fn parameters_not_an_object_schema() {
    assert_rejected(
        &GOOD.replace(
            "      type: object\n      properties:",
            "      type: string\n      properties:",
        ),
        "tools[0].parameters",
        "object",
    )
    .await;
}

#[tokio::test]
async fn duplicate_tool() {
    let yaml = format!(
        "{GOOD}  - name: lookup\n    description: Again.\n    parameters: {{type: object}}\n"
    );
    assert_rejected(&yaml, "tools[1].name", "twice").await;
}

#[tokio::test]
async fn unknown_voice() {
    assert_rejected(
        &GOOD.replace("  - name: second\n", "  - name: second\n    voice: robot\n"),
        "agents[1].voice",
        "robot",
    )
    .await;
}

#[tokio::test]
async fn no_agents() {
    let yaml = "id: demo\nlabel: Demo\ncompany_name: Acme\nagents: []\n";
    assert_rejected(yaml, "agents", "at least one").await;
}

#[tokio::test]
async fn alias_clashing_with_another_scenario() {
    assert_rejected(
        &GOOD.replace("label: Demo", "label: Demo\naliases: [retail]"),
        "aliases[0]",
        "retail",
    )
    .await;
}

#[tokio::test]
async fn a_tool_with_no_implementation() {
    let yaml = GOOD.replace("    http:\n      url: http://127.0.0.1:9/lookup\n", "");
    assert_rejected(&yaml, "tools[0]", "no built-in tool is named \"lookup\"").await;
}

#[tokio::test]
async fn a_webhook_with_a_bad_url() {
    assert_rejected(
        &GOOD.replace("http://127.0.0.1:9/lookup", "ftp://x/y"),
        "tools[0].http.url",
        "http(s)",
    )
    .await;
}

#[tokio::test]
async fn invalid_scenario_id() {
    assert_rejected(&GOOD.replace("id: demo", "id: 'a b'"), "id", "scenario_id").await;
}
