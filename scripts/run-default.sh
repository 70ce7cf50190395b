#!/bin/sh
# Runs Fulmar in the foreground on its embedded default configuration:
# 127.0.0.1:2525, mail for example.test delivered under ./var/mail.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" -eq 0 ] && ! id fulmar >/dev/null 2>&1; then
	# Started as root, Fulmar drops to this unprivileged user.
	useradd --system --no-create-home --shell /usr/sbin/nologin fulmar
fi
exec ./build/fulmar serve "$@"
