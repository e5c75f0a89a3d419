//! Where a peer's byte stream stands between WebSocket frames: the fact that lets the server
//! drop tungstenite's per-connection context while a connection is idle.
//!
//! tungstenite parses every frame; this only follows the frame lengths (RFC 6455 §5.2) of the
//! bytes read from the socket, so it can say when everything read so far forms whole frames,
//! no fragmented message is in progress (§5.4) and no Close has arrived (§5.5.1). At such a
//! point, once tungstenite reports `WouldBlock`, its context holds nothing but its
//! configuration: a fresh one continues exactly where it left off.
//!
//! Invariants: any byte sequence is accepted without panicking (garbage is tungstenite's to
//! refuse; the connection then ends and this state is never asked again); on a well-formed
//! stream, [`FrameBoundary::is_idle`] is true exactly at the end of a frame that leaves no
//! message unfinished. [`replay`] checks that claim against tungstenite itself (a property
//! test and a fuzz target drive it).

/// Byte 0 of a frame: FIN.
const FIN: u8 = 0x80;
/// Byte 1 of a frame: MASK.
const MASKED: u8 = 0x80;
/// Opcodes (§5.2): continuation and Close.
const CONTINUATION: u8 = 0x0;
const CLOSE: u8 = 0x8;
/// Opcodes from 0x8 up are control frames (§5.5), which may sit inside a fragmented message.
const FIRST_CONTROL: u8 = 0x8;

/// What the next byte of the stream is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Byte 0 of a frame (FIN, RSV, opcode).
    Start,
    /// Byte 1 (MASK, 7-bit length).
    Length,
    /// One of the 2 or 8 bytes of an extended length.
    Extended,
    /// One of the 4 bytes of the masking key.
    Mask,
    /// Payload.
    Payload,
}

/// The frame-level position of one connection's input: 12 bytes per connection (pinned by a
/// test), so that with the socket and its queue pointer it fills 24.
#[derive(Clone, Debug)]
pub struct FrameBoundary {
    /// Payload bytes still to come, or the extended length read so far.
    len: Halves,
    step: Step,
    /// Header bytes still to come in the `Extended` or `Mask` step.
    header_left: u8,
    /// Byte 0 of the current frame.
    head: u8,
    /// [`MASKED_FRAME`], [`FRAGMENTED`] and [`CLOSED`].
    flags: u8,
}

/// Flag: the current frame is masked.
const MASKED_FRAME: u8 = 1;
/// Flag: a data frame without FIN began a message whose last fragment has not arrived.
const FRAGMENTED: u8 = 2;
/// Flag: a Close frame was read: the connection is ending.
const CLOSED: u8 = 4;

/// A `u64` kept as two `u32`s: its 4-byte alignment lets the tracker's other fields share its
/// last word (a `u64` field would pad the tracker to 16 bytes). Any length of §5.2's 63 bits
/// is held exactly.
#[derive(Clone, Copy, Debug, Default)]
struct Halves([u32; 2]);

impl Halves {
    fn get(self) -> u64 {
        (u64::from(self.0[0]) << 32) | u64::from(self.0[1])
    }

    fn new(value: u64) -> Halves {
        Halves([(value >> 32) as u32, value as u32])
    }
}

impl Default for FrameBoundary {
    fn default() -> Self {
        FrameBoundary {
            len: Halves::default(),
            step: Step::Start,
            header_left: 0,
            head: 0,
            flags: 0,
        }
    }
}

impl FrameBoundary {
    /// True when the bytes seen so far are whole frames, no fragmented message is open and no
    /// Close has been read.
    pub fn is_idle(&self) -> bool {
        self.step == Step::Start && !self.has(FRAGMENTED | CLOSED)
    }

    /// Follows `bytes`, the next bytes read from the peer.
    pub fn observe(&mut self, mut bytes: &[u8]) {
        while let Some((&byte, rest)) = bytes.split_first() {
            if self.step == Step::Payload {
                // Whole runs of payload at once: the common case is one call per frame.
                let left = self.len.get();
                let taken = left.min(bytes.len() as u64);
                self.len = Halves::new(left - taken);
                bytes = &bytes[taken as usize..];
                if taken == left {
                    self.end_frame();
                }
                continue;
            }
            self.header_byte(byte);
            bytes = rest;
        }
    }

