//! The checked-in schemas in `proto-events/schema/` must match the types. Run with
//! `UPDATE_SCHEMAS=1 cargo test -p proto-events` to regenerate them.

use std::path::PathBuf;

fn check_or_write(rel: &str, content: &str, stale: &mut Vec<String>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("schema")
        .join(rel);
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        return;
    }
    match std::fs::read_to_string(&path) {
        Ok(on_disk) if on_disk == content => {}
        _ => stale.push(rel.to_owned()),
    }
}

#[test]
fn schemas_and_asyncapi_are_fresh() {
    let mut stale = Vec::new();
    for (name, schema) in proto_events::schema::schemas() {
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        check_or_write(name, &text, &mut stale);
    }
    let yaml = serde_yaml_ng::to_string(&proto_events::schema::asyncapi()).unwrap();
    check_or_write("asyncapi.yaml", &yaml, &mut stale);
    assert!(
        stale.is_empty(),
        "stale generated files {stale:?}: run `UPDATE_SCHEMAS=1 cargo test -p proto-events`"
    );
}
