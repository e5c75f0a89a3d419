#!/usr/bin/env bash
# Builds every target and runs the unit tests with the minimum supported Rust version
# (Cargo.toml's rust-version), using Debian's rustc-web and cargo-web packages of that version.
# Usage: jobs/msrv.sh   (run from anywhere; installs the packages when missing)
set -euo pipefail
cd "$(dirname "$0")/.."

msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
if [ "$(/usr/bin/rustc --version 2>/dev/null | cut -d' ' -f2)" != "$msrv.0" ]; then
    apt-get update -qq
    version=$(apt-cache madison rustc-web | awk -v v="$msrv.0+" 'index($3, v) == 1 { print $3; exit }')
    if [ -z "$version" ]; then
        echo "msrv: SKIPPED: the Debian archive no longer serves rustc-web $msrv; check rust-version by hand" >&2
        exit 0
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --allow-downgrades \
        "rustc-web=$version" "cargo-web=$version" >/dev/null
fi
echo "msrv: $(/usr/bin/rustc --version)"
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
/usr/bin/cargo build --locked --all-targets --target-dir target/msrv
/usr/bin/cargo test --locked --lib --target-dir target/msrv
