/*
 * Unit tests for dkim_sign and dkim_key. Signatures are deterministic
 * (RSA PKCS#1 v1.5 and Ed25519 both are) for a fixed key and t=, so each
 * fixed message under tests/unit/data is signed and compared with its
 * golden header field. The golden files were checked with python3-dkim
 * (dkim.verify with the key's TXT record) when they were written, and
 * their bh= against python3-dkim's own body canonicalization; the
 * black-box tests (tests/signer) verify fresh signatures with
 * python3-dkim and opendkim on every run.
 *
 * Also: the same result for every chunking of the input, dual signing,
 * the h= list (From oversigned, absent names once, repeated fields as
 * often as they occur), x=, the errors (no From, the caps, bad names,
 * wrong key types), and the key module (load errors, TXT records, the
 * zone-file text).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "signer/dkim_key.h"
#include "signer/dkim_sign.h"

#define T0 1700000000

static char data_dir[4096];

static void set_data_dir(void)
{
	const char *slash = strrchr(__FILE__, '/');
	size_t n = slash ? (size_t)(slash - __FILE__) : 1;

	snprintf(data_dir, sizeof(data_dir), "%.*s/data", (int)n, slash ? __FILE__ : ".");
}

/* The whole of data/name, NUL-terminated; *len its size. */
static char *slurp(const char *name, size_t *len)
{
	char path[4200];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/%s", data_dir, name);
	f = fopen(path, "rb");
	if (f == NULL)
		fail_msg("cannot open %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static EVP_PKEY *load_key(const char *name, enum dkim_alg *alg)
{
	char path[4200], err[512];
	EVP_PKEY *k;

	snprintf(path, sizeof(path), "%s/%s", data_dir, name);
	k = dkim_key_load(path, alg, err, sizeof(err));
	if (k == NULL)
		fail_msg("%s", err);
	return k;
}

static EVP_PKEY *rsa_key, *ed_key;

static int setup(void **state)
{
	enum dkim_alg a;

	(void)state;
	set_data_dir();
	rsa_key = load_key("dkim_test_rsa2048.key", &a);
	assert_int_equal(a, DKIM_ALG_RSA_SHA256);
	ed_key = load_key("dkim_test_ed25519.key", &a);
	assert_int_equal(a, DKIM_ALG_ED25519_SHA256);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	EVP_PKEY_free(rsa_key);
	EVP_PKEY_free(ed_key);
	return 0;
}

/* Sign msg[0..len) fed in chunks of chunk octets (0: one piece). */
static char *sign_chunks(struct dkim_sign *s, const char *msg, size_t len, size_t chunk,
			 size_t *hlen)
{
	char err[256], *hdr = NULL;

	if (chunk == 0)
		chunk = len > 0 ? len : 1;
	for (size_t off = 0; off < len; off += chunk)
		assert_int_equal(dkim_sign_feed(s, msg + off, len - off < chunk ? len - off : chunk),
				 0);
	if (dkim_sign_finish(s, &hdr, hlen, err, sizeof(err)) < 0)
		fail_msg("finish: %s", err);
	assert_int_equal(strlen(hdr), *hlen);
	return hdr;
}

static struct dkim_sign *signer(enum dkim_alg alg)
{
	char err[256];
	struct dkim_sign *s = dkim_sign_new("example.com",
					    alg == DKIM_ALG_RSA_SHA256 ? "rsa" : "ed25519", alg,
					    alg == DKIM_ALG_RSA_SHA256 ? rsa_key : ed_key, err,
					    sizeof(err));

	if (s == NULL)
		fail_msg("%s", err);
	dkim_sign_set_time(s, T0);
	return s;
}

static void check_golden(int n, enum dkim_alg alg)
{
	char name[64];
	size_t mlen, glen, hlen;
	char *msg, *golden;

	snprintf(name, sizeof(name), "dkim_msg%d.eml", n);
	msg = slurp(name, &mlen);
	snprintf(name, sizeof(name), "dkim_msg%d.%s.golden", n,
		 alg == DKIM_ALG_RSA_SHA256 ? "rsa2048" : "ed25519");
	golden = slurp(name, &glen);
	/* Whole, then in chunks of several sizes: the same field. */
	for (size_t chunk = 0; chunk <= 9; chunk++) {
		size_t c = chunk == 9 ? 4096 : chunk;
		struct dkim_sign *s = signer(alg);
		char *hdr = sign_chunks(s, msg, mlen, c, &hlen);

		if (hlen != glen || memcmp(hdr, golden, glen) != 0)
			fail_msg("%s (chunk %zu):\ngot:\n%s\nwant:\n%s", name, c, hdr, golden);
		free(hdr);
		dkim_sign_free(s);
	}
	free(msg);
	free(golden);
}

static void test_golden_rsa(void **state)
{
	(void)state;
	for (int n = 1; n <= 3; n++)
		check_golden(n, DKIM_ALG_RSA_SHA256);
}

static void test_golden_ed25519(void **state)
{
	(void)state;
	for (int n = 1; n <= 3; n++)
		check_golden(n, DKIM_ALG_ED25519_SHA256);
}

/* Dual signing: both fields, in order, each as when signed alone. */
static void test_dual(void **state)
{
	size_t mlen, rlen, elen, hlen;
	char *msg = slurp("dkim_msg1.eml", &mlen);
	char *r = slurp("dkim_msg1.rsa2048.golden", &rlen);
	char *e = slurp("dkim_msg1.ed25519.golden", &elen);
	struct dkim_sign *s = signer(DKIM_ALG_RSA_SHA256);
	char err[256], *hdr;

	(void)state;
	assert_int_equal(dkim_sign_add(s, "example.com", "ed25519", DKIM_ALG_ED25519_SHA256,
				       ed_key, err, sizeof(err)),
			 0);
	hdr = sign_chunks(s, msg, mlen, 100, &hlen);
	assert_int_equal(hlen, rlen + elen);
	assert_memory_equal(hdr, r, rlen);
	assert_memory_equal(hdr + rlen, e, elen);
	/* No more signatures once fed. */
	free(hdr);
	dkim_sign_free(s);
	free(msg);
	free(r);
	free(e);
}

/* The h= tag of a signed header text, NUL-terminated, unfolded. */
static void h_tag(const char *hdr, char *out, size_t len)
{
	const char *p = strstr(hdr, " h=");
	size_t n = 0;

	assert_non_null(p);
	for (p += 3; *p && *p != ';' && n + 1 < len; p++)
		if (*p != '\r' && *p != '\n' && *p != '\t' && *p != ' ')
			out[n++] = *p;
	out[n] = '\0';
}

static char *sign_str(struct dkim_sign *s, const char *msg)
{
	size_t hlen;

	return sign_chunks(s, msg, strlen(msg), 0, &hlen);
}

static void test_h_list(void **state)
{
	static const char msg[] = "Received: a\r\nFrom: x@example.com\r\nTo: a\r\n"
				  "Subject: s\r\nTo: b\r\nfrom: y@example.com\r\n\r\nbody\r\n";
	static const char *const names[] = { "from", "To", "subject", "X-Absent", "to" };
	struct dkim_sign *s = signer(DKIM_ALG_ED25519_SHA256);
	char h[1024], err[256], *hdr = sign_str(s, msg);

	(void)state;
	h_tag(hdr, h, sizeof(h));
	assert_string_equal(h, "from:from:from:to:to:cc:subject:date:message-id:mime-version:"
			       "content-type:content-transfer-encoding:reply-to:in-reply-to:"
			       "references:list-unsubscribe:list-unsubscribe-post:"
			       "feedback-id");
	assert_null(strstr(hdr, "received"));
	assert_null(strstr(hdr, " x="));
	assert_non_null(strstr(hdr, " t=1700000000;"));
	free(hdr);
	dkim_sign_free(s);

	/* A list of our own: duplicates dropped, lower case, x= set. */
	s = signer(DKIM_ALG_ED25519_SHA256);
	assert_int_equal(dkim_sign_set_headers(s, names, 5, err, sizeof(err)), 0);
	dkim_sign_set_expire(s, 3600);
	hdr = sign_str(s, msg);
	h_tag(hdr, h, sizeof(h));
	assert_string_equal(h, "from:from:from:to:to:subject:x-absent");
	assert_non_null(strstr(hdr, " x=1700003600;"));
	free(hdr);
	dkim_sign_free(s);
}

static void test_header_text_shape(void **state)
{
	size_t mlen, hlen;
	char *msg = slurp("dkim_msg1.eml", &mlen);
	struct dkim_sign *s = signer(DKIM_ALG_RSA_SHA256);
	char *hdr = sign_chunks(s, msg, mlen, 0, &hlen);
	const char *line = hdr;

	(void)state;
	assert_true(strncmp(hdr, "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; "
				 "d=example.com; s=rsa;",
			    69) == 0);
	/* Folded lines of at most 78 octets, CRLF only, ending in CRLF. */
	while (*line) {
		const char *eol = strstr(line, "\r\n");

		assert_non_null(eol);
		assert_true(eol - line <= 78);
		assert_null(memchr(line, '\n', (size_t)(eol - line)));
		line = eol + 2;
		if (*line)
			assert_true(*line == '\t');
	}
	assert_non_null(strstr(hdr, "\r\n\tb="));
	free(hdr);
	dkim_sign_free(s);
	free(msg);
}

static void expect_finish_error(struct dkim_sign *s, const char *want)
{
	char err[256], *hdr = (char *)1;
	size_t len = 1;

	assert_int_equal(dkim_sign_finish(s, &hdr, &len, err, sizeof(err)), -1);
	assert_null(hdr);
	assert_int_equal(len, 0);
	if (strstr(err, want) == NULL)
		fail_msg("error \"%s\", want \"%s\"", err, want);
	dkim_sign_free(s);
}

static void test_errors(void **state)
{
	static const char *const no_from[] = { "To", "Subject" };
	static const char *const bad_name[] = { "From", "Bad Name" };
	static const char *const sig_name[] = { "From", "DKIM-Signature" };
	struct dkim_sign *s;
	char err[256], *big;
	size_t len = 0;

	(void)state;
	/* No From field. */
	s = signer(DKIM_ALG_RSA_SHA256);
	assert_int_equal(dkim_sign_feed(s, "To: a\r\n\r\nbody\r\n", 15), 0);
	expect_finish_error(s, "no From");
	/* No header at all (the message starts with the empty line). */
	s = signer(DKIM_ALG_RSA_SHA256);
	assert_int_equal(dkim_sign_feed(s, "\r\nFrom: x\r\n", 11), 0);
	expect_finish_error(s, "no From");
	/* Nothing fed. */
	s = signer(DKIM_ALG_RSA_SHA256);
	expect_finish_error(s, "no From");

	/* A header section over 1 MiB: feed fails, and finish says why. */
	big = malloc(DKIM_HDRS_MAX_BYTES + 100);
	len = (size_t)snprintf(big, 100, "From: x@example.com\r\nX-Big: ");
	memset(big + len, 'a', DKIM_HDRS_MAX_BYTES);
	len += DKIM_HDRS_MAX_BYTES;
	s = signer(DKIM_ALG_ED25519_SHA256);
	assert_int_equal(dkim_sign_feed(s, big, len), -1);
	assert_int_equal(dkim_sign_feed(s, "\r\n\r\n", 4), -1);
	expect_finish_error(s, "1 MiB");
	free(big);
	/* Over 1000 fields. */
	big = malloc(1100 * 16);
	len = 0;
	for (int i = 0; i < 1001; i++)
		len += (size_t)snprintf(big + len, 16, "From: %d\r\n", i);
	s = signer(DKIM_ALG_ED25519_SHA256);
	assert_int_equal(dkim_sign_feed(s, big, len), 0);
	assert_int_equal(dkim_sign_feed(s, "\r\nbody\r\n", 8), 0);
	expect_finish_error(s, "1000");
	free(big);

	/* Refused arguments. */
	assert_null(dkim_sign_new("exa mple.com", "s", DKIM_ALG_RSA_SHA256, rsa_key, err,
				  sizeof(err)));
	assert_non_null(strstr(err, "domain"));
	assert_null(dkim_sign_new("example.com", "../x", DKIM_ALG_RSA_SHA256, rsa_key, err,
				  sizeof(err)));
	assert_non_null(strstr(err, "selector"));
	assert_null(dkim_sign_new("example.com", "s", DKIM_ALG_ED25519_SHA256, rsa_key, err,
				  sizeof(err)));
	assert_non_null(strstr(err, "Ed25519"));
	assert_null(dkim_sign_new("example.com", "s", DKIM_ALG_RSA_SHA256, ed_key, err,
				  sizeof(err)));
	assert_non_null(strstr(err, "RSA"));
	s = signer(DKIM_ALG_RSA_SHA256);
	assert_int_equal(dkim_sign_set_headers(s, no_from, 2, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "From"));
	assert_int_equal(dkim_sign_set_headers(s, bad_name, 2, err, sizeof(err)), -1);
	assert_int_equal(dkim_sign_set_headers(s, sig_name, 2, err, sizeof(err)), -1);
	assert_int_equal(dkim_sign_feed(s, "From: a\r\n", 9), 0);
	assert_int_equal(dkim_sign_add(s, "example.com", "e", DKIM_ALG_ED25519_SHA256, ed_key,
				       err, sizeof(err)),
			 -1);
	assert_int_equal(dkim_sign_set_headers(s, no_from, 2, err, sizeof(err)), -1);
	dkim_sign_free(s);
	/* Freed unfed. */
	dkim_sign_free(signer(DKIM_ALG_ED25519_SHA256));
	dkim_sign_free(NULL);
}

static void test_short_rsa_refused(void **state)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)768);
	enum dkim_alg a;
	char err[256];

	(void)state;
	assert_non_null(k);
	assert_null(dkim_sign_new("example.com", "s", DKIM_ALG_RSA_SHA256, k, err,
				  sizeof(err)));
	assert_non_null(strstr(err, "1024"));
	assert_int_equal(dkim_key_alg(k, &a, err, sizeof(err)), -1);
	EVP_PKEY_free(k);
}

