/*
 * bounce: DSN messages into the queue (bounce.h).
 */
#include "delivery/bounce.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "lib/xalloc.h"
#include "proto/smtp_addr.h"
#include "proto/smtp_cmd.h"
#include "smtp/recipient.h"

struct grow {
	char *p;
	size_t len, cap, max;
	bool cut; /* stopped at the end of the headers */
};

/* Collects the original: all of it, or up to the end of its headers. */
static int collect(void *arg, const char *data, size_t len)
{
	struct grow *g = arg;
	if (g->cut)
		return 0;
	if (g->len + len > g->cap) {
		g->cap = (g->len + len) * 2;
		g->p = xrealloc(g->p, g->cap + 1);
	}
	memcpy(g->p + g->len, data, len);
	g->len += len;
	if (g->max) {
		g->p[g->len] = '\0';
		char *end = g->len >= 4 ? strstr(g->p, "\r\n\r\n") : NULL;
		if (end) {
			g->len = (size_t)(end - g->p) + 2;
			g->cut = true;
		} else if (g->len > g->max) {
			g->cut = true; /* headers too long: return what we have */
		}
	}
	return 0;
}

/* The bounce's recipient: the sender, resolved when it is local. */
static char *bounce_rcpt(const struct config *cfg, const char *sender)
{
	struct smtp_addr a;
	size_t used;
	char path[SMTP_ADDR_PATH_MAX + 3];
	snprintf(path, sizeof(path), "<%s>", sender);
	if (smtp_addr_parse(path, strlen(path), false, true, &a, &used) != SMTP_ADDR_OK)
		return xstrdup(sender);
	struct rcpt_finals f = { 0 };
	char *out = NULL;
	if (recipient_resolve(cfg, &a, &f) == RCPT_ACCEPT && f.n > 0)
		out = xstrdup(f.items[0]);
	rcpt_finals_free(&f);
	return out ? out : xstrdup(sender);
}

static enum dsn_action action_of(enum rcpt_report r)
{
	switch (r) {
	case REPORT_DELAYED:
		return DSN_DELAYED;
	case REPORT_DELIVERED:
		return DSN_DELIVERED;
	case REPORT_RELAYED:
		return DSN_RELAYED;
	default:
		return DSN_FAILED;
	}
}

int bounce_queue(struct queue *q, const struct config *cfg, const struct qmsg *msg,
		 const size_t *idx, size_t n, queue_commit_fn fn, void *arg,
		 char bounce_id[QUEUE_ID_LEN + 1], char *err, size_t errlen)
{
	const struct envelope *env = &msg->env;
	bool headers_only = env->ret == SMTP_RET_HDRS || env->content_size > BOUNCE_FULL_MAX;
	/* Only failures return the message; other notices carry the headers. */
	for (size_t i = 0; i < n; i++)
		if (env->rcpts[idx[i]].report != REPORT_FAILED)
			headers_only = true;
	char path[PATH_MAX];
	queue_msg_path(q, env->id, path, sizeof(path));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open queue file: %s", strerror_safe(errno));
		return -1;
	}
	struct grow g = { .max = headers_only ? BOUNCE_FULL_MAX : 0 };
	g.p = xmalloc(1);
	char rerr[200];
	enum qfile_status st = qfile_read_content(fd, msg->content_off, collect, &g, rerr,
						  sizeof(rerr));
	close(fd);
	if (st != QFILE_OK && !g.cut) {
		snprintf(err, errlen, "cannot read the original: %s", rerr);
		free(g.p);
		return -1;
	}
	int64_t now = (int64_t)time(NULL);
	struct dsn_rcpt *dr = xcalloc(n, sizeof(*dr));
	int64_t retry_until = env->arrival_us / 1000000 + (int64_t)cfg->queue.max_lifetime;
	for (size_t i = 0; i < n; i++) {
		const struct env_rcpt *r = &env->rcpts[idx[i]];
		dr[i] = (struct dsn_rcpt){
			.final_rcpt = r->addr,
			.orcpt = r->orcpt,
			.action = action_of(r->report),
			.status = r->report_status,
			.remote_mta = r->report_remote,
			.diagnostic = r->report_remote ? r->last_error : NULL,
			.last_attempt = r->report_time,
			.will_retry_until = r->report == REPORT_DELAYED ? retry_until : 0,
		};
	}
	struct dsn_report rep = {
		.reporting_mta = cfg->hostname,
		.queue_id = env->id,
		.envid = env->envid,
		.sender = env->sender,
		.arrival = env->arrival_us / 1000000,
		.now = now,
		.headers_only = headers_only,
		.rcpts = dr,
		.nrcpts = n,
		.original = g.p,
		.original_len = g.len,
	};
	size_t len;
	char *text = dsn_build(&rep, &len);
	free(dr);
	free(g.p);

	struct envelope benv;
	envelope_init(&benv);
	envelope_xset(&benv.helo, cfg->hostname);
	envelope_xset(&benv.client_addr, "127.0.0.1");
	envelope_xset(&benv.proto, "ESMTP");
	envelope_xset(&benv.sender, "");
	benv.smtputf8 = env->smtputf8;
	benv.body = SMTP_BODY_8BITMIME;
	char *to = bounce_rcpt(cfg, env->sender);
	envelope_xadd_rcpt(&benv, to, env->sender, NULL, SMTP_NOTIFY_NEVER);
	free(to);
	struct queue_txn *t = queue_txn_begin(q, &benv, err, errlen);
	envelope_free(&benv);
	if (t == NULL) {
		free(text);
		return -1;
	}
	snprintf(bounce_id, QUEUE_ID_LEN + 1, "%s", queue_txn_id(t));
	queue_txn_write(t, text, len);
	free(text);
	queue_txn_commit(t, fn, arg);
	return 0;
}
