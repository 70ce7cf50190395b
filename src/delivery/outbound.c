/*
 * outbound: destinations, connections and jobs (outbound.h).
 *
 *   job   recipients of one message for one destination; waits in its
 *         destination's FIFO, then runs as one transaction on a connection
 *   dest  a destination: its FIFO, its connections (opening, busy, idle),
 *         its rate limit, its last resolved route (reused for a minute);
 *         "down" for half of queue.retry_first after no hop would take a
 *         connection: its new jobs are deferred at once with that reason,
 *         without a connection attempt each (Postfix's dead destination);
 *         at most DOWN_MAX are remembered, the oldest forgotten first
 *   oconn one connection: resolving, then trying the hops in turn until
 *         one is ready; then transactions until the FIFO is empty (idle,
 *         kept for outbound.idle_time) or messages_per_connection is done
 */
#include "delivery/outbound.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "delivery/route.h"
#include "delivery/smtp_client.h"
#include "lib/log.h"
#include "lib/monotime.h"
#include "lib/tls.h"
#include "lib/xalloc.h"
#include "proto/smtp_cmd.h"
#include "queue/queue.h"

#define ROUTE_CACHE_SECONDS 60.0
#define DEST_BUCKETS 1024
/* Destinations remembered down at once (each is a struct dest kept only
 * for that): past it, the one whose period ends first is forgotten. */
#define DOWN_MAX 1024
#define DOWN_LOG_SECONDS 60.0 /* at most one down_forgotten line per this */

struct dest;
struct oconn;

/* A link of the list of down destinations: circular, through the head
 * in struct outbound, oldest first. */
struct down_link {
	struct down_link *prev, *next;
};

struct job {
	struct job *prev, *next;         /* in the dest's FIFO, or running */
	struct job *msg_prev, *msg_next; /* the jobs of the same message */
	struct dest *dest;
	struct qmsg *msg;
	size_t *idx;
	size_t n;
	bool running;
	struct smtp_client_rcpt *rcpts;
	struct smtp_client_txn txn;
};

enum oconn_state { OC_RESOLVING, OC_CONNECTING, OC_IDLE, OC_BUSY };

struct oconn {
	struct oconn *prev, *next; /* in the dest's list */
	struct dest *dest;
	enum oconn_state state;
	struct route_lookup *lookup;
	struct route_result *route; /* hops being tried */
	size_t hop;
	struct smtp_client *client;
	struct job *job;            /* OC_BUSY */
	struct event *idle_timer;
	struct smtp_client_status last; /* why the previous hop failed */
	char last_relay[320];           /* and which one it was */
};

struct dest {
	struct dest *hnext;       /* hash chain */
	struct dest *starved_next;
	bool starved;             /* waits for a connection slot in total */
	struct outbound *o;
	char *key;
	char *domain;             /* a recipient domain that routes here */
	struct job *head, *tail;  /* waiting jobs */
	size_t waiting;
	struct oconn *conns;
	size_t nconns, nopening;
	double next_start;        /* rate limit: earliest next message */
	struct event *rate_timer;
	struct route_result *cached;
	double cached_until;
	double down_until;        /* down (dest_down) until this, monotonic */
	struct down_link down;    /* in o->down while down_until > 0 */
	struct event *down_timer; /* its end, when d may go */
	struct event *defer_ev;   /* defers waiting jobs while down */
	char down_dsn[16];
	char down_relay[320];
	char *down_detail;
};

struct outbound {
	struct event_base *base;
	struct queue *q;
	struct dns *dns;
	struct config *cfg;
	SSL_CTX *tls_ctx;
	outbound_done_fn done;
	void *arg;
	struct dest *buckets[DEST_BUCKETS];
	size_t njobs;
	size_t nconns;            /* in total */
	struct dest *starved;     /* dests waiting for a slot */
	struct down_link down;    /* down dests, oldest (earliest to end) first */
	size_t ndown;
	double down_logged;       /* monotime of the last down_forgotten line */
	size_t down_forgotten;    /* forgotten since that line */
};

static struct timeval tv_of(double s)
{
	if (s < 0)
		s = 0;
	struct timeval tv = { (time_t)s, (suseconds_t)((s - (double)(time_t)s) * 1e6) };
	return tv;
}

static unsigned hash_key(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % DEST_BUCKETS;
}

/* ---- limits ---- */

static const struct cfg_route *dest_route(const struct dest *d)
{
	return config_find_route(d->o->cfg, d->domain);
}

static size_t dest_conn_limit(const struct dest *d)
{
	const struct cfg_route *r = dest_route(d);
	if (r && r->connections)
		return r->connections;
	return d->o->cfg->outbound.connections_per_destination;
}

