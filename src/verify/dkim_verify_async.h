/*
 * dkim_verify_async: looks up the keys a dkim_verify needs through lib/dns
 * (TXT, every name at once) and hands each answer to the verifier; calls
 * back once when every key has its answer. Timeouts are the resolver's
 * (dns_new's timeout per try): a name that times out is answered
 * DNS_TEMPFAIL, so the callback always comes, unless cancelled.
 *
 * Call it once the header section has ended (dkim_verify_headers_done):
 * while the body still streams, or after dkim_verify_end. Keys answered
 * already (by a cache of the caller's) are not looked up again. When the
 * callback has run, every signature's result is final once
 * dkim_verify_end has been called too.
 *
 * Ownership: the handle belongs to the driver; it is freed after the
 * callback returns, or by dkim_verify_async_cancel (then the callback
 * never runs). The verifier and the dns must outlive the handle: cancel
 * before dkim_verify_free or dns_free.
 */
#ifndef FULMAR_DKIM_VERIFY_ASYNC_H
#define FULMAR_DKIM_VERIFY_ASYNC_H

#include "lib/dns.h"
#include "verify/dkim_verify.h"

struct dkim_verify_async;

typedef void (*dkim_verify_async_fn)(void *arg, struct dkim_verify *v);

/* Starts the lookups: a handle valid until fn runs or
 * dkim_verify_async_cancel, or NULL when fn has run already (nothing to
 * look up, or every answer came at once; a lookup that had no memory is
 * answered DNS_NOMEM, see dkim_verify_out_of_memory). Out of memory for
 * the handle: NULL with errno ENOMEM, the verifier untouched and fn never
 * called (the caller tells this NULL from the other by its callback not
 * having run); the caller counts the check as failed for want of memory
 * (a temperror, never a verdict), as for spf_async_start and
 * dmarc_async_start. */
struct dkim_verify_async *dkim_verify_async_start(struct dkim_verify *v, struct dns *dns,
						  dkim_verify_async_fn fn, void *arg);

/* Cancels the lookups still in flight; fn is never called. NULL is
 * ignored. */
void dkim_verify_async_cancel(struct dkim_verify_async *a);

#endif
