//! Fuzzes the HTTP/1.1 head parsers (request heads from public clients, response heads from
//! origins). Beyond "no panic":
//! - a head never takes more than `max_head_bytes`, and what is left in the buffer is exactly the
//!   input after the head;
//! - every prefix shorter than the head is "incomplete" (`Ok(None)`), so a head read in pieces
//!   parses the same as one read at once;
//! - a parsed head re-encodes to bytes that parse to the same head;
//! - the body framing decided from a parsed head does not panic.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringtun_core::http::{
    HeadLimits, MAX_HEADERS_CAP, parse_request, parse_response, request_framing, response_framing,
};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, input)) = data.split_first() else {
        return;
    };
    // Small limits half the time so the size checks are reached too.
    let limits = if sel & 2 == 0 {
        HeadLimits::default()
    } else {
        HeadLimits {
            max_head_bytes: 64 + usize::from(sel >> 2) * 4,
            max_headers: usize::from(sel >> 4),
        }
    };
    let roomy = HeadLimits {
        max_head_bytes: usize::MAX,
        max_headers: MAX_HEADERS_CAP,
    };
    let split = input.len() / 2;
    if sel & 1 == 0 {
        let mut buf = BytesMut::from(input);
        let Ok(Some(head)) = parse_request(&mut buf, &limits) else {
            return;
        };
        let used = input.len() - buf.len();
        assert!(used <= limits.max_head_bytes);
        assert_eq!(&buf[..], &input[used..]);
        if split < used {
            let mut part = BytesMut::from(&input[..split]);
            let r = parse_request(&mut part, &limits);
            assert!(matches!(r, Ok(None)), "prefix of {split}: {r:?}");
            assert_eq!(part.len(), split);
        }
        let _ = request_framing(&head);
        let mut again = BytesMut::from(&head.to_bytes()[..]);
        match parse_request(&mut again, &roomy) {
            Ok(Some(h)) => assert_eq!(h, head),
            other => panic!("re-encoded head: {other:?}"),
        }
        assert!(again.is_empty());
    } else {
        let mut buf = BytesMut::from(input);
        let Ok(Some(head)) = parse_response(&mut buf, &limits) else {
            return;
        };
        let used = input.len() - buf.len();
        assert!(used <= limits.max_head_bytes);
        assert_eq!(&buf[..], &input[used..]);
        if split < used {
            let mut part = BytesMut::from(&input[..split]);
            let r = parse_response(&mut part, &limits);
            assert!(matches!(r, Ok(None)), "prefix of {split}: {r:?}");
            assert_eq!(part.len(), split);
        }
        let _ = response_framing(&head, b"GET");
        let _ = response_framing(&head, b"HEAD");
        let mut again = BytesMut::from(&head.to_bytes()[..]);
        match parse_response(&mut again, &roomy) {
            Ok(Some(h)) => assert_eq!(h, head),
            other => panic!("re-encoded head: {other:?}"),
        }
        assert!(again.is_empty());
    }
});
