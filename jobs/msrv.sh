#!/usr/bin/env bash
# Builds every target and runs the unit tests with the minimum supported Rust version
# (Cargo.toml's rust-version), using Debian's rustc-web and cargo-web packages of that version.
# Usage: jobs/msrv.sh   (run from anywhere; installs the packages when missing)
#
# A toolchain that cannot be installed (the version is gone from the archive, its dependencies
# cannot be resolved, `apt-get update` fails) prints `msrv: SKIPPED: <reason>` and exits 0; a
# build or test failure under the installed toolchain fails the job. Set MSRV to ask for
# another version than Cargo.toml's (used to exercise the skip path by hand).
set -euo pipefail
cd "$(dirname "$0")/.."

msrv=${MSRV:-$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)}

skip() {
    echo "msrv: SKIPPED: $1; check rust-version $msrv by hand" >&2
    exit 0
}

# The packages that must share one version: rustc-web, cargo-web and everything they depend on
# with `(= VERSION)`, read from the packages' own Depends so that a version bump needs no edit.
pinned_closure() {
    local version=$1 queue=(rustc-web cargo-web) seen=() pkg dep
    while [ ${#queue[@]} -gt 0 ]; do
        pkg=${queue[0]}
        queue=("${queue[@]:1}")
        case " ${seen[*]} " in *" $pkg "*) continue ;; esac
        seen+=("$pkg")
        for dep in $(apt-cache show "$pkg=$version" 2>/dev/null | sed -n 's/^Depends: //p' | head -n1 \
            | tr ',' '\n' | sed -n "s/^ *\([a-z0-9.+-]*\) (= $version)\$/\1/p"); do
            queue+=("$dep")
        done
    done
    echo "${seen[@]}"
}

install_toolchain() {
    apt-get update -qq || skip "apt-get update failed"
    local version
    version=$(apt-cache madison rustc-web | awk -v v="$msrv.0+" 'index($3, v) == 1 { print $3; exit }')
    [ -n "$version" ] || skip "the Debian archive no longer serves rustc-web $msrv"
    local packages=()
    for pkg in $(pinned_closure "$version"); do packages+=("$pkg=$version"); done
    echo "msrv: installing ${packages[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --allow-downgrades \
        "${packages[@]}" >/dev/null || skip "apt-get could not install ${packages[*]}"
}

if [ "$(/usr/bin/rustc --version 2>/dev/null | cut -d' ' -f2)" != "$msrv.0" ]; then
    install_toolchain
fi
echo "msrv: $(/usr/bin/rustc --version)"
# rustup's toolchain stays the default: only this job's commands name /usr/bin explicitly.
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
/usr/bin/cargo build --locked --all-targets --target-dir target/msrv
/usr/bin/cargo test --locked --lib --target-dir target/msrv