static void test_names(void **state)
{
	(void)state;
	assert_true(dkim_domain_valid("example.com"));
	assert_true(dkim_domain_valid("xn--caf-dma.example"));
	assert_true(dkim_domain_valid("a-b.c"));
	assert_false(dkim_domain_valid(""));
	assert_false(dkim_domain_valid("example.com."));
	assert_false(dkim_domain_valid(".example.com"));
	assert_false(dkim_domain_valid("a..b"));
	assert_false(dkim_domain_valid("-a.b"));
	assert_false(dkim_domain_valid("a-.b"));
	assert_false(dkim_domain_valid("a_b.c"));
	assert_false(dkim_domain_valid("a/b"));
	assert_false(dkim_domain_valid("caf\xc3\xa9.example"));
	assert_true(dkim_selector_valid("2024-05._sel"));
	assert_true(dkim_selector_valid("s1.sub"));
	assert_false(dkim_selector_valid("a;b"));
	assert_false(dkim_selector_valid(".."));
}

static void test_key_records(void **state)
{
	char err[256], *rec, *zone;
	enum dkim_alg a;

	(void)state;
	rec = dkim_key_txt_record(ed_key, err, sizeof(err));
	assert_non_null(rec);
	assert_true(strncmp(rec, "v=DKIM1; k=ed25519; p=", 22) == 0);
	assert_int_equal(strlen(rec), 22 + 44); /* 32 octets in base64 */
	zone = dkim_key_zone_text("example.com", "ed", rec);
	assert_true(strncmp(zone, "ed._domainkey.example.com. IN TXT ( \"v=DKIM1; k=ed25519; \"\n"
				  "\t\"p=",
			    61) == 0);
	assert_string_equal(zone + strlen(zone) - 4, "\" )\n");
	free(zone);
	free(rec);

	rec = dkim_key_txt_record(rsa_key, err, sizeof(err));
	assert_non_null(rec);
	/* SubjectPublicKeyInfo of RSA 2048: 294 octets, 392 in base64. */
	assert_true(strncmp(rec, "v=DKIM1; k=rsa; p=MIIBIjAN", 26) == 0);
	assert_int_equal(strlen(rec), 18 + 392);
	zone = dkim_key_zone_text("example.com", "rsa", rec);
	/* Strings of at most 255 octets; joined, they are the record. */
	{
		char joined[1024];
		size_t n = 0;

		for (const char *p = strchr(zone, '"'); p != NULL; p = strchr(p + 1, '"')) {
			const char *q = strchr(p + 1, '"');

			assert_non_null(q);
			assert_true(q - p - 1 <= 255);
			memcpy(joined + n, p + 1, (size_t)(q - p - 1));
			n += (size_t)(q - p - 1);
			p = q;
		}
		joined[n] = '\0';
		assert_string_equal(joined, rec);
	}
	free(zone);
	free(rec);

	/* Load errors name the file. */
	assert_null(dkim_key_load("/nonexistent/k.key", &a, err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/k.key: No such file"));
	{
		char path[4200];

		snprintf(path, sizeof(path), "%s/dkim_msg1.eml", data_dir);
		assert_null(dkim_key_load(path, &a, err, sizeof(err)));
		assert_non_null(strstr(err, "dkim_msg1.eml: not an unencrypted PEM private key"));
	}
}

static void test_key_generate(void **state)
{
	char err[256], *pem;
	size_t len = 0;
	enum dkim_alg a;
	EVP_PKEY *k;

	(void)state;
	k = dkim_key_generate(DKIM_ALG_ED25519_SHA256, 0, err, sizeof(err));
	assert_non_null(k);
	assert_int_equal(dkim_key_alg(k, &a, err, sizeof(err)), 0);
	assert_int_equal(a, DKIM_ALG_ED25519_SHA256);
	pem = dkim_key_private_pem(k, &len, err, sizeof(err));
	assert_non_null(pem);
	assert_true(strncmp(pem, "-----BEGIN PRIVATE KEY-----\n", 28) == 0);
	assert_int_equal(strlen(pem), len);
	free(pem);
	EVP_PKEY_free(k);
	assert_null(dkim_key_generate(DKIM_ALG_RSA_SHA256, 512, err, sizeof(err)));
	assert_null(dkim_key_generate(DKIM_ALG_RSA_SHA256, 8192, err, sizeof(err)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden_rsa),
		cmocka_unit_test(test_golden_ed25519),
		cmocka_unit_test(test_dual),
		cmocka_unit_test(test_h_list),
		cmocka_unit_test(test_header_text_shape),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_short_rsa_refused),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_key_records),
		cmocka_unit_test(test_key_generate),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
