/*
 * config_default: the configuration `fulmar serve` uses without --config:
 * a demo domain on loopback, everything under ./var.
 */
#include "config/config.h"

const char config_default_text[] =
	"server = {\n"
	"  hostname = \"localhost\";\n"
	"  user = \"fulmar\";\n"
	"  state_dir = \"var/spool\";\n"
	"  log_file = \"var/log/fulmar.log\";\n"
	"};\n"
	"listeners = ( { address = \"127.0.0.1\"; port = 2525; role = \"mx\"; } );\n"
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
