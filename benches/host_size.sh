#!/usr/bin/env bash
# What rollcall adds to a host's binary: an empty `fn main() {}` and the same host running
# `rollcall::Server` (`default-features = false`), built in one crate outside the workspace
# with this project's release profile; then the `rollcall` binary itself. Prints bytes.
# Usage: benches/host_size.sh   (docs/embedding.md's "Size" table comes from it)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${HOST_SIZE_DIR:-$repo/target/host-size}"
rm -rf "$work/src" "$work/Cargo.toml"
mkdir -p "$work/src/bin"
cat > "$work/Cargo.toml" <<TOML
[package]
name = "host-size"
version = "0.0.0"
edition = "2021"
publish = false

[workspace]

[dependencies]
rollcall = { path = "$repo", default-features = false }

[profile.release]
$(sed -n '/^\[profile.release\]/,/^$/p' "$repo/Cargo.toml" | tail -n +2)
TOML
echo 'fn main() {}' > "$work/src/bin/empty.rs"
cat > "$work/src/bin/host.rs" <<'RS'
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut server = rollcall::Server::bind(rollcall::Config::default())?;
    server.run()?;
    Ok(())
}
RS
cargo build --quiet --release --manifest-path "$work/Cargo.toml" --bins
cargo build --quiet --release --manifest-path "$repo/Cargo.toml" --bin rollcall
size() { stat -c %s "$1"; }
empty=$(size "$work/target/release/empty")
host=$(size "$work/target/release/host")
binary=$(size "$repo/target/release/rollcall")
echo "empty host:              $empty B"
echo "host running a Server:   $host B (rollcall adds $(( (host - empty) / 1024 )) KiB)"
echo "the rollcall binary:     $binary B ($(( binary / 1024 )) KiB)"
