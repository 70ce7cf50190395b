/*
 * envelope: what the queue keeps about a message besides its content:
 * the client, the sender, the ESMTP parameters, and each recipient with
 * its delivery state.
 *
 * Ownership: an envelope owns all its strings (heap, NUL-ended) and its
 * recipient array; envelope_free() releases them. The SMTP session builds
 * one per transaction; the queue reads one back from each queue file.
 *
 * Memory: the SMTP session's envelope is its client's memory (lib/mem.h):
 * envelope_set and envelope_add_rcpt fail with -1 (errno ENOMEM), leaving
 * the envelope as it was, and the session answers 451. The queue and the
 * delivery engine, whose memory is fatal (lib/xalloc.h), use the x
 * variants, which abort instead and are never failed by the alloc fault.
 */
#ifndef FULMAR_ENVELOPE_H
#define FULMAR_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QUEUE_ID_LEN 16

enum rcpt_state {
	RCPT_PENDING = 0,  /* not yet tried */
	RCPT_DEFERRED,     /* tried, will retry at next_attempt */
	RCPT_DELIVERED,    /* final: delivered */
	RCPT_FAILED,       /* final: failed permanently */
};

/* In memory only: a delivery status notification a recipient is owed and
 * that is not queued yet. A failed recipient is journaled as failed only
 * once its bounce is queued, so a crash in between retries it instead of
 * losing the bounce. */
enum rcpt_report {
	REPORT_NONE = 0,
	REPORT_FAILED,
	REPORT_DELAYED,
	REPORT_DELIVERED,
	REPORT_RELAYED,
};

struct env_rcpt {
	char *addr;     /* final address after alias expansion, lower-case domain */
	char *orig;     /* the RCPT TO address as the client gave it */
	char *orcpt;    /* DSN ORCPT parameter as received, or NULL */
	unsigned notify; /* SMTP_NOTIFY_* flags, 0 when absent */
	/* delivery state, from the journal */
	enum rcpt_state state;
	unsigned attempts;
	int64_t next_attempt; /* unix seconds, for RCPT_DEFERRED */
	char *last_error;     /* NULL or the last failure's text */
	/* in memory only (see enum rcpt_report) */
	enum rcpt_report report;
	char report_status[16]; /* "5.1.1" */
	char *report_remote;    /* the server that answered, or NULL */
	int64_t report_time;    /* unix seconds of the attempt */
	bool delay_warned;      /* a "delayed" DSN went out */
};

struct envelope {
	char id[QUEUE_ID_LEN + 1];
	int64_t arrival_us;   /* unix time in microseconds */
	char *sender;         /* "" for the null reverse-path */
	char *helo;           /* client's EHLO/HELO argument */
	char *client_addr;    /* client IP address, text */
	char *proto;          /* "ESMTP", "SMTP", "UTF8SMTP", ... */
	bool smtputf8;
	int body;             /* enum smtp_body */
	int ret;              /* enum smtp_ret */
	char *envid;          /* DSN ENVID or NULL */
	char *auth;           /* MAIL AUTH= or NULL */
	struct env_rcpt *rcpts;
	size_t nrcpts;
	size_t cap;
	uint64_t content_size; /* octets of message content */
	bool held;             /* operator hold (journaled) */
};

void envelope_init(struct envelope *env);
void envelope_free(struct envelope *env);
/* Clear the transaction part (sender, parameters, recipients); keep the
 * client fields. */
void envelope_reset(struct envelope *env);
/* Append a recipient; the strings are copied. 0, or -1 (ENOMEM: nothing
 * added). */
int envelope_add_rcpt(struct envelope *env, const char *addr, const char *orig,
		      const char *orcpt, unsigned notify) __attribute__((warn_unused_result));
void envelope_xadd_rcpt(struct envelope *env, const char *addr, const char *orig,
			const char *orcpt, unsigned notify);
/* Drop the recipients from index n on (a RCPT whose expansion failed
 * halfway takes back what it added). */
void envelope_truncate_rcpts(struct envelope *env, size_t n);
/* Index of the recipient with this final address, or -1. */
long envelope_find_rcpt(const struct envelope *env, const char *addr);
/* Replace a string field with a copy of value (NULL allowed), freeing the
 * old value. 0, or -1 (ENOMEM: the field is unchanged). */
int envelope_set(char **field, const char *value) __attribute__((warn_unused_result));
void envelope_xset(char **field, const char *value);
/* True when every recipient is delivered or failed. */
bool envelope_done(const struct envelope *env);

#endif
