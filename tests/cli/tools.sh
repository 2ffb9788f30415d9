#!/bin/sh
# tests/cli/tools.sh: every external command the build, the suite and the scripts run is in
# scripts/deps.sh's table, in a group that the script running it installs first, present here,
# and (where dpkg can tell) provided by the Debian package the table names; so a fresh Debian
# box that runs `sh scripts/deps.sh`, `make demo`, `make test` or `.ci/run` gets it.
#
# The commands are found by reading the files, not from a list kept by hand: a small shell
# lexer (below, in awk) takes the word in command position of every simple command, also inside
# $( ), backquotes, `trap '...'` and `sh -c '...'`, after `command`, `exec`, `timeout`, `env`
# and `xargs`; of tests/cli/*.sh, scripts/*.sh, .ci/run, the Makefile's recipes and the
# command lines the C tests pass to system() (their `printf(cmd, ...)` strings). Commands run
# through a variable ("$dsq", "$CC_FUZZ") are not seen; the Makefile's $(CC) and $(MAKE) are
# mapped to cc and make, and `make CC=X` counts as running X. Not covered: bench/ (make bench is outside the README's two commands and CI).
set -u
cd "$(dirname "$0")/../.." || exit 1
deps=scripts/deps.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bad=0
fail() {
    echo "tools.sh: $*" >&2
    bad=1
}

# ---- the lexer: shell text on stdin, "FILE<TAB>COMMAND" lines out --------------------------
# shellcheck disable=SC2016
lexer='
function init(k, kind) { ctx[k] = kind; word[k] = ""; wq[k] = 0; atstart[k] = 1; prefix[k] = "";
    pskip[k] = 0; skipargs[k] = 0; casest[k] = 0; redir[k] = 0; cur[k] = ""; argn[k] = 0; prevw[k] = "" }