static double dest_interval(const struct dest *d)
{
	const struct cfg_route *r = dest_route(d);
	int64_t rate = r && r->rate >= 0 ? r->rate
					 : (int64_t)d->o->cfg->outbound.rate_per_destination;
	return rate > 0 ? 60.0 / (double)rate : 0;
}

static enum tls_policy dest_tls(const struct dest *d)
{
	const struct cfg_route *r = dest_route(d);
	if (r && r->tls != TLS_POLICY_INHERIT)
		return r->tls;
	return d->o->cfg->outbound.tls_policy;
}

/* ---- jobs ---- */

static void job_unlink_fifo(struct job *j)
{
	struct dest *d = j->dest;
	if (j->prev)
		j->prev->next = j->next;
	else
		d->head = j->next;
	if (j->next)
		j->next->prev = j->prev;
	else
		d->tail = j->prev;
	j->prev = j->next = NULL;
	d->waiting--;
}

static void job_free(struct outbound *o, struct job *j)
{
	if (j->msg_prev)
		j->msg_prev->msg_next = j->msg_next;
	else
		j->msg->out_jobs = j->msg_next;
	if (j->msg_next)
		j->msg_next->msg_prev = j->msg_prev;
	o->njobs--;
	if (j->txn.content)
		evbuffer_free(j->txn.content);
	free(j->rcpts);
	free(j->idx);
	free(j);
}

/* Report the job's outcome: results[i] for recipient j->idx[i]. */
static void job_report(struct outbound *o, struct job *j, struct outbound_result *res,
		       bool corrupt)
{
	struct qmsg *m = j->msg;
	size_t n = j->n;
	job_free(o, j);
	o->done(o->arg, m, res, n, corrupt);
}

/* Every recipient of j gets the same outcome. */
static void job_finish_all(struct outbound *o, struct job *j, enum outbound_status st,
			   const char *dsn, const char *relay, const char *remote,
			   const char *detail)
{
	struct outbound_result *res = xcalloc(j->n, sizeof(*res));
	for (size_t i = 0; i < j->n; i++) {
		res[i].idx = j->idx[i];
		res[i].status = st;
		snprintf(res[i].dsn, sizeof(res[i].dsn), "%s", dsn);
		snprintf(res[i].relay, sizeof(res[i].relay), "%s", relay);
		snprintf(res[i].remote_mta, sizeof(res[i].remote_mta), "%s", remote);
		snprintf(res[i].detail, sizeof(res[i].detail), "%s", detail);
	}
	job_report(o, j, res, false);
	free(res);
}

/* ---- destinations ---- */

static struct dest *dest_get(struct outbound *o, const char *key, const char *domain)
{
	unsigned h = hash_key(key);
	for (struct dest *d = o->buckets[h]; d; d = d->hnext)
		if (strcmp(d->key, key) == 0)
			return d;
	struct dest *d = xcalloc(1, sizeof(*d));
	d->o = o;
	d->key = xstrdup(key);
	d->domain = xstrdup(domain);
	d->hnext = o->buckets[h];
	o->buckets[h] = d;
	return d;
}

static void dest_pump(struct dest *d);

static bool dest_is_down(const struct dest *d)
{
	return d->down_until > 0 && monotime() < d->down_until;
}

/* Out of o's list of down destinations (d->down_until > 0). */
static void down_unlink(struct dest *d)
{
	d->down.prev->next = d->down.next;
	d->down.next->prev = d->down.prev;
	d->down.prev = d->down.next = NULL;
	d->o->ndown--;
}

/* Forget an unused destination (no jobs, no connections). */
static void dest_maybe_free(struct dest *d)
{
	/* A down destination stays, to remember it, until its timer. */
	if (d->head || d->conns || d->starved || dest_is_down(d))
		return;
	if (d->down_until > 0) /* its period is over, its timer not yet run */
		down_unlink(d);
	struct outbound *o = d->o;
	unsigned h = hash_key(d->key);
	for (struct dest **pp = &o->buckets[h]; *pp; pp = &(*pp)->hnext) {
		if (*pp == d) {
			*pp = d->hnext;
			break;
		}
	}
	if (d->rate_timer)
		event_free(d->rate_timer);
	if (d->down_timer)
		event_free(d->down_timer);
	if (d->defer_ev)
		event_free(d->defer_ev);
	free(d->down_detail);
	free(d->cached);
	free(d->key);
	free(d->domain);
	free(d);
}

/* Every waiting job of d gets this outcome (a route or connection failure
 * that leaves d with no way to deliver now). */
static void dest_fail_waiting(struct dest *d, enum outbound_status st, const char *dsn,
			      const char *relay, const char *detail)
{
	struct outbound *o = d->o;
	while (d->head) {
		struct job *j = d->head;
		job_unlink_fifo(j);
		job_finish_all(o, j, st, dsn, relay, "", detail);
	}
}

