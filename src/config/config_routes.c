/*
 * config_routes: the outbound part of the configuration: outbound.tls and
 * the routes list (static routes, smarthosts, per-destination limits).
 */
#include <stdlib.h>
#include <string.h>

#include "config/config_load.h"
#include "lib/xalloc.h"
#include "proto/smtp_addr.h"

static enum tls_policy tls_policy_parse(const char *s)
{
	if (strcmp(s, "may") == 0)
		return TLS_POLICY_MAY;
	if (strcmp(s, "required") == 0)
		return TLS_POLICY_REQUIRED;
	if (strcmp(s, "none") == 0)
		return TLS_POLICY_NONE;
	return TLS_POLICY_INHERIT;
}

/* A member that must be an integer in [min, max]; def when absent. */
static long long member_int(struct loader *ld, const config_setting_t *item,
			    const char *name, long long min, long long max, long long def)
{
	const config_setting_t *m = config_setting_get_member(item, name);
	if (m == NULL)
		return def;
	int t = config_setting_type(m);
	long long v = (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64)
			      ? config_setting_get_int64(m) : min - 1;
	if (v < min || v > max) {
		cfg_error(ld, m, "'%s' must be an integer between %lld and %lld", name,
			  min, max);
		return def;
	}
	return v;
}

static void load_route(struct loader *ld, const config_setting_t *item)
{
	static const char *const allowed[] = { "domain", "host", "port", "tls",
					       "auth_user", "auth_password",
					       "connections", "rate", NULL };
	cfg_check_members(ld, item, allowed, "route");
	if (config_setting_type(item) != CONFIG_TYPE_GROUP)
		return;
	struct config *cfg = ld->cfg;
	const char *domain = cfg_member_string(ld, item, "domain", true);
	const char *host = cfg_member_string(ld, item, "host", false);
	const char *tls = cfg_member_string(ld, item, "tls", false);
	const char *user = cfg_member_string(ld, item, "auth_user", false);
	const char *pass = cfg_member_string(ld, item, "auth_password", false);
	struct cfg_route r = { 0 };
	r.line = (int)config_setting_source_line(item);
	r.port = (int)member_int(ld, item, "port", 1, 65535, 0);
	r.connections = (uint64_t)member_int(ld, item, "connections", 1, 100000, 0);
	r.rate = member_int(ld, item, "rate", 0, 10000000, -1);
	if (tls && (r.tls = tls_policy_parse(tls)) == TLS_POLICY_INHERIT)
		cfg_error(ld, config_setting_get_member(item, "tls"),
			  "route tls must be \"may\", \"required\" or \"none\"");
	if ((user == NULL) != (pass == NULL))
		cfg_error(ld, item, "auth_user and auth_password go together");
	if (user && host == NULL)
		cfg_error(ld, item, "auth_user needs a host (a smarthost route)");
	if (r.port && host == NULL)
		cfg_error(ld, item, "port needs a host");
	if (domain == NULL)
		return;
	if (strcmp(domain, "*") != 0 &&
	    !smtp_addr_domain_valid(domain, strlen(domain), false)) {
		cfg_error(ld, item, "route domain '%s' is not a valid domain name (or \"*\")",
			  domain);
		return;
	}
	char *ldomain = cfg_lower_dup(domain);
	if (config_find_route(cfg, ldomain) &&
	    strcmp(config_find_route(cfg, ldomain)->domain, ldomain) == 0) {
		cfg_error(ld, item, "route for '%s' is defined twice", ldomain);
		free(ldomain);
		return;
	}
	if (host && !smtp_addr_domain_valid(host, strlen(host), false) &&
	    strchr(host, ':') == NULL) {
		cfg_error(ld, item, "route host '%s' is not a host name or address", host);
		free(ldomain);
		return;
	}
	r.domain = ldomain;
	r.host = host ? cfg_lower_dup(host) : NULL;
	r.auth_user = user ? xstrdup(user) : NULL;
	r.auth_password = pass ? xstrdup(pass) : NULL;
	cfg->routes = xrealloc(cfg->routes, (cfg->nroutes + 1) * sizeof(r));
	cfg->routes[cfg->nroutes++] = r;
}

void cfg_load_outbound(struct loader *ld, const config_setting_t *root)
{
	struct config *cfg = ld->cfg;
	cfg->outbound.tls_policy = tls_policy_parse(cfg->outbound.tls);
	if (cfg->outbound.tls_policy == TLS_POLICY_INHERIT) {
		const config_setting_t *g = config_setting_get_member(root, "outbound");
		cfg_error(ld, g ? config_setting_get_member(g, "tls") : NULL,
			  "outbound.tls must be \"may\", \"required\" or \"none\"");
		cfg->outbound.tls_policy = TLS_POLICY_MAY;
	}
	if (cfg->outbound.helo_name &&
	    !smtp_addr_domain_valid(cfg->outbound.helo_name,
				    strlen(cfg->outbound.helo_name), false)) {
		const config_setting_t *g = config_setting_get_member(root, "outbound");
		cfg_error(ld, g ? config_setting_get_member(g, "helo_name") : NULL,
			  "outbound.helo_name '%s' is not a valid domain name",
			  cfg->outbound.helo_name);
	}
	config_setting_t *list = config_setting_get_member(root, "routes");
	if (list == NULL)
		return;
	if (!config_setting_is_list(list)) {
		cfg_error(ld, list, "routes must be a list ( { domain = ...; host = ...; }, ... )");
		return;
	}
	int n = config_setting_length(list);
	for (int i = 0; i < n; i++)
		load_route(ld, config_setting_get_elem(list, (unsigned)i));
}

void cfg_free_routes(struct config *cfg)
{
	for (size_t i = 0; i < cfg->nroutes; i++) {
		struct cfg_route *r = &cfg->routes[i];
		free(r->domain);
		free(r->host);
		free(r->auth_user);
		free(r->auth_password);
	}
	free(cfg->routes);
	free(cfg->outbound.tls);
	free(cfg->outbound.helo_name);
}

const struct cfg_route *config_find_route(const struct config *cfg, const char *domain)
{
	const struct cfg_route *any = NULL;
	for (size_t i = 0; i < cfg->nroutes; i++) {
		if (strcmp(cfg->routes[i].domain, domain) == 0)
			return &cfg->routes[i];
		if (strcmp(cfg->routes[i].domain, "*") == 0)
			any = &cfg->routes[i];
	}
	return any;
}