function emit(w) { if (w ~ /^[A-Za-z0-9_][A-Za-z0-9._+-]*$/ && w !~ /^[0-9]+$/) print FILE "\t" w }
function sep() { atstart[d] = 1; prefix[d] = ""; skipargs[d] = 0; cur[d] = "" }
function endword(   w, q) {
    w = word[d]; q = wq[d]; word[d] = ""; wq[d] = 0
    if (w == "") return
    if (redir[d]) { redir[d] = 0; return }
    if (casest[d] == 1) { if (w == "in") casest[d] = 2; return }
    if (casest[d] == 2) { if (w == "esac") { casest[d] = 0 } return }
    if (skipargs[d]) return
    if (atstart[d]) {
        if (w ~ /^[A-Za-z_][A-Za-z0-9_]*=/) return
        if (w == "esac" && casest[d] == 3) { casest[d] = 0; return }
        if (w in KEYWORD) return
        if (w == "for") { skipargs[d] = 1; return }
        if (w == "case") { casest[d] = 1; return }
        atstart[d] = 0; cur[d] = w; argn[d] = 0; prevw[d] = w
        if (q) return
        emit(w)
        if (w in PREFIX) { prefix[d] = w; pskip[d] = (w == "timeout") }
        return
    }
    argn[d]++
    # make CC=clang: make runs that compiler
    if (cur[d] == "make" && w ~ /^CC=[A-Za-z0-9_][A-Za-z0-9._+-]*$/) emit(substr(w, 4))
    if (prefix[d] != "") {
        if (w ~ /^-/ || w ~ /^[0-9]+$/) { prevw[d] = w; return }
        if (pskip[d] && w ~ /^[0-9.]+[smhd]?$/) { pskip[d] = 0; prevw[d] = w; return }
        if (prefix[d] == "env" && w ~ /^[A-Za-z_][A-Za-z0-9_]*=/) return
        prefix[d] = ""
        if (!q) { emit(w); cur[d] = w; if (w in PREFIX) { prefix[d] = w; pskip[d] = (w == "timeout") } }
    }
    prevw[d] = w
}
function skipto(s, i, op, cl,   n, c) { # index of the close matching the open at i
    n = 0
    for (; i <= length(s); i++) {
        c = substr(s, i, 1)
        if (c == op) n++
        else if (c == cl && --n == 0) return i
    }
    return length(s)
}
function lex(s,   i, c, n, j, body, delim, line) {
    d = 0; init(0, "cmd"); heredoc = ""
    for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1); n = substr(s, i + 1, 1)
        if (ctx[d] == "dq") {
            if (c == "\\") { i++; continue }
            if (c == "\"") { d--; continue }
            if (c == "$" && n == "(") {
                if (substr(s, i + 2, 1) == "(") { i = skipto(s, i + 1, "(", ")"); continue }
                d++; init(d, "sub"); i++; continue
            }
            if (c == "$" && n == "{") { i = skipto(s, i + 1, "{", "}"); continue }
            if (c == "`") { d++; init(d, "bq") }
            continue
        }
        if (c == "\\") { if (n != "\n") { word[d] = word[d] n; wq[d] = 1 } i++; continue }
        if (c == "\047") {
            j = index(substr(s, i + 1), "\047"); body = substr(s, i + 1, j - 1); i += j
            if ((cur[d] == "trap" && argn[d] == 0) || ((cur[d] == "sh" || cur[d] == "bash") && prevw[d] == "-c"))
                pending[++npending] = body
            word[d] = word[d] "Q"; wq[d] = 1; continue
        }
        if (c == "\"") { word[d] = word[d] "Q"; wq[d] = 1; d++; ctx[d] = "dq"; continue }
        if (c == "$") {
            word[d] = word[d] "$"; wq[d] = 1
            if (n == "(" && substr(s, i + 2, 1) == "(") { i = skipto(s, i + 1, "(", ")"); continue }
            if (n == "(") { d++; init(d, "sub"); i++; continue }
            if (n == "{") { i = skipto(s, i + 1, "{", "}") }
            continue
        }
        if (c == "`") {
            if (ctx[d] == "bq") { endword(); d--; continue }
            word[d] = word[d] "$"; wq[d] = 1; d++; init(d, "bq"); continue
        }
        if (c == "#" && word[d] == "") { while (i < length(s) && substr(s, i + 1, 1) != "\n") i++; continue }
        if (c == " " || c == "\t") { endword(); continue }
        if (c == "\n" || c == ";" || c == "&" || c == "|" || c == "(") {
            endword()
            if (c == "\n" && heredoc != "") { # skip the body: lines up to one that is the delimiter
                while (i < length(s)) {
                    j = index(substr(s, i + 1), "\n"); if (j == 0) j = length(s) - i + 1
                    line = substr(s, i + 1, j - 1); i += j; sub(/^\t+/, "", line)
                    if (line == heredoc) break
                }
                heredoc = ""; i--; sep(); continue
            }
            if (c == ";" && n == ";") { i++; if (casest[d] == 3) casest[d] = 2; continue }
            if (casest[d] != 2) sep()
            continue
        }
        if (c == ")") {
            endword()
            if (ctx[d] == "sub") { d--; continue }
            if (casest[d] == 2) casest[d] = 3
            sep(); continue
        }
        if (c == "<" && n == "<") { # a here-document: its body, up to the delimiter line, is data
            endword(); i++
            if (substr(s, i + 1, 1) == "-") i++
            while (substr(s, i + 1, 1) ~ /[ \t]/) i++
            for (delim = ""; substr(s, i + 1, 1) !~ /[ \t\n;|&<>)]/ && i < length(s); i++)
                delim = delim substr(s, i + 1, 1)
            gsub(/[\047"\\]/, "", delim); heredoc = delim; continue
        }
        if (c == "<" || c == ">") {
            if (word[d] ~ /^[0-9]+$/) word[d] = ""
            endword()
            while (substr(s, i + 1, 1) ~ /[<>&|]/) i++
            while (substr(s, i + 1, 1) ~ /[ \t]/) i++
            if (substr(s, i + 1, 1) ~ /[0-9-]/ && substr(s, i + 2, 1) ~ /[ \t\n;|&)]/) { i++; continue }
            redir[d] = 1; continue
        }
        word[d] = word[d] c
    }
    while (d >= 0) { if (ctx[d] != "dq") endword(); d-- }
}
BEGIN {
    split("if then else elif fi do done while until { } ! esac", kw, " "); for (k in kw) KEYWORD[kw[k]] = 1
    split("command exec timeout env xargs nice nohup setsid stdbuf", pw, " "); for (k in pw) PREFIX[pw[k]] = 1
}
{ src = src $0 "\n" }
END { lex(src); for (p = 1; p <= npending; p++) lex(pending[p]) }
'

