/*
 * config: loads and validates the configuration (config.h). The scalar
 * settings are one table (group, name, type, default, bounds); the lists
 * (listeners, domains with their mailboxes and aliases) have their own
 * checks below. Every problem is reported as file:line; loading goes on
 * after an error so one run of check-config shows them all.
 */
#include "config/config.h"
#include "config/config_load.h"

#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/tls.h"
#include "lib/xalloc.h"
#include "proto/smtp_addr.h"

enum setting_type { T_STRING, T_COUNT, T_SECONDS, T_LOGLEVEL, T_BOOL };

struct setting {
	const char *group;
	const char *name;
	enum setting_type type;
	size_t offset;
	const char *def_string; /* T_STRING, T_LOGLEVEL */
	double def_number;      /* T_COUNT, T_SECONDS */
	double min, max;
	bool is_path;
};

#define OFF(field) offsetof(struct config, field)

static const struct setting settings[] = {
	{ "server", "hostname", T_STRING, OFF(hostname), NULL, 0, 0, 0, false },
	{ "server", "user", T_STRING, OFF(user), NULL, 0, 0, 0, false },
	{ "server", "state_dir", T_STRING, OFF(state_dir), "var/spool", 0, 0, 0, true },
	{ "server", "log_file", T_STRING, OFF(log_file), NULL, 0, 0, 0, true },
	{ "server", "log_level", T_LOGLEVEL, OFF(log_level), "info", 0, 0, 0, false },
	{ "limits", "command_line", T_COUNT, OFF(limits.command_line), NULL, 512, 512, 65536, false },
	{ "limits", "text_line", T_COUNT, OFF(limits.text_line), NULL, 1000, 1000, 1048576, false },
	{ "limits", "message_size", T_COUNT, OFF(limits.message_size), NULL, 36700160, 1024, 4294967296.0, false },
	{ "limits", "recipients", T_COUNT, OFF(limits.recipients), NULL, 1000, 1, 100000, false },
	{ "limits", "errors", T_COUNT, OFF(limits.errors), NULL, 20, 1, 1000, false },
	{ "limits", "connections", T_COUNT, OFF(limits.connections), NULL, 10000, 1, 1000000, false },
	{ "limits", "connections_per_ip", T_COUNT, OFF(limits.connections_per_ip), NULL, 50, 1, 1000000, false },
	{ "timeouts", "command", T_SECONDS, OFF(timeouts.command), NULL, 300, 0.01, 86400, false },
	{ "timeouts", "data", T_SECONDS, OFF(timeouts.data), NULL, 300, 0.01, 86400, false },
	{ "timeouts", "session", T_SECONDS, OFF(timeouts.session), NULL, 3600, 0.01, 604800, false },
	{ "timeouts", "shutdown", T_SECONDS, OFF(timeouts.shutdown), NULL, 30, 0, 3600, false },
	{ "timeouts", "tls_handshake", T_SECONDS, OFF(timeouts.tls_handshake), NULL, 30, 0.01, 3600, false },
	{ "local", "recipient_delimiter", T_STRING, OFF(recipient_delimiter), "+", 0, 0, 0, false },
	{ "local", "deliver_at_receipt", T_BOOL, OFF(deliver_at_receipt), NULL, 1, 0, 1, false },
	{ "queue", "retry_first", T_SECONDS, OFF(queue.retry_first), NULL, 300, 1, 86400, false },
	{ "queue", "retry_max", T_SECONDS, OFF(queue.retry_max), NULL, 3600, 1, 604800, false },
	{ "queue", "max_lifetime", T_SECONDS, OFF(queue.max_lifetime), NULL, 432000, 1, 31536000, false },
	{ "queue", "delay_warning", T_SECONDS, OFF(queue.delay_warning), NULL, 14400, 0, 31536000, false },
	{ "queue", "min_free", T_COUNT, OFF(queue.min_free), NULL, 104857600, 0, 1e15, false },
	{ "queue", "prepared_files", T_COUNT, OFF(queue.prepared_files), NULL, 128, 0, 4096, false },
	{ "inbound", "checks", T_BOOL, OFF(inbound.checks), NULL, 1, 0, 1, false },
	{ "inbound", "authserv_id", T_STRING, OFF(inbound.authserv_id), NULL, 0, 0, 0, false },
	{ "inbound", "dmarc_reject", T_BOOL, OFF(inbound.dmarc_reject), NULL, 1, 0, 1, false },
	{ "inbound", "timeout", T_SECONDS, OFF(inbound.timeout), NULL, 10, 0.1, 300, false },
	{ "outbound", "port", T_COUNT, OFF(outbound.port), NULL, 25, 1, 65535, false },
	{ "outbound", "connections", T_COUNT, OFF(outbound.connections), NULL, 100, 1, 100000, false },
	{ "outbound", "connections_per_destination", T_COUNT, OFF(outbound.connections_per_destination), NULL, 20, 1, 100000, false },
	{ "outbound", "messages_per_connection", T_COUNT, OFF(outbound.messages_per_connection), NULL, 100, 1, 1000000, false },
	{ "outbound", "rate_per_destination", T_COUNT, OFF(outbound.rate_per_destination), NULL, 0, 0, 10000000, false },
	{ "outbound", "idle_time", T_SECONDS, OFF(outbound.idle_time), NULL, 5, 0, 3600, false },
	{ "outbound", "tls", T_STRING, OFF(outbound.tls), "may", 0, 0, 0, false },
	{ "outbound", "allow_loopback", T_BOOL, OFF(outbound.allow_loopback), NULL, 0, 0, 1, false },
	{ "outbound", "helo_name", T_STRING, OFF(outbound.helo_name), NULL, 0, 0, 0, false },
	{ "outbound", "connect_timeout", T_SECONDS, OFF(outbound.connect_timeout), NULL, 30, 0.01, 3600, false },
	{ "outbound", "greeting_timeout", T_SECONDS, OFF(outbound.greeting_timeout), NULL, 300, 0.01, 3600, false },
	{ "outbound", "command_timeout", T_SECONDS, OFF(outbound.command_timeout), NULL, 300, 0.01, 3600, false },
	{ "outbound", "data_timeout", T_SECONDS, OFF(outbound.data_timeout), NULL, 180, 0.01, 3600, false },
	{ "outbound", "data_done_timeout", T_SECONDS, OFF(outbound.data_done_timeout), NULL, 600, 0.01, 3600, false },
	{ "tls", "min_version", T_STRING, OFF(tls.min_version), "TLSv1.2", 0, 0, 0, false },
	{ "tls", "ciphers", T_STRING, OFF(tls.ciphers), NULL, 0, 0, 0, false },
	{ "tls", "ciphersuites", T_STRING, OFF(tls.ciphersuites), NULL, 0, 0, 0, false },
	{ "auth", "users_file", T_STRING, OFF(auth.users_file), NULL, 0, 0, 0, true },
	{ "dns", "resolvers", T_STRING, OFF(dns.resolvers), NULL, 0, 0, 0, false },
	{ "dns", "timeout", T_SECONDS, OFF(dns.timeout), NULL, 5, 0.1, 60, false },
	{ "dns", "reverse_lookups", T_BOOL, OFF(dns.reverse_lookups), NULL, 1, 0, 1, false },
};

