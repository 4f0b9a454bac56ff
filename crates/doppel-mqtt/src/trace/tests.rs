use super::*;

#[test]
fn the_property_goes_out_as_it_came_in() {
    let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let trace: TraceParent = value.parse().unwrap();
    let sent = properties(Some(&trace));
    assert_eq!(traceparent(sent.as_ref()), Some(trace));
    assert_eq!(properties(None), None);
    let mut other = PublishProperties::default();
    other.user_properties.push(("x".into(), value.into()));
    other
        .user_properties
        .push((TRACEPARENT.into(), "00-bad".into()));
    assert_eq!(
        traceparent(Some(&other)),
        None,
        "only a valid traceparent counts"
    );
}
