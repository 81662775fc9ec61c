//! The wire codecs round-trip whatever they are given, and refuse what they must before
//! allocating: oversize frames, foreign traffic, torn frames.

use std::io::Cursor;

use grlhf_cluster::frame::{read_frame, read_json, write_frame, write_json, FRAME_MAGIC};
use grlhf_cluster::{FrameError, WeightHeader};
use proptest::prelude::*;

proptest! {
    #[test]
    fn frames_round_trip(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..512), 1..6)) {
        let mut wire = Vec::new();
        for p in &payloads {
            write_frame(&mut wire, p).unwrap();
        }
        let mut reader = Cursor::new(wire);
        for p in &payloads {
            prop_assert_eq!(&read_frame(&mut reader, 1024).unwrap(), p);
        }
        prop_assert!(matches!(read_frame(&mut reader, 1024), Err(FrameError::Closed)));
    }

    #[test]
    fn weight_headers_round_trip(
        version in any::<u64>(),
        total in any::<u64>(),
        chunk in 1u64..u64::MAX,
        digests in prop::collection::vec("[0-9a-f]{64}", 0..8),
        digest in "[0-9a-f]{64}",
    ) {
        let header = WeightHeader { version, total_bytes: total, chunk_bytes: chunk, chunk_sha256: digests, digest };
        let mut wire = Vec::new();
        write_json(&mut wire, &header).unwrap();
        let back: WeightHeader = read_json(&mut Cursor::new(wire), 1 << 20).unwrap();
        prop_assert_eq!(back, header);
    }

    #[test]
    fn a_frame_cut_anywhere_is_truncated_never_accepted(payload in prop::collection::vec(any::<u8>(), 1..256), cut in 1usize..264) {
        let mut wire = Vec::new();
        write_frame(&mut wire, &payload).unwrap();
        let cut = cut.min(wire.len() - 1);
        wire.truncate(cut);
        let result = read_frame(&mut Cursor::new(wire), 1024);
        prop_assert!(matches!(result, Err(FrameError::Truncated { .. })), "{:?}", result);
    }
}

#[test]
fn an_oversize_frame_is_refused_from_its_length_alone() {
    // Only the 8-byte head exists: a reader that allocated first would try to read 4 GiB.
    let mut wire = FRAME_MAGIC.to_vec();
    wire.extend_from_slice(&u32::MAX.to_le_bytes());
    match read_frame(&mut Cursor::new(wire), 1 << 20) {
        Err(FrameError::TooLarge { len, limit }) => {
            assert_eq!(len, u32::MAX as u64);
            assert_eq!(limit, 1 << 20);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn traffic_that_is_not_grlhf_is_refused() {
    let wire = b"GET / HTTP/1.1\r\n\r\n".to_vec();
    match read_frame(&mut Cursor::new(wire), 1 << 20) {
        Err(FrameError::BadMagic { found }) => assert_eq!(&found, b"GET "),
        other => panic!("expected BadMagic, got {other:?}"),
    }
}
