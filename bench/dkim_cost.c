/*
 * dkim_cost: the CPU cost of one DKIM signature on a typical message, for
 * bench/dkim_run.sh. Signs the same 3 KB message over and over, in this
 * one thread, with Fulmar's signer (src/signer/dkim_sign.h: new, feed,
 * finish, free: what the queue's commit worker does per message) and,
 * when built with -DWITH_OPENDKIM, with Debian's libopendkim (dkim_sign,
 * dkim_chunk, dkim_eom, dkim_getsighdr_d, dkim_free: what the opendkim
 * milter does per message, without the milter protocol), for RSA-2048
 * and Ed25519 with the same keys, relaxed/relaxed.
 *
 *   dkim_cost --rsa KEY.pem --ed25519 KEY.pem [--seconds S] [--rounds R]
 *             [--sample DIR]
 *
 * Each case runs for at least S CPU seconds (default 1) per round; the
 * rounds (default 3) interleave the cases so that a slow spell of the
 * machine hits them all. Prints one JSON object per case and round:
 * {"impl","alg","round","n","cpu_s","wall_s","us_per_sig","sigs_per_s",
 * "msg_bytes"}; cpu_s is this process's CPU time (CLOCK_PROCESS_CPUTIME_ID),
 * so sigs_per_s is per core. --sample writes each case's signed message
 * to DIR/IMPL-ALG.eml (the signature fields, then the message) for an
 * independent verifier.
 *
 * Built by bench/dkim_run.sh against build/libfulmar_core.a; not part of
 * the server. Exits non-zero when any signature fails.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "signer/dkim_key.h"
#include "signer/dkim_sign.h"

#ifdef WITH_OPENDKIM
#include <dkim.h>
#endif

#define DOMAIN "bench.test"

/* A typical 3 KB message as a mail client submits it and the server adds
 * its Received: field: the usual header fields, a text body. */
static char msg[4096];
static size_t msg_len;

static void make_message(void)
{
	static const char head[] =
		"Received: from client.bench.test (client.bench.test [127.0.0.1])\r\n"
		"\tby fulmar.bench.test with ESMTPSA id 4F2A9C01B7E3D5A6\r\n"
		"\tfor <alice@example.org>; Sun, 29 Nov 2026 12:00:00 +0000\r\n"
		"From: Bench Sender <from@bench.test>\r\n"
		"To: Alice Example <alice@example.org>\r\n"
		"Cc: Bob Example <bob@example.org>\r\n"
		"Subject: Your order 123456 has shipped: tracking number and delivery\r\n"
		" window inside\r\n"
		"Date: Sun, 29 Nov 2026 12:00:00 +0000\r\n"
		"Message-ID: <20261129120000.4F2A9C01B7E3D5A6@bench.test>\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"Content-Transfer-Encoding: 8bit\r\n"
		"List-Unsubscribe: <mailto:unsubscribe@bench.test?subject=123456>\r\n"
		"\r\n";
	static const char line[] =
		"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do  \r\n"
		"eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut\r\n"
		"enim ad minim veniam, quis nostrud exercitation ullamco laboris\r\n"
		"\r\n";
	msg_len = 0;
	memcpy(msg, head, sizeof(head) - 1);
	msg_len = sizeof(head) - 1;
	while (msg_len + sizeof(line) - 1 + 32 < 3072) {
		memcpy(msg + msg_len, line, sizeof(line) - 1);
		msg_len += sizeof(line) - 1;
	}
	static const char tail[] = "-- \r\nBench Sender\r\n";
	memcpy(msg + msg_len, tail, sizeof(tail) - 1);
	msg_len += sizeof(tail) - 1;
}

static double now(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why)
{
	fprintf(stderr, "dkim_cost: %s: %s\n", what, why);
	exit(1);
}

/* One case: a name and a function that signs msg once, returning the
 * signature fields (malloc'd) or NULL. */
struct bench_case {
	const char *impl, *alg;
	char *(*sign)(const struct bench_case *c, size_t *len);
	const char *sel1, *sel2;     /* selectors; sel2 for dual */
	EVP_PKEY *k1, *k2;           /* Fulmar: the key(s); k2 for dual */
	enum dkim_alg a1, a2;
	const char *pem;             /* OpenDKIM: the key's PEM text */
	int odalg;
	void *lib;
};