/* Groups and the list settings handled outside the table. */
static const char *const top_level[] = { "server", "limits", "timeouts", "local",
					 "listeners", "dns", "queue", "auth", "tls",
					 "outbound", "routes", "dkim", "inbound" };


void cfg_error(struct loader *ld, const config_setting_t *s,
		      const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	const char *file = s ? config_setting_source_file(s) : NULL;
	unsigned line = s ? config_setting_source_line(s) : 0;
	char full[1024];
	snprintf(full, sizeof(full), "%s:%u: %s", file ? file : ld->source, line, msg);
	struct config_errors *e = ld->errs;
	e->items = xrealloc(e->items, (e->count + 1) * sizeof(char *));
	e->items[e->count++] = xstrdup(full);
}

void config_errors_free(struct config_errors *errs)
{
	for (size_t i = 0; i < errs->count; i++)
		free(errs->items[i]);
	free(errs->items);
	errs->items = NULL;
	errs->count = 0;
}

char *cfg_lower_dup(const char *s)
{
	char *p = xstrdup(s);
	for (char *q = p; *q; q++)
		*q = (char)tolower((unsigned char)*q);
	return p;
}

/*
 * Paths are made absolute against the start-up directory and bounded:
 * everything that later builds a file name from them (queue files, Maildir
 * names, ".tmp" siblings) fits in PATH_MAX because of this check.
 */
#define CONFIG_PATH_MAX 1024

static char *absolute_path_at(struct loader *ld, const char *p, const config_setting_t *s);

char *cfg_absolute_path(struct loader *ld, const char *p, const config_setting_t *s)
{
	return absolute_path_at(ld, p, s);
}

static char *absolute_path(struct loader *ld, const char *p)
{
	return absolute_path_at(ld, p, NULL);
}

static char *absolute_path_at(struct loader *ld, const char *p, const config_setting_t *s)
{
	if (strlen(p) + strlen(ld->cwd) + 1 > CONFIG_PATH_MAX) {
		cfg_error(ld, s, "path too long (at most %d octets): %.60s...", CONFIG_PATH_MAX, p);
		return xstrdup("/");
	}
	if (p[0] == '/')
		return xstrdup(p);
	size_t n = strlen(ld->cwd) + 1 + strlen(p) + 1;
	char *out = xmalloc(n);
	snprintf(out, n, "%s/%s", ld->cwd, p);
	return out;
}

static bool is_number(const config_setting_t *s)
{
	int t = config_setting_type(s);
	return t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64 || t == CONFIG_TYPE_FLOAT;
}

static double number_of(const config_setting_t *s)
{
	if (config_setting_type(s) == CONFIG_TYPE_FLOAT)
		return config_setting_get_float(s);
	return (double)config_setting_get_int64(s);
}

static void apply_default(struct loader *ld, const struct setting *st)
{
	char *base = (char *)ld->cfg;
	switch (st->type) {
	case T_STRING:
		*(char **)(base + st->offset) =
			st->def_string == NULL ? NULL
			: st->is_path	       ? absolute_path(ld, st->def_string)
					       : xstrdup(st->def_string);
		break;
	case T_LOGLEVEL:
		*(int *)(base + st->offset) = log_level_parse(st->def_string);
		break;
	case T_COUNT:
		*(uint64_t *)(base + st->offset) = (uint64_t)st->def_number;
		break;
	case T_SECONDS:
		*(double *)(base + st->offset) = st->def_number;
		break;
	case T_BOOL:
		*(bool *)(base + st->offset) = st->def_number != 0;
		break;
	}
}

