/*
 * signing: the signer of one submitted message (signing.h).
 */
#include "signer/signing.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "signer/dkim_sign.h"

struct signing {
	struct dkim_sign *s;
	char id[32];
	char domain[256];
	char selectors[256]; /* for the log line */
};

int signing_start(const struct config *cfg, const char *sender, const char *queue_id,
		  struct signing **out)
{
	const char *at = sender ? strrchr(sender, '@') : NULL;
	*out = NULL;
	if (at == NULL || cfg->ndkim == 0)
		return 0;
	const char *domain = at + 1;
	struct signing *sg = NULL;
	for (size_t i = 0; i < cfg->ndkim; i++) {
		const struct cfg_dkim *k = &cfg->dkim[i];
		if (strcasecmp(k->domain, domain) != 0)
			continue;
		char err[256];
		if (sg == NULL) {
			if ((sg = mem_calloc(1, sizeof(*sg))) == NULL)
				return -1;
			snprintf(sg->id, sizeof(sg->id), "%s", queue_id);
			snprintf(sg->domain, sizeof(sg->domain), "%s", k->domain);
			sg->s = dkim_sign_new(k->domain, k->selector, (enum dkim_alg)k->alg,
					      k->key, err, sizeof(err));
		} else if (sg->s) {
			if (dkim_sign_add(sg->s, k->domain, k->selector, (enum dkim_alg)k->alg,
					  k->key, err, sizeof(err)) < 0) {
				if (errno == ENOMEM)
					goto nomem;
				continue;
			}
		}
		if (sg->s == NULL) {
			if (errno == ENOMEM)
				goto nomem;
			log_msg(LOG_WARNING, "dkim_failed", "id=%s: %s", queue_id, err);
			free(sg);
			return 0;
		}
		size_t n = strlen(sg->selectors);
		snprintf(sg->selectors + n, sizeof(sg->selectors) - n, "%s%s", n ? "," : "",
			 k->selector);
	}
	*out = sg;
	return 0;
nomem:
	signing_free(sg);
	errno = ENOMEM;
	return -1;
}

void signing_feed(struct signing *sg, const char *data, size_t len)
{
	dkim_sign_feed(sg->s, data, len);
}

int signing_finish(void *arg, char **out, size_t *len)
{
	struct signing *sg = arg;
	char err[256];
	struct log_line l;
	if (dkim_sign_finish(sg->s, out, len, err, sizeof(err)) < 0) {
		if (errno == ENOMEM)
			return ENOMEM; /* the session says so (event=oom) */
		log_begin(&l, LOG_WARNING, "dkim_failed");
		log_str(&l, "id", sg->id);
		log_str(&l, "domain", sg->domain);
		log_str(&l, "detail", err);
		log_end(&l);
		return 0;
	}
	log_begin(&l, LOG_INFO, "signed");
	log_str(&l, "id", sg->id);
	log_str(&l, "domain", sg->domain);
	log_str(&l, "selectors", sg->selectors);
	log_end(&l);
	return 0;
}

void signing_free(void *arg)
{
	struct signing *sg = arg;
	if (sg == NULL)
		return;
	dkim_sign_free(sg->s);
	free(sg);
}
