#!/bin/sh
# scripts/deps.sh [GROUP...]: installs, with apt-get, what the build, the tests, the clang build and
# the fuzzers need and the machine lacks; the one place that knows which Debian package gives
# which command, library or runtime (the table below). Every script that needs something calls it
# (configure.sh: build; run-tests.sh: test; fuzz.sh: clang fuzz; .ci/run: all), so they install
# alike: as root, or through sudo, or not at all with one line saying what to install.
#
# On a box with nothing but Debian's base system (no make, no compiler), run it once by hand:
#     sh scripts/deps.sh         # build and test: what `make demo` and `make test` need
# Groups: base (Debian's base system has it; installed only if somehow missing), build (every
# make: compiler, make, libraries), test (make test, make asan), clang (make CC=clang), fuzz
# (make fuzz, make fuzz-smoke; with clang), all (every group), optional (used when present,
# never installed). Also: --table (the table, for tests/cli/tools.sh), --check WHAT (exit 0 when
# WHAT is present). Messages go to stderr. tests/cli/tools.sh fails when a script runs a command
# the table lacks, or one of a group its caller does not install.
set -u
me=deps
tab=$(printf '\t')

# WHAT: a command; pc:MODULE, a pkg-config module; probe:NAME, a check in present() below.
table() {
    cat <<'EOF'
# WHAT               PACKAGE          GROUP
sh                   dash             base
awk                  mawk             base
basename             coreutils        base
cat                  coreutils        base
chmod                coreutils        base
cp                   coreutils        base
cut                  coreutils        base
dd                   coreutils        base
dirname              coreutils        base
head                 coreutils        base
id                   coreutils        base
ln                   coreutils        base
ls                   coreutils        base
mkdir                coreutils        base
mktemp               coreutils        base
mv                   coreutils        base
od                   coreutils        base
readlink             coreutils        base
rm                   coreutils        base
sleep                coreutils        base
sort                 coreutils        base
tail                 coreutils        base
tr                   coreutils        base
wc                   coreutils        base
grep                 grep             base
sed                  sed              base
find                 findutils        base
cmp                  diffutils        base
diff                 diffutils        base
apt-get              apt              base
dpkg                 dpkg             base
dpkg-query           dpkg             base
make                 make             build
cc                   gcc              build
ar                   binutils         build
pkg-config           pkgconf          build
probe:libc           libc6-dev        build
pc:zlib              zlib1g-dev       build
pc:libxxhash         libxxhash-dev    build
pc:jansson           libjansson-dev   build
pc:libpcre2-8        libpcre2-dev     build
pc:cmocka            libcmocka-dev    build
valgrind             valgrind         test
ps                   procps           test
clang                clang            clang
probe:clang-openmp   libomp-dev       clang
probe:libfuzzer      libclang-rt-dev  fuzz
sudo                 sudo             optional
EOF
}

# the table without comments: WHAT PACKAGE GROUP
rows() {
    table | sed -e 's/#.*//' -e "s/[ $tab][ $tab]*/ /g" -e 's/^ //' -e 's/ $//' | grep -v '^$'
}

# Compiles and links a one-line C program: probe COMPILER FLAGS... (source on stdin)
probe() {
    command -v "$1" >/dev/null 2>&1 || return 1
    d=$(mktemp -d) || return 1
    cat >"$d/p.c"
    "$@" "$d/p.c" -o "$d/p" >/dev/null 2>&1
    rc=$?
    rm -rf "$d"
    return $rc
}

present() { # WHAT
    case $1 in
        pc:*) command -v pkg-config >/dev/null 2>&1 && pkg-config --exists "${1#pc:}" ;;
        probe:libc) echo '#include <stdio.h>
int main(void) { return 0; }' | probe cc ;;
        # clang's -fopenmp needs LLVM's omp.h and libomp, not gcc's libgomp
        probe:clang-openmp) echo '#include <omp.h>
int main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }' | probe clang -fopenmp ;;
        # the libFuzzer runtime: --no-install-recommends clang does not bring it
        probe:libfuzzer) echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n);
int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }' |
            probe clang -fsanitize=fuzzer ;;
        probe:*) echo "$me: unknown probe $1" >&2; return 2 ;;
        *) command -v "$1" >/dev/null 2>&1 ;;
    esac
}

# The packages of GROUPs whose WHAT is missing, one line each
missing() { # GROUP...
    rows | while read -r what pkg group; do
        case " $* " in *" $group "*) ;; *) continue ;; esac
        present "$what" || echo "$pkg"
    done | sort -u
}

apt_install() { # PACKAGE...
    if [ "$(id -u)" -eq 0 ]; then
        as=""
        how="as root"
    elif command -v sudo >/dev/null 2>&1; then
        as="sudo"
        how="through sudo"
    else
        echo "$me: missing $*; not root and no sudo: as root, run: apt-get install $*" >&2
        return 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$me: missing $*; no apt-get here (not Debian?): install them with your package manager" >&2
        return 1
    fi
    echo "$me: installing $how with apt-get: $*" >&2
    export DEBIAN_FRONTEND=noninteractive
    # apt-get and dpkg print a few hundred lines: kept, and shown only when they fail
    log=$(mktemp) || return 1
    # a fresh box has no package lists; a stale list names versions no longer served
    if ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
        $as apt-get update -q >"$log" 2>&1 || { tail -n 20 "$log" >&2; rm -f "$log"; echo "$me: apt-get update failed" >&2; return 1; }
    fi
    if ! $as apt-get install -y -q --no-install-recommends "$@" >>"$log" 2>&1 &&
        ! { $as apt-get update -q && $as apt-get install -y -q --no-install-recommends "$@"; } >>"$log" 2>&1; then
        tail -n 20 "$log" >&2
        rm -f "$log"
        echo "$me: apt-get install $* failed" >&2
        return 1
    fi
    rm -f "$log"
}

case ${1:-} in
    --table) rows; exit 0 ;;
    --check) [ $# -eq 2 ] || { echo "usage: $0 --check WHAT" >&2; exit 2; }; present "$2"; exit ;;
    -h | --help) sed -n '2,/^set -u/p' "$0" | sed -e '/^set -u/d' -e 's/^# \{0,1\}//'; exit 0 ;;
esac
groups=${*:-build test}
[ "$groups" = all ] && groups="build test clang fuzz"
for g in $groups; do
    case $g in build | test | clang | fuzz) ;;
        *) echo "$me: unknown group '$g' (build, test, clang, fuzz, all)" >&2; exit 2 ;;
    esac
done
# shellcheck disable=SC2086
need=$(missing base $groups | tr '\n' ' ')
[ -n "$need" ] || exit 0
# shellcheck disable=SC2086
apt_install $need || exit 1
# shellcheck disable=SC2086
still=$(missing base $groups | tr '\n' ' ')
if [ -n "$still" ]; then
    echo "$me: still missing after apt-get install: $still" >&2
    exit 1
fi
exit 0