static void apply_setting(struct loader *ld, const struct setting *st,
			  const config_setting_t *s)
{
	char *base = (char *)ld->cfg;
	const char *str;
	switch (st->type) {
	case T_STRING:
		if (config_setting_type(s) != CONFIG_TYPE_STRING) {
			cfg_error(ld, s, "%s.%s must be a string", st->group, st->name);
			return;
		}
		str = config_setting_get_string(s);
		free(*(char **)(base + st->offset));
		*(char **)(base + st->offset) =
			st->is_path ? absolute_path_at(ld, str, s) : xstrdup(str);
		return;
	case T_LOGLEVEL:
		str = config_setting_type(s) == CONFIG_TYPE_STRING
			      ? config_setting_get_string(s) : "";
		if (log_level_parse(str) < 0) {
			cfg_error(ld, s, "%s.%s must be debug, info, warning or error",
				  st->group, st->name);
			return;
		}
		*(int *)(base + st->offset) = log_level_parse(str);
		return;
	case T_BOOL:
		if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
			cfg_error(ld, s, "%s.%s must be true or false", st->group, st->name);
			return;
		}
		*(bool *)(base + st->offset) = config_setting_get_bool(s) != 0;
		return;
	case T_COUNT:
	case T_SECONDS:
		if (!is_number(s)) {
			cfg_error(ld, s, "%s.%s must be a number", st->group, st->name);
			return;
		}
		double v = number_of(s);
		if (v < st->min || v > st->max ||
		    (st->type == T_COUNT && v != (double)(uint64_t)v)) {
			cfg_error(ld, s, "%s.%s must be %s between %g and %g", st->group,
				  st->name, st->type == T_COUNT ? "an integer" : "a number",
				  st->min, st->max);
			return;
		}
		if (st->type == T_COUNT)
			*(uint64_t *)(base + st->offset) = (uint64_t)v;
		else
			*(double *)(base + st->offset) = v;
		return;
	}
}

static const struct setting *find_setting(const char *group, const char *name)
{
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
		if (strcmp(settings[i].group, group) == 0 &&
		    strcmp(settings[i].name, name) == 0)
			return &settings[i];
	return NULL;
}

static bool is_list_member(const char *group, const char *name)
{
	return (strcmp(group, "local") == 0 && strcmp(name, "domains") == 0) ||
	       (strcmp(group, "auth") == 0 && strcmp(name, "senders") == 0) ||
	       (strcmp(group, "server") == 0 && strcmp(name, "relay_networks") == 0);
}

static void load_scalars(struct loader *ld, const config_setting_t *root)
{
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
		apply_default(ld, &settings[i]);

	int n = config_setting_length(root);
	for (int i = 0; i < n; i++) {
		config_setting_t *g = config_setting_get_elem(root, (unsigned)i);
		const char *gname = config_setting_name(g);
		bool known = false;
		for (size_t k = 0; k < sizeof(top_level) / sizeof(top_level[0]); k++)
			known |= strcmp(gname, top_level[k]) == 0;
		if (!known) {
			cfg_error(ld, g, "unknown setting '%s'", gname);
			continue;
		}
		if (strcmp(gname, "listeners") == 0 || strcmp(gname, "routes") == 0 ||
		    strcmp(gname, "dkim") == 0)
			continue;
		if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
			cfg_error(ld, g, "'%s' must be a group { ... }", gname);
			continue;
		}
		int m = config_setting_length(g);
		for (int j = 0; j < m; j++) {
			config_setting_t *s = config_setting_get_elem(g, (unsigned)j);
			const char *sname = config_setting_name(s);
			const struct setting *st = find_setting(gname, sname);
			if (st)
				apply_setting(ld, st, s);
			else if (!is_list_member(gname, sname))
				cfg_error(ld, s, "unknown setting '%s.%s'", gname, sname);
		}
	}
	struct config *cfg = ld->cfg;
	if (cfg->hostname == NULL) {
		char host[256];
		if (gethostname(host, sizeof(host)) != 0)
			strlcpy_safe(host, "localhost", sizeof(host));
		host[sizeof(host) - 1] = '\0';
		cfg->hostname = xstrdup(host);
	} else if (!smtp_addr_domain_valid(cfg->hostname, strlen(cfg->hostname), false)) {
		const config_setting_t *srv = config_setting_get_member(root, "server");
		cfg_error(ld, srv ? config_setting_get_member(srv, "hostname") : NULL,
			  "server.hostname '%s' is not a valid domain name", cfg->hostname);
	}
	for (const char *d = cfg->recipient_delimiter; *d; d++) {
		if (ispunct((unsigned char)*d) && *d != '@' && *d != '"' && *d != '\\')
			continue;
		const config_setting_t *lg = config_setting_get_member(root, "local");
		cfg_error(ld, lg ? config_setting_get_member(lg, "recipient_delimiter") : NULL,
			  "local.recipient_delimiter may hold only punctuation "
			  "other than @, \" and \\");
		break;
	}
}

