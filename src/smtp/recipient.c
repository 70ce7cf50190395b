/*
 * recipient: RCPT TO policy and alias expansion (recipient.h).
 */
#include "smtp/recipient.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/mem.h"
#include "lib/xalloc.h"

void rcpt_finals_free(struct rcpt_finals *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->items[i]);
	free(f->items);
	f->items = NULL;
	f->n = 0;
	f->failed = false;
}

/* Append a copy of addr; f->failed when there is no memory for it. */
static void append(struct rcpt_finals *f, const char *addr)
{
	char **items = mem_realloc(f->items, (f->n + 1) * sizeof(char *));
	char *copy = items ? mem_strdup(addr) : NULL;
	if (items)
		f->items = items;
	if (copy == NULL) {
		f->failed = true;
		return;
	}
	f->items[f->n++] = copy;
}

void rcpt_finals_add(struct rcpt_finals *f, const char *addr)
{
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->items[i], addr) == 0)
			return; /* once per final address */
	if (f->n < RCPT_EXPANSION_MAX)
		append(f, addr);
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

/* One expansion: the finals, and every address already looked at, so
 * that alias graphs with loops or shared branches cost linear time. */
struct expansion {
	const struct config *cfg;
	struct rcpt_finals *finals;
	struct rcpt_finals seen;
};

static bool seen_before(struct expansion *x, const char *addr)
{
	for (size_t i = 0; i < x->seen.n; i++)
		if (strcmp(x->seen.items[i], addr) == 0)
			return true;
	if (x->seen.n < RCPT_EXPANSION_MAX * 4)
		append(&x->seen, addr);
	return false;
}

static bool resolve_local(struct expansion *x, const char *addr, int depth);

/* An alias target or catch-all: remote addresses are final as they are. */
static bool resolve_target(struct expansion *x, const char *t, int depth)
{
	if (config_find_domain(x->cfg, domain_of(t)) == NULL) {
		rcpt_finals_add(x->finals, t); /* a remote address: the outbound engine's */
		return true;
	}
	char low[SMTP_ADDR_PATH_MAX + 2];
	strlcpy_safe(low, t, sizeof(low));
	for (char *p = low; *p && *p != '@'; p++) /* our local parts: any case */
		*p = (char)tolower((unsigned char)*p);
	return resolve_local(x, low, depth + 1);
}

static bool expand_alias(struct expansion *x, const struct cfg_alias *a, int depth)
{
	bool any = false;
	if (depth >= RCPT_ALIAS_DEPTH)
		return false;
	for (size_t i = 0; i < a->ntargets; i++)
		any |= resolve_target(x, a->targets[i], depth);
	return any;
}

static bool lookup_exact(struct expansion *x, const char *addr, int depth)
{
	if (config_find_mailbox(x->cfg, addr)) {
		rcpt_finals_add(x->finals, addr);
		return true;
	}
	const struct cfg_alias *a = config_find_alias(x->cfg, addr);
	return a && expand_alias(x, a, depth);
}

/* Resolve a lower-case address in a local domain; adds finals. */
static bool resolve_local(struct expansion *x, const char *addr, int depth)
{
	if (seen_before(x, addr))
		return true; /* its finals are in already (or it leads nowhere) */
	if (lookup_exact(x, addr, depth))
		return true;
	char base[SMTP_ADDR_PATH_MAX + 1];
	if (strip_extension(x->cfg, addr, base, sizeof(base)) &&
	    lookup_exact(x, base, depth))
		return true;
	const struct cfg_domain *d = config_find_domain(x->cfg, domain_of(addr));
	if (d && d->catch_all && depth < RCPT_ALIAS_DEPTH &&
	    strcmp(d->catch_all, addr) != 0) {
		if (config_find_domain(x->cfg, domain_of(d->catch_all)) == NULL) {
			rcpt_finals_add(x->finals, d->catch_all);
			return true;
		}
		char low[SMTP_ADDR_PATH_MAX + 2];
		strlcpy_safe(low, d->catch_all, sizeof(low));
		for (char *p = low; *p && *p != '@'; p++)
			*p = (char)tolower((unsigned char)*p);
		return !seen_before(x, low) && lookup_exact(x, low, depth + 1);
	}
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
		return RCPT_REMOTE;
	/* Local parts that route elsewhere when some MTA re-parses them. */
	if (strpbrk(addr->local, "@%!") != NULL)
		return RCPT_RELAY_DENIED;
	char full[SMTP_ADDR_PATH_MAX + 2];
	int n = snprintf(full, sizeof(full), "%s@%s", addr->local, domain);
	if (n < 0 || (size_t)n >= sizeof(full))
		return RCPT_UNKNOWN_USER;
	for (char *p = full; *p != '@'; p++)
		*p = (char)tolower((unsigned char)*p);
	struct expansion x = { .cfg = cfg, .finals = finals };
	bool found = resolve_local(&x, full, 0);
	/* A list cut short by a failed allocation is not an answer: both
	 * "unknown" and a partial expansion would be wrong. */
	bool failed = x.seen.failed || finals->failed;
	rcpt_finals_free(&x.seen);
	if (failed) {
		rcpt_finals_free(finals);
		return RCPT_NO_MEMORY;
	}
	if (!found || finals->n == 0) {
		rcpt_finals_free(finals);
		return RCPT_UNKNOWN_USER;
	}
	return RCPT_ACCEPT;
}
