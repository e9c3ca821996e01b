//! Fuzzes the frame decoder: arbitrary bytes must never panic, and every frame decoded must
//! re-encode to bytes that decode to the same frame.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringtun_core::mux::frame::{self, Encoder, Frame, Limits};

const LIMITS: Limits = Limits {
    max_frame_size: 64 * 1024,
    max_metadata_size: 4096,
};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(f)) = frame::decode(&mut buf, &LIMITS) {
        if matches!(f, Frame::Unknown(_)) {
            continue;
        }
        let mut enc = Encoder::new();
        let mut out = Vec::new();
        enc.encode(&f, &mut out);
        enc.flush(&mut out);
        let mut again = BytesMut::from(&out.concat()[..]);
        let g = frame::decode(&mut again, &LIMITS);
        assert_eq!(g, Ok(Some(f)));
        assert!(again.is_empty());
    }
});
