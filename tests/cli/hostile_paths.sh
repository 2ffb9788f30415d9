#!/bin/sh
# tests/cli/hostile_paths.sh: names from files are not paths (issue 5 item 6).
# - An index whose weight_map names a shard `../../x.safetensors`, an absolute
#   path, `a/b.safetensors`, a name with a NUL, a newline or a backslash, or a
#   hidden name is rejected: exit 3, a one-line message, nothing written (the
#   output directory is not even created), although a valid file waits at
#   every one of those paths.
# - Symbolic links inside the input (the Hugging Face cache is made of them)
#   are followed for reading: the output is the same as from the real files.
# - Symbolic links in the output are replaced, never written through: a file
#   or directory they point to outside the output stays untouched.
set -u
dsq=${DSQ_BIN:-./dsq}
shared=${DSQ_SHARED:-../shared}
fp8="$shared/data/tiny-models/tiny-deepseek-v3-fp8"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "hostile_paths: $*" >&2; exit 1; }
s1=model-00001-of-00002.safetensors
fp8_abs=$(cd "$fp8" && pwd) || fail "$fp8 missing"

"$dsq" convert fp8 bf16 -q "$fp8" "$tmp/ref" 2>"$tmp/err" || fail "plain run: $(cat "$tmp/err")"

# ---- hostile shard names: the input is $tmp/a/b/in, with a valid shard at
# every place a name could reach
in="$tmp/a/b/in"
mkdir -p "$in/a" "$in/sub" || fail "mkdir"
cp "$fp8/config.json" "$in/"
for p in "$tmp/a/x.safetensors" "$in/a/b.safetensors" "$in/.hidden.safetensors" \
    "$in/x.safetensors" "$tmp/passwd.safetensors"; do
    cp "$fp8/$s1" "$p" || fail "cp $p"
done
i=0
for name in '../../x.safetensors' "$tmp/passwd.safetensors" 'a/b.safetensors' \
    'x\u0000y.safetensors' 'x.safetensors\u0000.txt' 'x\ny.safetensors' 'x\ty.safetensors' \
    '.hidden.safetensors' '..\\x.safetensors' '..' '.' 'x.safetensors/' ''; do
    i=$((i + 1))
    printf '{"metadata": {"total_size": 1}, "weight_map": {"model.embed_tokens.weight": "%s"}}\n' \
        "$name" >"$in/model.safetensors.index.json"
    out="$tmp/out$i"
    "$dsq" convert fp8 bf16 -q "$in" "$out" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ $rc -eq 3 ] || fail "shard name '$name': exit $rc, expected 3; stderr: $(cat "$tmp/err")"
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "shard name '$name': not a one-line error: $(cat "$tmp/err")"
    # jansson itself refuses \u0000 in strings; every other name reaches our check
    grep -q "not a plain file name\|u0000 is not allowed" "$tmp/err" ||
        fail "shard name '$name': unclear message: $(cat "$tmp/err")"
    [ ! -e "$out" ] || fail "shard name '$name': the output directory was created"
    "$dsq" inspect "$in" >/dev/null 2>"$tmp/err"
    rc=$?
    [ $rc -eq 3 ] || fail "inspect, shard name '$name': exit $rc, expected 3"
done

# ---- a Hugging Face cache: snapshots/<rev>/<file> -> ../../blobs/<hash>
hf="$tmp/hf"
mkdir -p "$hf/blobs" "$hf/snapshots/rev" || fail "mkdir"
k=0
for f in "$fp8_abs"/*; do
    k=$((k + 1))
    cp "$f" "$hf/blobs/blob$k" || fail "cp $f"
    ln -s "../../blobs/blob$k" "$hf/snapshots/rev/$(basename "$f")" || fail "ln -s"
done
[ -L "$hf/snapshots/rev/$s1" ] || fail "setup: shard is not a symlink"
"$dsq" convert fp8 bf16 -q "$hf/snapshots/rev" "$tmp/from_hf" 2>"$tmp/err" ||
    fail "symlinked input: $(cat "$tmp/err")"
for f in $(cd "$tmp/ref" && ls -A); do
    [ ! -L "$tmp/from_hf/$f" ] || fail "symlinked input: $f written as a symlink"
    cmp -s "$tmp/ref/$f" "$tmp/from_hf/$f" || fail "symlinked input: $f differs"
done

# ---- symbolic links in the output directory, to files and a directory outside it
src="$tmp/src"
mkdir -p "$src/extra" || fail "mkdir"
for f in "$fp8_abs"/*; do ln -s "$f" "$src/$(basename "$f")" || fail "ln -s"; done
echo "notes" >"$src/extra/notes.txt"
victim="$tmp/victim"
mkdir -p "$victim/dir" "$tmp/out_links" || fail "mkdir"
for f in config.json generation_config.json "$s1" model.safetensors.index.json dsq-manifest.json; do
    echo "victim $f" >"$victim/$f"
    cp "$victim/$f" "$victim/$f.orig"
    ln -s "$victim/$f" "$tmp/out_links/$f" || fail "ln -s"
done
ln -s "$victim/dir" "$tmp/out_links/extra" || fail "ln -s"
"$dsq" convert fp8 bf16 -q --force "$src" "$tmp/out_links" 2>"$tmp/err" ||
    fail "output with symlinks: $(cat "$tmp/err")"
for f in config.json generation_config.json "$s1" model.safetensors.index.json dsq-manifest.json; do
    cmp -s "$victim/$f" "$victim/$f.orig" || fail "output symlink $f: written through to $victim/$f"
    [ ! -L "$tmp/out_links/$f" ] || fail "output symlink $f: still a symlink"
done
[ -z "$(ls -A "$victim/dir")" ] || fail "output symlink extra/: wrote into $victim/dir"
[ -d "$tmp/out_links/extra" ] && [ ! -L "$tmp/out_links/extra" ] ||
    fail "output symlink extra/: not replaced by a directory"
cmp -s "$src/extra/notes.txt" "$tmp/out_links/extra/notes.txt" || fail "extra/notes.txt not copied"
for f in $(cd "$tmp/ref" && ls -A); do
    # the manifest also lists extra/notes.txt, which ref's input does not have
    [ "$f" = dsq-manifest.json ] && continue
    cmp -s "$tmp/ref/$f" "$tmp/out_links/$f" || fail "output with symlinks: $f differs"
done
exit 0
