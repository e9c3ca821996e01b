//! Fuzzes the OPEN and REPLY metadata decoders (what a peer sends in a stream's first frame).
//! Beyond "no panic": whatever decodes re-encodes to bytes that decode to the same value and are
//! no longer than the input (the encoding is canonical, so only redundant varint bytes can
//! shrink), and the decoded head holds no byte that would let a peer inject a line into the
//! HTTP/1.1 head written to an origin or a client.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ringtun_core::http::Headers;
use ringtun_core::tunnel::{
    ResponseMeta, decode_request_meta, decode_response_meta, encode_reply_error,
    encode_request_meta, encode_response_meta_with,
};

fn no_line_breaks(headers: &Headers) {
    for h in headers {
        assert!(!h.name.is_empty());
        assert!(!h.name.iter().any(|&b| b <= b' ' || b == b':' || b == 0x7f));
        assert!(!h.value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0));
    }
}

fuzz_target!(|data: &[u8]| {
    let meta = Bytes::copy_from_slice(data);
    if let Ok((head, extra)) = decode_request_meta(meta.clone()) {
        assert!(!head.method.iter().any(|&b| b <= b' ' || b == 0x7f));
        assert!(!head.target.is_empty());
        assert!(!head.target.iter().any(|&b| b <= b' ' || b == 0x7f));
        no_line_breaks(&head.headers);
        let again = encode_request_meta(&head, &extra);
        assert!(again.len() <= data.len());
        match decode_request_meta(again) {
            Ok((h, e)) => {
                assert_eq!(h, head);
                assert_eq!(e, extra);
            }
            Err(e) => panic!("re-encoded request meta: {e}"),
        }
        // Written out as HTTP/1.1, the head ends exactly once, at its end.
        let wire = head.to_bytes();
        assert!(!wire[..wire.len() - 4].windows(4).any(|w| w == b"\r\n\r\n"));
    }
    match decode_response_meta(meta) {
        Ok(ResponseMeta::Head {
            head,
            body,
            trailers,
        }) => {
            assert!((100..=999).contains(&head.status));
            assert!(!head.reason.iter().any(|&b| b == b'\r' || b == b'\n'));
            no_line_breaks(&head.headers);
            let wire = head.to_bytes();
            assert!(!wire[..wire.len() - 4].windows(4).any(|w| w == b"\r\n\r\n"));
            let again = encode_response_meta_with(&head, body, trailers);
            assert!(again.len() <= data.len());
            match decode_response_meta(again) {
                Ok(ResponseMeta::Head {
                    head: h,
                    body: b,
                    trailers: t,
                }) => {
                    assert_eq!(h, head);
                    assert_eq!(b, body);
                    assert_eq!(t, trailers);
                }
                other => panic!("re-encoded response meta: {other:?}"),
            }
        }
        Ok(ResponseMeta::Error(err)) => {
            let again = encode_reply_error(&err);
            assert!(again.len() <= data.len());
            match decode_response_meta(again) {
                Ok(ResponseMeta::Error(e)) => assert_eq!(e, err),
                other => panic!("re-encoded reply error: {other:?}"),
            }
            let _ = err.to_response(false);
        }
        Err(_) => {}
    }
});
