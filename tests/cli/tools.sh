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
# mapped to cc and make, and `make CC=X` counts as running X; here-document bodies are data.
# Not covered: bench/ (make bench is outside the README's two commands and CI). Groups clang and
# fuzz must be present only under CI (CI set), where .ci/run has installed them.
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
# build and test; fuzz.sh with build, clang and fuzz; .ci/run installs everything; deps.sh is
# the installer itself (it probes the compilers it has just installed, and uses sudo if present)
groups_of='
function groups_of(f) {
    if (f == "scripts/deps.sh") return "base build test clang fuzz optional"
    if (f == "scripts/configure.sh" || f == "scripts/demo.sh" || f == "Makefile") return "base build"
    if (f == "scripts/run-tests.sh" || f ~ /^tests\//) return "base build test"
    if (f == "scripts/fuzz.sh") return "base build clang fuzz"
    if (f == ".ci/run") return "base build test clang fuzz"
    return "?"
}
'
for f in scripts/*.sh tests/cli/*.sh .ci/run; do
    awk -v FILE="$f" "$lexer" "$f" >>"$tmp/uses" || fail "$f: the lexer failed"
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
# nor are the builtins and keywords of /bin/sh, which runs every script, recipe and system() here
cut -f2 "$tmp/uses" | sort -u | while read -r tool; do
    grep -qx "$tool" "$tmp/functions" && continue
    case $(command -V "$tool" 2>&1) in *builtin* | *keyword*) continue ;; esac
    echo "$tool"
done >"$tmp/external"

sh "$deps" --table >"$tmp/table" || fail "$deps --table failed"
[ -s "$tmp/table" ] || fail "$deps --table printed nothing"

# ---- every command used is in the table, in a group installed before its file runs ----------
sort -u "$tmp/uses" | awk -F '\t' -v deps="$deps" -v table="$tmp/table" -v ext="$tmp/external" \
    -v used="$tmp/used" "$groups_of"'
BEGIN {
    while ((getline l < table) > 0) { split(l, t, " "); group[t[1]] = t[3] }
    while ((getline l < ext) > 0) external[l] = 1
}
!($2 in external) { next }
!($2 in group) { print $1 " runs \047" $2 "\047, which is not in " deps "\047s table (add: " $2 " PACKAGE GROUP)"; next }
index(" " groups_of($1) " ", " " group[$2] " ") == 0 {
    print $1 " runs \047" $2 "\047 (group " group[$2] "), which is not installed before " $1 " runs (groups: " groups_of($1) ")"
}
{ print $2 > used }
' >"$tmp/bad.uses"
while read -r line; do fail "$line"; done <"$tmp/bad.uses"
sort -u "$tmp/used" >"$tmp/used.u" 2>/dev/null

# ---- every entry of the table: used, present, provided by its package ----------------------
has_dpkg=0
command -v dpkg >/dev/null 2>&1 && has_dpkg=1
: >"$tmp/paths"
# WHAT PACKAGE PATH, for PATH and every file a symbolic link on the way names (alternatives:
# cc -> /etc/alternatives/cc -> /usr/bin/gcc), each also by the /bin or /sbin name dpkg knows a
# merged-/usr file by
paths_of() { # WHAT PACKAGE PATH
    p=$3
    for hop in 1 2 3 4 5 6; do
        echo "$1 $2 $p"
        q=$(echo "$p" | sed -n 's|^/usr/\(s*bin/\)|/\1|p')
        [ -z "$q" ] || echo "$1 $2 $q"
        if [ ! -L "$p" ] || [ "$hop" -ge 6 ]; then break; fi
        l=$(readlink "$p")
        case $l in /*) p=$l ;; *) p=$(dirname "$p")/$l ;; esac
    done >>"$tmp/paths"
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
            if [ "${what%%:*}" = pc ]; then
                pc=${what#pc:}
                paths_of "$what" "$pkg" "$(pkg-config --variable=pcfiledir "$pc")/$pc.pc"
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
    [ "$group" != base ] || echo "$pkg" >>"$tmp/base"
    paths_of "$what" "$pkg" "$path"
done <"$tmp/table"

if [ $has_dpkg -eq 1 ]; then
    # one dpkg -S for every path ("pkg1, pkg2:arch: /path"), then: does the table's package own
    # one of each entry's paths
    # shellcheck disable=SC2046
    dpkg -S $(cut -d ' ' -f 3 "$tmp/paths" | sort -u) >"$tmp/owners" 2>/dev/null
    awk -v owners="$tmp/owners" '
BEGIN {
    while ((getline l < owners) > 0) {
        k = index(l, ": /"); if (k == 0) continue
        path = substr(l, k + 2); n = split(substr(l, 1, k - 1), o, ", ")
        for (i = 1; i <= n; i++) { sub(/:.*/, "", o[i]); own[path, o[i]] = 1 }
    }
}
{ seen[$1] = $2; if (($3, $2) in own) ok[$1] = 1 }
END { for (w in seen) if (!(w in ok)) print w ": not from " seen[w] " (dpkg -S says another package, or none)" }
' "$tmp/paths" >"$tmp/bad.owners"
    while read -r line; do fail "$line"; done <"$tmp/bad.owners"
    # base: in Debian's base system, so deps.sh can rely on it: Essential, or Priority required
    # shellcheck disable=SC2046
    dpkg-query -W -f '${Package} ${Essential} ${Priority}\n' $(sort -u "$tmp/base") 2>/dev/null |
        while read -r pkg ess prio; do
            [ "$ess" = yes ] || [ "$prio" = required ] ||
                echo "$pkg is marked base in $deps but is not in Debian's base system ($ess $prio)"
        done >"$tmp/bad.base"
    while read -r line; do fail "$line"; done <"$tmp/bad.base"
fi

[ $bad -eq 0 ] || exit 1
echo "tools.sh: $(wc -l <"$tmp/used.u") commands, all in $deps's table, installed and from their packages"
exit 0