/* Connections of d that are up (connected). */
static size_t dest_live_conns(const struct dest *d)
{
	size_t n = 0;
	for (const struct oconn *c = d->conns; c; c = c->next)
		if (c->client && (c->state == OC_IDLE || c->state == OC_BUSY))
			n++;
	return n;
}

/* d takes connections again: its period is over, one came up, or the
 * configuration changed. */
static void dest_clear_down(struct dest *d)
{
	if (d->down_until > 0)
		down_unlink(d);
	d->down_until = 0;
	if (d->down_timer)
		evtimer_del(d->down_timer);
	free(d->down_detail);
	d->down_detail = NULL;
}

static void on_down_end(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dest *d = arg;
	dest_clear_down(d);
	dest_maybe_free(d);
}

/* Jobs that arrive while d is down: deferred with its reason, from the
 * loop (never from inside outbound_submit, whose caller is mid-round). */
static void on_defer_while_down(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dest *d = arg;
	/* Down means no connection is up: one that comes up clears it. */
	if (dest_is_down(d)) {
		char detail[700];
		snprintf(detail, sizeof(detail), "delivery temporarily suspended: %s",
			 d->down_detail ? d->down_detail : "");
		dest_fail_waiting(d, OUT_DEFERRED, d->down_dsn, d->down_relay, detail);
	} else {
		dest_pump(d);
	}
	dest_maybe_free(d);
}

/*
 * DOWN_MAX destinations are down: the oldest is forgotten, so that a
 * flood of mail for dead domains keeps a bounded number. Every period is
 * the same (a reload ends them all), so the oldest is the one that would
 * have ended first; its next message is a real attempt again. Logged at
 * most once per DOWN_LOG_SECONDS, with how many were forgotten since.
 */
static void forget_oldest_down(struct outbound *o)
{
	struct dest *old = (struct dest *)(void *)((char *)o->down.next -
						    offsetof(struct dest, down));
	o->down_forgotten++;
	double now = monotime();
	if (o->down_logged == 0 || now >= o->down_logged + DOWN_LOG_SECONDS) {
		struct log_line l;
		log_begin(&l, LOG_WARNING, "down_forgotten");
		log_str(&l, "destination", old->key);
		log_int(&l, "down_max", DOWN_MAX);
		log_int(&l, "forgotten", (long long)o->down_forgotten);
		log_end(&l);
		o->down_logged = now;
		o->down_forgotten = 0;
	}
	dest_clear_down(old);
	dest_maybe_free(old);
}

/*
 * No hop of d would take a connection (or its route failed for now): d
 * is down for half of queue.retry_first, so a dead host costs one round
 * of connection attempts per period instead of one per message. Half:
 * the jobs deferred now come back after retry_first, when d is up again
 * and their retry is a real attempt. It keeps no resolved route (some 8
 * KiB, most of what it would cost): the next attempt resolves again.
 */
static void dest_mark_down(struct dest *d, const char *dsn, const char *relay,
			   const char *detail)
{
	struct outbound *o = d->o;
	double period = o->cfg->queue.retry_first / 2;
	if (period <= 0)
		return;
	if (d->down_until > 0)
		down_unlink(d); /* down again: now the newest */
	else if (o->ndown >= DOWN_MAX)
		forget_oldest_down(o);
	d->down.prev = o->down.prev;
	d->down.next = &o->down;
	o->down.prev->next = &d->down;
	o->down.prev = &d->down;
	o->ndown++;
	d->down_until = monotime() + period;
	free(d->cached);
	d->cached = NULL;
	d->cached_until = 0;
	snprintf(d->down_dsn, sizeof(d->down_dsn), "%s", dsn);
	snprintf(d->down_relay, sizeof(d->down_relay), "%s", relay);
	free(d->down_detail);
	d->down_detail = xstrdup(detail);
	if (d->down_timer == NULL)
		d->down_timer = evtimer_new(o->base, on_down_end, d);
	struct timeval tv = tv_of(period);
	evtimer_add(d->down_timer, &tv);
}

/* ---- connections ---- */

static void oconn_start_job(struct oconn *c, struct job *j);
static void oconn_try_hop(struct oconn *c);

static void oconn_free(struct oconn *c)
{
	struct dest *d = c->dest;
	struct outbound *o = d->o;
	if (c->prev)
		c->prev->next = c->next;
	else
		d->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	d->nconns--;
	o->nconns--;
	if (c->state == OC_RESOLVING || c->state == OC_CONNECTING)
		d->nopening--;
	route_cancel(c->lookup);
	free(c->route);
	if (c->idle_timer)
		event_free(c->idle_timer);
	if (c->client)
		smtp_client_quit(c->client);
	free(c);
}

