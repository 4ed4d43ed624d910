//! libFuzzer's entry point for the `snapshot` target: its properties are in the library
//! (`kv_fuzz::snapshot::snapshot`), where the corpus tests run them too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kv_fuzz::snapshot::snapshot(data));
