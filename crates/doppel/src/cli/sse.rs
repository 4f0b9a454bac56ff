//! Server-Sent Events as the hub sends them (the WHATWG `text/event-stream` format): frames of
//! `id:`, `event:` and `data:` lines, each frame ended by a blank line; lines that start with
//! `:` are comments (the hub's keep-alives).

/// One event of the stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub id: Option<String>,
    /// `message` when the frame names none.
    pub event: String,
    /// The `data:` lines joined with newlines.
    pub data: String,
}

/// Cuts a stream's bytes, as they arrive in pieces of any size, into frames.
#[derive(Default)]
pub struct Parser {
    /// Bytes of frames not yet complete. Bytes, not text: a piece may end inside a character.
    buffer: Vec<u8>,
}

impl Parser {
    pub fn push(&mut self, bytes: &[u8]) {
        // The format allows CRLF line ends; without the CRs every line ends in a LF.
        self.buffer
            .extend(bytes.iter().filter(|byte| **byte != b'\r'));
    }

    /// The next complete frame that carries data; frames of comments only are skipped.
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            let end = self.buffer.windows(2).position(|pair| pair == b"\n\n")?;
            let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&block);
            let mut frame = Frame {
                id: None,
                event: "message".to_owned(),
                data: String::new(),
            };
            let mut has_data = false;
            for line in text.lines() {
                let (name, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match name {
                    "id" => frame.id = Some(value.to_owned()),
                    "event" => frame.event = value.to_owned(),
                    "data" => {
                        if has_data {
                            frame.data.push('\n');
                        }
                        frame.data.push_str(value);
                        has_data = true;
                    }
                    // Comments (an empty name) and fields this client has no use for.
                    _ => {}
                }
            }
            if has_data {
                return Some(frame);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_wherever_the_pieces_end() {
        let stream = "id: 7-1\nevent: twin.delta\ndata: {\"é\":1}\n\n: keep-alive\n\n\
                      event: end\r\ndata: {\"last_event_id\":null}\r\n\r\ndata: a\ndata: b\n\n";
        let bytes = stream.as_bytes();
        // One byte at a time: splits inside every line and inside the two-byte `é`.
        let mut parser = Parser::default();
        let mut frames = Vec::new();
        for byte in bytes {
            parser.push(std::slice::from_ref(byte));
            while let Some(frame) = parser.next_frame() {
                frames.push(frame);
            }
        }
        assert_eq!(
            frames,
            [
                Frame {
                    id: Some("7-1".into()),
                    event: "twin.delta".into(),
                    data: "{\"é\":1}".into()
                },
                Frame {
                    id: None,
                    event: "end".into(),
                    data: "{\"last_event_id\":null}".into()
                },
                Frame {
                    id: None,
                    event: "message".into(),
                    data: "a\nb".into()
                },
            ]
        );
        assert_eq!(parser.next_frame(), None);
    }
}
