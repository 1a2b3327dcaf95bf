#!/usr/bin/env bash
# Packages a relocatable lumen: dist/lumen-VERSION-TARGET/ and its .tar.gz.
#
#   tools/dist.sh [--release-dir DIR] [--out DIR] [--no-build]
#
#   bin/lumen                      rpath $ORIGIN/../lib:$ORIGIN/../lib/lumen/plugins (cli/build.rs)
#   lib/libstd-*.so                Rust's std (the workspace builds with -C prefer-dynamic)
#   lib/liblumen_dylib.so          the shared runtime of host and packs
#   lib/lumen/plugins/             packs the host loads at start-up: the example pack
#   lib/lumen/packs/               the standard packs as plugin files, for hosts that link none
#                                  (lumen links them; scanning them on every start would cost 10x)
#   share/lumen/models/            the shipped model cards and weights
#   share/doc/lumen/README.md
#
# The MNIST data the host uses is compiled into the binary, so models are the only data
# files. Uses the release build in target/release (built with
# `cargo build --release --workspace` when lumen is missing there, unless --no-build).
# A shell script rather than an xtask crate: nothing extra to compile, in CI or here.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
release="${CARGO_TARGET_DIR:-$root/target}/release"
out="$root/dist"
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --release-dir) release=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "dist.sh: unknown argument '$1' (see --help)" >&2; exit 1 ;;
    esac
done

if [ ! -x "$release/lumen" ]; then
    if [ "$build" = 0 ]; then
        echo "dist.sh: $release/lumen is missing; run cargo build --release --workspace" >&2
        exit 1
    fi
    (cd "$root" && cargo build --release --workspace)
fi

rustc=${RUSTC:-rustc}
target=$("$rustc" -vV | sed -n 's/^host: //p')
sysroot=$("$rustc" --print sysroot)
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$root/Cargo.toml")
[ -n "$version" ] && [ -n "$target" ] || { echo "dist.sh: cannot tell the version or the target" >&2; exit 1; }

name="lumen-$version-$target"
mkdir -p "$out"
stage=$(mktemp -d "$out/.stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
dir="$stage/$name"
mkdir -p "$dir/bin" "$dir/lib/lumen/plugins" "$dir/lib/lumen/packs" "$dir/share/lumen/models" "$dir/share/doc/lumen"

# The newest copy of a library cargo built: in the profile dir or in deps/.
pick() {
    local f best=""
    for f in "$release/$1" "$release/deps/$1"; do
        if [ -f "$f" ] && { [ -z "$best" ] || [ "$f" -nt "$best" ]; }; then best=$f; fi
    done
    [ -n "$best" ] || { echo "dist.sh: $1 not found in $release; run cargo build --release --workspace" >&2; exit 1; }
    echo "$best"
}

install -m 755 "$release/lumen" "$dir/bin/lumen"
install -m 644 "$(pick liblumen_dylib.so)" "$dir/lib/"
std_libs=("$sysroot/lib/rustlib/$target/lib"/libstd-*.so)
[ -f "${std_libs[0]}" ] || { echo "dist.sh: no libstd-*.so in $sysroot/lib/rustlib/$target/lib" >&2; exit 1; }
install -m 644 "${std_libs[@]}" "$dir/lib/"
for pack in lumen_models lumen_std_gradients lumen_std_propagation lumen_std_relevance lumen_std_perturbation \
            lumen_std_generators lumen_cdeepex lumen_clear lumen_std_metrics lumen_std_shapley lumen_std_cam lumen_std_layer; do
    install -m 644 "$(pick "lib$pack.so")" "$dir/lib/lumen/packs/"
done
install -m 644 "$(pick liblumen_example.so)" "$dir/lib/lumen/plugins/"
install -m 644 "$root"/models/weights/*.toml "$root"/models/weights/*.safetensors "$dir/share/lumen/models/"
install -m 644 "$root/README.md" "$dir/share/doc/lumen/"

rm -rf "${out:?}/$name" "$out/$name.tar.gz"
tar -C "$stage" -czf "$stage/$name.tar.gz" "$name"
mv "$dir" "$out/$name"
mv "$stage/$name.tar.gz" "$out/$name.tar.gz"
echo "$out/$name"
echo "$out/$name.tar.gz"
