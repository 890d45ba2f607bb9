#![no_main]
//! Fuzz target: see `gpu_train::fuzz::checkpoint`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gpu_train::fuzz::checkpoint(data));
