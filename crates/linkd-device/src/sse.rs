//! A reader for the server-sent events format, as the sync change stream
//! uses it.

/// One server-sent event.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct SseEvent {
    pub(crate) name: String,
    pub(crate) data: String,
}

/// The server-sent events format (HTML Living Standard §9.2.6): lines
/// ending in LF, CRLF or CR; `field: value`; a blank line ends an event;
/// lines starting with `:` are comments.
#[derive(Default)]
pub(crate) struct SseParser {
    pending: Vec<u8>,
    event: SseEvent,
    has_data: bool,
    ready: std::collections::VecDeque<SseEvent>,
}

impl SseParser {
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n' || *b == b'\r') {
            // A CR at the very end may be the first half of a CRLF.
            if self.pending[end] == b'\r' && end + 1 == self.pending.len() {
                break;
            }
            let line: Vec<u8> = self.pending.drain(..end).collect();
            let skip = if self.pending.starts_with(b"\r\n") {
                2
            } else {
                1
            };
            self.pending.drain(..skip);
            self.line(&String::from_utf8_lossy(&line));
        }
    }

    fn line(&mut self, line: &str) {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            if std::mem::take(&mut self.has_data) {
                self.ready.push_back(SseEvent {
                    name: if event.name.is_empty() {
                        "message".into()
                    } else {
                        event.name
                    },
                    data: event.data,
                });
            }
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event.name = value.to_string(),
            "data" => {
                if self.has_data {
                    self.event.data.push('\n');
                }
                self.event.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
    }

    pub(crate) fn next_event(&mut self) -> Option<SseEvent> {
        self.ready.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_sent_events_parse_across_chunks_and_line_endings() {
        let mut p = SseParser::default();
        p.feed(b": keep-alive\n\nid: 3\r\nevent: change\r");
        assert_eq!(p.next_event(), None);
        p.feed(b"\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata:x\n\n");
        assert_eq!(
            p.next_event(),
            Some(SseEvent {
                name: "change".into(),
                data: "{\"a\":\n1}".into()
            })
        );
        assert_eq!(
            p.next_event(),
            Some(SseEvent {
                name: "message".into(),
                data: "x".into()
            })
        );
        assert_eq!(p.next_event(), None);
    }
}
