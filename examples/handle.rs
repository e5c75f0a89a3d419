//! A worker thread steering an embedded rollcall through a [`rollcall::Handle`]: the loop
//! runs on the main thread; the worker publishes "now playing" every two seconds and prints
//! how many listeners are tuned in.
//!
//! Run: `cargo run --example handle -- [ADDR]` (default `127.0.0.1:8080`), then connect with
//! `ws://ADDR/?channel=radio`. Ctrl-C stops it.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use rollcall::{Config, Server};
use serde_json::json;

const PLAYLIST: [&str; 3] = ["So What", "Blue in Green", "All Blues"];

fn main() -> ExitCode {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let Ok(listen) = address.parse::<SocketAddr>() else {
        eprintln!("handle: {address:?} is not an address like 127.0.0.1:8080");
        return ExitCode::from(2);
    };
    let mut server = match Server::bind(Config::default().listen(listen)) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("handle: {error}");
            return ExitCode::from(1);
        }
    };
    println!(
        "listening on {}: connect to ws://{}/?channel=radio",
        server.local_addr(),
        server.local_addr()
    );
    let handle = server.handle();
    thread::spawn(move || {
        for song in PLAYLIST.iter().cycle() {
            thread::sleep(Duration::from_secs(2));
            let Ok(delivered) = handle.publish("radio", &json!({ "now_playing": song })) else {
                return; // the server stopped
            };
            let listeners = handle
                .counts("radio")
                .ok()
                .flatten()
                .map_or(0, |counts| counts.users);
            println!("now playing {song}: sent to {delivered} connections, {listeners} listeners tuned in");
        }
    });
    if let Err(error) = server.shutdown_on_signals() {
        eprintln!("handle: cannot install the signal handlers: {error}");
        return ExitCode::from(1);
    }
    match server.run() {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("handle: {error}");
            ExitCode::from(1)
        }
    }
}