/* A slot in total came free: serve destinations that waited for one. */
static void wake_starved(struct outbound *o)
{
	while (o->starved && o->nconns < o->cfg->outbound.connections) {
		struct dest *d = o->starved;
		o->starved = d->starved_next;
		d->starved = false;
		d->starved_next = NULL;
		dest_pump(d);
		dest_maybe_free(d);
	}
}

static void oconn_close(struct oconn *c)
{
	struct dest *d = c->dest;
	struct outbound *o = d->o;
	oconn_free(c);
	dest_pump(d);
	dest_maybe_free(d);
	wake_starved(o);
}

static void on_idle_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	oconn_close(arg);
}

/* The connection has nothing to do: next job, idle, or QUIT. */
static void oconn_next(struct oconn *c)
{
	struct dest *d = c->dest;
	struct outbound *o = d->o;
	if (smtp_client_count(c->client) >= o->cfg->outbound.messages_per_connection) {
		oconn_close(c);
		return;
	}
	c->state = OC_IDLE;
	if (d->head) {
		dest_pump(d);
		return;
	}
	if (o->starved || o->cfg->outbound.idle_time <= 0) {
		oconn_close(c);
		return;
	}
	if (c->idle_timer == NULL)
		c->idle_timer = evtimer_new(o->base, on_idle_timeout, c);
	struct timeval tv = tv_of(o->cfg->outbound.idle_time);
	evtimer_add(c->idle_timer, &tv);
}

/* The server hung up on an idle connection. */
static void on_client_closed(void *arg, struct smtp_client *cl)
{
	struct oconn *c = arg;
	(void)cl;
	smtp_client_free(c->client);
	c->client = NULL;
	oconn_close(c);
}

static void dsn_of(int code, const char *reply, char *dsn, size_t len);

/* No hop of the route would take a connection. */
static void oconn_give_up(struct oconn *c)
{
	struct dest *d = c->dest;
	struct smtp_client_status st = c->last;
	char relay[320] = "none";
	if (c->last_relay[0])
		snprintf(relay, sizeof(relay), "%s", c->last_relay);
	d->nopening--;
	c->state = OC_IDLE; /* no longer opening */
	struct outbound *o = d->o;
	enum outbound_status os = OUT_DEFERRED;
	char dsn[16] = "4.4.1";
	if (st.error == SMTP_CLIENT_LOOP) {
		os = OUT_BOUNCED;
		snprintf(dsn, sizeof(dsn), "5.4.6");
	} else if (st.error == SMTP_CLIENT_REPLY) {
		/* A greeting or EHLO refusal: its own enhanced code. */
		os = st.code / 100 == 5 ? OUT_BOUNCED : OUT_DEFERRED;
		dsn_of(st.code, st.reply, dsn, sizeof(dsn));
	} else if (st.error == SMTP_CLIENT_TLS_REQUIRED) {
		snprintf(dsn, sizeof(dsn), "4.7.5");
	} else if (st.error == SMTP_CLIENT_AUTH) {
		snprintf(dsn, sizeof(dsn), "4.7.0");
	}
	char detail[SMTP_CLIENT_REPLY_MAX + 64];
	snprintf(detail, sizeof(detail), "%s", st.reply);
	size_t live = dest_live_conns(d); /* c is not up */
	oconn_free(c);
	/* With another connection up, the jobs wait for it; connections
	 * still opening do not count (they are likely to fail the same way,
	 * and each failure would open another). */
	if (os == OUT_DEFERRED && live == 0)
		dest_mark_down(d, dsn, relay, detail);
	if (live == 0 || os == OUT_BOUNCED)
		dest_fail_waiting(d, os, dsn, relay, detail);
	dest_pump(d);
	dest_maybe_free(d);
	wake_starved(o);
}

static void on_client_ready(void *arg, struct smtp_client *cl,
			    const struct smtp_client_status *st)
{
	struct oconn *c = arg;
	(void)cl;
	if (st->error != SMTP_CLIENT_OK) {
		c->last = *st;
		snprintf(c->last_relay, sizeof(c->last_relay), "%s", smtp_client_relay(c->client));
		struct log_line l;
		log_begin(&l, LOG_INFO, "connect_failed");
		log_str(&l, "relay", smtp_client_relay(c->client));
		log_str(&l, "detail", st->reply);
		log_end(&l);
		smtp_client_free(c->client);
		c->client = NULL;
		if (st->error == SMTP_CLIENT_LOOP) {
			oconn_give_up(c);
			return;
		}
		c->hop++;
		oconn_try_hop(c);
		return;
	}
	struct dest *d = c->dest;
	d->nopening--;
	dest_clear_down(d);
	c->state = OC_IDLE;
	struct log_line l;
	log_begin(&l, LOG_DEBUG, "connected");
	log_str(&l, "relay", smtp_client_relay(c->client));
	log_str(&l, "tls", smtp_client_tls(c->client) ? "yes" : "no");
	log_end(&l);
	oconn_next(c);
}

