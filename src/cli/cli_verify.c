/*
 * cli_verify: hidden debugging subcommands that run the inbound checks
 * exactly as the server will (src/verify through lib/dns on an event
 * loop), for the tests and for looking at a sender's setup by hand.
 *
 *   fulmar spf check --dns IP:PORT --ip ADDR --mailfrom ADDR --helo NAME
 *                    [--identity mailfrom|helo] [--timeout SECONDS]
 *   fulmar dmarc check --dns IP:PORT (--from-domain D | --message FILE)
 *                      [--spf RESULT:DOMAIN] [--dkim RESULT:DOMAIN]...
 *                      [--psl FILE] [--roll N] [--timeout SECONDS]
 *
 * --dns "system" uses /etc/resolv.conf. Output: one key=value a line,
 * "spf=" or "dmarc=" first. Exit 0 when a result was printed (whatever
 * it is), 1 on a set-up failure, 2 on a usage error.
 */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "lib/dns.h"
#include "lib/xalloc.h"
#include "proto/addr_list.h"
#include "verify/dmarc.h"
#include "verify/dmarc_async.h"
#include "verify/psl.h"
#include "verify/spf.h"
#include "verify/spf_async.h"

#define VERIFY_DKIM_MAX 16
#define VERIFY_MESSAGE_MAX (1024 * 1024) /* of --message read: the header is enough */

/* An event loop and a resolver for one check. */
struct loop {
	struct event_base *base;
	struct dns *dns;
	double timeout;
	int finished;
};

static int loop_open(struct loop *l, const char *servers, double timeout)
{
	char err[256];
	l->base = event_base_new();
	if (l->base == NULL) {
		fputs("fulmar: cannot create an event loop\n", stderr);
		return -1;
	}
	l->timeout = timeout;
	l->finished = 0;
	/* c-ares tries twice: the overall limit comes first */
	l->dns = dns_new(l->base, strcmp(servers, "system") == 0 ? NULL : servers, timeout, err,
			 sizeof(err));
	if (l->dns == NULL) {
		fprintf(stderr, "fulmar: %s\n", err);
		event_base_free(l->base);
		return -1;
	}
	return 0;
}

static void loop_close(struct loop *l)
{
	dns_free(l->dns);
	event_base_free(l->base);
}

static int parse_timeout(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);
	if (*end != '\0' || !(v > 0 && v <= 600))
		return -1;
	*out = v;
	return 0;
}

/* ---- spf ---- */

static void spf_usage(void)
{
	fputs("usage: fulmar spf check --dns IP:PORT --ip ADDR --mailfrom ADDR --helo NAME\n"
	      "                        [--identity mailfrom|helo] [--timeout SECONDS]\n",
	      stderr);
}

static void on_spf(void *arg, const struct spf_outcome *r)
{
	struct loop *l = arg;
	printf("spf=%s\n", spf_result_name(r->result));
	printf("domain=%s\n", r->domain);
	printf("mechanism=%s\n", r->mechanism);
	printf("reason=%s\n", r->reason);
	printf("explanation=%s\n", r->explanation);
	printf("lookups=%u\n", r->lookups);
	printf("void_lookups=%u\n", r->void_lookups);
	l->finished = 1;
}

