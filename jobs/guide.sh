#!/usr/bin/env bash
# The embedding guide's programs, built as a host would build them: one crate outside the
# workspace whose [dependencies] are exactly the guide's TOML block (rollcall by path instead
# of by version), resolved afresh (no Cargo.lock of ours), each ```rust block a binary. A
# snippet that needs a crate the guide does not list fails here.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
guide="$repo/docs/embedding.md"
work="${GUIDE_DIR:-$repo/target/guide}"
rm -rf "$work/src" "$work/Cargo.toml" "$work/Cargo.lock"
mkdir -p "$work/src/bin"

python3 - "$guide" "$work" "$repo" <<'PY'
import pathlib, re, sys
guide, work, repo = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
text = pathlib.Path(guide).read_text()
blocks = re.findall(r"```(\S*)\n(.*?)```", text, re.S)
toml = [body for lang, body in blocks if lang == "toml"]
if len(toml) != 1 or "[dependencies]" not in toml[0]:
    sys.exit("guide: expected one ```toml block with [dependencies]")
deps = []
for line in toml[0].splitlines():
    line = line.split("#", 1)[0].strip()
    if not line or line == "[dependencies]":
        continue
    if line.startswith("rollcall"):
        line = re.sub(r'version = "[^"]*"', f'path = "{repo}"', line)
    deps.append(line)
(work / "Cargo.toml").write_text(
    '[package]\nname = "guide"\nversion = "0.0.0"\nedition = "2021"\npublish = false\n\n'
    "[workspace]\n\n[dependencies]\n" + "\n".join(deps) + "\n"
)
rust = [body for lang, body in blocks if lang.startswith("rust")]
if not rust:
    sys.exit("guide: no ```rust block")
for index, body in enumerate(rust, 1):
    (work / "src" / "bin" / f"snippet{index}.rs").write_text(body)
print(f"guide: {len(rust)} programs with dependencies {', '.join(d.split('=')[0].strip() for d in deps)}")
PY
cargo build --quiet --manifest-path "$work/Cargo.toml" --bins
echo "guide: every program builds"
