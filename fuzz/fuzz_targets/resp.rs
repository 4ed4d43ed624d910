//! libFuzzer's entry point for the `resp` target: its properties are in the library
//! (`kv_fuzz::protocol::resp`), where the corpus tests run them too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kv_fuzz::protocol::resp(data));
