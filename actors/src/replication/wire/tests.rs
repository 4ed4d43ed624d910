//! The replication wire protocol's tests: every message round-trips, and the stream decoder
//! reads the primary's stream however it arrives.

use super::*;

#[test]
fn the_opening_round_trips_and_is_recognised_only_when_exact() {
    let open = Replicate::new("0a1b");
    assert_eq!(open.encode(), b"REPLICATE 0a1b\n");
    assert_eq!(Replicate::parse(b"REPLICATE 0a1b"), Some(open));
    let parse = |s: &'static str| Replicate::parse(s.as_bytes());
    assert!(parse("  replicate\tx \r").is_some());
    assert_eq!(parse("REPLICATE"), None);
    assert_eq!(parse("REPLICATE a b"), None);
    assert_eq!(parse("REPLICATEx a"), None);
    assert_eq!(parse("GET a"), None);
    assert!(Replicate::opens(b"REPLICATE "));
    assert!(!Replicate::opens(b"*1\r\n$4\r\nPI"));
}

#[test]
fn control_lines_round_trip() {
    for start in [
        SyncStart::Full {
            id: "abc".into(),
            seq: 7,
            previous: None,
        },
        SyncStart::Continue {
            id: "abc".into(),
            offset: 9,
            previous: Some(Previous {
                id: "def".into(),
                offset: 8,
            }),
        },
    ] {
        let mut line = Vec::new();
        start.encode(&mut line);
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(SyncStart::parse(&line[..line.len() - 1]), Ok(start));
    }
    assert!(SyncStart::parse(b"FULLSYNC abc x").is_err());
    assert!(SyncStart::parse(b"FULLSYNC abc 7 def x").is_err());
    for prove in [
        Prove {
            proof: None,
            from: 0,
        },
        Prove {
            proof: Some("ab".into()),
            from: 42,
        },
    ] {
        let line = prove.encode();
        assert_eq!(Prove::parse(&line[..line.len() - 1]), Ok(prove));
    }
    assert!(Prove::parse(b"PROVE").is_err());
    assert!(Prove::parse(b"PROVE - x").is_err());
    assert!(ReplicaLine::parse("POSITION abc 3 1").is_err());
    assert!(ReplicaLine::parse("POSITION abc 3 1 zz").is_err());
    for line in [
        ReplicaLine::Position {
            id: Some("abc".into()),
            offset: 3,
            window: Some((1, 0xfeed)),
        },
        ReplicaLine::Position {
            id: None,
            offset: 0,
            window: None,
        },
        ReplicaLine::Ack {
            applied: 5,
            durable: 4,
        },
        ReplicaLine::refused(Refusal::WrongSecret),
        ReplicaLine::Challenge {
            nonce: "ab".into(),
            proof: Some("cd".into()),
        },
        ReplicaLine::Challenge {
            nonce: "ab".into(),
            proof: None,
        },
    ] {
        let text = String::from_utf8(line.encode()).unwrap();
        assert_eq!(ReplicaLine::parse(text.trim_end_matches('\n')), Ok(line));
    }
    assert!(ReplicaLine::parse("ACK 1").is_err());
    assert!(ReplicaLine::parse("ACK 1 2 3").is_err());
    assert!(ReplicaLine::parse("HELLO").is_err());
}

#[test]
fn the_stream_is_two_control_lines_then_records_in_batches() {
    let mut decoder = StreamDecoder::new(10);
    let mut buf = BytesMut::from("PROVE - 0\nFULLSYNC abc 7\n");
    assert_eq!(
        decoder.decode(&mut buf).unwrap(),
        Some(StreamFrame::Prove(Prove {
            proof: None,
            from: 0
        }))
    );
    assert_eq!(
        decoder.decode(&mut buf).unwrap(),
        Some(StreamFrame::Start(SyncStart::Full {
            id: "abc".into(),
            seq: 7,
            previous: None,
        }))
    );
    let mut records = Vec::new();
    StreamEncoder::snapshot_end(7, 0, &mut records);
    StreamEncoder::heartbeat(7, &mut records);
    buf.extend_from_slice(&records[..records.len() - 1]);
    assert_eq!(
        decoder.decode(&mut buf).unwrap(),
        Some(StreamFrame::Records(vec![Entry::End { seq: 7, count: 0 }]))
    );
    assert_eq!(decoder.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(&records[records.len() - 1..]);
    assert_eq!(
        decoder.decode(&mut buf).unwrap(),
        Some(StreamFrame::Records(vec![Entry::Heartbeat { seq: 7 }]))
    );
}

#[test]
fn a_control_line_too_long_or_unknown_ends_the_stream() {
    let mut buf = BytesMut::from(&[b'x'; MAX_CONTROL_LINE + 1][..]);
    assert_eq!(
        StreamDecoder::new(1).decode(&mut buf),
        Err(WireError::LineTooLong)
    );
    let mut buf = BytesMut::from("PROVE - 0\nHELLO\n");
    let mut decoder = StreamDecoder::new(1);
    assert!(decoder.decode(&mut buf).is_ok());
    assert!(matches!(
        decoder.decode(&mut buf),
        Err(WireError::Unexpected(_))
    ));
}

/// Found by the `stream` fuzz target: a control line longer than the limit was taken when its
/// end arrived in the same read, and refused when it did not.
#[test]
fn a_control_line_over_the_limit_is_refused_even_whole() {
    let proof = "a".repeat(MAX_CONTROL_LINE);
    let mut buf = BytesMut::from(format!("PROVE {proof} 0\n").as_bytes());
    assert_eq!(
        StreamDecoder::new(1).decode(&mut buf),
        Err(WireError::LineTooLong)
    );
    let longest = format!("PROVE {} 0", "a".repeat(MAX_CONTROL_LINE - 8));
    assert_eq!(longest.len(), MAX_CONTROL_LINE);
    let mut buf = BytesMut::from(format!("{longest}\n").as_bytes());
    assert!(StreamDecoder::new(1).decode(&mut buf).is_ok());
}

/// Found by the `stream` and `connection` fuzz targets: the good records before a damaged one
/// were dropped when they arrived in the same read as the damage, and yielded when they came
/// first.
#[test]
fn the_records_before_a_damaged_one_come_out_before_the_error() {
    let mut buf = BytesMut::from("PROVE - 0\nFULLSYNC abc 7\n");
    let mut decoder = StreamDecoder::new(10);
    assert!(decoder.decode(&mut buf).unwrap().is_some());
    assert!(decoder.decode(&mut buf).unwrap().is_some());
    let mut records = Vec::new();
    StreamEncoder::heartbeat(7, &mut records);
    buf.extend_from_slice(&records);
    buf.extend_from_slice(&[0; record::HEADER_LEN]);
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(StreamFrame::Records(vec![Entry::Heartbeat {
            seq: 7
        }])))
    );
    assert_eq!(
        decoder.decode(&mut buf),
        Err(WireError::Record(record::RecordError::BadHeader))
    );
}