static void oconn_try_hop(struct oconn *c)
{
	struct dest *d = c->dest;
	struct outbound *o = d->o;
	if (c->hop >= c->route->n) {
		oconn_give_up(c);
		return;
	}
	const struct route_hop *h = &c->route->hops[c->hop];
	const struct cfg_route *r = dest_route(d);
	struct smtp_client_params p = {
		.helo_name = o->cfg->outbound.helo_name ? o->cfg->outbound.helo_name
							: o->cfg->hostname,
		.our_hostname = o->cfg->hostname,
		.server_name = h->host,
		.tls = dest_tls(d),
		.tls_ctx = o->tls_ctx,
		.auth_user = r && r->host ? r->auth_user : NULL,
		.auth_password = r && r->host ? r->auth_password : NULL,
		.connect_timeout = o->cfg->outbound.connect_timeout,
		.greeting_timeout = o->cfg->outbound.greeting_timeout,
		.command_timeout = o->cfg->outbound.command_timeout,
		.data_timeout = o->cfg->outbound.data_timeout,
		.data_done_timeout = o->cfg->outbound.data_done_timeout,
	};
	if (p.tls != TLS_POLICY_NONE && o->tls_ctx == NULL)
		p.tls = p.tls == TLS_POLICY_REQUIRED ? TLS_POLICY_REQUIRED : TLS_POLICY_NONE;
	c->state = OC_CONNECTING;
	c->client = smtp_client_open(o->base, (const struct sockaddr *)&h->addr, h->addrlen,
				     &p, on_client_ready, on_client_closed, c);
}

static void on_route(void *arg, const struct route_result *res)
{
	struct oconn *c = arg;
	struct dest *d = c->dest;
	c->lookup = NULL;
	if (res->status != ROUTE_OK) {
		struct log_line l;
		log_begin(&l, LOG_INFO, "route_failed");
		log_str(&l, "destination", d->key);
		log_str(&l, "dsn", res->dsn);
		log_str(&l, "detail", res->why);
		log_end(&l);
		struct outbound *o = d->o;
		enum outbound_status st =
			res->status == ROUTE_PERMFAIL ? OUT_BOUNCED : OUT_DEFERRED;
		char dsn[16], why[300];
		snprintf(dsn, sizeof(dsn), "%s", res->dsn);
		snprintf(why, sizeof(why), "%s", res->why);
		size_t live = dest_live_conns(d); /* c is still resolving */
		oconn_free(c);
		if (st == OUT_DEFERRED && live == 0)
			dest_mark_down(d, dsn, "none", why);
		if (live == 0 || st == OUT_BOUNCED)
			dest_fail_waiting(d, st, dsn, "none", why);
		dest_maybe_free(d);
		wake_starved(o);
		return;
	}
	c->route = xmalloc(sizeof(*res));
	*c->route = *res;
	if (d->cached == NULL)
		d->cached = xmalloc(sizeof(*res));
	*d->cached = *res;
	d->cached_until = monotime() + ROUTE_CACHE_SECONDS;
	c->hop = 0;
	oconn_try_hop(c);
}

static void oconn_open(struct dest *d)
{
	struct outbound *o = d->o;
	struct oconn *c = xcalloc(1, sizeof(*c));
	c->dest = d;
	c->state = OC_RESOLVING;
	c->next = d->conns;
	if (d->conns)
		d->conns->prev = c;
	d->conns = c;
	d->nconns++;
	d->nopening++;
	o->nconns++;
	if (d->cached && monotime() < d->cached_until) {
		c->route = xmalloc(sizeof(*c->route));
		*c->route = *d->cached;
		c->hop = 0;
		oconn_try_hop(c);
		return;
	}
	c->lookup = route_resolve(o->base, o->dns, o->cfg, d->domain, on_route, c);
}

/* Close one idle connection of any destination (to free a slot). */
static bool close_one_idle(struct outbound *o)
{
	for (size_t b = 0; b < DEST_BUCKETS; b++)
		for (struct dest *d = o->buckets[b]; d; d = d->hnext)
			for (struct oconn *c = d->conns; c; c = c->next)
				if (c->state == OC_IDLE && c->job == NULL && c->client) {
					oconn_close(c);
					return true;
				}
	return false;
}