    fn header_byte(&mut self, byte: u8) {
        match self.step {
            Step::Start => {
                self.head = byte;
                self.step = Step::Length;
            }
            Step::Length => {
                self.set(MASKED_FRAME, byte & MASKED != 0);
                match byte & !MASKED {
                    126 => self.expect_extended(2),
                    127 => self.expect_extended(8),
                    short => self.length_known(u64::from(short)),
                }
            }
            Step::Extended => {
                self.len = Halves::new((self.len.get() << 8) | u64::from(byte));
                self.header_left -= 1;
                if self.header_left == 0 {
                    self.length_known(self.len.get());
                }
            }
            Step::Mask => {
                self.header_left -= 1;
                if self.header_left == 0 {
                    self.payload_follows();
                }
            }
            // `observe` consumes payload itself.
            Step::Payload => {}
        }
    }

    /// True when any of `flag`'s bits is set.
    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }

    fn expect_extended(&mut self, bytes: u8) {
        self.len = Halves::default();
        self.header_left = bytes;
        self.step = Step::Extended;
    }

    fn length_known(&mut self, len: u64) {
        self.len = Halves::new(len);
        if self.has(MASKED_FRAME) {
            self.header_left = 4;
            self.step = Step::Mask;
        } else {
            self.payload_follows();
        }
    }

    fn payload_follows(&mut self) {
        if self.len.get() == 0 {
            self.end_frame();
        } else {
            self.step = Step::Payload;
        }
    }

    /// A whole frame has passed: what it means for the message in progress (§5.4: control
    /// frames may come between fragments and change nothing).
    fn end_frame(&mut self) {
        let opcode = self.head & 0x0f;
        let fin = self.head & FIN != 0;
        match opcode {
            CLOSE => self.set(CLOSED, true),
            CONTINUATION => self.set(FRAGMENTED, self.has(FRAGMENTED) && !fin),
            data if data < FIRST_CONTROL => self.set(FRAGMENTED, !fin),
            _ => {}
        }
        self.step = Step::Start;
    }
}

/// Reads `chunks` (the reads a peer's bytes arrive in) through tungstenite twice: once with
/// one context for the whole stream, once dropping the context whenever
/// [`FrameBoundary::is_idle`] says so after a `WouldBlock` and starting a fresh one when the
/// next chunk arrives, as the server does. `Err` describes the first difference in what the
/// two report (messages, errors, bytes written back). Test support for the claim in the module
/// documentation; not used by the server.
#[doc(hidden)]
pub fn replay(chunks: &[&[u8]]) -> Result<(), String> {
    compare(chunks, FrameBoundary::is_idle)
}

/// [`replay`], dropping the context wherever `may_drop` allows.
fn compare(chunks: &[&[u8]], may_drop: fn(&FrameBoundary) -> bool) -> Result<(), String> {
    let whole = Reader::run(chunks, |_| false);
    let hibernating = Reader::run(chunks, may_drop);
    if whole == hibernating {
        Ok(())
    } else {
        Err(format!(
            "one context: {whole:?}\nhibernating: {hibernating:?}"
        ))
    }
}

/// A peer's bytes served chunk by chunk, one `WouldBlock` after each chunk; what tungstenite
/// writes back is kept.
struct Reader<'a> {
    chunks: &'a [&'a [u8]],
    /// The chunk being served, and how much of it has been read.
    next: usize,
    offset: usize,
    boundary: FrameBoundary,
    written: Vec<u8>,
}

impl Reader<'_> {
    /// What tungstenite reported over the whole stream, in order, and the bytes it wrote.
    fn run(chunks: &[&[u8]], may_drop: fn(&FrameBoundary) -> bool) -> (Vec<String>, Vec<u8>) {
        use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
        let config = WebSocketConfig::default()
            .read_buffer_size(128)
            .write_buffer_size(0)
            .max_message_size(Some(1 << 16))
            .max_frame_size(Some(1 << 16));
        let new_context = || Box::new(WebSocketContext::new(Role::Server, Some(config)));
        let mut reader = Reader {
            chunks,
            next: 0,
            offset: 0,
            boundary: FrameBoundary::default(),
            written: Vec::new(),
        };
        let mut context = Some(new_context());
        let mut reports = Vec::new();
        while reader.next < chunks.len() {
            let ws = context.get_or_insert_with(new_context);
            match ws.read(&mut reader) {
                Ok(message) => reports.push(format!("{message:?}")),
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if may_drop(&reader.boundary) && ws.can_write() {
                        context = None;
                    }
                    reader.next += 1;
                    reader.offset = 0;
                }
                Err(error) => {
                    reports.push(format!("error: {error}"));
                    break;
                }
            }
        }
        (reports, reader.written)
    }
}

impl std::io::Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let rest = self
            .chunks
            .get(self.next)
            .map_or(&[][..], |c| &c[self.offset..]);
        if rest.is_empty() {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        // A chunk larger than the read is served over several reads, as a socket would.
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.boundary.observe(&rest[..n]);
        self.offset += n;
        Ok(n)
    }
}

