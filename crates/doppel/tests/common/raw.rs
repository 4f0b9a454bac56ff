//! MQTT packets built by hand, for tests that send what a well-behaved client library would not
//! (or could not send fast enough, or would read back).

/// MQTT's variable-length integer.
pub fn remaining_length(mut length: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    loop {
        let mut byte = (length % 128) as u8;
        length /= 128;
        if length > 0 {
            byte |= 0x80;
        }
        bytes.push(byte);
        if length == 0 {
            return bytes;
        }
    }
}

/// A packet of type and flags `first` around `body`.
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut packet = vec![first];
    packet.extend(remaining_length(body.len()));
    packet.extend_from_slice(body);
    packet
}

/// A CONNECT named `MQTT` at protocol `level` (4: 3.1.1, 5: MQTT 5) with a clean session, a
/// 60 s keep-alive and, when given, a username and password.
pub fn connect(client_id: &str, level: u8, credentials: Option<(&str, &str)>) -> Vec<u8> {
    let flags = if credentials.is_some() {
        0b1100_0010
    } else {
        0b0000_0010
    };
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, flags, 0, 60];
    if level == 5 {
        body.push(0); // no properties
    }
    let (username, password) = credentials.unzip();
    for field in std::iter::once(client_id).chain(username).chain(password) {
        let length = u16::try_from(field.len()).expect("a short field");
        body.extend_from_slice(&length.to_be_bytes());
        body.extend_from_slice(field.as_bytes());
    }
    packet(0x10, &body)
}

/// An MQTT 3.1.1 SUBSCRIBE (packet id 1) of `filter` at `qos`.
pub fn subscribe(filter: &str, qos: u8) -> Vec<u8> {
    let mut body = vec![0, 1];
    let length = u16::try_from(filter.len()).expect("a short filter");
    body.extend_from_slice(&length.to_be_bytes());
    body.extend_from_slice(filter.as_bytes());
    body.push(qos);
    packet(0x82, &body)
}