int cmd_spf(int argc, char **argv)
{
	const char *dns = NULL, *ip = NULL, *mailfrom = NULL, *helo = "", *identity = "mailfrom";
	double timeout = 10;
	if (argc < 2 || strcmp(argv[1], "check") != 0) {
		spf_usage();
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		const char *o = argv[i];
		if (i + 1 >= argc) {
			spf_usage();
			return 2;
		}
		const char *v = argv[++i];
		if (strcmp(o, "--dns") == 0)
			dns = v;
		else if (strcmp(o, "--ip") == 0)
			ip = v;
		else if (strcmp(o, "--mailfrom") == 0)
			mailfrom = v;
		else if (strcmp(o, "--helo") == 0)
			helo = v;
		else if (strcmp(o, "--identity") == 0)
			identity = v;
		else if (strcmp(o, "--timeout") == 0 && parse_timeout(v, &timeout) == 0)
			continue;
		else {
			spf_usage();
			return 2;
		}
	}
	bool helo_id = strcmp(identity, "helo") == 0;
	if (dns == NULL || ip == NULL || (mailfrom == NULL && !helo_id) ||
	    (!helo_id && strcmp(identity, "mailfrom") != 0)) {
		spf_usage();
		return 2;
	}
	struct sockaddr_storage ss;
	if (!spf_parse_ip(ip, &ss)) {
		fprintf(stderr, "fulmar: --ip %s: not an IPv4 or IPv6 address\n", ip);
		return 2;
	}
	if (mailfrom && mailfrom[0] == '<') {
		/* accept "<a@b>" as written after MAIL FROM: */
		size_t n = strlen(mailfrom);
		static char buf[512];
		if (n < 2 || n - 2 >= sizeof(buf) || mailfrom[n - 1] != '>') {
			fprintf(stderr, "fulmar: --mailfrom %s: unbalanced angle brackets\n", mailfrom);
			return 2;
		}
		memcpy(buf, mailfrom + 1, n - 2);
		buf[n - 2] = '\0';
		mailfrom = buf;
	}
	struct loop l;
	if (loop_open(&l, dns, timeout) < 0)
		return 1;
	struct spf *c = helo_id ? spf_new_helo((const struct sockaddr *)&ss, helo)
				: spf_new_mailfrom((const struct sockaddr *)&ss, mailfrom, helo);
	if (c == NULL || spf_async_start(l.base, l.dns, c, timeout, on_spf, &l) == NULL) {
		fprintf(stderr, "fulmar: out of memory\n");
		loop_close(&l);
		return 1;
	}
	while (!l.finished && event_base_loop(l.base, EVLOOP_ONCE) == 0)
		;
	loop_close(&l);
	return l.finished ? 0 : 1;
}

/* ---- dmarc ---- */

static void dmarc_usage(void)
{
	fputs("usage: fulmar dmarc check --dns IP:PORT (--from-domain D | --message FILE)\n"
	      "                          [--spf RESULT:DOMAIN] [--dkim RESULT:DOMAIN]...\n"
	      "                          [--psl FILE] [--roll N] [--timeout SECONDS]\n",
	      stderr);
}

/* "RESULT:DOMAIN" in place: the result's name and the domain. */
static bool split_auth(char *s, const char **result, const char **domain)
{
	char *colon = strchr(s, ':');
	if (colon == NULL)
		return false;
	*colon = '\0';
	*result = s;
	*domain = colon + 1;
	return true;
}

static void on_dmarc(void *arg, struct dmarc *m)
{
	(void)m;
	struct loop *l = arg;
	l->finished = 1;
}

static void print_dmarc(const struct dmarc_outcome *o)
{
	printf("dmarc=%s\n", dmarc_result_name(o->result));
	printf("policy=%s\n", dmarc_policy_name(o->policy));
	printf("apply=%s\n", dmarc_policy_name(o->apply));
	printf("from_domain=%s\n", o->from_domain);
	printf("org_domain=%s\n", o->org_domain);
	printf("record_domain=%s\n", o->record_domain);
	printf("subdomain_policy=%s\n", o->subdomain_policy ? "yes" : "no");
	printf("spf_aligned=%s\n", o->spf_aligned ? "yes" : "no");
	printf("dkim_aligned=%s\n", o->dkim_aligned ? "yes" : "no");
	printf("sampled_out=%s\n", o->sampled_out ? "yes" : "no");
	printf("reason=%s\n", o->reason);
}

/* The From domain of the message in path; false after printing the
 * permerror outcome (or an error, *rc = 1). */
