//! libFuzzer's entry point for the `line_protocol` target: its properties are in the library
//! (`kv_fuzz::protocol::line_protocol`), where the corpus tests run them too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kv_fuzz::protocol::line_protocol(data));
