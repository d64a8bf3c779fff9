//! WWW-Authenticate parsing: arbitrary bytes, split into several header lines on newlines.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let lines = data.split(|&b| b == b'\n');
    if let Ok(all) = l402_proto::Challenge::parse_all(lines) {
        for c in all {
            // What parsed must format and parse back to the same macaroon and invoice (a parsed invoice is
            // bech32 text, which `format_challenge` writes as it is).
            let again = c.header_value();
            let back = l402_proto::Challenge::parse([again.as_bytes()]).expect("formatted challenge parses");
            assert_eq!(back.macaroon, c.macaroon);
            assert_eq!(back.invoice, c.invoice);
        }
    }
});
