//! Notes: what nodes tell each other through the cluster's Redis Pub/Sub channel. Presence
//! notes are published by the cluster script (`script.lua`) inside the same atomic step that
//! changes the presence keys, so their order on the channel is the order of the changes;
//! publication notes are published by the node that received the publication.
//!
//! One note is one line of tab-separated fields, the kind first:
//!
//! | kind | fields |
//! |---|---|
//! | `J` join | channel, user, seq, conns, meta |
//! | `U` update | channel, user, seq, meta |
//! | `L` leave | channel, user, seq, reason, last seen (Unix ms) |
//! | `C` conns changed | channel, user, seq (unchanged), conns |
//! | `P` publication | origin node, channel, from (empty: the server), data |
//! | `E` named event (Pusher) | origin node, channel, event, user id, socket id to skip, data |
//!
//! Names cannot hold a tab (see `names`: a user id holds no control character), and meta and data are compact JSON, which escapes
//! control characters, so only the last field could ever hold one and it is split last.
//! Whatever is on the channel is checked like client input (names, JSON), because it is
//! spliced into what clients receive.

use crate::model::{Json, LeaveReason, Meta};
use crate::names;
use crate::pusher::socket_id::is_socket_id;

/// A decoded note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// The user became a member of the channel (cluster-wide).
    Join {
        /// The channel.
        channel: String,
        /// The user.
        user: String,
        /// The channel's seq after the join.
        seq: u64,
        /// The user's connections in the channel, over every node.
        conns: u32,
        /// The user's meta.
        meta: Meta,
    },
    /// The user's meta changed.
    Update {
        /// The channel.
        channel: String,
        /// The user.
        user: String,
        /// The channel's seq after the update.
        seq: u64,
        /// The new meta.
        meta: Meta,
    },
    /// The user stopped being a member (cluster-wide).
    Leave {
        /// The channel.
        channel: String,
        /// The user.
        user: String,
        /// The channel's seq after the leave.
        seq: u64,
        /// Why.
        reason: LeaveReason,
        /// When the user was last seen (Unix ms): the latest end of its last connection
        /// anywhere, as Redis keeps it (see `script.lua`).
        last_seen: u64,
    },
    /// The user's connection count changed, membership did not.
    Conns {
        /// The channel.
        channel: String,
        /// The user.
        user: String,
        /// The channel's current seq (not advanced).
        seq: u64,
        /// The user's connections in the channel, over every node.
        conns: u32,
    },
    /// A named event of a Pusher app's channel, to its subscribers on every node.
    Named {
        /// The node that received it (it delivered it locally already).
        origin: String,
        /// The channel (the engine's name, `APP#CHANNEL`).
        channel: String,
        /// The event's name.
        event: String,
        /// The sending member, for a client event on a presence channel.
        user_id: Option<String>,
        /// The socket id of the connection not to send it to (on whichever node holds it).
        except: Option<String>,
        /// The data, JSON text.
        data: Json,
    },
    /// A publication to the channel's subscribers on every node.
    Publication {
        /// The node that received it (it delivered it locally already).
        origin: String,
        /// The channel.
        channel: String,
        /// The publishing user; `None` for the server (`POST /publish`, a handle).
        from: Option<String>,
        /// The data, compact JSON.
        data: Json,
    },
}

/// Why a note could not be read (a node of another version, or not a node at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadNote;

impl Note {
    /// The note's channel.
    pub fn channel(&self) -> &str {
        match self {
            Note::Join { channel, .. }
            | Note::Update { channel, .. }
            | Note::Leave { channel, .. }
            | Note::Conns { channel, .. }
            | Note::Named { channel, .. }
            | Note::Publication { channel, .. } => channel,
        }
    }

    /// Decodes one note, and for a `J`, `U` or `L` note the node whose call to the script
    /// made the change (its last field, after the note's own: see the script), when given.
    pub fn parse_with_origin(bytes: &[u8]) -> Result<(Note, Option<String>), BadNote> {
        let fields = match bytes.first() {
            Some(b'J' | b'L') => 5,
            Some(b'U') => 4,
            _ => return Note::parse(bytes).map(|note| (note, None)),
        };
        // Their fields hold no tab (names cannot, compact JSON escapes it): one tab more
        // than the note's fields is the origin.
        let tabs = bytes.iter().filter(|&&b| b == b'\t').count();
        if tabs != fields + 1 {
            return Note::parse(bytes).map(|note| (note, None));
        }
        let at = bytes.iter().rposition(|&b| b == b'\t').ok_or(BadNote)?;
        let origin = std::str::from_utf8(&bytes[at + 1..]).map_err(|_| BadNote)?;
        names::validate_channel(origin).map_err(|_| BadNote)?;
        let note = Note::parse(&bytes[..at])?;
        Ok((note, Some(origin.to_owned())))
    }

