#!/bin/bash
# Our cyradm against the Perl one (Debian's cyrus-admin), in the same run,
# against the same private Cyrus 3.6.1 (tests/lib/instance.sh): startup
# (--help, and connect + authenticate + one lm), and a script of NCMDS
# commands (cm, sam, lq, dm on NCMDS/4 user mailboxes) read from stdin,
# which ours pipelines and spreads over 4 connections; and ours again
# with CYRADM_LANES=1 (pipelined on one connection) and with
# CYRADM_NO_PIPELINE=1 (one command at a time as the Perl one), to show
# what each buys.
# Prints wall time, client CPU (user+sys of the cyradm process alone; the
# startup cases are the mean of STARTUP_RUNS) and peak RSS for each, and
# Perl/ours ratios (above 1: ours is better). Checks that all print the
# same. Not a test: nothing fails on speed.
#
#   bench/cyradm.sh [NCMDS]     default 1000 (a multiple of 4)
#   STARTUP_RUNS=N              repetitions of each startup case (default 20)
#
# Needs root (master), Debian's cyrus-imapd and cyrus-admin, /usr/bin/time.
top=$(cd "$(dirname "$0")/.." && pwd)
# instance.sh's "read -d ''" ends with status 1: source it before set -e.
. "$top/tests/lib/instance.sh"
set -euo pipefail
N=${1:-1000}
RUNS=${STARTUP_RUNS:-20}
PERL=/usr/bin/cyradm
OURS=$top/bin/cyradm
[ -x "$PERL" ] || { echo "bench: Debian's cyrus-admin is not installed"; exit 69; }
[ -x "$OURS" ] || { echo "bench: build first (make)"; exit 69; }
[ -x /usr/bin/time ] || { echo "bench: needs /usr/bin/time (Debian package time)"; exit 69; }
[ "$(id -u)" = 0 ] || { echo "bench: needs root to start a private Cyrus"; exit 77; }

work=$(mktemp -d "${TMPDIR:-/tmp}/cyradmbench.XXXXXX")
# set +e: instance_stop's commands may fail, and must not end the trap.
trap 'set +e; instance_stop; rm -rf "$work"' EXIT
CYR_EXTRA_CONF='delete_mode: immediate
expunge_mode: immediate'
instance_start >"$work/instance.log" 2>&1 || {
	cat "$work/instance.log"
	exit 69
}
export HOME=$work USER=cyrus INPUTRC=/dev/null COLUMNS=
unset LOGNAME
conn=(--user cyrus -w "$CYR_PASS" --port "$CYR_PORT" localhost)

# measure LABEL STDIN CMD...: one run; sets W (wall s), C (user+sys s),
# M (peak KB); output in $work/LABEL.out/.err.
measure()
{
	local label=$1 in=$2
	shift 2
	/usr/bin/time -f '%e %U %S %M' -o "$work/time" "$@" <"$in" \
		>"$work/$label.out" 2>"$work/$label.err" || true
	read -r W u s M <"$work/time"
	C=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
}

# repeat LABEL STDIN CMD...: RUNS runs under one timer (its resolution is
# 10 ms); W, C: per run; M: peak RSS of one run on its own.
repeat()
{
	local label=$1 in=$2
	shift 2
	measure "$label" "$in" bash -c 'n=$1 in=$2 out=$3; shift 3
		for ((i = 0; i < n; i++)); do
			"$@" <"$in" >"$out.out" 2>"$out.err"
		done' _ "$RUNS" "$in" "$work/$label" "$@"
	local w c
	w=$(awk -v a="$W" -v n="$RUNS" 'BEGIN { printf "%.4f", a / n }')
	c=$(awk -v a="$C" -v n="$RUNS" 'BEGIN { printf "%.4f", a / n }')
	measure "$label" "$in" "$@"
	W=$w C=$c
}

ratio()
{
	awk -v p="$1" -v o="$2" 'BEGIN { if (o <= 0) o = 0.0005; printf "%.1fx", p / o }'
}

row() # name perl_w perl_c perl_m our_w our_c our_m
{
	printf '%-28s %8ss %7ss %7sKB  %8ss %7ss %7sKB  wall %6s  cpu %6s  rss %5s\n' \
		"$1" "$2" "$3" "$4" "$5" "$6" "$7" "$(ratio "$2" "$5")" \
		"$(ratio "$3" "$6")" "$(ratio "$4" "$7")"
}

same()
{
	cmp -s "$work/$1.out" "$work/$2.out" &&
	cmp -s "$work/$1.err" "$work/$2.err" || {
		echo "bench: $1 and $2 printed different things:"
		diff "$work/$1.out" "$work/$2.out" | head -20
		diff "$work/$1.err" "$work/$2.err" | head -20
		exit 70
	}
}

printf '%-28s %9s %8s %9s  %9s %8s %9s  %s\n' "" "Perl wall" "CPU" "RSS" \
	"our wall" "CPU" "RSS" "Perl/ours"

: >"$work/empty"
repeat phelp "$work/empty" "$PERL" --help
pw=$W pc=$C pm=$M
repeat ohelp "$work/empty" "$OURS" --help
row "startup: --help" "$pw" "$pc" "$pm" "$W" "$C" "$M"
same phelp ohelp

echo lm >"$work/lm.in"
echo "CREATE user.bench" | instance_imap_script >/dev/null
repeat plm "$work/lm.in" "$PERL" "${conn[@]}"
pw=$W pc=$C pm=$M
repeat olm "$work/lm.in" "$OURS" "${conn[@]}"
row "startup: connect+auth+lm" "$pw" "$pc" "$pm" "$W" "$C" "$M"
same plm olm

awk -v n="$N" 'BEGIN {
	for (i = 0; i < n / 4; i++) {
		m = sprintf("user.b%05d", i)
		print "cm " m
		print "sam " m " cyrus all"
		print "lq " m
		print "dm " m
	}
}' >"$work/script.in"
# Each on a fresh store: mailboxes.db grows with every create and delete,
# so whichever ran second would be slower.
# The disk still writing back (and discarding) what the run before left
# slowed whichever ran later by up to half: sync first.
fresh()
{
	instance_stop >/dev/null 2>&1 || true
	sync
	instance_start >"$work/instance.log" 2>&1 || {
		cat "$work/instance.log"
		exit 69
	}
	conn=(--user cyrus -w "$CYR_PASS" --port "$CYR_PORT" localhost)
}
fresh
measure pscript "$work/script.in" "$PERL" "${conn[@]}"
pw=$W pc=$C pm=$M
fresh
measure oscript "$work/script.in" "$OURS" "${conn[@]}"
row "script: $N commands" "$pw" "$pc" "$pm" "$W" "$C" "$M"
same pscript oscript
fresh
measure lscript "$work/script.in" env CYRADM_LANES=1 "$OURS" "${conn[@]}"
row "  ours, one connection" "$pw" "$pc" "$pm" "$W" "$C" "$M"
same pscript lscript
fresh
measure sscript "$work/script.in" env CYRADM_NO_PIPELINE=1 "$OURS" "${conn[@]}"
row "  ours, not pipelined" "$pw" "$pc" "$pm" "$W" "$C" "$M"
same pscript sscript
