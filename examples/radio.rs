//! The story rollcall came from: a station pushes "now playing" to every listener every few
//! seconds and knows, second by second, who is tuned in, who left, and who went silent
//! (a listener whose network dropped without a goodbye).
//!
//! Run: `cargo run --example radio -- [ADDR] [SECONDS]` (defaults `127.0.0.1:8080`, 3), then
//! listen with `ws://ADDR/?user=NAME&channel=radio&events=none`. Prints one line per event:
//! `tuned in: NAME`, `left: NAME (REASON)`, `went silent: NAME`, `now playing: SONG -> N`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use rollcall::model::LeaveReason;
use rollcall::{Actions, Config, Handler, Presence, Server};
use serde_json::json;

const PLAYLIST: [&str; 4] = [
    "So What",
    "Freddie Freeloader",
    "Blue in Green",
    "All Blues",
];

/// Keeps the audience and says what happens to it.
#[derive(Default)]
struct Station {
    audience: BTreeSet<String>,
}

impl Handler for Station {
    fn on_presence(&mut self, change: Presence<'_>, _actions: &mut Actions) {
        match change {
            Presence::Join {
                channel: "radio",
                user,
                ..
            } => {
                self.audience.insert(user.to_owned());
                println!("tuned in: {user} ({} listening)", self.audience.len());
            }
            Presence::Leave {
                channel: "radio",
                user,
                reason,
            } => {
                self.audience.remove(user);
                match reason {
                    LeaveReason::Timeout => {
                        println!("went silent: {user} ({} listening)", self.audience.len())
                    }
                    reason => {
                        println!("left: {user} ({reason}; {} listening)", self.audience.len())
                    }
                }
            }
            _ => {}
        }
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let Ok(listen) = address.parse::<SocketAddr>() else {
        eprintln!("radio: {address:?} is not an address like 127.0.0.1:8080");
        return ExitCode::from(2);
    };
    // Listeners on flaky mobile networks: ping after 5 s of silence, give up after 10 s.
    let config = Config::default()
        .listen(listen)
        .heartbeat_interval(Duration::from_secs(5))
        .heartbeat_timeout(Duration::from_secs(10));
    let mut server = match Server::bind(config) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("radio: {error}");
            return ExitCode::from(1);
        }
    };
    println!(
        "on air at ws://{}/?channel=radio&events=none",
        server.local_addr()
    );
    let handle = server.handle();
    thread::spawn(move || {
        for song in PLAYLIST.iter().cycle() {
            thread::sleep(Duration::from_secs(seconds));
            match handle.publish("radio", &json!({ "now_playing": song })) {
                Ok(delivered) => println!("now playing: {song} -> {delivered}"),
                Err(_) => return,
            }
        }
    });
    match server.run_with(Station::default()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("radio: {error}");
            ExitCode::from(1)
        }
    }
}
