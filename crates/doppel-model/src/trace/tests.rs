use super::*;
use proptest::prelude::*;

const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn parses_the_w3c_example() {
    let parsed: TraceParent = EXAMPLE.parse().unwrap();
    assert_eq!(
        parsed.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(
        parsed.parent_id(),
        [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
    );
    assert!(parsed.sampled());
    assert_eq!(parsed.to_string(), EXAMPLE);
}

#[test]
fn refuses_malformed_values() {
    for bad in [
        "",
        "00",
        // All-zero trace id, then all-zero parent id.
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        // Upper-case hex.
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        // Version ff.
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        // Version 00 with a field too many.
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-00",
        // Wrong separators, short fields, stray characters.
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ] {
        assert!(bad.parse::<TraceParent>().is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn a_later_version_is_read_as_version_00() {
    let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next";
    assert_eq!(later.parse::<TraceParent>().unwrap().to_string(), EXAMPLE);
    let glued = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x";
    assert!(glued.parse::<TraceParent>().is_err());
}

proptest! {
    #[test]
    fn printing_and_parsing_round_trip(
        trace_id in any::<[u8; 16]>(),
        parent_id in any::<[u8; 8]>(),
        flags in any::<u8>(),
    ) {
        match TraceParent::new(trace_id, parent_id, flags) {
            Some(parent) => {
                let text = parent.to_string();
                prop_assert_eq!(text.len(), LEN);
                prop_assert_eq!(text.parse::<TraceParent>(), Ok(parent));
            }
            None => prop_assert!(trace_id == [0; 16] || parent_id == [0; 8]),
        }
    }

    #[test]
    fn whatever_parses_prints_back_the_same(text in "00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}") {
        if let Ok(parent) = text.parse::<TraceParent>() {
            prop_assert_eq!(parent.to_string(), text);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,80}") {
        let _ = text.parse::<TraceParent>();
    }
}