impl std::io::Write for Reader<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every open connection keeps one: the README's memory table counts it.
    #[test]
    fn the_tracker_takes_12_bytes() {
        assert_eq!(std::mem::size_of::<FrameBoundary>(), 12);
    }

    #[test]
    fn a_length_is_held_exactly_whatever_its_size() {
        for len in [
            0,
            1,
            125,
            65_535,
            u64::from(u32::MAX),
            1 << 32,
            (1 << 63) - 1,
        ] {
            assert_eq!(Halves::new(len).get(), len);
        }
        // An extended length past 32 bits: the header is read, then the payload counts down.
        let mut boundary = FrameBoundary::default();
        boundary.observe(&[0x82, 127, 0, 0, 0, 1, 0, 0, 0, 3]);
        assert_eq!(boundary.len.get(), (1 << 32) + 3);
        boundary.observe(&[0; 3]);
        assert_eq!(boundary.len.get(), 1 << 32, "still in the payload");
        assert!(!boundary.is_idle());
    }

    /// A client frame (masked, §5.3) with `payload`.
    fn frame(head: u8, payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![head];
        match payload.len() {
            n if n < 126 => bytes.push(MASKED | n as u8),
            n if n <= 0xffff => {
                bytes.push(MASKED | 126);
                bytes.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                bytes.push(MASKED | 127);
                bytes.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(payload);
        bytes
    }

    /// Whether the boundary is idle after each byte of `stream`, fed one byte at a time.
    fn idle_after_each_byte(stream: &[u8]) -> Vec<bool> {
        let mut boundary = FrameBoundary::default();
        stream
            .iter()
            .map(|byte| {
                boundary.observe(std::slice::from_ref(byte));
                boundary.is_idle()
            })
            .collect()
    }

    #[test]
    fn idle_only_after_the_last_byte_of_each_frame() {
        for len in [0, 1, 125, 126, 300, 0xffff, 0x10000] {
            let text = frame(FIN | 0x1, &vec![b'a'; len]);
            let idle = idle_after_each_byte(&text);
            assert!(
                idle[..text.len() - 1].iter().all(|i| !i),
                "{len}: not idle inside"
            );
            assert_eq!(idle.last(), Some(&true), "{len}: idle at the end");
        }
        assert!(FrameBoundary::default().is_idle());
    }

    #[test]
    fn a_whole_read_of_several_frames_ends_idle_and_a_partial_one_does_not() {
        let mut stream = frame(FIN | 0x1, b"hello");
        stream.extend(frame(FIN | 0x9, b""));
        stream.extend(frame(FIN | 0x2, &[7; 200]));
        let mut boundary = FrameBoundary::default();
        boundary.observe(&stream[..stream.len() - 1]);
        assert!(!boundary.is_idle());
        boundary.observe(&stream[stream.len() - 1..]);
        assert!(boundary.is_idle());
    }

    #[test]
    fn a_fragmented_message_is_not_idle_until_its_last_fragment_even_across_a_ping() {
        let mut boundary = FrameBoundary::default();
        boundary.observe(&frame(0x1, b"first"));
        assert!(!boundary.is_idle(), "text without FIN");
        boundary.observe(&frame(FIN | 0x9, b"ping"));
        assert!(!boundary.is_idle(), "a control frame between fragments");
        boundary.observe(&frame(CONTINUATION, b"middle"));
        assert!(!boundary.is_idle(), "continuation without FIN");
        boundary.observe(&frame(FIN | CONTINUATION, b"last"));
        assert!(boundary.is_idle(), "the final fragment");
    }

    #[test]
    fn after_a_close_it_is_never_idle_again() {
        let mut boundary = FrameBoundary::default();
        boundary.observe(&frame(FIN | 0x8, &[0x03, 0xe8]));
        assert!(!boundary.is_idle());
        boundary.observe(&frame(FIN | 0x1, b"late"));
        assert!(!boundary.is_idle());
    }

    #[test]
    fn an_unmasked_frame_has_no_key_to_skip() {
        let mut boundary = FrameBoundary::default();
        boundary.observe(&[FIN | 0x1, 2, b'h']);
        assert!(!boundary.is_idle());
        boundary.observe(b"i");
        assert!(boundary.is_idle());
    }

    #[test]
    fn replay_notices_a_context_dropped_where_it_must_not_be() {
        let mut stream = frame(0x1, b"first");
        stream.extend(frame(FIN | CONTINUATION, b"last"));
        for cut in [3, 11, 14] {
            let (head, tail) = stream.split_at(cut);
            assert!(replay(&[head, tail]).is_ok());
            assert!(
                compare(&[head, tail], |_| true).is_err(),
                "dropping the context after {cut} bytes loses part of the message"
            );
        }
    }
}
