/*
 * inbound_auth: who really sent a message arriving on an mx listener.
 * SPF of the MAIL FROM identity (or HELO's, for the null sender) starts
 * at MAIL; the header section is read where the session holds it (for
 * From: and by the DKIM verifier; key and DMARC lookups start then), the
 * body is fed to the verifier as it streams in; at the end of data the
 * three come together into one Authentication-Results header field (RFC
 * 8601) and a verdict:
 * refuse (DMARC p=reject failure, when inbound.dmarc_reject) or accept.
 * DNS trouble gives temperror, never a refusal.
 *
 * Out of memory is not DNS trouble. Everything the checks allocate is the
 * session's (lib/mem.h): this struct, the SPF, DKIM and DMARC state, the
 * DNS queries and their answers. The header section is not kept here:
 * the session's held copy is read during inbound_auth_feed_header, and
 * the verifier, given it whole, parses it within that call (only what
 * the signatures need stays; dkim_verify.h). When any of it cannot be
 * had, at start or in any check (which marks its own
 * result temperror "out of memory", see spf.h, dkim_verify.h, dmarc.h,
 * dns.h), the message is not accepted with a verdict that memory, not
 * the sender, decided: start fails (the session answers MAIL 451), feed
 * fails (the content is swallowed, the end of data gets 451), or the
 * verdict comes at once with out_of_memory set (451 at the end of data).
 * The client tries again later, as after any 4xx.
 *
 * Ownership: the session owns one struct inbound_auth per transaction
 * (inbound_auth_free cancels every lookup). It keeps no pointer into the
 * session's buffers (what it is fed is borrowed for the call), so the
 * lookups still in flight when the session ends or resets hold nothing of
 * it. The verdict callback runs once, from the loop, never inside
 * inbound_auth_finish; the verdict is valid during the call.
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
	/* a check ran out of memory: refuse with 451 4.3.0 (nothing above
	 * is a verdict then; header is empty) */
	bool out_of_memory;
};

typedef void (*inbound_verdict_fn)(void *arg, const struct inbound_verdict *v);

/* At MAIL: mailfrom is the reverse-path text ("" for <>). NULL (errno
 * ENOMEM) when out of memory (the struct, the verifier, the SPF checks). */
struct inbound_auth *inbound_auth_start(struct event_base *base, struct dns *dns,
					const struct config *cfg, const struct sockaddr *client,
					const char *helo, const char *mailfrom,
					const char *queue_id);
/* The message's first octets as the client sent them (dot-unstuffed):
 * its header section through the empty line, or its first octets when
 * the section is longer than the session holds, hdr[0..len), borrowed for
 * the call. Once, first. From: is read from it and the key and DMARC
 * lookups start. 0, or -1 (ENOMEM) once a check has run out of memory
 * (the verifier's, a lookup's...): no verdict can be trusted then, and
 * the transaction must fail. */
int inbound_auth_feed_header(struct inbound_auth *a, const char *hdr, size_t len);
/* The octets that follow, in any chunks; 0 or -1 as above. */
int inbound_auth_feed(struct inbound_auth *a, const char *data, size_t len);
/* The content is complete: fn runs once every check has an answer. */
void inbound_auth_finish(struct inbound_auth *a, inbound_verdict_fn fn, void *arg);
void inbound_auth_free(struct inbound_auth *a);

/* Does this header field (name and value, CRLF-folded, without the final
 * CRLF) claim to be an Authentication-Results of authserv_id? Such
 * fields are removed on arrival (RFC 8601 §5). */
bool inbound_auth_is_ours(const char *field, size_t len, const char *authserv_id);

#endif
