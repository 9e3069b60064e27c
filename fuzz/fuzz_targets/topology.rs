//! Any text through the topology parser, validator, planner and error rendering: none of
//! them may panic, whatever the input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        lab::fuzzing::check(text);
    }
});