const char *cfg_member_string(struct loader *ld, const config_setting_t *item,
				 const char *name, bool required)
{
	config_setting_t *m = config_setting_get_member(item, name);
	if (m == NULL) {
		if (required)
			cfg_error(ld, item, "missing '%s'", name);
		return NULL;
	}
	if (config_setting_type(m) != CONFIG_TYPE_STRING) {
		cfg_error(ld, m, "'%s' must be a string", name);
		return NULL;
	}
	return config_setting_get_string(m);
}

void cfg_check_members(struct loader *ld, const config_setting_t *item,
			  const char *const *allowed, const char *what)
{
	if (config_setting_type(item) != CONFIG_TYPE_GROUP) {
		cfg_error(ld, item, "each %s must be a group { ... }", what);
		return;
	}
	int n = config_setting_length(item);
	for (int i = 0; i < n; i++) {
		config_setting_t *m = config_setting_get_elem(item, (unsigned)i);
		bool ok = false;
		for (const char *const *a = allowed; *a; a++)
			ok |= strcmp(*a, config_setting_name(m)) == 0;
		if (!ok)
			cfg_error(ld, m, "unknown setting '%s' in %s",
				  config_setting_name(m), what);
	}
}

static void load_listeners(struct loader *ld, const config_setting_t *root)
{
	config_setting_t *list = config_setting_get_member(root, "listeners");
	if (list == NULL) {
		cfg_error(ld, NULL, "no listeners: add listeners = ( { address = ...; "
				    "port = ...; role = \"mx\"; } );");
		return;
	}
	if (!config_setting_is_list(list)) {
		cfg_error(ld, list, "listeners must be a list ( ... )");
		return;
	}
	static const char *const allowed[] = { "address", "port", "role", "tls_cert",
					       "tls_key", "auth", "auth_plaintext", "sni", NULL };
	struct config *cfg = ld->cfg;
	int n = config_setting_length(list);
	if (n == 0)
		cfg_error(ld, list, "listeners is empty: Fulmar needs at least one");
	cfg->listeners = xcalloc(n ? (size_t)n : 1, sizeof(*cfg->listeners));
	for (int i = 0; i < n; i++) {
		config_setting_t *item = config_setting_get_elem(list, (unsigned)i);
		cfg_check_members(ld, item, allowed, "listener");
		if (config_setting_type(item) != CONFIG_TYPE_GROUP)
			continue;
		const char *addr = cfg_member_string(ld, item, "address", true);
		const char *role = cfg_member_string(ld, item, "role", false);
		config_setting_t *port = config_setting_get_member(item, "port");
		long long p = -1;
		if (port == NULL)
			cfg_error(ld, item, "missing 'port'");
		else if (config_setting_type(port) != CONFIG_TYPE_INT &&
			 config_setting_type(port) != CONFIG_TYPE_INT64)
			cfg_error(ld, port, "'port' must be an integer");
		else if ((p = config_setting_get_int64(port)) < 0 || p > 65535)
			cfg_error(ld, port, "'port' must be between 0 and 65535");
		enum listener_role r = ROLE_MX;
		if (role && strcmp(role, "submission") == 0)
			r = ROLE_SUBMISSION;
		else if (role && strcmp(role, "submissions") == 0)
			r = ROLE_SUBMISSIONS;
		else if (role && strcmp(role, "mx") != 0)
			cfg_error(ld, config_setting_get_member(item, "role"),
				  "unknown role '%s' (mx, submission or submissions)", role);
		int auth = -1, plain = 0;
		static const char *const flags[] = { "auth", "auth_plaintext" };
		for (size_t f = 0; f < 2; f++) {
			const config_setting_t *b = config_setting_get_member(item, flags[f]);
			if (b && config_setting_type(b) != CONFIG_TYPE_BOOL)
				cfg_error(ld, b, "'%s' must be true or false", flags[f]);
		}
		config_setting_lookup_bool(item, "auth", &auth);
		config_setting_lookup_bool(item, "auth_plaintext", &plain);
		const char *cert = cfg_member_string(ld, item, "tls_cert", false);
		const char *key = cfg_member_string(ld, item, "tls_key", false);
		if ((cert == NULL) != (key == NULL))
			cfg_error(ld, item, "tls_cert and tls_key go together");
		if (r == ROLE_SUBMISSIONS && cert == NULL)
			cfg_error(ld, item, "role submissions (implicit TLS) needs tls_cert and tls_key");
		if (addr == NULL || p < 0 || p > 65535)
			continue;
		struct cfg_listener *l = &cfg->listeners[cfg->nlisteners++];
		l->address = xstrdup(addr);
		l->port = (int)p;
		l->role = r;
		l->auth = r != ROLE_MX || auth == 1;
		l->auth_plaintext = plain != 0;
		if (cert && key) {
			l->tls_cert = absolute_path_at(ld, cert, item);
			l->tls_key = absolute_path_at(ld, key, item);
		}
		config_setting_t *sni = config_setting_get_member(item, "sni");
		if (sni && (!config_setting_is_list(sni) || cert == NULL)) {
			cfg_error(ld, sni, cert == NULL ? "sni needs tls_cert and tls_key too"
							: "sni must be a list ( ... )");
			sni = NULL;
		}
		int ns = sni ? config_setting_length(sni) : 0;
		if (ns > CFG_SNI_MAX) {
			cfg_error(ld, sni, "at most %d sni certificates per listener", CFG_SNI_MAX);
			ns = 0;
		}
		if (ns > 0)
			l->sni = xcalloc((size_t)ns, sizeof(*l->sni));
		static const char *const sni_allowed[] = { "name", "tls_cert", "tls_key", NULL };
		for (int k = 0; k < ns; k++) {
			config_setting_t *e = config_setting_get_elem(sni, (unsigned)k);
			cfg_check_members(ld, e, sni_allowed, "sni certificate");
			if (config_setting_type(e) != CONFIG_TYPE_GROUP)
				continue;
			const char *nm = cfg_member_string(ld, e, "name", true);
			const char *c = cfg_member_string(ld, e, "tls_cert", true);
			const char *kf = cfg_member_string(ld, e, "tls_key", true);
			if (nm == NULL || c == NULL || kf == NULL)
				continue;
			const char *bare = strncmp(nm, "*.", 2) == 0 ? nm + 2 : nm;
			if (!smtp_addr_domain_valid(bare, strlen(bare), false)) {
				cfg_error(ld, e, "sni name '%s' is not a host name", nm);
				continue;
			}
			struct cfg_sni *sd = &l->sni[l->nsni++];
			sd->name = cfg_lower_dup(nm);
			sd->tls_cert = absolute_path_at(ld, c, e);
			sd->tls_key = absolute_path_at(ld, kf, e);
		}
		l->line = (int)config_setting_source_line(item);
	}
}

