# Helpers of the tests that compare our cyradm with the Perl one (Debian's
# /usr/bin/cyradm, the oracle). Sourced after test-lib.sh; the script
# defines reset_store (both runs start from the same store) and normalise
# (what legitimately differs: Perl's " at FILE line N.", hash orders).

# compare NAME [cyradm args...] < script: runs both on the same script,
# compares stdout, stderr and exit status. RUN, if set, is put in front of
# both commands.
compare()
{
	local name=$1 st
	shift
	cat >"$name.in"
	reset_store
	${RUN:-} setsid -w /usr/bin/cyradm "$@" <"$name.in" \
		>"$name.out.p" 2>"$name.err.p"
	echo "exit $?" >>"$name.err.p"
	reset_store
	${RUN:-} setsid -w "$TOP/bin/cyradm" "$@" <"$name.in" \
		>"$name.out.c" 2>"$name.err.c"
	echo "exit $?" >>"$name.err.c"
	for st in out err; do
		normalise <"$name.$st.p" >"$name.$st.expect" &&
		normalise <"$name.$st.c" >"$name.$st.actual" &&
		test_cmp "$name.$st.expect" "$name.$st.actual" || return 1
	done
}