static void on_rate_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dest *d = arg;
	dest_pump(d);
	dest_maybe_free(d);
}

/* Start what can start: idle connections take jobs, new connections
 * open within the limits. */
static void dest_pump(struct dest *d)
{
	struct outbound *o = d->o;
	while (d->head) {
		struct oconn *idle = NULL;
		for (struct oconn *c = d->conns; c && !idle; c = c->next)
			if (c->state == OC_IDLE && c->client)
				idle = c;
		if (idle) {
			double interval = dest_interval(d);
			if (interval > 0) {
				double now = monotime();
				if (now < d->next_start) {
					if (d->rate_timer == NULL)
						d->rate_timer = evtimer_new(o->base, on_rate_timer, d);
					struct timeval tv = tv_of(d->next_start - now);
					evtimer_add(d->rate_timer, &tv);
					return;
				}
				d->next_start = (now > d->next_start ? now : d->next_start) +
						interval;
			}
			struct job *j = d->head;
			job_unlink_fifo(j);
			oconn_start_job(idle, j);
			continue;
		}
		/* Down (so nothing up to wait for): the jobs are deferred,
		 * from the loop. */
		if (dest_is_down(d)) {
			if (d->defer_ev == NULL)
				d->defer_ev = evtimer_new(o->base, on_defer_while_down, d);
			struct timeval zero = { 0, 0 };
			evtimer_add(d->defer_ev, &zero);
			return;
		}
		/* No idle connection: open one if the jobs outnumber the
		 * connections being opened, within the limits. */
		if (d->nopening >= d->waiting || d->nconns >= dest_conn_limit(d))
			return;
		if (o->nconns >= o->cfg->outbound.connections && !close_one_idle(o)) {
			if (!d->starved) {
				d->starved = true;
				d->starved_next = o->starved;
				o->starved = d;
			}
			return;
		}
		oconn_open(d);
	}
}

/* ---- transactions ---- */

struct reader {
	struct evbuffer *buf;
};

static int read_chunk(void *arg, const char *data, size_t len)
{
	struct reader *r = arg;
	return evbuffer_add(r->buf, data, len);
}

static void free_content(const void *data, size_t len, void *extra)
{
	(void)len;
	(void)extra;
	free((void *)(uintptr_t)data); /* ours: kept from the commit */
}

/* The message content: kept in memory from its commit (first round), or
 * from its queue file; NULL when it does not read back. */
static struct evbuffer *load_content(struct outbound *o, struct qmsg *m, char *err,
				     size_t errlen)
{
	size_t kept_len;
	char *kept = queue_msg_take_content(o->q, m, &kept_len);
	if (kept) {
		struct evbuffer *buf = evbuffer_new();
		if (buf && evbuffer_add_reference(buf, kept, kept_len, free_content, NULL) == 0)
			return buf;
		free(kept);
		if (buf)
			evbuffer_free(buf);
	}
	char path[PATH_MAX];
	queue_msg_path(o->q, m->env.id, path, sizeof(path));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open queue file: %s", strerror_safe(errno));
		return NULL;
	}
	struct reader r = { evbuffer_new() };
	enum qfile_status st = qfile_read_content(fd, m->content_off, read_chunk, &r, err,
						  errlen);
	close(fd);
	if (st != QFILE_OK) {
		evbuffer_free(r.buf);
		return NULL;
	}
	return r.buf;
}

static bool needs_smtputf8(const struct qmsg *m, const struct job *j)
{
	if (!m->env.smtputf8)
		return false;
	for (const char *p = m->env.sender; *p; p++)
		if ((unsigned char)*p >= 0x80)
			return true;
	for (size_t i = 0; i < j->n; i++)
		for (const char *p = m->env.rcpts[j->idx[i]].addr; *p; p++)
			if ((unsigned char)*p >= 0x80)
				return true;
	return false;
}

/* The dsn of a reply: its enhanced code, or one made from the code. */
static void dsn_of(int code, const char *reply, char *dsn, size_t len)
{
	/* smtp_reply_format writes "CODE X.Y.Z text" when there was one */
	const char *p = strchr(reply, ' ');
	if (p && (p[1] == '2' || p[1] == '4' || p[1] == '5') && p[2] == '.') {
		size_t n = strcspn(p + 1, " ");
		if (n < len) {
			memcpy(dsn, p + 1, n);
			dsn[n] = '\0';
			return;
		}
	}
	int cls = code / 100;
	if (cls == 2 || cls == 4 || cls == 5)
		snprintf(dsn, len, "%d.0.0", cls);
	else
		snprintf(dsn, len, "4.5.0"); /* a reply that makes no sense here */
}