/*
 * "Alice" -> "alice@domain"; "X@Other.Test" -> "X@other.test". Domains are
 * case-insensitive; so are our own local parts (lower-cased when the
 * address is looked up), but a remote local part is kept as written
 * (RFC 5321 2.4).
 */
static char *qualify(const char *target, const char *domain)
{
	const char *at = strrchr(target, '@');
	char *out;
	if (at == NULL) {
		size_t n = strlen(target) + 1 + strlen(domain) + 1;
		out = xmalloc(n);
		snprintf(out, n, "%s@%s", target, domain);
		for (char *q = out; *q && *q != '@'; q++)
			*q = (char)tolower((unsigned char)*q);
		return out;
	}
	out = xstrdup(target);
	for (char *q = out + (at - target); *q; q++)
		*q = (char)tolower((unsigned char)*q);
	return out;
}

static bool valid_local_part(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > SMTP_ADDR_LOCAL_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c == '@' || c == '"' || c == '\\' || c == '<' ||
		    c == '>' || c == 0x7f)
			return false;
	}
	return true;
}

static bool valid_address(const char *a)
{
	const char *at = strrchr(a, '@');
	if (at == NULL)
		return false;
	char local[SMTP_ADDR_LOCAL_MAX + 1];
	size_t ln = (size_t)(at - a);
	if (ln == 0 || ln > SMTP_ADDR_LOCAL_MAX)
		return false;
	memcpy(local, a, ln);
	local[ln] = '\0';
	return valid_local_part(local) &&
	       smtp_addr_domain_valid(at + 1, strlen(at + 1), true);
}

static void load_mailboxes(struct loader *ld, const config_setting_t *list,
			   const char *domain)
{
	static const char *const allowed[] = { "user", "maildir", NULL };
	struct config *cfg = ld->cfg;
	int n = config_setting_length(list);
	for (int i = 0; i < n; i++) {
		config_setting_t *item = config_setting_get_elem(list, (unsigned)i);
		cfg_check_members(ld, item, allowed, "mailbox");
		if (config_setting_type(item) != CONFIG_TYPE_GROUP)
			continue;
		const char *user = cfg_member_string(ld, item, "user", true);
		const char *maildir = cfg_member_string(ld, item, "maildir", true);
		if (user == NULL || maildir == NULL)
			continue;
		if (!valid_local_part(user) || strchr(user, '@')) {
			cfg_error(ld, item, "mailbox user '%s' is not a valid local part", user);
			continue;
		}
		if (maildir[0] == '\0') {
			cfg_error(ld, item, "mailbox maildir must not be empty");
			continue;
		}
		char *addr = qualify(user, domain);
		if (config_find_mailbox(cfg, addr) || config_find_alias(cfg, addr)) {
			cfg_error(ld, item, "'%s' is defined twice", addr);
			free(addr);
			continue;
		}
		cfg->mailboxes = xrealloc(cfg->mailboxes,
					  (cfg->nmailboxes + 1) * sizeof(*cfg->mailboxes));
		cfg->mailboxes[cfg->nmailboxes].address = addr;
		cfg->mailboxes[cfg->nmailboxes].maildir = absolute_path_at(ld, maildir, item);
		cfg->nmailboxes++;
	}
}

