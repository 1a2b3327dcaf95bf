#!/bin/sh
# Builds lumen (release) and runs the Captum comparison; extra arguments go to
# harness.py (e.g. --reps 3 --batches 64). PYTHON: a Python with torch, captum
# and safetensors (default: python3).
set -e
root=$(cd "$(dirname "$0")/../.." && pwd)
py=${PYTHON:-python3}
cd "$root"
cargo build --release --workspace -j "${JOBS:-2}"
exec "$py" bench/captum/harness.py --lumen "$root/target/release/lumen" "$@"
