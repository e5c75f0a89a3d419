#!/usr/bin/env bash
# What rollcall adds to a host's binary: an empty `fn main() {}` and the same host running
# `rollcall::Server` (`default-features = false`, plus the features named), built in one crate
# outside the workspace with this project's release profile; then the `rollcall` binary itself.
# Prints bytes.
# Usage: benches/host_size.sh [FEATURES...]   one host per argument, each a comma-separated
#        feature list ("" for none, the default); docs/embedding.md's "Size" names the
#        arguments of its table.
# Honours CARGO_TARGET_DIR (the host crate and the binary then build there).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${HOST_SIZE_DIR:-$repo/target/host-size}"
host_target="${CARGO_TARGET_DIR:-$work/target}"
repo_target="${CARGO_TARGET_DIR:-$repo/target}"
[ $# -gt 0 ] || set -- ""
size() { stat -c %s "$1"; }

# $1: the features, comma-separated. Writes the host crate and builds its two programs.
build_host() {
    local features
    features=$(echo "$1" | sed 's/[^,][^,]*/"&"/g; s/,/, /g')
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
rollcall = { path = "$repo", default-features = false, features = [$features] }

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
}

for features in "$@"; do
    build_host "$features"
    empty=$(size "$host_target/release/empty")
    host=$(size "$host_target/release/host")
    echo "empty host:              $empty B"
    echo "host running a Server [${features:-no features}]: $host B (rollcall adds $(( (host - empty) / 1024 )) KiB)"
done
cargo build --quiet --release --manifest-path "$repo/Cargo.toml" --bin rollcall
binary=$(size "$repo_target/release/rollcall")
echo "the rollcall binary:     $binary B ($(( binary / 1024 )) KiB)"