static void load_aliases(struct loader *ld, const config_setting_t *list,
			 const char *domain)
{
	static const char *const allowed[] = { "name", "to", NULL };
	struct config *cfg = ld->cfg;
	int n = config_setting_length(list);
	for (int i = 0; i < n; i++) {
		config_setting_t *item = config_setting_get_elem(list, (unsigned)i);
		cfg_check_members(ld, item, allowed, "alias");
		if (config_setting_type(item) != CONFIG_TYPE_GROUP)
			continue;
		const char *name = cfg_member_string(ld, item, "name", true);
		config_setting_t *to = config_setting_get_member(item, "to");
		if (to == NULL) {
			cfg_error(ld, item, "missing 'to'");
			continue;
		}
		if (name == NULL)
			continue;
		if (!valid_local_part(name)) {
			cfg_error(ld, item, "alias name '%s' is not a valid local part", name);
			continue;
		}
		int nt = config_setting_type(to) == CONFIG_TYPE_STRING ? 1
			 : (config_setting_is_array(to) || config_setting_is_list(to))
				 ? config_setting_length(to)
				 : -1;
		if (nt <= 0) {
			cfg_error(ld, to, "'to' must be a string or a non-empty array of strings");
			continue;
		}
		char *addr = qualify(name, domain);
		if (config_find_mailbox(cfg, addr) || config_find_alias(cfg, addr)) {
			cfg_error(ld, item, "'%s' is defined twice", addr);
			free(addr);
			continue;
		}
		struct cfg_alias a = { .address = addr,
				       .targets = xcalloc((size_t)nt, sizeof(char *)) };
		for (int k = 0; k < nt; k++) {
			const config_setting_t *e =
				config_setting_type(to) == CONFIG_TYPE_STRING
					? to : config_setting_get_elem(to, (unsigned)k);
			if (config_setting_type(e) != CONFIG_TYPE_STRING) {
				cfg_error(ld, e, "alias targets must be strings");
				continue;
			}
			char *t = qualify(config_setting_get_string(e), domain);
			if (!valid_address(t)) {
				cfg_error(ld, e, "alias target '%s' is not a valid address", t);
				free(t);
				continue;
			}
			a.targets[a.ntargets++] = t;
		}
		cfg->aliases = xrealloc(cfg->aliases, (cfg->naliases + 1) * sizeof(a));
		cfg->aliases[cfg->naliases++] = a;
	}
}

static void load_domains(struct loader *ld, const config_setting_t *root)
{
	config_setting_t *local = config_setting_get_member(root, "local");
	config_setting_t *list = local ? config_setting_get_member(local, "domains") : NULL;
	if (list == NULL)
		return; /* no local domains: a valid if useless server */
	if (!config_setting_is_list(list)) {
		cfg_error(ld, list, "local.domains must be a list ( ... )");
		return;
	}
	static const char *const allowed[] = { "name", "mailboxes", "aliases",
					       "catch_all", NULL };
	struct config *cfg = ld->cfg;
	int n = config_setting_length(list);
	cfg->domains = xcalloc((size_t)n, sizeof(*cfg->domains));
	for (int i = 0; i < n; i++) {
		config_setting_t *item = config_setting_get_elem(list, (unsigned)i);
		cfg_check_members(ld, item, allowed, "domain");
		if (config_setting_type(item) != CONFIG_TYPE_GROUP)
			continue;
		const char *name = cfg_member_string(ld, item, "name", true);
		if (name == NULL)
			continue;
		if (!smtp_addr_domain_valid(name, strlen(name), true)) {
			cfg_error(ld, item, "'%s' is not a valid domain name", name);
			continue;
		}
		char *lname = cfg_lower_dup(name);
		if (config_find_domain(cfg, lname)) {
			cfg_error(ld, item, "domain '%s' is defined twice", lname);
			free(lname);
			continue;
		}
		struct cfg_domain *d = &cfg->domains[cfg->ndomains++];
		d->name = lname;
		const char *catch_all = cfg_member_string(ld, item, "catch_all", false);
		if (catch_all) {
			d->catch_all = qualify(catch_all, lname);
			if (!valid_address(d->catch_all))
				cfg_error(ld, config_setting_get_member(item, "catch_all"),
					  "catch_all '%s' is not a valid address", catch_all);
		}
		config_setting_t *mb = config_setting_get_member(item, "mailboxes");
		if (mb && !config_setting_is_list(mb))
			cfg_error(ld, mb, "mailboxes must be a list ( ... )");
		else if (mb)
			load_mailboxes(ld, mb, lname);
		config_setting_t *al = config_setting_get_member(item, "aliases");
		if (al && !config_setting_is_list(al))
			cfg_error(ld, al, "aliases must be a list ( ... )");
		else if (al)
			load_aliases(ld, al, lname);
	}
}

