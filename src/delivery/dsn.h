/*
 * dsn: builds delivery status notifications (RFC 3464, RFC 3461, RFC 6522):
 * the text of a multipart/report message with a human-readable part, a
 * message/delivery-status part, and the original message (RET=FULL) or
 * its headers only (RET=HDRS, text/rfc822-headers). Pure: no I/O; the
 * caller puts the result into the queue from the null sender.
 *
 * Every value taken from the report is cleaned before it is written: CR,
 * LF and TAB become spaces, other control characters, DEL and 8-bit octets
 * become '?', lengths are capped (addresses and ENVID 900 octets, host
 * names 255, diagnostics 4096), and fields are folded, so no value can
 * start a header line or make a line longer than 998 octets.
 *
 * Ownership: dsn_build returns a heap buffer the caller frees; the report
 * and everything it points to are only read, and may be freed after the
 * call.
 */
#ifndef FULMAR_DSN_H
#define FULMAR_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum dsn_action {
	DSN_FAILED = 0,
	DSN_DELAYED,
	DSN_DELIVERED,  /* delivered to a local mailbox */
	DSN_RELAYED,    /* handed to a server that does not do DSN */
};

struct dsn_rcpt {
	const char *final_rcpt;  /* address we tried, "user@domain" */
	const char *orcpt;       /* ORCPT as received ("rfc822;user@x", xtext), or NULL;
				  * rfc822 xtext is decoded, anything else copied */
	enum dsn_action action;
	const char *status;      /* "5.1.1"; when not x.y.z: 5.0.0, 4.0.0 or 2.0.0 */
	const char *remote_mta;  /* host name of the server that answered, or NULL */
	const char *diagnostic;  /* "550 5.1.1 no such user" (the server's reply), or NULL */
	int64_t last_attempt;    /* unix seconds, 0 when never tried */
	int64_t will_retry_until; /* for DSN_DELAYED: unix seconds, else 0 */
};

struct dsn_report {
	const char *reporting_mta; /* our host name */
	const char *queue_id;      /* the original message's queue id */
	const char *envid;         /* ENVID as received (xtext), or NULL */
	const char *sender;        /* the original envelope sender: To: of the DSN */
	int64_t arrival;           /* unix seconds */
	int64_t now;               /* unix seconds, for Date: and the Message-ID */
	bool headers_only;         /* RET=HDRS (or the message is too big to return) */
	/* At least one. The worst action names the report: failed, then
	 * delayed, then delivered/relayed. */
	const struct dsn_rcpt *rcpts;
	size_t nrcpts;
	/* The original message as stored (CRLF line ends), and its length;
	 * NULL for none. It is returned as it is (a final CR LF added when
	 * missing); only what a conforming message does not hold is changed:
	 * a bare LF or CR becomes CR LF, a line over 998 octets is broken
	 * with CR LF SP. */
	const char *original;
	size_t original_len;
};

/*
 * The complete DSN message, headers included (From: MAILER-DAEMON@
 * reporting_mta, To: sender, Subject by action, Date, Message-ID,
 * Auto-Submitted: auto-replied, MIME-Version, Content-Type
 * multipart/report; report-type=delivery-status), CRLF line ends, every
 * line at most 998 octets. *len receives its length; a NUL follows the
 * last octet. Never fails (aborts only when out of memory).
 *
 * The boundary is "=_QUEUEID.NOW", with ".N" added until it occurs nowhere
 * in the text of the parts.
 */
char *dsn_build(const struct dsn_report *r, size_t *len);

#endif
