//! libFuzzer's entry point for the `records` target: its properties are in the library
//! (`kv_fuzz::records::records`), where the corpus tests run them too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kv_fuzz::records::records(data));