/* Fed in chunks of 1 KiB, as a session writes the queue file. */
static char *fulmar_sign(const struct bench_case *c, size_t *len)
{
	char err[256];
	struct dkim_sign *s = dkim_sign_new(DOMAIN, c->sel1, c->a1, c->k1, err, sizeof(err));
	if (s == NULL)
		die("dkim_sign_new", err);
	if (c->k2 != NULL && dkim_sign_add(s, DOMAIN, c->sel2, c->a2, c->k2, err, sizeof(err)) < 0)
		die("dkim_sign_add", err);
	for (size_t off = 0; off < msg_len; off += 1024) {
		size_t n = msg_len - off < 1024 ? msg_len - off : 1024;
		dkim_sign_feed(s, msg + off, n);
	}
	char *out = NULL;
	if (dkim_sign_finish(s, &out, len, err, sizeof(err)) < 0)
		die("dkim_sign_finish", err);
	dkim_sign_free(s);
	return out;
}

#ifdef WITH_OPENDKIM
static char *opendkim_sign(const struct bench_case *c, size_t *len)
{
	DKIM_STAT st;
	DKIM *d = dkim_sign(c->lib, (const unsigned char *)"bench", NULL, (dkim_sigkey_t)c->pem,
			    (const unsigned char *)c->sel1, (const unsigned char *)DOMAIN, DKIM_CANON_RELAXED, DKIM_CANON_RELAXED,
			    c->odalg, -1, &st);
	if (d == NULL)
		die("dkim_sign", dkim_getresultstr(st));
	for (size_t off = 0; off < msg_len; off += 1024) {
		size_t n = msg_len - off < 1024 ? msg_len - off : 1024;
		if ((st = dkim_chunk(d, (u_char *)msg + off, n)) != DKIM_STAT_OK)
			die("dkim_chunk", dkim_getresultstr(st));
	}
	if ((st = dkim_chunk(d, NULL, 0)) != DKIM_STAT_OK)
		die("dkim_chunk (end)", dkim_getresultstr(st));
	if ((st = dkim_eom(d, NULL)) != DKIM_STAT_OK)
		die("dkim_eom", dkim_geterror(d) ? dkim_geterror(d) : dkim_getresultstr(st));
	unsigned char *hdr = NULL;
	size_t hlen = 0;
	static const char name[] = "DKIM-Signature: ";
	if ((st = dkim_getsighdr_d(d, sizeof(name) - 1, &hdr, &hlen)) != DKIM_STAT_OK)
		die("dkim_getsighdr_d", dkim_getresultstr(st));
	/* The field as a header line (the milter's smfi_insheader adds the
	 * name and the line end). */
	char *out = malloc(sizeof(name) - 1 + hlen + 3);
	if (out == NULL)
		die("malloc", strerror(ENOMEM));
	*len = (size_t)snprintf(out, sizeof(name) - 1 + hlen + 3, "%s%.*s\r\n", name, (int)hlen,
				(const char *)hdr);
	dkim_free(d);
	return out;
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		die(path, strerror(errno));
	static char buf[16384];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *s = strdup(buf);
	if (s == NULL)
		die("strdup", strerror(ENOMEM));
	return s;
}
#endif

static void write_sample(const char *dir, const struct bench_case *c)
{
	size_t len;
	char *sig = c->sign(c, &len);
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s-%s.eml", dir, c->impl, c->alg);
	FILE *f = fopen(path, "wb");
	if (f == NULL)
		die(path, strerror(errno));
	fwrite(sig, 1, len, f);
	fwrite(msg, 1, msg_len, f);
	if (fclose(f) != 0)
		die(path, strerror(errno));
	free(sig);
}

