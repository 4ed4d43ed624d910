//! libFuzzer's entry point for the `stream` target: its properties are in the library
//! (`kv_fuzz::stream::stream`), where the corpus tests run them too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kv_fuzz::stream::stream(data));
