//! Client-frame parsing and close codes.

use proptest::prelude::*;
use proto_events::{ClientCommand, CloseCode, FrameError};

#[test]
fn ping_parses_with_and_without_id() {
    assert_eq!(
        ClientCommand::parse(r#"{"type":"ping"}"#),
        Ok(ClientCommand::Ping { id: None })
    );
    assert_eq!(
        ClientCommand::parse(r#"{"type":"ping","id":"7"}"#),
        Ok(ClientCommand::Ping {
            id: Some("7".into())
        })
    );
}

#[test]
fn malformed_and_unknown_frames_are_told_apart() {
    for bad in [
        "",
        "nope",
        "[1]",
        "1",
        r#"{"id":1}"#,
        r#"{"type":3}"#,
        r#"{"type":"ping","extra":1}"#,
    ] {
        assert!(
            matches!(ClientCommand::parse(bad), Err(FrameError::Malformed(_))),
            "{bad:?}"
        );
    }
    assert_eq!(
        ClientCommand::parse(r#"{"type":"subscribe"}"#),
        Err(FrameError::UnknownCommand("subscribe".into()))
    );
    assert_eq!(
        FrameError::UnknownCommand("x".into()).to_frame().code,
        "unknown_command"
    );
}

#[test]
fn close_codes_round_trip_and_terminal_ones_are_the_documented_three() {
    for c in CloseCode::ALL {
        assert_eq!(CloseCode::try_from(c.code()), Ok(c));
    }
    let terminal: Vec<u16> = CloseCode::ALL
        .into_iter()
        .filter(|c| c.is_terminal())
        .map(CloseCode::code)
        .collect();
    assert_eq!(terminal, [4001, 4004, 4009]);
    assert!(CloseCode::try_from(1000).is_err());
}

proptest! {
    #[test]
    fn parse_never_panics_on_arbitrary_text(s in ".{0,200}") {
        let _ = ClientCommand::parse(&s);
    }

    #[test]
    fn parse_never_panics_on_json_like_text(
        t in prop::sample::select(vec!["ping", "pong", "", "PING"]),
        id in prop::option::of(".{0,20}"),
        extra in prop::option::of("[a-z]{1,5}"),
    ) {
        let mut v = serde_json::json!({"type": t});
        if let Some(id) = id { v["id"] = id.into(); }
        if let Some(k) = extra { v[k] = 1.into(); }
        let r = ClientCommand::parse(&v.to_string());
        if t != "ping" { prop_assert!(r.is_err()); }
    }
}
