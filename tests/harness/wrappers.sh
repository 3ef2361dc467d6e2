#!/usr/bin/env bash
# supabase-wrappers 0.2.4 declares rust-version 1.97.1; the machine's newest
# toolchain is 1.97.0-nightly, which builds it, but cargo refuses the
# declaration and cargo-pgrx cannot pass --ignore-rust-version. This unpacks
# the published crate (checksum checked against crates.io's index) into
# .patched/ with only its rust-version lowered to 1.97; Cargo.toml's
# [patch.crates-io] points there. Skipped when already done. Goes away with a
# stable toolchain of 1.97.1 or later (drop the patch section and this script).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VERSION=0.2.4
SHA256=bb8efe1dd7246af5d7536898317f68979d8f36a52265dd8b3a14d072688a71b9
DEST="$ROOT/.patched/supabase-wrappers"

if [[ -f "$DEST/.done-$VERSION" ]]; then exit 0; fi
printf '==> unpacking supabase-wrappers %s with rust-version 1.97\n' "$VERSION" >&2
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
curl -fsSL --retry 3 -o "$tmp/w.crate" \
  "https://static.crates.io/crates/supabase-wrappers/supabase-wrappers-$VERSION.crate"
echo "$SHA256  $tmp/w.crate" | sha256sum -c --quiet -
tar -xzf "$tmp/w.crate" -C "$tmp"
sed -i 's/^rust-version = "1\.97\.1"$/rust-version = "1.97"/' "$tmp/supabase-wrappers-$VERSION/Cargo.toml"
grep -q '^rust-version = "1.97"$' "$tmp/supabase-wrappers-$VERSION/Cargo.toml"
rm -rf "$DEST" && mkdir -p "$(dirname "$DEST")"
mv "$tmp/supabase-wrappers-$VERSION" "$DEST"
touch "$DEST/.done-$VERSION"
