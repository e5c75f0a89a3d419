//! Reference peer for `benches/density.sh`: a WebSocket server written the way tokio users
//! write one. One task per connection, tokio-tungstenite with its default configuration
//! (128 KiB read buffer, 64 MiB messages), the runtime's default worker threads.
//!
//! Heartbeat, as rollcall's: each connection is pinged every INTERVAL and dropped at the first
//! tick that finds it silent for more than 1.5 intervals, i.e. about two intervals after the
//! last frame it sent (an answered ping is seen within a millisecond of its tick, so an alive
//! peer always looks about one interval silent). It keeps no presence state: it only holds
//! connections, so it is a lower bound for a server that does rollcall's job.
//!
//! Usage: `rollcall-peer-tokio-tungstenite [PORT] [INTERVAL]` (or env `PORT`, `INTERVAL`);
//! PORT 0 (the default) picks a free port; INTERVAL is `2s`, `500ms` or seconds [default 2s].
//! Prints `listening on 127.0.0.1:PORT` once bound; any path and query are accepted.

use std::{env, process, time::Duration};

use futures_util::{SinkExt, StreamExt};
use tokio::{
    net::{TcpListener, TcpStream},
    time::{interval_at, Instant, MissedTickBehavior},
};
use tokio_tungstenite::{accept_async, tungstenite::Message};

#[tokio::main]
async fn main() {
    let port = setting(1, "PORT", "0");
    let port: u16 = port
        .parse()
        .unwrap_or_else(|_| usage(&format!("invalid port {port:?}")));
    let every = setting(2, "INTERVAL", "2s");
    let every =
        parse_interval(&every).unwrap_or_else(|| usage(&format!("invalid interval {every:?}")));

    let listener = match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on 127.0.0.1:{port}: {error}");
            process::exit(1);
        }
    };
    let bound = listener
        .local_addr()
        .expect("a bound listener has an address");
    println!("listening on {bound}");

    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream, every));
            }
            // Out of file descriptors, mostly: wait for a connection to go instead of spinning.
            Err(error) => {
                eprintln!("accept: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// One connection: upgrade, then read frames and ping on a timer until it closes or goes silent.
async fn serve(stream: TcpStream, every: Duration) {
    let Ok(mut ws) = accept_async(stream).await else {
        return;
    };
    let mut last_seen = Instant::now();
    let mut ticker = interval_at(last_seen + every, every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            frame = ws.next() => match frame {
                // tungstenite answers pings and a Close by itself; `None` follows the closing
                // handshake.
                Some(Ok(_)) => last_seen = Instant::now(),
                Some(Err(_)) | None => break,
            },
            _ = ticker.tick() => {
                if last_seen.elapsed() > every * 3 / 2 {
                    break;
                }
                if ws.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// Argument `index`, else environment variable `name`, else `default`.
fn setting(index: usize, name: &str, default: &str) -> String {
    env::args()
        .nth(index)
        .or_else(|| env::var(name).ok())
        .unwrap_or_else(|| default.to_owned())
}

/// `2s`, `500ms` or a number of seconds.
fn parse_interval(text: &str) -> Option<Duration> {
    let (number, unit_ms) = match text.strip_suffix("ms") {
        Some(number) => (number, 1.0),
        None => (text.strip_suffix('s').unwrap_or(text), 1000.0),
    };
    let ms = number.parse::<f64>().ok().filter(|ms| *ms > 0.0)? * unit_ms;
    Some(Duration::from_secs_f64(ms / 1000.0))
}

fn usage(problem: &str) -> ! {
    eprintln!("{problem}\nusage: rollcall-peer-tokio-tungstenite [PORT] [INTERVAL]");
    process::exit(2);
}
