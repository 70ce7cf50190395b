/*
 * spf_async: runs an SPF check (spf.h) through lib/dns on the event loop,
 * with an overall time limit, and calls back once with the outcome.
 *
 * Ownership: spf_async_start takes the struct spf and frees it after the
 * callback (or on cancel, or when it fails). The callback is never called from inside
 * spf_async_start, and never after spf_async_cancel; the handle is
 * invalid once the callback has returned. The outcome passed to the
 * callback is valid during the call only. One event loop thread.
 */
#ifndef FULMAR_SPF_ASYNC_H
#define FULMAR_SPF_ASYNC_H

#include "verify/spf.h"

struct event_base;
struct dns;
struct spf_async;

typedef void (*spf_async_fn)(void *arg, const struct spf_outcome *r);

/* timeout: seconds for the whole check (every query it makes); when it
 * runs out the result is temperror. Out of memory: NULL with errno
 * ENOMEM, c freed and fn never called; the caller counts the check as
 * failed for want of memory (a temperror, never a verdict), as for
 * dkim_verify_async_start and dmarc_async_start. */
struct spf_async *spf_async_start(struct event_base *base, struct dns *d, struct spf *c,
				  double timeout, spf_async_fn fn, void *arg);
/* Stops the check and frees it; fn is not called. NULL is ignored. */
void spf_async_cancel(struct spf_async *a);

#endif
