/*
 * config_dkim: the dkim list: which keys sign mail of which domain. The
 * keys are loaded with the configuration, so a bad key is a
 * configuration error (file:line) at start-up, at check-config and at a
 * reload (which then keeps the running configuration).
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_load.h"
#include "lib/xalloc.h"
#include "signer/dkim_key.h"

static void load_one(struct loader *ld, const config_setting_t *item)
{
	static const char *const allowed[] = { "domain", "selector", "key", NULL };
	cfg_check_members(ld, item, allowed, "dkim key");
	if (config_setting_type(item) != CONFIG_TYPE_GROUP)
		return;
	const char *domain = cfg_member_string(ld, item, "domain", true);
	const char *selector = cfg_member_string(ld, item, "selector", true);
	const char *key = cfg_member_string(ld, item, "key", true);
	if (domain == NULL || selector == NULL || key == NULL)
		return;
	char *ldomain = cfg_lower_dup(domain);
	if (!dkim_domain_valid(ldomain)) {
		cfg_error(ld, item, "dkim domain '%s' is not a valid domain name", domain);
		free(ldomain);
		return;
	}
	if (!dkim_selector_valid(selector)) {
		cfg_error(ld, item, "dkim selector '%s' is not valid", selector);
		free(ldomain);
		return;
	}
	struct config *cfg = ld->cfg;
	for (size_t i = 0; i < cfg->ndkim; i++) {
		if (strcmp(cfg->dkim[i].domain, ldomain) == 0 &&
		    strcmp(cfg->dkim[i].selector, selector) == 0) {
			cfg_error(ld, item, "dkim key %s for %s is listed twice", selector,
				  ldomain);
			free(ldomain);
			return;
		}
	}
	struct cfg_dkim k = { 0 };
	k.line = (int)config_setting_source_line(item);
	k.key_path = cfg_absolute_path(ld, key, item);
	char err[512];
	enum dkim_alg alg;
	k.key = dkim_key_load(k.key_path, &alg, err, sizeof(err));
	if (k.key == NULL) {
		cfg_error(ld, config_setting_get_member(item, "key"), "dkim key: %s", err);
		free(k.key_path);
		free(ldomain);
		return;
	}
	k.alg = (int)alg;
	k.domain = ldomain;
	k.selector = xstrdup(selector);
	cfg->dkim = xrealloc(cfg->dkim, (cfg->ndkim + 1) * sizeof(k));
	cfg->dkim[cfg->ndkim++] = k;
}

void cfg_load_dkim(struct loader *ld, const config_setting_t *root)
{
	config_setting_t *list = config_setting_get_member(root, "dkim");
	if (list == NULL)
		return;
	if (!config_setting_is_list(list)) {
		cfg_error(ld, list, "dkim must be a list ( { domain = ...; selector = ...; "
				    "key = ...; }, ... )");
		return;
	}
	int n = config_setting_length(list);
	for (int i = 0; i < n; i++)
		load_one(ld, config_setting_get_elem(list, (unsigned)i));
}

void cfg_free_dkim(struct config *cfg)
{
	for (size_t i = 0; i < cfg->ndkim; i++) {
		free(cfg->dkim[i].domain);
		free(cfg->dkim[i].selector);
		free(cfg->dkim[i].key_path);
		EVP_PKEY_free(cfg->dkim[i].key);
	}
	free(cfg->dkim);
}
