//! Fuzzes the registration message decoder (the first bytes either side reads from a new link
//! connection). Beyond "no panic": a message never takes more than the input or more than
//! `MAX_MESSAGE` plus its prefix, `frame_len` agrees with `decode`, a message re-encodes to bytes
//! that decode to the same message, and every strict prefix of a message is "incomplete" (so a
//! message read in pieces decodes as one read at once).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringtun_core::handshake::{MAX_MESSAGE, MAX_STRING, Message};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((msg, used))) = Message::decode(rest) {
        assert!(used <= rest.len());
        assert!(used <= MAX_MESSAGE + 2);
        assert!(matches!(Message::frame_len(rest), Ok(Some(n)) if n == used));
        // Every strict prefix is "incomplete", never an error or another message.
        for cut in [0, 1, used / 2, used - 1] {
            assert!(
                matches!(Message::decode(&rest[..cut]), Ok(None)),
                "prefix {cut}"
            );
        }
        let strings: Vec<&str> = match &msg {
            Message::Challenge(_) => Vec::new(),
            Message::Register(r) => vec![&r.version, &r.arch, &r.label],
            Message::Accepted(a) => vec![&a.data_center, &a.server],
            Message::Rejected(r) => vec![&r.message],
        };
        assert!(strings.iter().all(|s| s.len() <= MAX_STRING));
        let mut out = Vec::new();
        msg.encode(&mut out);
        // Decoding ignores bytes after the known fields and fills in the optional ones, so the
        // re-encoding may differ in length, never past the limit.
        assert!(out.len() <= MAX_MESSAGE + 2);
        match Message::decode(&out) {
            Ok(Some((again, n))) => {
                assert_eq!(again, msg);
                assert_eq!(n, out.len());
            }
            other => panic!("re-encoded message: {other:?}"),
        }
        rest = &rest[used..];
    }
});
