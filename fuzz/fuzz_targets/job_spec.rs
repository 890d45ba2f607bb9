#![no_main]
//! Fuzz target: see `gpu_train::fuzz::job_spec`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| gpu_train::fuzz::job_spec(data));
