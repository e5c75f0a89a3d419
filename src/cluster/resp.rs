//! RESP2, the Redis serialization protocol: commands out (arrays of bulk strings), replies in.
//! Pure: bytes in, values out; the caller owns the socket.
//!
//! Only what a Redis client needs: it encodes commands, and decodes the five reply types
//! (simple string, error, integer, bulk string, array, each possibly null). Decoding is
//! bounded: nesting deeper than 8 arrays, a bulk string over 512 MiB or an array over 2^24
//! elements is a protocol error, never an allocation of that size.

use std::fmt;

/// Deepest array nesting accepted (our script replies nest three deep).
const MAX_DEPTH: usize = 8;
/// Largest bulk string accepted (Redis's own limit for a string value).
const MAX_BULK: usize = 512 << 20;
/// Most elements one array may announce.
const MAX_ARRAY: usize = 1 << 24;

/// One decoded reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Status(String),
    /// `-ERR ...`: the command failed.
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$3\r\nabc`; `None` for the null bulk string `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*2\r\n...`; `None` for the null array `*-1`.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text, for bulk strings and status replies.
    pub fn text(&self) -> Option<&str> {
        match self {
            Reply::Bulk(Some(bytes)) => std::str::from_utf8(bytes).ok(),
            Reply::Status(text) => Some(text),
            _ => None,
        }
    }

    /// The reply as an integer, for integer replies and numeric bulk strings.
    pub fn integer(&self) -> Option<i64> {
        match self {
            Reply::Integer(value) => Some(*value),
            other => other.text()?.parse().ok(),
        }
    }
}

/// The bytes are not RESP2, or exceed a bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub &'static str);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid reply from Redis: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

/// Appends `args` as one command: an array of bulk strings.
pub fn encode<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        let arg = arg.as_ref();
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Decodes the first reply in `input`: `Ok(None)` while it is incomplete, else the reply
/// and the number of bytes it took.
pub fn decode(input: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    let mut cursor = Cursor { input, at: 0 };
    Ok(cursor.reply(0)?.map(|reply| (reply, cursor.at)))
}

struct Cursor<'a> {
    input: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn reply(&mut self, depth: usize) -> Result<Option<Reply>, ProtocolError> {
        let Some(line) = self.line()? else {
            return Ok(None);
        };
        let (&kind, rest) = line.split_first().ok_or(ProtocolError("empty line"))?;
        let text = || {
            std::str::from_utf8(rest)
                .map(str::to_owned)
                .map_err(|_| ProtocolError("a status line is not UTF-8"))
        };
        Ok(Some(match kind {
            b'+' => Reply::Status(text()?),
            b'-' => Reply::Error(text()?),
            b':' => Reply::Integer(number(rest)?),
            b'$' => match length(rest, MAX_BULK)? {
                None => Reply::Bulk(None),
                Some(len) => match self.take(len)? {
                    None => return Ok(None),
                    Some(bytes) => Reply::Bulk(Some(bytes.to_vec())),
                },
            },
            b'*' => match length(rest, MAX_ARRAY)? {
                None => Reply::Array(None),
                Some(len) => {
                    if depth >= MAX_DEPTH {
                        return Err(ProtocolError("arrays nested too deep"));
                    }
                    // Capacity follows what has arrived, not what the length announces.
                    let mut items = Vec::with_capacity(len.min(self.input.len() - self.at));
                    for _ in 0..len {
                        match self.reply(depth + 1)? {
                            None => return Ok(None),
                            Some(item) => items.push(item),
                        }
                    }
                    Reply::Array(Some(items))
                }
            },
            _ => return Err(ProtocolError("unknown reply type")),
        }))
    }

    /// The next line without its CRLF, or `None` when it has not fully arrived.
    fn line(&mut self) -> Result<Option<&[u8]>, ProtocolError> {
        let rest = &self.input[self.at..];
        let Some(end) = rest.windows(2).position(|pair| pair == b"\r\n") else {
            return Ok(None);
        };
        self.at += end + 2;
        Ok(Some(&rest[..end]))
    }

    /// `len` bytes followed by CRLF, or `None` when they have not fully arrived.
    fn take(&mut self, len: usize) -> Result<Option<&[u8]>, ProtocolError> {
        let rest = &self.input[self.at..];
        if rest.len() < len + 2 {
            return Ok(None);
        }
        if &rest[len..len + 2] != b"\r\n" {
            return Err(ProtocolError("a bulk string does not end with CRLF"));
        }
        self.at += len + 2;
        Ok(Some(&rest[..len]))
    }
}

fn number(digits: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or(ProtocolError("not a number"))
}

/// A bulk or array length: `None` for -1 (null), an error past `max` or below -1.
fn length(digits: &[u8], max: usize) -> Result<Option<usize>, ProtocolError> {
    match number(digits)? {
        -1 => Ok(None),
        len => usize::try_from(len)
            .ok()
            .filter(|&len| len <= max)
            .map(Some)
            .ok_or(ProtocolError("length out of range")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Reply {
        Reply::Bulk(Some(text.as_bytes().to_vec()))
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&mut out, &["SET", "k", ""]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
    }

    #[test]
    fn every_reply_type_decodes_with_its_length() {
        let cases: [(&[u8], Reply); 7] = [
            (b"+OK\r\n", Reply::Status("OK".into())),
            (b"-ERR no\r\n", Reply::Error("ERR no".into())),
            (b":-42\r\n", Reply::Integer(-42)),
            (b"$5\r\na\r\nb!\r\n", bulk("a\r\nb!")),
            (b"$-1\r\n", Reply::Bulk(None)),
            (b"*-1\r\n", Reply::Array(None)),
            (
                b"*2\r\n*1\r\n:1\r\n$0\r\n\r\n",
                Reply::Array(Some(vec![
                    Reply::Array(Some(vec![Reply::Integer(1)])),
                    bulk(""),
                ])),
            ),
        ];
        for (bytes, expected) in cases {
            let mut input = bytes.to_vec();
            input.extend_from_slice(b"+NEXT\r\n");
            assert_eq!(
                decode(&input),
                Ok(Some((expected, bytes.len()))),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn every_prefix_of_a_reply_is_incomplete() {
        let whole = b"*3\r\n$3\r\nabc\r\n:7\r\n*1\r\n+x\r\n";
        for end in 0..whole.len() {
            assert_eq!(decode(&whole[..end]), Ok(None), "prefix of {end} bytes");
        }
        assert!(matches!(decode(whole), Ok(Some((_, n))) if n == whole.len()));
    }

    #[test]
    fn garbage_and_excess_are_errors_not_allocations() {
        for bad in [
            &b"?what\r\n"[..],
            b":12a\r\n",
            b"$-2\r\n",
            b"$3\r\nabcXY",
            b"*99999999999\r\n",
            b"$999999999999\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
            b"\r\n",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn numbers_read_from_integers_and_numeric_bulk_strings() {
        assert_eq!(Reply::Integer(3).integer(), Some(3));
        assert_eq!(bulk("17").integer(), Some(17));
        assert_eq!(bulk("x").integer(), None);
        assert_eq!(Reply::Status("OK".into()).text(), Some("OK"));
    }
}
