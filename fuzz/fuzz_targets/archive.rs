//! Code-package inspection and unpacking under arbitrary input: see `fresco_fuzz::check`.
//! With `FRESCO_FUZZ_SEEDS=DIR` set, the seed corpus is written to DIR first.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: {
        if let Some(dir) = std::env::var_os("FRESCO_FUZZ_SEEDS") {
            fresco_fuzz::write_seeds(std::path::Path::new(&dir)).expect("write seeds");
        }
    },
    |data: &[u8]| {
        fresco_fuzz::check(&fresco_fuzz::package(data));
    }
);