static void on_txn_done(void *arg, struct smtp_client *cl, struct smtp_client_txn *t)
{
	struct oconn *c = arg;
	struct outbound *o = c->dest->o;
	struct job *j = c->job;
	(void)t;
	c->job = NULL;
	c->state = OC_IDLE;
	bool caps_dsn = smtp_client_caps(cl)->dsn;
	struct outbound_result *res = xcalloc(j->n, sizeof(*res));
	const struct smtp_client_status *st = &j->txn.status;
	for (size_t i = 0; i < j->n; i++) {
		const struct smtp_client_rcpt *rc = &j->rcpts[i];
		struct outbound_result *r = &res[i];
		r->idx = j->idx[i];
		r->remote_dsn = caps_dsn;
		snprintf(r->relay, sizeof(r->relay), "%s", smtp_client_relay(cl));
		snprintf(r->remote_mta, sizeof(r->remote_mta), "%s",
			 smtp_client_server_name(cl));
		int code;
		const char *reply;
		if (rc->code >= 400 || (st->error == SMTP_CLIENT_OK && rc->code > 0)) {
			code = rc->code;
			reply = rc->reply;
		} else if (st->error == SMTP_CLIENT_REPLY) {
			code = st->code;
			reply = st->reply;
		} else {
			code = 0;
			reply = st->error == SMTP_CLIENT_OK ? "no reply" : st->reply;
		}
		snprintf(r->detail, sizeof(r->detail), "%s", reply);
		if (code / 100 == 2) {
			r->status = OUT_SENT;
			dsn_of(code, reply, r->dsn, sizeof(r->dsn));
		} else if (code / 100 == 5) {
			r->status = OUT_BOUNCED;
			dsn_of(code, reply, r->dsn, sizeof(r->dsn));
		} else {
			r->status = OUT_DEFERRED;
			if (code)
				dsn_of(code, reply, r->dsn, sizeof(r->dsn));
			else
				snprintf(r->dsn, sizeof(r->dsn), "4.4.2");
		}
	}
	bool broken = st->error == SMTP_CLIENT_NETWORK || st->error == SMTP_CLIENT_PROTOCOL;
	job_report(o, j, res, false);
	free(res);
	if (broken) {
		smtp_client_free(c->client);
		c->client = NULL;
		oconn_close(c);
		return;
	}
	oconn_next(c);
}

static void oconn_start_job(struct oconn *c, struct job *j)
{
	struct outbound *o = c->dest->o;
	struct qmsg *m = j->msg;
	const struct smtp_client_caps *caps = smtp_client_caps(c->client);
	if (c->idle_timer)
		evtimer_del(c->idle_timer);
	const char *relay = smtp_client_relay(c->client);
	const char *remote = smtp_client_server_name(c->client);
	if (caps->size && m->env.content_size > caps->size) {
		char why[200];
		snprintf(why, sizeof(why),
			 "message size %llu exceeds the server's limit of %llu octets",
			 (unsigned long long)m->env.content_size,
			 (unsigned long long)caps->size);
		job_finish_all(o, j, OUT_BOUNCED, "5.3.4", relay, remote, why);
		oconn_next(c);
		return;
	}
	if (needs_smtputf8(m, j) && !caps->smtputf8) {
		job_finish_all(o, j, OUT_BOUNCED, "5.6.7", relay, remote,
			       "the message needs SMTPUTF8, which the server does not offer");
		oconn_next(c);
		return;
	}
	char err[200] = "";
	struct evbuffer *content = load_content(o, m, err, sizeof(err));
	if (content == NULL) {
		struct outbound_result *res = xcalloc(j->n, sizeof(*res));
		for (size_t i = 0; i < j->n; i++) {
			res[i].idx = j->idx[i];
			res[i].status = OUT_DEFERRED;
			snprintf(res[i].dsn, sizeof(res[i].dsn), "4.3.0");
			snprintf(res[i].relay, sizeof(res[i].relay), "none");
			snprintf(res[i].detail, sizeof(res[i].detail), "%s", err);
		}
		job_report(o, j, res, true);
		free(res);
		oconn_next(c);
		return;
	}
	j->running = true;
	c->job = j;
	c->state = OC_BUSY;
	j->txn = (struct smtp_client_txn){
		.sender = m->env.sender,
		.size = m->env.content_size,
		.eightbit = m->env.body == SMTP_BODY_8BITMIME,
		.smtputf8 = m->env.smtputf8,
		.ret = m->env.ret,
		.envid = m->env.envid,
		.rcpts = j->rcpts,
		.nrcpts = j->n,
		.content = content,
	};
	smtp_client_send(c->client, &j->txn, on_txn_done, c);
}

/* ---- the interface ---- */

