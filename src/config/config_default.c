/*
 * config_default: the configuration `fulmar serve` uses without --config:
 * a demo domain on loopback, everything under ./var: mx on 2525,
 * submission on 2587 (STARTTLS + AUTH), submissions on 2465 (implicit
 * TLS); the self-signed certificate is made at the first start; users are
 * added with `fulmar user add NAME`.
 */
#include "config/config.h"

const char config_default_text[] =
	"server = {\n"
	"  hostname = \"localhost\";\n"
	"  user = \"fulmar\";\n"
	"  state_dir = \"var/spool\";\n"
	"  log_file = \"var/log/fulmar.log\";\n"
	"};\n"
	"listeners = (\n"
	"  { address = \"127.0.0.1\"; port = 2525; role = \"mx\";\n"
	"    tls_cert = \"var/tls/cert.pem\"; tls_key = \"var/tls/key.pem\"; },\n"
	"  { address = \"127.0.0.1\"; port = 2587; role = \"submission\";\n"
	"    tls_cert = \"var/tls/cert.pem\"; tls_key = \"var/tls/key.pem\"; },\n"
	"  { address = \"127.0.0.1\"; port = 2465; role = \"submissions\";\n"
	"    tls_cert = \"var/tls/cert.pem\"; tls_key = \"var/tls/key.pem\"; }\n"
	");\n"
	"auth = { users_file = \"var/users\"; };\n"
	/* A loopback demo: no SPF/DKIM/DMARC lookups of its test senders. */
	"inbound = { checks = false; };\n"
	"local = {\n"
	"  domains = ( {\n"
	"    name = \"example.test\";\n"
	"    mailboxes = (\n"
	"      { user = \"alice\"; maildir = \"var/mail/example.test/alice\"; },\n"
	"      { user = \"bob\"; maildir = \"var/mail/example.test/bob\"; }\n"
	"    );\n"
	"    aliases = ( { name = \"postmaster\"; to = [ \"alice\" ]; } );\n"
	"  } );\n"
	"};\n";
