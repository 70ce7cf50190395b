/*
 * dmarc_async: runs DMARC policy discovery (dmarc.h) through lib/dns on
 * the event loop, with an overall time limit, and calls back once when it
 * is over; the caller then calls dmarc_evaluate with the SPF and DKIM
 * results (which may come later than the record: discovery can start as
 * soon as the From domain is known).
 *
 * Ownership: the struct dmarc stays the caller's and must live until the
 * callback or dmarc_async_cancel. The callback is never called from inside
 * dmarc_async_start, nor after dmarc_async_cancel; the handle is invalid
 * once the callback has returned. One event loop thread.
 */
#ifndef FULMAR_DMARC_ASYNC_H
#define FULMAR_DMARC_ASYNC_H

#include "verify/dmarc.h"

struct event_base;
struct dns;
struct dmarc_async;

typedef void (*dmarc_async_fn)(void *arg, struct dmarc *m);

/* timeout: seconds for the whole discovery; then it ends in temperror.
 * Out of memory: NULL with errno ENOMEM, m untouched and fn never
 * called; the caller counts the check as failed for want of memory (a
 * temperror, never a verdict), as for spf_async_start and
 * dkim_verify_async_start. */
struct dmarc_async *dmarc_async_start(struct event_base *base, struct dns *d,
				      struct dmarc *m, double timeout, dmarc_async_fn fn,
				      void *arg);
/* Stops discovery; fn is not called. NULL is ignored. */
void dmarc_async_cancel(struct dmarc_async *a);

#endif
