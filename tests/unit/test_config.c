/*
 * Unit tests for config: config_load_file on temporary files. A minimal
 * file loads with every default applied; every kind of mistake is
 * reported as "file:LINE: message" with the line of the mistake, and all
 * mistakes of a file are reported in one load; relative paths become
 * absolute from the working directory; the lookups find lower-cased
 * names; the embedded default configuration loads.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "lib/log.h"

static char tmpdir[PATH_MAX];
static char path[PATH_MAX + 32];
static int nfiles;

static int group_setup(void **state)
{
	(void)state;
	char t[] = "/tmp/fulmar-test-config-XXXXXX";
	if (mkdtemp(t) == NULL)
		return -1;
	snprintf(tmpdir, sizeof(tmpdir), "%s", t);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	char p[PATH_MAX + 32];
	for (int i = 0; i < nfiles; i++) {
		snprintf(p, sizeof(p), "%s/c%d.conf", tmpdir, i);
		unlink(p);
	}
	unlink(path);
	return rmdir(tmpdir);
}

/* Write text to a new file; its name is left in `path`. */
static void write_conf(const char *text)
{
	snprintf(path, sizeof(path), "%s/c%d.conf", tmpdir, nfiles++);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static struct config *load(const char *text, struct config_errors *errs)
{
	memset(errs, 0, sizeof(*errs));
	write_conf(text);
	return config_load_file(path, errs);
}

static void dump(const struct config_errors *errs)
{
	for (size_t i = 0; i < errs->count; i++)
		print_error("  [%zu] %s\n", i, errs->items[i]);
}

/* Whether there is an error "PATH:LINE: ..." that contains `part`;
 * prints what there is when not. */
static bool has_error(const struct config_errors *errs, int line, const char *part)
{
	char prefix[PATH_MAX + 64];
	snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
	for (size_t i = 0; i < errs->count; i++)
		if (strncmp(errs->items[i], prefix, strlen(prefix)) == 0 &&
		    strstr(errs->items[i] + strlen(prefix), part) != NULL)
			return true;
	print_error("wanted an error \"%s...%s\"; got:\n", prefix, part);
	dump(errs);
	return false;
}

static void expect_error(const struct config_errors *errs, int line, const char *part)
{
	if (!has_error(errs, line, part))
		fail();
}

/* Exactly one error, on this line, saying this. */
static void expect_only_error(const char *text, int line, const char *part)
{
	struct config_errors errs;
	struct config *cfg = load(text, &errs);
	bool ok = cfg == NULL && has_error(&errs, line, part);
	size_t count = errs.count;
	if (ok && count != 1) {
		print_error("wanted one error; got %zu:\n", count);
		dump(&errs);
	}
	config_unref(cfg);
	config_errors_free(&errs); /* before failing: no leak reports */
	assert_true(ok);
	assert_int_equal(count, 1);
}

static struct config *load_ok(const char *text)
{
	struct config_errors errs;
	struct config *cfg = load(text, &errs);
	if (cfg == NULL || errs.count) {
		dump(&errs);
		fail_msg("config did not load");
	}
	config_errors_free(&errs);
	return cfg;
}

#define LISTENER "listeners = ( { address = \"127.0.0.1\"; port = 2525; } );\n"

static void test_minimal_defaults(void **state)
{
	(void)state;
	struct config *cfg = load_ok(LISTENER);
	char cwd[PATH_MAX], want[PATH_MAX + 32];
	assert_non_null(getcwd(cwd, sizeof(cwd)));

	assert_int_equal(cfg->refs, 1);
	assert_string_equal(cfg->source, path);
	assert_non_null(cfg->hostname); /* from gethostname() */
	assert_true(cfg->hostname[0] != '\0');
	assert_null(cfg->user);
	snprintf(want, sizeof(want), "%s/var/spool", cwd);
	assert_string_equal(cfg->state_dir, want);
	assert_null(cfg->log_file);
	assert_int_equal(cfg->log_level, LOG_INFO);

	assert_int_equal(cfg->limits.command_line, 512);
	assert_int_equal(cfg->limits.text_line, 1000);
	assert_int_equal(cfg->limits.message_size, 36700160);
	assert_int_equal(cfg->limits.recipients, 1000);
	assert_int_equal(cfg->limits.errors, 20);
	assert_int_equal(cfg->limits.connections, 10000);
	assert_int_equal(cfg->limits.connections_per_ip, 50);
	assert_true(cfg->timeouts.command == 300.0);
	assert_true(cfg->timeouts.data == 300.0);
	assert_true(cfg->timeouts.session == 3600.0);
	assert_true(cfg->timeouts.shutdown == 30.0);
	assert_string_equal(cfg->recipient_delimiter, "+");

	assert_int_equal(cfg->nlisteners, 1);
	assert_string_equal(cfg->listeners[0].address, "127.0.0.1");
	assert_int_equal(cfg->listeners[0].port, 2525);
	assert_int_equal(cfg->listeners[0].role, ROLE_MX);
	assert_int_equal(cfg->listeners[0].line, 1);
	assert_int_equal(cfg->ndomains, 0);
	assert_int_equal(cfg->nmailboxes, 0);
	assert_int_equal(cfg->naliases, 0);
	config_unref(cfg);
}

static const char full_text[] =
	"# a full configuration\n"                                /* 1 */
	"server = {\n"                                             /* 2 */
	"  hostname = \"MX1.Example.TEST\";\n"                     /* 3 */
	"  user = \"mail\";\n"                                     /* 4 */
	"  state_dir = \"/var/lib/fulmar\";\n"                     /* 5 */
	"  log_file = \"log/fulmar.log\";\n"                       /* 6 */
	"  log_level = \"debug\";\n"                               /* 7 */
	"};\n"                                                     /* 8 */
	"limits = {\n"                                             /* 9 */
	"  command_line = 1024; text_line = 2000;\n"               /* 10 */
	"  message_size = 1048576L; recipients = 5;\n"             /* 11 */
	"  errors = 3; connections = 7; connections_per_ip = 2;\n" /* 12 */
	"};\n"                                                     /* 13 */
	"timeouts = { command = 1.5; data = 60; session = 7200; shutdown = 0; };\n"
	"listeners = (\n"                                          /* 15 */
	"  { address = \"127.0.0.1\"; port = 25; role = \"mx\"; },\n" /* 16 */
	"  { address = \"::1\"; port = 0; }\n"                     /* 17 */
	");\n"                                                     /* 18 */
	"local = {\n"                                              /* 19 */
	"  recipient_delimiter = \"+-\";\n"                        /* 20 */
	"  domains = (\n"                                          /* 21 */
	"    { name = \"Example.TEST\"; catch_all = \"Alice\";\n"  /* 22 */
	"      mailboxes = ( { user = \"Alice\"; maildir = \"mail/alice\"; },\n"
	"                    { user = \"bob\"; maildir = \"/srv/mail/bob\"; } );\n"
	"      aliases = ( { name = \"PostMaster\"; to = \"alice\"; },\n"
	"                  { name = \"team\"; to = [ \"alice\", \"Bob\", "
	"\"Carol@Other.TEST\" ]; } );\n"
	"    },\n"
	"    { name = \"other.test\"; }\n"
	"  );\n"
	"};\n";

static void test_full(void **state)
{
	(void)state;
	char cwd[PATH_MAX], want[PATH_MAX + 32];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	struct config *cfg = load_ok(full_text);

	assert_string_equal(cfg->hostname, "MX1.Example.TEST");
	assert_string_equal(cfg->user, "mail");
	assert_string_equal(cfg->state_dir, "/var/lib/fulmar");
	snprintf(want, sizeof(want), "%s/log/fulmar.log", cwd);
	assert_string_equal(cfg->log_file, want);
	assert_int_equal(cfg->log_level, LOG_DEBUG);
	assert_int_equal(cfg->limits.command_line, 1024);
	assert_int_equal(cfg->limits.text_line, 2000);
	assert_int_equal(cfg->limits.message_size, 1048576);
	assert_int_equal(cfg->limits.recipients, 5);
	assert_int_equal(cfg->limits.errors, 3);
	assert_int_equal(cfg->limits.connections, 7);
	assert_int_equal(cfg->limits.connections_per_ip, 2);
	assert_true(cfg->timeouts.command == 1.5);
	assert_true(cfg->timeouts.data == 60.0);
	assert_true(cfg->timeouts.session == 7200.0);
	assert_true(cfg->timeouts.shutdown == 0.0);
	assert_string_equal(cfg->recipient_delimiter, "+-");

	assert_int_equal(cfg->nlisteners, 2);
	assert_string_equal(cfg->listeners[0].address, "127.0.0.1");
	assert_int_equal(cfg->listeners[0].port, 25);
	assert_int_equal(cfg->listeners[0].line, 16);
	assert_string_equal(cfg->listeners[1].address, "::1");
	assert_int_equal(cfg->listeners[1].port, 0);
	assert_int_equal(cfg->listeners[1].role, ROLE_MX);
	assert_int_equal(cfg->listeners[1].line, 17);

	assert_int_equal(cfg->ndomains, 2);
	assert_string_equal(cfg->domains[0].name, "example.test");
	assert_string_equal(cfg->domains[0].catch_all, "alice@example.test");
	assert_string_equal(cfg->domains[1].name, "other.test");
	assert_null(cfg->domains[1].catch_all);

	assert_int_equal(cfg->nmailboxes, 2);
	const struct cfg_mailbox *mb = config_find_mailbox(cfg, "alice@example.test");
	assert_non_null(mb);
	snprintf(want, sizeof(want), "%s/mail/alice", cwd);
	assert_string_equal(mb->maildir, want);
	mb = config_find_mailbox(cfg, "bob@example.test");
	assert_non_null(mb);
	assert_string_equal(mb->maildir, "/srv/mail/bob");
	assert_null(config_find_mailbox(cfg, "Alice@example.test"));
	assert_null(config_find_mailbox(cfg, "alice@Example.TEST"));
	assert_null(config_find_mailbox(cfg, "alice"));
	assert_null(config_find_mailbox(cfg, "alice@other.test"));
	assert_null(config_find_mailbox(cfg, "postmaster@example.test"));

	assert_int_equal(cfg->naliases, 2);
	const struct cfg_alias *al = config_find_alias(cfg, "postmaster@example.test");
	assert_non_null(al);
	assert_int_equal(al->ntargets, 1);
	assert_string_equal(al->targets[0], "alice@example.test");
	al = config_find_alias(cfg, "team@example.test");
	assert_non_null(al);
	assert_int_equal(al->ntargets, 3);
	assert_string_equal(al->targets[0], "alice@example.test");
	assert_string_equal(al->targets[1], "bob@example.test");
	assert_string_equal(al->targets[2], "Carol@other.test" /* remote local part keeps its case */);
	assert_null(config_find_alias(cfg, "PostMaster@example.test"));
	assert_null(config_find_alias(cfg, "alice@example.test"));

	assert_non_null(config_find_domain(cfg, "example.test"));
	assert_non_null(config_find_domain(cfg, "other.test"));
	assert_null(config_find_domain(cfg, "Example.TEST"));
	assert_null(config_find_domain(cfg, "example"));
	assert_null(config_find_domain(cfg, "sub.example.test"));
	config_unref(cfg);
}

static void test_relative_paths_from_cwd(void **state)
{
	(void)state;
	char old[PATH_MAX], want[PATH_MAX + 64];
	assert_non_null(getcwd(old, sizeof(old)));
	assert_int_equal(chdir(tmpdir), 0);
	char here[PATH_MAX];
	assert_non_null(getcwd(here, sizeof(here)));
	struct config *cfg = load_ok(
		"server = { state_dir = \"spool\"; log_file = \"a/b.log\"; };\n" LISTENER
		"local = { domains = ( { name = \"d.test\"; mailboxes = (\n"
		"  { user = \"u\"; maildir = \"Maildir/u\"; } ); } ); };\n");
	assert_int_equal(chdir(old), 0);
	snprintf(want, sizeof(want), "%s/spool", here);
	assert_string_equal(cfg->state_dir, want);
	snprintf(want, sizeof(want), "%s/a/b.log", here);
	assert_string_equal(cfg->log_file, want);
	snprintf(want, sizeof(want), "%s/Maildir/u", here);
	assert_string_equal(config_find_mailbox(cfg, "u@d.test")->maildir, want);
	assert_true(cfg->state_dir[0] == '/');
	config_unref(cfg);
}

static void test_unknown_settings(void **state)
{
	(void)state;
	expect_only_error(LISTENER "\nfoo = 1;\n", 3, "unknown setting 'foo'");
	expect_only_error("server = {\n  hostname = \"a.test\";\n  colour = \"blue\";\n};\n"
			  LISTENER, 3, "server.colour");
	expect_only_error(LISTENER "limits = {\n\n  lines = 5;\n};\n", 4, "limits.lines");
	/* A setting of one group written in another. */
	expect_only_error(LISTENER "timeouts = { errors = 5; };\n", 2, "timeouts.errors");
	expect_only_error(LISTENER "local = {\n domain = ();\n};\n", 3, "local.domain");
	expect_only_error(LISTENER "server = 5;\n", 2, "server");
}

static void test_unknown_members(void **state)
{
	(void)state;
	expect_only_error("listeners = (\n { address = \"127.0.0.1\";\n   port = 25;\n"
			  "   tls = true; }\n);\n",
			  4, "unknown setting 'tls' in listener");
	expect_only_error(LISTENER "local = { domains = (\n { name = \"a.test\";\n"
			  "   mx = \"x\"; }\n); };\n",
			  4, "unknown setting 'mx' in domain");
	expect_only_error(LISTENER "local = { domains = ( { name = \"a.test\";\n"
			  " mailboxes = ( { user = \"u\";\n maildir = \"m\";\n"
			  " quota = 5; } ); } ); };\n",
			  5, "unknown setting 'quota' in mailbox");
	expect_only_error(LISTENER "local = { domains = ( { name = \"a.test\";\n"
			  " aliases = ( { name = \"u\";\n to = \"x\";\n"
			  " cc = \"y\"; } ); } ); };\n",
			  5, "unknown setting 'cc' in alias");
}

static void test_wrong_types(void **state)
{
	(void)state;
	expect_only_error(LISTENER "limits = {\n  recipients = \"many\";\n};\n", 3,
			  "limits.recipients must be a number");
	expect_only_error(LISTENER "server = {\n  hostname = 5;\n};\n", 3,
			  "server.hostname must be a string");
	expect_only_error(LISTENER "timeouts = {\n\n  command = true;\n};\n", 4,
			  "timeouts.command must be a number");
	expect_only_error(LISTENER "server = {\n  log_level = \"loud\";\n};\n", 3,
			  "server.log_level");
	expect_only_error(LISTENER "server = {\n  log_level = 1;\n};\n", 3,
			  "server.log_level");
	expect_only_error("listeners = (\n { address = \"127.0.0.1\";\n"
			  "   port = \"25\"; }\n);\n",
			  3, "'port' must be an integer");
	expect_only_error("listeners = (\n { address = 127;\n"
			  "   port = 25; }\n);\n",
			  2, "'address' must be a string");
	expect_only_error("listeners = { address = \"127.0.0.1\"; port = 25; };\n", 1,
			  "listeners must be a list");
	expect_only_error(LISTENER "local = {\n domains = { name = \"a.test\"; };\n};\n",
			  3, "local.domains must be a list");
}

static void test_numbers_out_of_range(void **state)
{
	(void)state;
	static const struct {
		const char *setting;
		const char *value;
	} cases[] = {
		{ "limits.command_line", "511" },   { "limits.command_line", "65537" },
		{ "limits.text_line", "999" },      { "limits.text_line", "1048577" },
		{ "limits.message_size", "1023" },  { "limits.message_size", "4294967297L" },
		{ "limits.recipients", "0" },       { "limits.recipients", "100001" },
		{ "limits.errors", "0" },           { "limits.errors", "1001" },
		{ "limits.errors", "-1" },          { "limits.errors", "2.5" },
		{ "limits.connections", "0" },      { "limits.connections_per_ip", "0" },
		{ "timeouts.command", "0" },        { "timeouts.command", "86401" },
		{ "timeouts.data", "0.001" },       { "timeouts.session", "604801" },
		{ "timeouts.shutdown", "-1" },      { "timeouts.shutdown", "3601" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[512], group[32];
		const char *dot = strchr(cases[i].setting, '.');
		snprintf(group, sizeof(group), "%.*s", (int)(dot - cases[i].setting),
			 cases[i].setting);
		snprintf(text, sizeof(text), LISTENER "%s = {\n\n  %s = %s;\n};\n", group,
			 dot + 1, cases[i].value);
		expect_only_error(text, 4, cases[i].setting);
	}
	/* The bounds themselves are allowed. */
	struct config *cfg = load_ok(
		LISTENER "limits = { command_line = 65536; text_line = 1048576;\n"
		"  message_size = 4294967296L; recipients = 1; errors = 1000; };\n"
		"timeouts = { command = 0.01; shutdown = 0; session = 604800; };\n");
	assert_int_equal(cfg->limits.command_line, 65536);
	assert_int_equal(cfg->limits.text_line, 1048576);
	assert_int_equal(cfg->limits.message_size, 4294967296ULL);
	assert_int_equal(cfg->limits.recipients, 1);
	assert_int_equal(cfg->limits.errors, 1000);
	assert_true(cfg->timeouts.command == 0.01);
	assert_true(cfg->timeouts.session == 604800.0);
	config_unref(cfg);
	/* An integral float is a count. */
	cfg = load_ok(LISTENER "limits = { recipients = 20.0; };\n");
	assert_int_equal(cfg->limits.recipients, 20);
	config_unref(cfg);
}

static void test_listener_errors(void **state)
{
	(void)state;
	expect_only_error("listeners = (\n { address = \"127.0.0.1\"; port = 25; },\n"
			  " { address = \"::1\"; port = 26;\n   role = \"relay\"; }\n);\n",
			  4, "unknown role 'relay'");
	expect_only_error("listeners = (\n { address = \"::1\"; port = 25;\n"
			  "   auth = \"yes\"; }\n);\n",
			  3, "'auth' must be true or false");
	/* Paths are bounded: file names built from them must fit PATH_MAX. */
	{
		char text[1400];
		snprintf(text, sizeof(text), LISTENER "server = {\n  state_dir = \"/%01100d\";\n};\n",
			 0);
		expect_only_error(text, 3, "path too long");
	}
	/* Implicit TLS without a certificate cannot work. */
	expect_only_error("listeners = (\n { address = \"::1\"; port = 465;\n"
			  "   role = \"submissions\"; }\n);\n",
			  2, "needs tls_cert and tls_key");
	expect_only_error("listeners = (\n { address = \"127.0.0.1\"; port = 25; },\n"
			  " { address = \"::1\"; }\n);\n",
			  3, "missing 'port'");
	expect_only_error("listeners = (\n { port = 25; }\n);\n", 2, "missing 'address'");
	expect_only_error("listeners = (\n { address = \"::1\";\n   port = 65536; }\n);\n",
			  3, "'port' must be between 0 and 65535");
	expect_only_error("listeners = (\n { address = \"::1\";\n   port = -1; }\n);\n",
			  3, "'port' must be between 0 and 65535");
	expect_only_error("listeners = (\n \"127.0.0.1:25\" );\n", 2,
			  "each listener must be a group");
	/* No listeners at all: reported (there is no line to point at). */
	struct config_errors errs;
	assert_null(load("server = { hostname = \"a.test\"; };\n", &errs));
	assert_int_equal(errs.count, 1);
	assert_non_null(strstr(errs.items[0], "no listeners"));
	assert_int_equal(strncmp(errs.items[0], path, strlen(path)), 0);
	config_errors_free(&errs);
}

static void test_hostname_invalid(void **state)
{
	(void)state;
	expect_only_error(LISTENER "server = {\n  hostname = \"bad host\";\n};\n", 3,
			  "not a valid domain name");
	expect_only_error(LISTENER "server = {\n  hostname = \"a..b\";\n};\n", 3,
			  "not a valid domain name");
}

static const char dom_head[] = LISTENER "local = {\n  domains = (\n    { name = \"example.test\";\n";
/* dom_head has 4 lines: the next line is 5. */

static void test_domain_errors(void **state)
{
	(void)state;
	char text[1024];
	expect_only_error(LISTENER "local = {\n  domains = (\n    { name = \"bad domain\"; }\n"
			  "  );\n};\n",
			  4, "'bad domain' is not a valid domain name");
	expect_only_error(LISTENER "local = {\n  domains = (\n    { name = \"-x.test\"; }\n"
			  "  );\n};\n",
			  4, "not a valid domain name");
	expect_only_error(LISTENER "local = {\n  domains = (\n    { name = \"[192.0.2.1]\"; }\n"
			  "  );\n};\n",
			  4, "not a valid domain name");
	expect_only_error(LISTENER "local = {\n  domains = (\n    { name = \"a.test\"; },\n"
			  "    { name = \"A.Test\"; }\n  );\n};\n",
			  5, "domain 'a.test' is defined twice");
	expect_only_error(LISTENER "local = {\n  domains = (\n    { catch_all = \"x\"; }\n"
			  "  );\n};\n",
			  4, "missing 'name'");
	snprintf(text, sizeof(text), "%s      catch_all = \"a b\"; }\n  );\n};\n", dom_head);
	expect_only_error(text, 5, "catch_all 'a b' is not a valid address");
	snprintf(text, sizeof(text), "%s      catch_all = \"x@bad..domain\"; }\n  );\n};\n",
		 dom_head);
	expect_only_error(text, 5, "catch_all");
	snprintf(text, sizeof(text), "%s      mailboxes = { user = \"a\"; }; }\n  );\n};\n",
		 dom_head);
	expect_only_error(text, 5, "mailboxes must be a list");
	snprintf(text, sizeof(text), "%s      aliases = 5; }\n  );\n};\n", dom_head);
	expect_only_error(text, 5, "aliases must be a list");
}

static void test_mailbox_errors(void **state)
{
	(void)state;
	char text[1024];
	snprintf(text, sizeof(text),
		 "%s      mailboxes = (\n        { user = \"alice\"; maildir = \"m/a\"; },\n"
		 "        { user = \"Alice\"; maildir = \"m/b\"; }\n      ); }\n  );\n};\n",
		 dom_head);
	expect_only_error(text, 7, "'alice@example.test' is defined twice");
	snprintf(text, sizeof(text),
		 "%s      mailboxes = (\n        { user = \"a b\"; maildir = \"m/a\"; }\n"
		 "      ); }\n  );\n};\n",
		 dom_head);
	expect_only_error(text, 6, "mailbox user 'a b' is not a valid local part");
	snprintf(text, sizeof(text),
		 "%s      mailboxes = (\n        { user = \"a@b\"; maildir = \"m/a\"; }\n"
		 "      ); }\n  );\n};\n",
		 dom_head);
	expect_only_error(text, 6, "not a valid local part");
	snprintf(text, sizeof(text),
		 "%s      mailboxes = (\n        { user = \"a\"; maildir = \"\"; }\n"
		 "      ); }\n  );\n};\n",
		 dom_head);
	expect_only_error(text, 6, "maildir must not be empty");
	snprintf(text, sizeof(text),
		 "%s      mailboxes = (\n        { user = \"a\"; }\n      ); }\n  );\n};\n",
		 dom_head);
	expect_only_error(text, 6, "missing 'maildir'");
	/* The same user in two domains is fine. */
	struct config *cfg = load_ok(
		LISTENER "local = { domains = (\n"
		" { name = \"a.test\"; mailboxes = ( { user = \"u\"; maildir = \"/m/1\"; } ); },\n"
		" { name = \"b.test\"; mailboxes = ( { user = \"u\"; maildir = \"/m/2\"; } ); }\n"
		"); };\n");
	assert_string_equal(config_find_mailbox(cfg, "u@a.test")->maildir, "/m/1");
	assert_string_equal(config_find_mailbox(cfg, "u@b.test")->maildir, "/m/2");
	config_unref(cfg);
}

static void test_alias_errors(void **state)
{
	(void)state;
	char text[1024];
	/* An alias with a mailbox's name. */
	snprintf(text, sizeof(text),
		 "%s      mailboxes = ( { user = \"alice\"; maildir = \"m/a\"; } );\n"
		 "      aliases = (\n        { name = \"ALICE\"; to = \"bob@x.test\"; }\n"
		 "      ); }\n  );\n};\n",
		 dom_head);
	expect_only_error(text, 7, "'alice@example.test' is defined twice");
	/* Alias defined twice. */
	snprintf(text, sizeof(text),
		 "%s      aliases = (\n        { name = \"a\"; to = \"b@x.test\"; },\n"
		 "        { name = \"a\"; to = \"c@x.test\"; }\n      ); }\n  );\n};\n",
		 dom_head);
	expect_only_error(text, 7, "'a@example.test' is defined twice");
	/* Invalid targets, each on its own line. */
	snprintf(text, sizeof(text),
		 "%s      aliases = (\n        { name = \"a\"; to = [\n"
		 "          \"ok@x.test\",\n"
		 "          \"x@bad..test\" ]; }\n"
		 "      ); }\n  );\n};\n",
		 dom_head);
	expect_only_error(text, 8, "alias target 'x@bad..test' is not a valid address");
	snprintf(text, sizeof(text),
		 "%s      aliases = (\n        { name = \"a\";\n          to = \"sp ace\"; }\n"
		 "      ); }\n  );\n};\n",
		 dom_head);
	expect_only_error(text, 7, "is not a valid address");
	snprintf(text, sizeof(text),
		 "%s      aliases = (\n        { name = \"a\";\n          to = \"x@\"; }\n"
		 "      ); }\n  );\n};\n",
		 dom_head);
	expect_only_error(text, 7, "is not a valid address");
	snprintf(text, sizeof(text),
		 "%s      aliases = (\n        { name = \"a\";\n          to = [ ]; }\n"
		 "      ); }\n  );\n};\n",
		 dom_head);
	expect_only_error(text, 7, "'to' must be a string or a non-empty array");
	snprintf(text, sizeof(text),
		 "%s      aliases = (\n        { name = \"a\";\n          to = 5; }\n"
		 "      ); }\n  );\n};\n",
		 dom_head);
	expect_only_error(text, 7, "'to' must be a string or a non-empty array");
	snprintf(text, sizeof(text),
		 "%s      aliases = (\n        { name = \"a\"; }\n      ); }\n  );\n};\n",
		 dom_head);
	expect_only_error(text, 6, "missing 'to'");
	snprintf(text, sizeof(text),
		 "%s      aliases = (\n        { name = \"a b\"; to = \"x\"; }\n"
		 "      ); }\n  );\n};\n",
		 dom_head);
	expect_only_error(text, 6, "alias name 'a b' is not a valid local part");
	snprintf(text, sizeof(text),
		 "%s      aliases = (\n        { name = \"a\"; to = ( \"x\",\n"
		 "          7 ); }\n      ); }\n  );\n};\n",
		 dom_head);
	expect_only_error(text, 7, "alias targets must be strings");
}

static void test_recipient_delimiter(void **state)
{
	(void)state;
	struct config *cfg = load_ok(LISTENER "local = { recipient_delimiter = \"\"; };\n");
	assert_string_equal(cfg->recipient_delimiter, "");
	config_unref(cfg);
	cfg = load_ok(LISTENER "local = { recipient_delimiter = \"+-_=.\"; };\n");
	assert_string_equal(cfg->recipient_delimiter, "+-_=.");
	config_unref(cfg);
	/*
	 * Invalid delimiters, reported on the setting's line (3).
	 * BUG: config.c load_scalars() reports these with a NULL setting, so
	 * the message says "file:0:", and once per bad character.
	 */
	static const char *const bad[] = { "@", "a", " ", "\\\\", "\\\"", "+x", "ab" };
	size_t nbad = 0;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[256];
		struct config_errors errs;
		snprintf(text, sizeof(text),
			 LISTENER "local = {\n  recipient_delimiter = \"%s\";\n};\n", bad[i]);
		assert_null(load(text, &errs)); /* refused in any case */
		assert_true(errs.count >= 1);
		if (!has_error(&errs, 3, "recipient_delimiter") || errs.count != 1) {
			print_error("recipient_delimiter \"%s\": %zu error(s), want 1 "
				    "on line 3\n", bad[i], errs.count);
			nbad++;
		}
		config_errors_free(&errs);
	}
	if (nbad)
		fail_msg("%zu invalid recipient_delimiter values not reported as "
			 "file:3: once", nbad);
}

static void test_many_errors_at_once(void **state)
{
	(void)state;
	static const char text[] =
		"server = {\n"                                        /* 1 */
		"  hostname = \"no way\";\n"                          /* 2 */
		"  bogus = 1;\n"                                      /* 3 */
		"};\n"                                                /* 4 */
		"limits = {\n"                                        /* 5 */
		"  recipients = 0;\n"                                 /* 6 */
		"  errors = \"x\";\n"                                 /* 7 */
		"};\n"                                                /* 8 */
		"listeners = (\n"                                     /* 9 */
		"  { address = \"::1\";\n"                            /* 10 */
		"    role = \"relay\"; port = 25; },\n"               /* 11 */
		"  { address = \"::1\"; }\n"                          /* 12 */
		");\n"                                                /* 13 */
		"local = { domains = (\n"                             /* 14 */
		"  { name = \"a.test\";\n"                            /* 15 */
		"    mailboxes = ( { user = \"u\"; maildir = \"m\"; },\n" /* 16 */
		"                  { user = \"u\"; maildir = \"n\"; } );\n" /* 17 */
		"    aliases = ( { name = \"x\"; to = \"y@..\"; } ); },\n"   /* 18 */
		"  { name = \"b..test\"; }\n"                         /* 19 */
		"); };\n"                                             /* 20 */
		"extra = 1;\n";                                       /* 21 */
	struct config_errors errs;
	struct config *cfg = load(text, &errs);
	assert_null(cfg);
	expect_error(&errs, 2, "hostname");
	expect_error(&errs, 3, "server.bogus");
	expect_error(&errs, 6, "limits.recipients");
	expect_error(&errs, 7, "limits.errors");
	expect_error(&errs, 11, "unknown role 'relay'");
	expect_error(&errs, 12, "missing 'port'");
	expect_error(&errs, 17, "defined twice");
	expect_error(&errs, 18, "alias target");
	expect_error(&errs, 19, "not a valid domain name");
	expect_error(&errs, 21, "unknown setting 'extra'");
	if (errs.count != 10) {
		dump(&errs);
		fail_msg("wanted 10 errors, got %zu", errs.count);
	}
	config_errors_free(&errs);
}

static void test_errors_appended(void **state)
{
	(void)state;
	/* The loader appends to an error list that already has entries. */
	struct config_errors errs;
	assert_null(load(LISTENER "a = 1;\n", &errs));
	assert_int_equal(errs.count, 1);
	write_conf(LISTENER "b = 1;\n");
	assert_null(config_load_file(path, &errs));
	assert_int_equal(errs.count, 2);
	assert_non_null(strstr(errs.items[0], "'a'"));
	assert_non_null(strstr(errs.items[1], "'b'"));
	config_errors_free(&errs);
	assert_int_equal(errs.count, 0);
	assert_null(errs.items);
}

static void test_syntax_error(void **state)
{
	(void)state;
	struct config_errors errs;
	assert_null(load(LISTENER "server = {\n  hostname = ;\n};\n", &errs));
	assert_int_equal(errs.count, 1);
	expect_error(&errs, 3, "");
	config_errors_free(&errs);

	assert_null(load(LISTENER "\n\n\nlimits = { errors = = 5; };\n", &errs));
	assert_int_equal(errs.count, 1);
	expect_error(&errs, 5, "");
	config_errors_free(&errs);

	assert_null(load("listeners = ( { address = ; } );\n" LISTENER, &errs));
	assert_int_equal(errs.count, 1);
	expect_error(&errs, 1, "");
	config_errors_free(&errs);
}

static void test_missing_file(void **state)
{
	(void)state;
	struct config_errors errs = { 0 };
	char missing[PATH_MAX + 32];
	snprintf(missing, sizeof(missing), "%s/does-not-exist.conf", tmpdir);
	assert_null(config_load_file(missing, &errs));
	assert_int_equal(errs.count, 1);
	char prefix[PATH_MAX + 64];
	snprintf(prefix, sizeof(prefix), "%s:0: ", missing);
	assert_int_equal(strncmp(errs.items[0], prefix, strlen(prefix)), 0);
	assert_non_null(strstr(errs.items[0], "cannot read"));
	config_errors_free(&errs);
}

static void test_empty_file(void **state)
{
	(void)state;
	/* Nothing at all: only the missing listeners are an error. */
	struct config_errors errs;
	assert_null(load("", &errs));
	assert_int_equal(errs.count, 1);
	assert_non_null(strstr(errs.items[0], "listeners"));
	config_errors_free(&errs);
}

static void test_load_default(void **state)
{
	(void)state;
	struct config_errors errs = { 0 };
	struct config *cfg = config_load_default(&errs);
	if (cfg == NULL)
		dump(&errs);
	assert_non_null(cfg);
	assert_int_equal(errs.count, 0);
	assert_string_equal(cfg->source, "(default)");
	assert_string_equal(cfg->hostname, "localhost");
	assert_string_equal(cfg->user, "fulmar");
	char cwd[PATH_MAX], want[PATH_MAX + 64];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	snprintf(want, sizeof(want), "%s/var/spool", cwd);
	assert_string_equal(cfg->state_dir, want);
	snprintf(want, sizeof(want), "%s/var/log/fulmar.log", cwd);
	assert_string_equal(cfg->log_file, want);
	assert_int_equal(cfg->nlisteners, 3); /* mx 2525, submission 2587, submissions 2465 */
	assert_string_equal(cfg->listeners[0].address, "127.0.0.1");
	assert_int_equal(cfg->listeners[0].port, 2525);
	assert_int_equal(cfg->listeners[0].role, ROLE_MX);
	assert_int_equal(cfg->listeners[1].port, 2587);
	assert_int_equal(cfg->listeners[1].role, ROLE_SUBMISSION);
	assert_int_equal(cfg->listeners[2].port, 2465);
	assert_int_equal(cfg->listeners[2].role, ROLE_SUBMISSIONS);
	snprintf(want, sizeof(want), "%s/var/tls/cert.pem", cwd);
	assert_string_equal(cfg->listeners[2].tls_cert, want);
	assert_true(config_is_default(cfg));
	assert_non_null(config_find_domain(cfg, "example.test"));
	const struct cfg_mailbox *mb = config_find_mailbox(cfg, "alice@example.test");
	assert_non_null(mb);
	snprintf(want, sizeof(want), "%s/var/mail/example.test/alice", cwd);
	assert_string_equal(mb->maildir, want);
	assert_non_null(config_find_mailbox(cfg, "bob@example.test"));
	const struct cfg_alias *al = config_find_alias(cfg, "postmaster@example.test");
	assert_non_null(al);
	assert_int_equal(al->ntargets, 1);
	assert_string_equal(al->targets[0], "alice@example.test");
	assert_int_equal(cfg->limits.command_line, 512);
	config_unref(cfg);
}

static void test_refcount(void **state)
{
	(void)state;
	struct config *cfg = load_ok(LISTENER);
	assert_ptr_equal(config_ref(cfg), cfg);
	assert_int_equal(cfg->refs, 2);
	config_unref(cfg);
	assert_int_equal(cfg->refs, 1);
	assert_string_equal(cfg->listeners[0].address, "127.0.0.1"); /* still alive */
	config_unref(cfg); /* freed: ASan would see a leak otherwise */
	config_unref(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimal_defaults),
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_relative_paths_from_cwd),
		cmocka_unit_test(test_unknown_settings),
		cmocka_unit_test(test_unknown_members),
		cmocka_unit_test(test_wrong_types),
		cmocka_unit_test(test_numbers_out_of_range),
		cmocka_unit_test(test_listener_errors),
		cmocka_unit_test(test_hostname_invalid),
		cmocka_unit_test(test_domain_errors),
		cmocka_unit_test(test_mailbox_errors),
		cmocka_unit_test(test_alias_errors),
		cmocka_unit_test(test_recipient_delimiter),
		cmocka_unit_test(test_many_errors_at_once),
		cmocka_unit_test(test_errors_appended),
		cmocka_unit_test(test_syntax_error),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_empty_file),
		cmocka_unit_test(test_load_default),
		cmocka_unit_test(test_refcount),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