static bool message_from(const char *path, char *out, size_t outlen, int *rc)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		fprintf(stderr, "fulmar: %s: cannot open\n", path);
		*rc = 1;
		return false;
	}
	char *buf = xmalloc(VERIFY_MESSAGE_MAX);
	size_t n = fread(buf, 1, VERIFY_MESSAGE_MAX, f);
	fclose(f);
	size_t hlen = addr_list_header_len(buf, n);
	enum dmarc_from st = dmarc_from_domain(buf, hlen, out, outlen);
	free(buf);
	if (st == DMARC_FROM_OK)
		return true;
	struct dmarc_outcome o;
	memset(&o, 0, sizeof(o));
	o.result = DMARC_PERMERROR;
	snprintf(o.reason, sizeof(o.reason), "%s", dmarc_from_text(st));
	print_dmarc(&o);
	*rc = 0;
	return false;
}

int cmd_dmarc(int argc, char **argv)
{
	const char *dns = NULL, *from = NULL, *message = NULL, *psl_path = NULL;
	const char *spf_res = "none", *spf_dom = "";
	struct dmarc_dkim dkim[VERIFY_DKIM_MAX];
	size_t ndkim = 0;
	unsigned roll = 0;
	double timeout = 10;
	if (argc < 2 || strcmp(argv[1], "check") != 0) {
		dmarc_usage();
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		const char *o = argv[i];
		if (i + 1 >= argc) {
			dmarc_usage();
			return 2;
		}
		char *v = argv[++i];
		const char *res, *dom;
		if (strcmp(o, "--dns") == 0) {
			dns = v;
		} else if (strcmp(o, "--from-domain") == 0) {
			from = v;
		} else if (strcmp(o, "--message") == 0) {
			message = v;
		} else if (strcmp(o, "--psl") == 0) {
			psl_path = v;
		} else if (strcmp(o, "--timeout") == 0 && parse_timeout(v, &timeout) == 0) {
			continue;
		} else if (strcmp(o, "--roll") == 0) {
			char *end;
			unsigned long r = strtoul(v, &end, 10);
			if (*end != '\0' || r > 99) {
				dmarc_usage();
				return 2;
			}
			roll = (unsigned)r;
		} else if (strcmp(o, "--spf") == 0 && split_auth(v, &spf_res, &spf_dom)) {
			continue;
		} else if (strcmp(o, "--dkim") == 0 && ndkim < VERIFY_DKIM_MAX &&
			   split_auth(v, &res, &dom)) {
			dkim[ndkim].pass = strcmp(res, "pass") == 0;
			dkim[ndkim].domain = dom;
			ndkim++;
		} else {
			dmarc_usage();
			return 2;
		}
	}
	enum spf_result spf;
	if (dns == NULL || (from == NULL) == (message == NULL) || !spf_result_parse(spf_res, &spf)) {
		dmarc_usage();
		return 2;
	}
	char err[512];
	struct psl *own = NULL;
	const struct psl *psl;
	if (psl_path)
		psl = own = psl_load(psl_path, err, sizeof(err));
	else
		psl = psl_default(err, sizeof(err));
	if (psl == NULL) {
		fprintf(stderr, "fulmar: public suffix list: %s\n", err);
		return 1;
	}
	char from_buf[DMARC_NAME_MAX + 1];
	int rc = 0;
	if (message) {
		if (!message_from(message, from_buf, sizeof(from_buf), &rc)) {
			psl_free(own);
			return rc;
		}
		from = from_buf;
	}
	struct loop l;
	if (loop_open(&l, dns, timeout) < 0) {
		psl_free(own);
		return 1;
	}
	struct dmarc *m = dmarc_new(psl, from);
	if (m == NULL || dmarc_async_start(l.base, l.dns, m, timeout, on_dmarc, &l) == NULL) {
		fprintf(stderr, "fulmar: out of memory\n");
		dmarc_free(m);
		loop_close(&l);
		psl_free(own);
		return 1;
	}
	while (!l.finished && event_base_loop(l.base, EVLOOP_ONCE) == 0)
		;
	if (l.finished) {
		struct dmarc_auth a = { spf, spf_dom, dkim, ndkim, roll };
		struct dmarc_outcome o;
		dmarc_evaluate(m, &a, &o);
		print_dmarc(&o);
	}
	dmarc_free(m);
	loop_close(&l);
	psl_free(own);
	return l.finished ? 0 : 1;
}