struct outbound *outbound_new(struct event_base *base, struct queue *q, struct dns *dns,
			      struct config *cfg, outbound_done_fn done, void *arg)
{
	struct outbound *o = xcalloc(1, sizeof(*o));
	o->base = base;
	o->q = q;
	o->dns = dns;
	o->cfg = config_ref(cfg);
	o->done = done;
	o->arg = arg;
	o->down.prev = o->down.next = &o->down;
	char err[256];
	o->tls_ctx = tls_client_ctx(err, sizeof(err));
	if (o->tls_ctx == NULL)
		log_msg(LOG_ERROR, "tls_client_failed", "outbound TLS unavailable: %s", err);
	return o;
}

void outbound_set_config(struct outbound *o, struct config *cfg)
{
	config_unref(o->cfg);
	o->cfg = config_ref(cfg);
	/* Routes, credentials or TLS policy may have changed: resolve again,
	 * and a destination that was down is tried again. */
	for (size_t b = 0; b < DEST_BUCKETS; b++) {
		for (struct dest *d = o->buckets[b], *next; d; d = next) {
			next = d->hnext;
			d->cached_until = 0;
			dest_clear_down(d);
			dest_maybe_free(d);
		}
	}
}

void outbound_destination(const struct outbound *o, const char *domain, char *buf,
			  size_t len)
{
	route_destination(o->cfg, domain, buf, len);
}

void outbound_submit(struct outbound *o, struct qmsg *msg, const size_t *idx, size_t n,
		     const char *domain)
{
	char key[300];
	route_destination(o->cfg, domain, key, sizeof(key));
	struct dest *d = dest_get(o, key, domain);
	struct job *j = xcalloc(1, sizeof(*j));
	j->dest = d;
	j->msg = msg;
	j->n = n;
	j->idx = xcalloc(n, sizeof(size_t));
	memcpy(j->idx, idx, n * sizeof(size_t));
	j->rcpts = xcalloc(n, sizeof(*j->rcpts));
	for (size_t i = 0; i < n; i++) {
		const struct env_rcpt *r = &msg->env.rcpts[idx[i]];
		j->rcpts[i].addr = r->addr;
		j->rcpts[i].orcpt = r->orcpt;
		j->rcpts[i].notify = r->notify;
	}
	j->msg_next = msg->out_jobs;
	if (j->msg_next)
		j->msg_next->msg_prev = j;
	msg->out_jobs = j;
	o->njobs++;
	j->prev = d->tail;
	if (d->tail)
		d->tail->next = j;
	else
		d->head = j;
	d->tail = j;
	d->waiting++;
	dest_pump(d);
}

size_t outbound_withdraw(struct outbound *o, struct qmsg *msg)
{
	size_t withdrawn = 0;
	for (struct job *j = msg->out_jobs, *next; j; j = next) {
		next = j->msg_next;
		if (j->running)
			continue;
		withdrawn++;
		struct dest *d = j->dest;
		job_unlink_fifo(j);
		job_free(o, j);
		dest_maybe_free(d);
	}
	return withdrawn;
}

const char *outbound_why(const struct outbound *o, const struct qmsg *msg, size_t idx)
{
	(void)o;
	for (const struct job *j = msg->out_jobs; j; j = j->msg_next) {
		for (size_t i = 0; i < j->n; i++) {
			if (j->idx[i] != idx)
				continue;
			const struct dest *d = j->dest;
			if (j->running)
				return "in delivery";
			if (d->rate_timer && evtimer_pending(d->rate_timer, NULL))
				return "rate limit";
			if (d->nopening > 0)
				return "connecting";
			return "concurrency limit";
		}
	}
	return NULL;
}

size_t outbound_jobs(const struct outbound *o)
{
	return o->njobs;
}

void outbound_free(struct outbound *o)
{
	if (o == NULL)
		return;
	for (size_t b = 0; b < DEST_BUCKETS; b++) {
		while (o->buckets[b]) {
			struct dest *d = o->buckets[b];
			d->starved = false;
			while (d->conns) {
				struct oconn *c = d->conns;
				if (c->job) {
					/* Shutting down mid-transaction: the job
					 * stays queued as it was. */
					c->job->running = false;
					struct job *j = c->job;
					c->job = NULL;
					job_free(o, j);
				}
				if (c->client) {
					smtp_client_free(c->client);
					c->client = NULL;
				}
				oconn_free(c);
			}
			while (d->head) {
				struct job *j = d->head;
				job_unlink_fifo(j);
				job_free(o, j);
			}
			o->starved = NULL;
			dest_clear_down(d); /* forgotten: nothing is kept now */
			dest_maybe_free(d);
		}
	}
	if (o->tls_ctx)
		tls_ctx_free(o->tls_ctx);
	config_unref(o->cfg);
	free(o);
}
