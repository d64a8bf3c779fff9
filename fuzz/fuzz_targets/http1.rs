//! The listener's and the upstream hop's own HTTP/1.1 body framing on hostile bytes: a chunked body decoded
//! from any split of the wire gives the same body and the same bytes after it as the whole wire at once; what
//! it gives re-encoded as one chunk decodes to the same again; nothing panics or reads past its input.
#![no_main]

use l402_proxy::fuzzing::decode_chunked;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&step, wire)) = data.split_first() else { return };
    let whole = decode_chunked(wire, wire.len().max(1));
    let split = decode_chunked(wire, usize::from(step).max(1));
    assert_eq!(whole, split, "the split changed what was decoded");
    if let Some((body, rest)) = whole {
        assert!(body.len() + rest.len() <= wire.len());
        let mut again = format!("{:x}\r\n", body.len()).into_bytes();
        if body.is_empty() {
            again.clear();
        } else {
            again.extend_from_slice(&body);
            again.extend_from_slice(b"\r\n");
        }
        again.extend_from_slice(b"0\r\n\r\n");
        again.extend_from_slice(&rest);
        assert_eq!(decode_chunked(&again, again.len()), Some((body, rest)), "re-encoded");
    }
});
