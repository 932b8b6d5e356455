//! Fuzzes the client-frame parser: any bytes, as the WebSocket hands them over, must parse
//! or be refused with an error frame, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = proto_events::ClientCommand::parse(text) {
            let frame = e.to_frame();
            assert!(!frame.code.is_empty());
        }
    }
});
