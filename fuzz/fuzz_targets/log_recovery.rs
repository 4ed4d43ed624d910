//! libFuzzer's entry point for the `log_recovery` target: its properties are in the library
//! (`kv_fuzz::recovery::log_recovery`), where the corpus tests run them too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kv_fuzz::recovery::log_recovery(data));
