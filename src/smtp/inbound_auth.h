/*
 * inbound_auth: who really sent a message arriving on an mx listener.
 * SPF of the MAIL FROM identity (or HELO's, for the null sender) starts
 * at MAIL; the DKIM verifier and the From: domain are fed the message as
 * it streams in, key and DMARC lookups start as soon as the header
 * section is complete; at the end of data the three come together into
 * one Authentication-Results header field (RFC 8601) and a verdict:
 * refuse (DMARC p=reject failure, when inbound.dmarc_reject) or accept.
 * DNS trouble gives temperror, never a refusal.
 *
 * Ownership: the session owns one struct inbound_auth per transaction
 * (inbound_auth_free cancels every lookup). The verdict callback runs
 * once, from the loop, never inside inbound_auth_finish; the verdict is
 * valid during the call. The struct and the header section it keeps are
 * the session's memory (lib/mem.h): when they cannot be had, start and
 * feed fail and the session fails its transaction (451); the SPF, DKIM
 * and DMARC code below keeps its own allocations aborting (lib/xalloc.h).
 */
#ifndef FULMAR_INBOUND_AUTH_H
#define FULMAR_INBOUND_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct event_base;
struct dns;
struct config;
struct inbound_auth;

struct inbound_verdict {
	const char *header;     /* "Authentication-Results: ...\r\n" (folded) */
	size_t header_len;
	bool reject;            /* refuse with reply */
	const char *reply;      /* "550 5.7.1 ..." when reject */
	/* for the log line */
	const char *spf, *dkim, *dmarc, *from_domain;
};

typedef void (*inbound_verdict_fn)(void *arg, const struct inbound_verdict *v);

/* At MAIL: mailfrom is the reverse-path text ("" for <>). NULL (errno
 * ENOMEM) when out of memory. */
struct inbound_auth *inbound_auth_start(struct event_base *base, struct dns *dns,
					const struct config *cfg, const struct sockaddr *client,
					const char *helo, const char *mailfrom,
					const char *queue_id);
/* The message's octets as the client sent them (dot-unstuffed). 0, or -1
 * (ENOMEM) when the header section cannot be kept: no verdict can be
 * trusted then, and the transaction must fail. */
int inbound_auth_feed(struct inbound_auth *a, const char *data, size_t len);
/* The content is complete: fn runs once every check has an answer. */
void inbound_auth_finish(struct inbound_auth *a, inbound_verdict_fn fn, void *arg);
void inbound_auth_free(struct inbound_auth *a);

/* Does this header field (name and value, CRLF-folded, without the final
 * CRLF) claim to be an Authentication-Results of authserv_id? Such
 * fields are removed on arrival (RFC 8601 §5). */
bool inbound_auth_is_ours(const char *field, size_t len, const char *authserv_id);

#endif
