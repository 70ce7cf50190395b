/*
 * dkim_verify_async: the DKIM key lookups of one message on the event
 * loop (see dkim_verify_async.h). It owns the queries in flight and the
 * count of answers still to come; the verifier owns the keys and the
 * results.
 */
#include "verify/dkim_verify_async.h"

#include <errno.h>
#include <stdlib.h>

#include "lib/mem.h"

struct lookup {
	struct dkim_verify_async *a;
	size_t key;             /* index of the key name in the verifier */
	struct dns_query *q;    /* NULL once answered */
};

struct dkim_verify_async {
	struct dkim_verify *v;
	dkim_verify_async_fn fn;
	void *arg;
	size_t pending; /* answers to come, plus one while starting */
	struct lookup l[DKIM_VERIFY_MAX_SIGS];
	size_t n;
};

/* One answer less to wait for; at none, the callback, then the end. */
static void release(struct dkim_verify_async *a)
{
	if (--a->pending > 0)
		return;
	a->fn(a->arg, a->v);
	free(a);
}

static void on_txt(void *arg, enum dns_status st, const struct dns_txt *txt, size_t n,
		   const char *why)
{
	struct lookup *l = arg;
	struct dkim_verify_async *a = l->a;

	l->q = NULL;
	(void)dkim_verify_key_answer(a->v, dkim_verify_key_name(a->v, l->key), st, txt, n,
				     why);
	release(a);
}

struct dkim_verify_async *dkim_verify_async_start(struct dkim_verify *v, struct dns *dns,
						  dkim_verify_async_fn fn, void *arg)
{
	struct dkim_verify_async *a = mem_calloc(1, sizeof(*a));
	size_t nkeys = dkim_verify_key_count(v);

	if (a == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	a->v = v;
	a->fn = fn;
	a->arg = arg;
	a->pending = 1;
	for (size_t i = 0; i < nkeys && a->n < DKIM_VERIFY_MAX_SIGS; i++) {
		struct lookup *l;

		if (dkim_verify_key_answered(v, i))
			continue;
		l = &a->l[a->n++];
		l->a = a;
		l->key = i;
		a->pending++;
		/* The answer may come at once (then NULL comes back). */
		l->q = dns_lookup_txt(dns, dkim_verify_key_name(v, i), on_txt, l);
	}
	if (a->pending == 1) {
		release(a);
		return NULL;
	}
	a->pending--;
	return a;
}

void dkim_verify_async_cancel(struct dkim_verify_async *a)
{
	if (a == NULL)
		return;
	for (size_t i = 0; i < a->n; i++)
		if (a->l[i].q != NULL)
			dns_cancel(a->l[i].q);
	free(a);
}