    /// Decodes one note.
    pub fn parse(bytes: &[u8]) -> Result<Note, BadNote> {
        let text = std::str::from_utf8(bytes).map_err(|_| BadNote)?;
        let (kind, rest) = text.split_once('\t').ok_or(BadNote)?;
        let fields = |n: usize| -> Result<Vec<&str>, BadNote> {
            let fields: Vec<&str> = rest.splitn(n, '\t').collect();
            if fields.len() == n {
                Ok(fields)
            } else {
                Err(BadNote)
            }
        };
        // Names go into the events sent to clients: only valid ones pass. A node id has
        // the channel alphabet (see `Config::validate`).
        let checked = |text: &str, rule: fn(&str) -> Result<(), names::NameError>| {
            rule(text).map(|()| text.to_owned()).map_err(|_| BadNote)
        };
        let channel = |text: &str| {
            crate::pusher::validate_engine_name(text)
                .map(|()| text.to_owned())
                .map_err(|_| BadNote)
        };
        let node = |text: &str| checked(text, names::validate_channel);
        let user = |text: &str| checked(text, names::validate_user);
        let number = |text: &str| text.parse::<u64>().map_err(|_| BadNote);
        let conns = |text: &str| text.parse::<u32>().map_err(|_| BadNote);
        let meta = |text: &str| Meta::parse(text).ok_or(BadNote);
        Ok(match kind {
            "J" => {
                let f = fields(5)?;
                Note::Join {
                    channel: channel(f[0])?,
                    user: user(f[1])?,
                    seq: number(f[2])?,
                    conns: conns(f[3])?,
                    meta: meta(f[4])?,
                }
            }
            "U" => {
                let f = fields(4)?;
                Note::Update {
                    channel: channel(f[0])?,
                    user: user(f[1])?,
                    seq: number(f[2])?,
                    meta: meta(f[3])?,
                }
            }
            "L" => {
                let f = fields(5)?;
                Note::Leave {
                    channel: channel(f[0])?,
                    user: user(f[1])?,
                    seq: number(f[2])?,
                    reason: LeaveReason::parse(f[3]).ok_or(BadNote)?,
                    last_seen: number(f[4])?,
                }
            }
            "C" => {
                let f = fields(4)?;
                Note::Conns {
                    channel: channel(f[0])?,
                    user: user(f[1])?,
                    seq: number(f[2])?,
                    conns: conns(f[3])?,
                }
            }
            "P" => {
                let f = fields(4)?;
                Note::Publication {
                    origin: node(f[0])?,
                    channel: channel(f[1])?,
                    from: match f[2] {
                        "" => None,
                        from => Some(user(from)?),
                    },
                    data: Json::parse(f[3]).ok_or(BadNote)?,
                }
            }
            "E" => {
                let f = fields(6)?;
                let optional = |text: &str| (!text.is_empty()).then(|| text.to_owned());
                let event = f[2];
                if event.is_empty() || event.len() > crate::pusher::MAX_EVENT_NAME {
                    return Err(BadNote);
                }
                Note::Named {
                    origin: node(f[0])?,
                    channel: channel(f[1])?,
                    event: event.to_owned(),
                    user_id: match f[3] {
                        "" => None,
                        user_id => Some(user(user_id)?),
                    },
                    except: optional(f[4]).filter(|id| is_socket_id(id)),
                    data: Json::parse(f[5]).ok_or(BadNote)?,
                }
            }
            _ => return Err(BadNote),
        })
    }

    /// Encodes a named-event note. An event name never holds a tab (the REST API and
    /// `client-` names are checked before they get here; a tab in one is refused).
    pub fn named(
        origin: &str,
        channel: &str,
        event: &str,
        user_id: Option<&str>,
        except: Option<&str>,
        data: &str,
    ) -> Option<String> {
        if event.contains('\t') {
            return None;
        }
        Some(format!(
            "E\t{origin}\t{channel}\t{event}\t{}\t{}\t{data}",
            user_id.unwrap_or_default(),
            except.unwrap_or_default(),
        ))
    }

