/*
 * recipient: decides what a RCPT TO address means here. Pure function
 * over the configuration: local mailbox, alias (expanded, recursively),
 * address extension ("user+tag"), per-domain catch-all; anything outside
 * the local domains is relaying, refused to unauthenticated clients; the
 * classic relay tricks (user%host@local, "user@host"@local, host!user@local,
 * address literals) are refused too.
 */
#ifndef FULMAR_RECIPIENT_H
#define FULMAR_RECIPIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "proto/smtp_addr.h"

enum rcpt_verdict {
	RCPT_ACCEPT = 0,      /* finals holds the final addresses */
	RCPT_UNKNOWN_USER,    /* 550 5.1.1 */
	RCPT_RELAY_DENIED,    /* 554 5.7.1: a relay trick or an address literal */
	RCPT_REMOTE,          /* another domain: relaying, for authenticated users only */
	RCPT_NO_MEMORY,       /* the expansion ran out of memory (lib/mem.h): 451 */
};

#define RCPT_EXPANSION_MAX 1000 /* final addresses from one RCPT */
#define RCPT_ALIAS_DEPTH 10

/* Final addresses: heap strings owned by the list, from lib/mem.h (a
 * session's memory: fallible). */
struct rcpt_finals {
	char **items;
	size_t n;
	bool failed; /* an address could not be added: out of memory */
};

void rcpt_finals_free(struct rcpt_finals *f);
/* Add a copy of addr unless it is there already or the list is full
 * (RCPT_EXPANSION_MAX); on failure f->failed is set. */
void rcpt_finals_add(struct rcpt_finals *f, const char *addr);

enum rcpt_verdict recipient_resolve(const struct config *cfg,
				    const struct smtp_addr *addr,
				    struct rcpt_finals *finals);

#endif
