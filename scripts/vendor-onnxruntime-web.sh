#!/usr/bin/env bash
# Vendor onnxruntime-web (npm) into server1/static/vendor/onnxruntime-web/: the editor runs SAM's prompt
# decoder with its WebAssembly build, served from /static (no CDN). Only the files the WASM backend
# loads are kept: the ES module, its loader and the SIMD WebAssembly binary. Run again to change VERSION.
set -euo pipefail
VERSION=1.30.0
DEST="$(cd "$(dirname "$0")/.." && pwd)/server1/static/vendor/onnxruntime-web"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "onnxruntime-web@$VERSION" >/dev/null && tar xzf "onnxruntime-web-$VERSION.tgz")
mkdir -p "$DEST"
for file in ort.wasm.min.mjs ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm; do
  cp "$WORK/package/dist/$file" "$DEST/$file"
done
echo "onnxruntime-web $VERSION (npm, MIT licence; see LICENSE)" > "$DEST/VERSION"
