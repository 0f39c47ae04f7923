#!/bin/bash
# setup-deps.sh: install the Debian packages the build and the tests need,
# if any is missing (quick, and does nothing, when all are there).
#
# Debian's cyrus-imapd starts a system-wide master when installed; that is
# prevented with a temporary /usr/sbin/policy-rc.d (exit 101), and a system
# master this script caused to start is stopped again.  The tests never use
# the system instance: they start a private one (tests/lib/instance.sh).
#
# Run as root, or with sudo available.  SETUP_DEPS_DRY_RUN=1 only lists what
# is missing.

set -euo pipefail

PACKAGES=(
	build-essential pkg-config
	libreadline-dev libssl-dev libsasl2-dev libncurses-dev zlib1g-dev
	cyrus-imapd cyrus-admin cyrus-clients cyrus-common
	sasl2-bin libsasl2-modules libsasl2-modules-db
	perl python3 procps util-linux coreutils diffutils findutils time
	openssl
	krb5-kdc krb5-admin-server krb5-user libsasl2-modules-gssapi-mit strace
)

missing=()
while read -r pkg status; do
	[ "$status" = installed ] || missing+=("$pkg")
done < <(dpkg-query -W -f='${Package} ${db:Status-Status}\n' \
	"${PACKAGES[@]}" 2>/dev/null || true)
# dpkg-query prints nothing for packages it never heard of.
for pkg in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null |
		grep -q '^installed$' || {
		case " ${missing[*]-} " in
		*" $pkg "*) ;;
		*) missing+=("$pkg") ;;
		esac
	}
done

if [ ${#missing[@]} = 0 ]; then
	exit 0
fi
echo "setup-deps: missing Debian packages: ${missing[*]}" >&2
if [ "${SETUP_DEPS_DRY_RUN:-0}" = 1 ]; then
	exit 1
fi

if [ "$(id -u)" = 0 ]; then
	SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
	SUDO=(sudo -n)
else
	echo "setup-deps: not root and no sudo; install them by hand:" >&2
	echo "    apt-get install ${missing[*]}" >&2
	exit 1
fi

had_cyrus=0
dpkg-query -W -f='${db:Status-Status}' cyrus-imapd 2>/dev/null |
	grep -q '^installed$' && had_cyrus=1

# Keep package scripts from starting services (invoke-rc.d asks this).
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
	"${SUDO[@]}" sh -c "printf '#!/bin/sh\nexit 101\n' >$policy &&
		chmod 755 $policy"
	made_policy=1
fi
cleanup()
{
	if [ $made_policy = 1 ]; then
		"${SUDO[@]}" rm -f "$policy"
	fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	--no-install-recommends "${missing[@]}"

# If installing cyrus-imapd started the system master anyway (no
# policy-rc.d honoured), stop it: only the one this install started, found
# by Debian's pid file.
if [ $had_cyrus = 0 ] && [ -s /run/cyrus-master.pid ]; then
	pid=$(cat /run/cyrus-master.pid)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		echo "setup-deps: stopping the system Cyrus master ($pid)" \
			"started by the install" >&2
		"${SUDO[@]}" kill -TERM "$pid" || true
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
	fi
fi
exit 0