# Makefile recipes as shell: make variables become a shell variable, but $(CC) and $(MAKE) are
# the commands cc and make ("$$" is the shell's "$")
# shellcheck disable=SC2016
recipes='
/^\t/ { line = substr($0, 2); sub(/^[@+-]+/, "", line)
    while (line ~ /\\$/ && (getline nxt) > 0) line = substr(line, 1, length(line) - 1) " " nxt
    gsub(/\$\$/, "\001", line); gsub(/\$\(CC\)/, "cc", line); gsub(/\$\(MAKE\)/, "make", line)
    gsub(/\$\([^)]*\)|\$\{[^}]*\}|\$./, "$V", line); gsub(/\001/, "$", line); print line }
'
# the C tests: the string literals of each `printf(cmd, ...)` statement whose cmd goes next to
# system() (tu_system), joined, as one line
# shellcheck disable=SC2016
cstrings='
/printf\(cmd[,)]/ { on = 1; out = "" }
on { s = $0
    while ((k = index(s, "\"")) > 0) {
        s = substr(s, k + 1); lit = ""
        while (s != "" && substr(s, 1, 1) != "\"") {
            if (substr(s, 1, 1) == "\\") { e = substr(s, 2, 1); lit = lit (e == "n" ? "\n" : e); s = substr(s, 3) }
            else { lit = lit substr(s, 1, 1); s = substr(s, 2) }
        }
        s = substr(s, 2); out = out lit
    }
    if ($0 ~ /\);[ \t]*(\/[*\/].*)?$/) { on = 0; gsub(/%[0-9.]*(ll|l|z)?[sdiuxf]/, "$V", out); pend = out; next }
}
# a command line is one when it goes to system(); run_dsq(cmd) and the like take dsq arguments
/[A-Za-z_]\(cmd\)/ { if ($0 ~ /system\(cmd\)/ && pend != "") print pend; pend = "" }
'

# ---- the files, and the groups each may rely on (scripts/deps.sh's header says who installs
# which group): configure.sh, demo.sh and the Makefile run with the build group; the suite with
# build and test; fuzz.sh with build and fuzz; .ci/run installs everything; deps.sh is the
# installer itself (it probes the compilers it has just installed, and uses sudo if present)
groups_of() {
    case $1 in
        scripts/deps.sh) echo "base build test clang fuzz optional" ;;
        scripts/configure.sh | scripts/demo.sh | Makefile) echo "base build" ;;
        scripts/run-tests.sh | tests/*) echo "base build test" ;;
        scripts/fuzz.sh) echo "base build fuzz" ;;
        .ci/run) echo "base build test clang fuzz" ;;
        *) echo "?" ;;
    esac
}
for f in scripts/*.sh tests/cli/*.sh .ci/run; do
    FILE=$f awk -v FILE="$f" "$lexer" "$f" >>"$tmp/uses" || fail "$f: the lexer failed"
done
awk "$recipes" Makefile | awk -v FILE=Makefile "$lexer" >>"$tmp/uses"
printf 'Makefile\tmake\n' >>"$tmp/uses" # the Makefile is read by make
for f in tests/*.c; do
    awk "$cstrings" "$f" | awk -v FILE="$f" "$lexer" >>"$tmp/uses"
done
[ "$(wc -l <"$tmp/uses")" -gt 50 ] || fail "the lexer found almost nothing: $(cat "$tmp/uses")"
# shell functions the scripts define are not tools
cat scripts/*.sh tests/cli/*.sh .ci/run |
    sed -n 's/^[ \t]*\([A-Za-z_][A-Za-z0-9_]*\)[ \t]*()[ \t]*{.*/\1/p' | sort -u >"$tmp/functions"

sh "$deps" --table >"$tmp/table" || fail "$deps --table failed"
[ -s "$tmp/table" ] || fail "$deps --table printed nothing"

