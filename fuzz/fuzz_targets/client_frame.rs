//! Fuzzes the client-frame parser: any bytes, as the WebSocket hands them over, must parse
//! or be refused with an error frame, never panic; a frame that parses survives a round trip
//! through its own serialization unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto_events::ClientCommand;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ClientCommand::parse(text) {
        Ok(cmd) => {
            let again = serde_json::to_string(&cmd).expect("a command serializes");
            assert_eq!(ClientCommand::parse(&again), Ok(cmd));
        }
        Err(e) => {
            let frame = e.to_frame();
            assert!(!frame.code.is_empty() && !frame.message.is_empty());
        }
    }
});
