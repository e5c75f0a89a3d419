//! An echo server on rollcall's own event loop and connection handling, for RFC 6455
//! conformance runs with the Autobahn test-suite cases (`kosoku -m fuzzingclient`).
//!
//! Usage: `cargo run --release --example echo -- [ADDR]` (default `127.0.0.1:9001`). It
//! prints `listening on ADDR` once bound. The limits are raised for the 9.x cases, which
//! send messages of up to 16 MiB.

use std::net::SocketAddr;
use std::process::ExitCode;

use rollcall::{Config, Server};

fn main() -> ExitCode {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let Ok(listen) = address.parse::<SocketAddr>() else {
        eprintln!("echo: {address:?} is not an address like 127.0.0.1:9001");
        return ExitCode::from(2);
    };
    let config = Config::default()
        .listen(listen)
        .echo(true)
        .max_message_size(20 << 20)
        .max_backlog(64 << 20)
        .read_buffer_size(64 << 10);
    let mut server = match Server::bind(config) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("echo: {error}");
            return ExitCode::from(1);
        }
    };
    println!("listening on {}", server.local_addr());
    match server.run() {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("echo: {error}");
            ExitCode::from(1)
        }
    }
}