# ---- every command used is a builtin, a function, or in the table in an allowed group -------
sort -u "$tmp/uses" >"$tmp/uses.u"
while IFS="$(printf '\t')" read -r file tool; do
    grep -qx "$tool" "$tmp/functions" && continue
    # builtins and keywords of /bin/sh, which runs every script, recipe and system() here
    case $(command -V "$tool" 2>&1) in *builtin* | *keyword*) continue ;; esac
    entry=$(awk -v t="$tool" '$1 == t { print $2, $3 }' "$tmp/table")
    if [ -z "$entry" ]; then
        fail "$file runs '$tool', which is not in $deps's table (add: $tool PACKAGE GROUP)"
        continue
    fi
    group=${entry#* }
    case " $(groups_of "$file") " in
        *" $group "*) ;;
        *) fail "$file runs '$tool' (group $group), which is not installed before $file runs (groups: $(groups_of "$file"))" ;;
    esac
    echo "$tool" >>"$tmp/used"
done <"$tmp/uses.u"
sort -u "$tmp/used" >"$tmp/used.u" 2>/dev/null

# ---- every entry of the table: used, present, provided by its package ----------------------
has_dpkg=0
command -v dpkg >/dev/null 2>&1 && has_dpkg=1
# 0 when PACKAGE owns PATH, or a file a symbolic link on the way to it names (alternatives:
# cc -> /etc/alternatives/cc -> gcc); dpkg knows merged-/usr files by their /bin, /sbin names
owner_ok() { # PACKAGE PATH
    p=$2
    for hop in 1 2 3 4 5 6; do
        for q in "$p" "$(echo "$p" | sed -n 's|^/usr/\(s*bin/\)|/\1|p')"; do
            [ -n "$q" ] || continue
            # "pkg1, pkg2:arch: /path": any of the owners
            for o in $(dpkg -S "$q" 2>/dev/null | sed -n 's/: \/.*//p' | tr ',' ' '); do
                [ "${o%%:*}" = "$1" ] && return 0
            done
        done
        [ -L "$p" ] || return 1
        l=$(readlink "$p")
        case $l in /*) p=$l ;; *) p=$(dirname "$p")/$l ;; esac
        [ "$hop" -lt 6 ] || return 1
    done
    return 1
}
while read -r what pkg group; do
    case $group in base | build | test | clang | fuzz | optional) ;;
        *) fail "$deps: $what: unknown group '$group'"; continue ;; esac
    # clang and fuzz: installed by .ci/run and the fuzz targets, not by `make test`
    need=1
    case $group in optional) need=0 ;; clang | fuzz) [ -n "${CI:-}" ] || need=0 ;; esac
    case $what in
        pc:* | probe:*)
            sh "$deps" --check "$what" || { [ $need -eq 0 ] || fail "$what ($pkg) is missing: run sh $deps $group"; continue; }
            if [ $has_dpkg -eq 1 ] && [ "${what%%:*}" = pc ]; then
                pc=${what#pc:}
                owner_ok "$pkg" "$(pkg-config --variable=pcfiledir "$pc")/$pc.pc" ||
                    fail "$what: $(pkg-config --variable=pcfiledir "$pc")/$pc.pc is not from $pkg"
            fi
            continue
            ;;
    esac
    grep -qx "$what" "$tmp/used.u" || fail "$deps lists '$what', which nothing runs (remove it)"
    path=$(command -v "$what" 2>/dev/null)
    if [ -z "$path" ]; then
        [ $need -eq 0 ] || fail "'$what' is not installed: sh $deps $group (package $pkg)"
        continue
    fi
    if [ "$group" = base ] && [ $has_dpkg -eq 1 ]; then
        prio=$(dpkg-query -W -f '${Essential} ${Priority}' "$pkg" 2>/dev/null)
        case $prio in "yes "* | *" required") ;;
            *) fail "$what: $pkg is marked base but is not in Debian's base system ($prio)" ;; esac
    fi
    if [ $has_dpkg -eq 1 ] && ! owner_ok "$pkg" "$path"; then
        fail "$what: $path is not from $pkg ($(dpkg -S "$path" 2>&1 | head -n 1))"
    fi
done <"$tmp/table"

[ $bad -eq 0 ] || exit 1
echo "tools.sh: $(wc -l <"$tmp/used.u") commands, all in $deps's table, installed and from their packages"
exit 0
