/*
 * received: builds the Received: trace header (RFC 5321 4.4) that the
 * server prepends to every message it accepts. Pure: formats into a
 * caller buffer. Lines end in CR LF, folded with a tab.
 *
 *   Received: from HELO (RDNS [IP])
 *   	(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))
 *   	by HOST (Fulmar) with PROTO id QUEUEID
 *   	for <RCPT>; Sun, 29 Nov 2026 09:00:00 +0000
 *
 * Mail submitted on the local socket (`fulmar sendmail`) says who sent it
 * instead of where from: "Received: from localhost (uid 1000)".
 */
#ifndef FULMAR_RECEIVED_H
#define FULMAR_RECEIVED_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct received_info {
	const char *helo;   /* client's EHLO/HELO argument */
	const char *rdns;   /* verified reverse DNS name, or NULL: "unknown" */
	const char *ip;     /* client address */
	const char *host;   /* our host name */
	const char *proto;  /* ESMTP, SMTP, UTF8SMTP ... */
	const char *id;     /* queue id */
	const char *rcpt;   /* the one recipient, or NULL */
	const char *tls;    /* "TLSv1.3 with cipher X (256/256 bits)", or NULL */
	time_t when;
	bool local;         /* the local socket: helo, rdns and ip are not shown */
	long uid;           /* ... and the submitting process's uid (-1: unknown) */
};

/* Returns the length written (excluding NUL), or 0 if buf is too small. */
size_t received_format(char *buf, size_t len, const struct received_info *ri);

/* RFC 5322 date-time in UTC: "Sun, 29 Nov 2026 09:00:00 +0000". */
void received_date(char *buf, size_t len, time_t when);

#endif
