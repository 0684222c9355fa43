//! User-code parsing: never panics, and whatever parses is eight letters of
//! the alphabet that parses back to itself from its display form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use linkd::codes::{USER_CODE_ALPHABET, UserCode};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(code) = UserCode::parse(input) {
        assert_eq!(code.as_str().len(), 8);
        assert!(
            code.as_str()
                .bytes()
                .all(|b| USER_CODE_ALPHABET.contains(&b))
        );
        assert_eq!(UserCode::parse(&code.display()).ok(), Some(code));
    }
});