    /// Encodes a publication note (presence notes are encoded by the script).
    pub fn publication(origin: &str, channel: &str, from: Option<&str>, data: &Json) -> String {
        format!(
            "P\t{origin}\t{channel}\t{}\t{}",
            from.unwrap_or_default(),
            data.as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_notes_decode_field_by_field() {
        assert_eq!(
            Note::parse(b"J\tlobby\talice\t3\t2\t{\"a\":\"x\\ty\"}"),
            Ok(Note::Join {
                channel: "lobby".into(),
                user: "alice".into(),
                seq: 3,
                conns: 2,
                meta: Meta::parse("{\"a\":\"x\\ty\"}").expect("meta"),
            })
        );
        assert_eq!(
            Note::parse(b"L\tlobby\tbob\t4\tnode_down\t1733400000123"),
            Ok(Note::Leave {
                channel: "lobby".into(),
                user: "bob".into(),
                seq: 4,
                reason: LeaveReason::NodeDown,
                last_seen: 1_733_400_000_123,
            })
        );
        assert!(matches!(
            Note::parse(b"C\tlobby\tbob\t4\t0"),
            Ok(Note::Conns {
                conns: 0,
                seq: 4,
                ..
            })
        ));
        assert!(matches!(
            Note::parse(b"U\tlobby\tbob\t5\t{}"),
            Ok(Note::Update { seq: 5, .. })
        ));
    }

    #[test]
    fn presence_notes_name_their_origin_last() {
        let (note, origin) =
            Note::parse_with_origin(b"J\tlobby\talice\t3\t2\t{}\tnode-1").expect("a note");
        assert!(matches!(note, Note::Join { seq: 3, .. }));
        assert_eq!(origin.as_deref(), Some("node-1"));
        let (note, origin) =
            Note::parse_with_origin(b"L\tlobby\tbob\t4\tnode_down\t7\tn2").expect("a note");
        assert!(matches!(note, Note::Leave { seq: 4, .. }));
        assert_eq!(origin.as_deref(), Some("n2"));
        let (_, origin) = Note::parse_with_origin(b"U\tlobby\tbob\t5\t{}").expect("a note");
        assert_eq!(origin, None, "without an origin");
        let (_, origin) = Note::parse_with_origin(b"C\tlobby\tbob\t4\t0").expect("a note");
        assert_eq!(origin, None);
        for bad in [
            &b"J\tlobby\talice\t3\t2\t{}\tno de"[..],
            b"L\tlobby\tbob\t4\tbored\t7\tn2",
            b"L\tlobby\tbob\t4\tclosed\tsoon\tn2",
            b"J\tlobby\talice\t3\t2\t{}\t",
        ] {
            assert_eq!(Note::parse_with_origin(bad), Err(BadNote), "{bad:?}");
        }
    }

    #[test]
    fn publications_round_trip_with_and_without_a_sender() {
        let data = Json::parse("{\"text\":\"a\\tb\"}").expect("json");
        for from in [None, Some("carol"), Some("auth0|5f7c \"山\" \\ 🦀")] {
            let line = Note::publication("node-1", "room:news", from, &data);
            assert_eq!(
                Note::parse(line.as_bytes()),
                Ok(Note::Publication {
                    origin: "node-1".into(),
                    channel: "room:news".into(),
                    from: from.map(str::to_owned),
                    data: data.clone(),
                })
            );
        }
    }

    #[test]
    fn named_events_round_trip_with_app_channels() {
        let data = r#""{\"a\":1}""#;
        let line = Note::named(
            "n1",
            "4321#presence-room",
            "client-x",
            Some("7"),
            Some("12.34"),
            data,
        )
        .expect("encoded");
        assert_eq!(
            Note::parse(line.as_bytes()),
            Ok(Note::Named {
                origin: "n1".into(),
                channel: "4321#presence-room".into(),
                event: "client-x".into(),
                user_id: Some("7".into()),
                except: Some("12.34".into()),
                data: Json::parse(data).expect("json"),
            })
        );
        let plain = Note::named("n1", "1#news", "e", None, None, "1").expect("encoded");
        assert!(matches!(
            Note::parse(plain.as_bytes()),
            Ok(Note::Named {
                user_id: None,
                except: None,
                ..
            })
        ));
        assert_eq!(Note::named("n1", "1#news", "a\tb", None, None, "1"), None);
        assert_eq!(Note::parse(b"E\tn1\t1#a b\te\t\t\t1"), Err(BadNote));
        assert_eq!(Note::parse(b"E\tn1\tno#pe#x!\te\t\t\t1"), Err(BadNote));
    }

    #[test]
    fn malformed_notes_are_refused() {
        for bad in [
            &b""[..],
            b"J",
            b"J\tlobby\talice\t3\t2",
            b"J\tlobby\talice\tx\t2\t{}",
            b"L\tlobby\talice\t3\tbored\t7",
            b"L\tlobby\talice\t3\tclosed",
            b"L\tlobby\talice\t3\tclosed\t-1",
            b"U\tlobby\talice\t3\tnot json",
            b"Z\ta\tb\tc\td",
            b"J\tlob\"by\talice\t3\t2\t{}",
            b"L\tlobby\tal\x01ice\t3\tclosed\t7",
            b"L\tlob by\talice\t3\tclosed\t7",
            b"P\tn1\tlobby\tx\x7fy\t{}",
            b"P\tn|1\tlobby\tx\t{}",
            b"\xff\t",
        ] {
            assert_eq!(Note::parse(bad), Err(BadNote), "{bad:?}");
        }
    }
}