static void load_senders(struct loader *ld, const config_setting_t *root)
{
	config_setting_t *auth = config_setting_get_member(root, "auth");
	config_setting_t *list = auth ? config_setting_get_member(auth, "senders") : NULL;
	if (list == NULL)
		return;
	if (!config_setting_is_list(list)) {
		cfg_error(ld, list, "auth.senders must be a list ( ... )");
		return;
	}
	static const char *const allowed[] = { "user", "addresses", NULL };
	struct config *cfg = ld->cfg;
	int n = config_setting_length(list);
	cfg->auth.senders = xcalloc(n ? (size_t)n : 1, sizeof(*cfg->auth.senders));
	for (int i = 0; i < n; i++) {
		config_setting_t *item = config_setting_get_elem(list, (unsigned)i);
		cfg_check_members(ld, item, allowed, "sender");
		if (config_setting_type(item) != CONFIG_TYPE_GROUP)
			continue;
		const char *user = cfg_member_string(ld, item, "user", true);
		config_setting_t *a = config_setting_get_member(item, "addresses");
		if (a == NULL || !config_setting_is_array(a)) {
			cfg_error(ld, item, "addresses must be an array of strings [ ... ]");
			continue;
		}
		if (user == NULL)
			continue;
		struct cfg_sender *sd = &cfg->auth.senders[cfg->auth.nsenders++];
		sd->user = cfg_lower_dup(user);
		int na = config_setting_length(a);
		sd->addresses = xcalloc(na ? (size_t)na : 1, sizeof(char *));
		for (int k = 0; k < na; k++) {
			const config_setting_t *e = config_setting_get_elem(a, (unsigned)k);
			const char *v = config_setting_type(e) == CONFIG_TYPE_STRING
						? config_setting_get_string(e) : NULL;
			if (v == NULL || strchr(v, '@') == NULL) {
				cfg_error(ld, e, "sender addresses look like user@domain or @domain");
				continue;
			}
			sd->addresses[sd->naddresses++] = cfg_lower_dup(v);
		}
	}
}

/* server.relay_networks = [ "127.0.0.0/8", "::1" ]: Postfix's mynetworks. */
static void load_relay_networks(struct loader *ld, const config_setting_t *root)
{
	config_setting_t *srv = config_setting_get_member(root, "server");
	config_setting_t *list = srv ? config_setting_get_member(srv, "relay_networks") : NULL;
	if (list == NULL)
		return;
	if (!config_setting_is_array(list)) {
		cfg_error(ld, list, "server.relay_networks must be an array of "
				    "strings [ \"192.0.2.0/24\", ... ]");
		return;
	}
	struct config *cfg = ld->cfg;
	int n = config_setting_length(list);
	cfg->relay_networks = xcalloc(n ? (size_t)n : 1, sizeof(*cfg->relay_networks));
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
		char err[160];
		if (config_setting_type(e) != CONFIG_TYPE_STRING) {
			cfg_error(ld, e, "server.relay_networks must hold strings");
			continue;
		}
		if (netaddr_cidr_parse(config_setting_get_string(e),
				       &cfg->relay_networks[cfg->nrelay_networks], err,
				       sizeof(err)) < 0) {
			cfg_error(ld, e, "server.relay_networks: %s", err);
			continue;
		}
		cfg->nrelay_networks++;
	}
}

static struct config *load(config_t *lc, const char *source,
			   struct config_errors *errs, bool read_ok)
{
	struct loader ld = { .source = source, .errs = errs };
	if (!read_ok) {
		const char *file = config_error_file(lc);
		char full[1024];
		snprintf(full, sizeof(full), "%s:%d: %s", file ? file : source,
			 config_error_line(lc), config_error_text(lc));
		errs->items = xrealloc(errs->items, (errs->count + 1) * sizeof(char *));
		errs->items[errs->count++] = xstrdup(full);
		return NULL;
	}
	if (getcwd(ld.cwd, sizeof(ld.cwd)) == NULL)
		strlcpy_safe(ld.cwd, "/", sizeof(ld.cwd));
	ld.cfg = xcalloc(1, sizeof(struct config));
	ld.cfg->refs = 1;
	ld.cfg->source = xstrdup(source);
	size_t before = errs->count;
	config_setting_t *root = config_root_setting(lc);
	load_scalars(&ld, root);
	load_listeners(&ld, root);
	load_domains(&ld, root);
	load_senders(&ld, root);
	load_relay_networks(&ld, root);
	cfg_load_outbound(&ld, root);
	cfg_load_dkim(&ld, root);
	struct tls_options o = { ld.cfg->tls.min_version, ld.cfg->tls.ciphers,
				 ld.cfg->tls.ciphersuites };
	char terr[512];
	if (tls_check_options(&o, terr, sizeof(terr)) < 0) {
		const config_setting_t *tg = config_setting_get_member(root, "tls");
		cfg_error(&ld, tg, "%s", terr);
	}
	if (errs->count != before) {
		config_unref(ld.cfg);
		return NULL;
	}
	return ld.cfg;
}

struct config *config_load_file(const char *path, struct config_errors *errs)
{
	config_t lc;
	config_init(&lc);
	bool ok = config_read_file(&lc, path) == CONFIG_TRUE;
	if (!ok && config_error_type(&lc) == CONFIG_ERR_FILE_IO) {
		char full[1024];
		snprintf(full, sizeof(full), "%s:0: cannot read: %s", path,
			 strerror_safe(errno));
		errs->items = xrealloc(errs->items, (errs->count + 1) * sizeof(char *));
		errs->items[errs->count++] = xstrdup(full);
		config_destroy(&lc);
		return NULL;
	}
	struct config *cfg = load(&lc, path, errs, ok);
	config_destroy(&lc);
	return cfg;
}

struct config *config_load_default(struct config_errors *errs)
{
	config_t lc;
	config_init(&lc);
	bool ok = config_read_string(&lc, config_default_text) == CONFIG_TRUE;
	struct config *cfg = load(&lc, "(default)", errs, ok);
	config_destroy(&lc);
	return cfg;
}

