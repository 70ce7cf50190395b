/*
 * recipient: RCPT TO policy and alias expansion (recipient.h).
 */
#include "smtp/recipient.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/xalloc.h"

void rcpt_finals_free(struct rcpt_finals *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->items[i]);
	free(f->items);
	f->items = NULL;
	f->n = 0;
}

static void add_final(struct rcpt_finals *f, const char *addr)
{
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->items[i], addr) == 0)
			return; /* once per final address */
	if (f->n >= RCPT_EXPANSION_MAX)
		return;
	f->items = xrealloc(f->items, (f->n + 1) * sizeof(char *));
	f->items[f->n++] = xstrdup(addr);
}

static const char *domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');
	return at ? at + 1 : "";
}

/* "user+tag@dom" -> "user@dom" when a delimiter occurs; 0 when none. */
static int strip_extension(const struct config *cfg, const char *addr, char *out,
			   size_t outlen)
{
	const char *at = strrchr(addr, '@');
	if (at == NULL || cfg->recipient_delimiter[0] == '\0')
		return 0;
	size_t cut = strcspn(addr, cfg->recipient_delimiter);
	if (cut >= (size_t)(at - addr) || cut == 0)
		return 0;
	snprintf(out, outlen, "%.*s%s", (int)cut, addr, at);
	return 1;
}

/* Resolve a lower-case address in a local domain; adds finals. */
static bool resolve_local(const struct config *cfg, const char *addr, int depth,
			  struct rcpt_finals *f);

static bool expand_alias(const struct config *cfg, const struct cfg_alias *a,
			 int depth, struct rcpt_finals *f)
{
	bool any = false;
	if (depth >= RCPT_ALIAS_DEPTH)
		return false;
	for (size_t i = 0; i < a->ntargets; i++) {
		const char *t = a->targets[i];
		if (config_find_domain(cfg, domain_of(t)) == NULL) {
			add_final(f, t); /* a remote address: the outbound engine's */
			any = true;
		} else {
			any |= resolve_local(cfg, t, depth + 1, f);
		}
	}
	return any;
}

static bool lookup_exact(const struct config *cfg, const char *addr, int depth,
			 struct rcpt_finals *f)
{
	if (config_find_mailbox(cfg, addr)) {
		add_final(f, addr);
		return true;
	}
	const struct cfg_alias *a = config_find_alias(cfg, addr);
	return a && expand_alias(cfg, a, depth, f);
}

static bool resolve_local(const struct config *cfg, const char *addr, int depth,
			  struct rcpt_finals *f)
{
	if (lookup_exact(cfg, addr, depth, f))
		return true;
	char base[SMTP_ADDR_PATH_MAX + 1];
	if (strip_extension(cfg, addr, base, sizeof(base)) &&
	    lookup_exact(cfg, base, depth, f))
		return true;
	const struct cfg_domain *d = config_find_domain(cfg, domain_of(addr));
	if (d && d->catch_all && depth < RCPT_ALIAS_DEPTH &&
	    strcmp(d->catch_all, addr) != 0)
		return lookup_exact(cfg, d->catch_all, depth + 1, f);
	return false;
}

enum rcpt_verdict recipient_resolve(const struct config *cfg,
				    const struct smtp_addr *addr,
				    struct rcpt_finals *finals)
{
	if (addr->domain_literal)
		return RCPT_RELAY_DENIED;
	char domain[SMTP_ADDR_DOMAIN_MAX + 1];
	size_t dn = strlen(addr->domain);
	for (size_t i = 0; i <= dn; i++)
		domain[i] = (char)tolower((unsigned char)addr->domain[i]);
	if (config_find_domain(cfg, domain) == NULL)
		return RCPT_RELAY_DENIED;
	/* Local parts that route elsewhere when some MTA re-parses them. */
	if (strpbrk(addr->local, "@%!") != NULL)
		return RCPT_RELAY_DENIED;
	char full[SMTP_ADDR_PATH_MAX + 2];
	int n = snprintf(full, sizeof(full), "%s@%s", addr->local, domain);
	if (n < 0 || (size_t)n >= sizeof(full))
		return RCPT_UNKNOWN_USER;
	for (char *p = full; *p != '@'; p++)
		*p = (char)tolower((unsigned char)*p);
	if (!resolve_local(cfg, full, 0, finals) || finals->n == 0) {
		rcpt_finals_free(finals);
		return RCPT_UNKNOWN_USER;
	}
	return RCPT_ACCEPT;
}
