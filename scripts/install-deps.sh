#!/bin/sh
# Installs the Debian 12 packages Fulmar needs to build, run and test.
# Skips apt-get entirely when everything is already there.
set -eu

BUILD_PKGS="build-essential cmake pkg-config libevent-dev libconfig-dev zlib1g-dev libc-ares-dev libssl-dev libcrypt-dev libcmocka-dev publicsuffix"
TEST_PKGS="python3 python3-pytest python3-aiosmtpd swaks curl msmtp dovecot-imapd openssl libnet-ssleay-perl libio-socket-ssl-perl postfix python3-dkim opendkim-tools iproute2 publicsuffix clang libclang-rt-14-dev nmap"

want="$BUILD_PKGS"
[ "${1:-}" = "--test" ] && want="$BUILD_PKGS $TEST_PKGS"

missing=""
for p in $want; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing:$missing"
$SUDO apt-get update -q
# Postfix (a real receiving MTA for tests/outbound) without a system
# configuration: no question asked, no main.cf, nothing on port 25.
case " $missing " in *" postfix "*)
	echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections ;;
esac
# Services from these packages (dovecot) must not start on their own.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