struct config *config_ref(struct config *cfg)
{
	cfg->refs++;
	return cfg;
}

void config_unref(struct config *cfg)
{
	if (cfg == NULL || --cfg->refs > 0)
		return;
	free(cfg->source);
	free(cfg->hostname);
	free(cfg->user);
	free(cfg->state_dir);
	free(cfg->log_file);
	free(cfg->relay_networks);
	free(cfg->recipient_delimiter);
	free(cfg->dns.resolvers);
	free(cfg->auth.users_file);
	free(cfg->tls.min_version);
	free(cfg->tls.ciphers);
	free(cfg->tls.ciphersuites);
	cfg_free_routes(cfg);
	cfg_free_dkim(cfg);
	free(cfg->inbound.authserv_id);
	for (size_t i = 0; i < cfg->auth.nsenders; i++) {
		for (size_t k = 0; k < cfg->auth.senders[i].naddresses; k++)
			free(cfg->auth.senders[i].addresses[k]);
		free(cfg->auth.senders[i].addresses);
		free(cfg->auth.senders[i].user);
	}
	free(cfg->auth.senders);
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		free(cfg->listeners[i].address);
		free(cfg->listeners[i].tls_cert);
		free(cfg->listeners[i].tls_key);
		for (size_t k = 0; k < cfg->listeners[i].nsni; k++) {
			free(cfg->listeners[i].sni[k].name);
			free(cfg->listeners[i].sni[k].tls_cert);
			free(cfg->listeners[i].sni[k].tls_key);
		}
		free(cfg->listeners[i].sni);
	}
	free(cfg->listeners);
	for (size_t i = 0; i < cfg->ndomains; i++) {
		free(cfg->domains[i].name);
		free(cfg->domains[i].catch_all);
	}
	free(cfg->domains);
	for (size_t i = 0; i < cfg->nmailboxes; i++) {
		free(cfg->mailboxes[i].address);
		free(cfg->mailboxes[i].maildir);
	}
	free(cfg->mailboxes);
	for (size_t i = 0; i < cfg->naliases; i++) {
		for (size_t k = 0; k < cfg->aliases[i].ntargets; k++)
			free(cfg->aliases[i].targets[k]);
		free(cfg->aliases[i].targets);
		free(cfg->aliases[i].address);
	}
	free(cfg->aliases);
	free(cfg);
}

const struct cfg_domain *config_find_domain(const struct config *cfg,
					    const char *domain)
{
	for (size_t i = 0; i < cfg->ndomains; i++)
		if (strcmp(cfg->domains[i].name, domain) == 0)
			return &cfg->domains[i];
	return NULL;
}

const struct cfg_mailbox *config_find_mailbox(const struct config *cfg,
					      const char *address)
{
	for (size_t i = 0; i < cfg->nmailboxes; i++)
		if (strcmp(cfg->mailboxes[i].address, address) == 0)
			return &cfg->mailboxes[i];
	return NULL;
}

const struct cfg_alias *config_find_alias(const struct config *cfg,
					  const char *address)
{
	for (size_t i = 0; i < cfg->naliases; i++)
		if (strcmp(cfg->aliases[i].address, address) == 0)
			return &cfg->aliases[i];
	return NULL;
}

static bool same_address(const char *a, const char *b)
{
	return strcasecmp(a, b) == 0;
}

bool config_sender_owned(const struct config *cfg, const char *user, const char *sender)
{
	if (sender == NULL || sender[0] == '\0')
		return false; /* the null sender is nobody's */
	if (same_address(user, sender))
		return true;
	const char *at = strrchr(sender, '@');
	for (size_t i = 0; i < cfg->auth.nsenders; i++) {
		const struct cfg_sender *sd = &cfg->auth.senders[i];
		if (strcasecmp(sd->user, user) != 0)
			continue;
		for (size_t k = 0; k < sd->naddresses; k++) {
			const char *a = sd->addresses[k];
			if (a[0] == '@' ? (at && strcasecmp(a + 1, at + 1) == 0)
					: same_address(a, sender))
				return true;
		}
	}
	return false;
}

bool config_relay_client(const struct config *cfg, const struct sockaddr *sa)
{
	for (size_t i = 0; i < cfg->nrelay_networks; i++)
		if (netaddr_cidr_match(&cfg->relay_networks[i], sa))
			return true;
	return false;
}

bool config_is_default(const struct config *cfg)
{
	return strcmp(cfg->source, "(default)") == 0;
}

SSL_CTX *config_listener_tls(const struct config *cfg, const struct cfg_listener *l,
			     char *err, size_t errlen)
{
	struct tls_options o = { cfg->tls.min_version, cfg->tls.ciphers,
				 cfg->tls.ciphersuites };
	struct tls_sni_cert sni[CFG_SNI_MAX];
	size_t n = l->nsni; /* at most CFG_SNI_MAX, checked at load */
	for (size_t i = 0; i < n; i++) {
		sni[i].name = l->sni[i].name;
		sni[i].cert_file = l->sni[i].tls_cert;
		sni[i].key_file = l->sni[i].tls_key;
	}
	return tls_server_ctx(l->tls_cert, l->tls_key, sni, n, &o, err, errlen);
}
