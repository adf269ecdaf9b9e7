//! Any string: parsing a reference never panics, and what parses prints back
//! to something that parses to the same reference.
#![no_main]
use coldpress::reference::ImageRef;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(r) = ImageRef::parse(s) {
        let again = ImageRef::parse(&r.to_string()).expect("a printed reference parses");
        assert_eq!(again, r);
    }
});