static void run(const struct bench_case *c, int round, double seconds)
{
	size_t len;
	for (int i = 0; i < 20; i++) /* warm-up: caches, lazy OpenSSL set-up */
		free(c->sign(c, &len));
	long n = 0;
	double c0 = now(CLOCK_PROCESS_CPUTIME_ID), w0 = now(CLOCK_MONOTONIC), c1;
	do {
		for (int i = 0; i < 50; i++) {
			char *sig = c->sign(c, &len);
			if (len < 100 || strstr(sig, "b=") == NULL)
				die(c->impl, "a signature without b=");
			free(sig);
		}
		n += 50;
		c1 = now(CLOCK_PROCESS_CPUTIME_ID);
	} while (c1 - c0 < seconds);
	double w1 = now(CLOCK_MONOTONIC), cpu = c1 - c0;
	printf("{\"impl\":\"%s\",\"alg\":\"%s\",\"round\":%d,\"n\":%ld,\"cpu_s\":%.6f,"
	       "\"wall_s\":%.6f,\"us_per_sig\":%.3f,\"sigs_per_s\":%.1f,\"msg_bytes\":%zu}\n",
	       c->impl, c->alg, round, n, cpu, w1 - w0, cpu * 1e6 / (double)n, (double)n / cpu,
	       msg_len);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	const char *rsa_path = NULL, *ed_path = NULL, *sample = NULL;
	double seconds = 1.0;
	int rounds = 3;
	for (int i = 1; i < argc; i++) {
		bool more = i + 1 < argc;
		if (strcmp(argv[i], "--rsa") == 0 && more)
			rsa_path = argv[++i];
		else if (strcmp(argv[i], "--ed25519") == 0 && more)
			ed_path = argv[++i];
		else if (strcmp(argv[i], "--seconds") == 0 && more)
			seconds = strtod(argv[++i], NULL);
		else if (strcmp(argv[i], "--rounds") == 0 && more)
			rounds = (int)strtol(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--sample") == 0 && more)
			sample = argv[++i];
		else
			die("usage", "dkim_cost --rsa KEY --ed25519 KEY [--seconds S] [--rounds R] [--sample DIR]");
	}
	if (rsa_path == NULL || ed_path == NULL || seconds <= 0 || rounds < 1)
		die("usage", "dkim_cost --rsa KEY --ed25519 KEY [--seconds S] [--rounds R] [--sample DIR]");
	make_message();

	char err[256];
	enum dkim_alg ra, ea;
	EVP_PKEY *rk = dkim_key_load(rsa_path, &ra, err, sizeof(err));
	if (rk == NULL)
		die("key", err);
	EVP_PKEY *ek = dkim_key_load(ed_path, &ea, err, sizeof(err));
	if (ek == NULL)
		die("key", err);
	if (ra != DKIM_ALG_RSA_SHA256 || ea != DKIM_ALG_ED25519_SHA256)
		die("keys", "--rsa needs an RSA key and --ed25519 an Ed25519 key");

	struct bench_case cases[5];
	size_t ncases = 0;
	cases[ncases++] = (struct bench_case){ .impl = "fulmar", .alg = "rsa-sha256",
					       .sign = fulmar_sign, .sel1 = "frsa", .k1 = rk, .a1 = ra };
	cases[ncases++] = (struct bench_case){ .impl = "fulmar", .alg = "ed25519-sha256",
					       .sign = fulmar_sign, .sel1 = "fed", .k1 = ek, .a1 = ea };
	cases[ncases++] = (struct bench_case){ .impl = "fulmar", .alg = "dual", .sign = fulmar_sign,
					       .sel1 = "frsa", .k1 = rk, .a1 = ra,
					       .sel2 = "fed", .k2 = ek, .a2 = ea };
#ifdef WITH_OPENDKIM
	DKIM_LIB *lib = dkim_init(NULL, NULL);
	if (lib == NULL)
		die("dkim_init", "failed");
	cases[ncases++] = (struct bench_case){ .impl = "opendkim", .alg = "rsa-sha256",
					       .sign = opendkim_sign, .sel1 = "frsa",
					       .pem = read_file(rsa_path),
					       .odalg = DKIM_SIGN_RSASHA256, .lib = lib };
	cases[ncases++] = (struct bench_case){ .impl = "opendkim", .alg = "ed25519-sha256",
					       .sign = opendkim_sign, .sel1 = "fed",
					       .pem = read_file(ed_path),
					       .odalg = DKIM_SIGN_ED25519SHA256, .lib = lib };
#endif
	if (sample != NULL)
		for (size_t i = 0; i < ncases; i++)
			write_sample(sample, &cases[i]);
	for (int r = 1; r <= rounds; r++)
		for (size_t i = 0; i < ncases; i++)
			run(&cases[(i + (size_t)r - 1) % ncases], r, seconds);
	EVP_PKEY_free(rk);
	EVP_PKEY_free(ek);
	return 0;
}
