/*
 * dkim_key: DKIM key files and DNS records (see dkim_key.h). It owns the
 * checks that make a key usable for DKIM, key generation, and the text
 * of the records to publish. OpenSSL 3 does the cryptography.
 */
#include "signer/dkim_key.h"

#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/xalloc.h"

/* Octets of one quoted string of a TXT record (RFC 1035 §3.3). */
#define TXT_STRING_MAX 255

static void ossl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();

	snprintf(buf, len, "unknown error");
	if (e != 0)
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
}

int dkim_key_alg(const EVP_PKEY *k, enum dkim_alg *alg, char *err, size_t errlen)
{
	int id = EVP_PKEY_get_base_id(k);

	if (id == EVP_PKEY_ED25519) {
		*alg = DKIM_ALG_ED25519_SHA256;
		return 0;
	}
	if (id == EVP_PKEY_RSA) {
		int bits = EVP_PKEY_get_bits(k);

		if (bits < DKIM_RSA_MIN_BITS) {
			snprintf(err, errlen,
				 "RSA key of %d bits: DKIM needs %d or more (RFC 8301)", bits,
				 DKIM_RSA_MIN_BITS);
			return -1;
		}
		*alg = DKIM_ALG_RSA_SHA256;
		return 0;
	}
	snprintf(err, errlen, "a %s key: DKIM keys are RSA or Ed25519",
		 EVP_PKEY_get0_type_name(k) ? EVP_PKEY_get0_type_name(k) : "unknown");
	return -1;
}

EVP_PKEY *dkim_key_load(const char *path, enum dkim_alg *alg, char *err, size_t errlen)
{
	enum dkim_alg a;
	char why[256];
	EVP_PKEY *k;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror_safe(errno));
		return NULL;
	}
	/* No passphrase callback: an encrypted key fails here. */
	ERR_clear_error();
	k = PEM_read_PrivateKey(f, NULL, NULL, (void *)"");
	fclose(f);
	if (k == NULL) {
		ossl_reason(why, sizeof(why));
		snprintf(err, errlen, "%s: not an unencrypted PEM private key (%s)", path, why);
		return NULL;
	}
	if (dkim_key_alg(k, &a, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "%s: %s", path, why);
		EVP_PKEY_free(k);
		return NULL;
	}
	if (alg != NULL)
		*alg = a;
	return k;
}

EVP_PKEY *dkim_key_generate(enum dkim_alg alg, int bits, char *err, size_t errlen)
{
	char why[256];
	EVP_PKEY *k = NULL;

	if (alg == DKIM_ALG_RSA_SHA256 && (bits < DKIM_RSA_MIN_BITS || bits > DKIM_RSA_MAX_BITS)) {
		snprintf(err, errlen, "RSA keys are %d to %d bits", DKIM_RSA_MIN_BITS,
			 DKIM_RSA_MAX_BITS);
		return NULL;
	}
	ERR_clear_error();
	if (alg == DKIM_ALG_ED25519_SHA256)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	else
		k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
	if (k == NULL) {
		ossl_reason(why, sizeof(why));
		snprintf(err, errlen, "cannot make a %s key: %s", dkim_alg_name(alg), why);
	}
	return k;
}

char *dkim_key_private_pem(EVP_PKEY *k, size_t *len, char *err, size_t errlen)
{
	BIO *b = BIO_new(BIO_s_mem());
	char why[256], *data = NULL, *out = NULL;
	long n;

	if (b == NULL || PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) != 1) {
		ossl_reason(why, sizeof(why));
		snprintf(err, errlen, "cannot write the key as PEM: %s", why);
		BIO_free(b);
		return NULL;
	}
	n = BIO_get_mem_data(b, &data);
	if (n > 0) {
		out = xmalloc((size_t)n + 1);
		memcpy(out, data, (size_t)n);
		out[n] = '\0';
		*len = (size_t)n;
	} else {
		snprintf(err, errlen, "cannot write the key as PEM: empty output");
	}
	BIO_free(b);
	return out;
}

char *dkim_key_txt_record(const EVP_PKEY *k, char *err, size_t errlen)
{
	unsigned char *der = NULL;
	enum dkim_alg alg;
	char why[256], *out;
	size_t n = 0, cap;
	int dn;

	if (dkim_key_alg(k, &alg, err, errlen) < 0)
		return NULL;
	if (alg == DKIM_ALG_ED25519_SHA256) {
		/* RFC 8463 §4.2: the raw 32-octet key, not an SPKI. */
		if (EVP_PKEY_get_raw_public_key(k, NULL, &n) != 1 || n == 0 || n > 64) {
			ossl_reason(why, sizeof(why));
			snprintf(err, errlen, "cannot read the Ed25519 public key: %s", why);
			return NULL;
		}
		der = xmalloc(n);
		if (EVP_PKEY_get_raw_public_key(k, der, &n) != 1) {
			ossl_reason(why, sizeof(why));
			snprintf(err, errlen, "cannot read the Ed25519 public key: %s", why);
			free(der);
			return NULL;
		}
	} else {
		/* SubjectPublicKeyInfo DER, what every verifier reads. */
		unsigned char *p;

		dn = i2d_PUBKEY(k, NULL);
		if (dn <= 0) {
			ossl_reason(why, sizeof(why));
			snprintf(err, errlen, "cannot encode the RSA public key: %s", why);
			return NULL;
		}
		der = xmalloc((size_t)dn);
		p = der;
		if (i2d_PUBKEY(k, &p) != dn) {
			ossl_reason(why, sizeof(why));
			snprintf(err, errlen, "cannot encode the RSA public key: %s", why);
			free(der);
			return NULL;
		}
		n = (size_t)dn;
	}
	cap = 32 + 4 * ((n + 2) / 3) + 1;
	out = xmalloc(cap);
	dn = snprintf(out, cap, "v=DKIM1; k=%s; p=",
		      alg == DKIM_ALG_ED25519_SHA256 ? "ed25519" : "rsa");
	EVP_EncodeBlock((unsigned char *)out + dn, der, (int)n);
	free(der);
	return out;
}

/* Appends s[0..n) to the growing string *out. */
static void add(char **out, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n + 1 > *cap) {
		*cap = (*len + n + 1) * 2;
		*out = xrealloc(*out, *cap);
	}
	memcpy(*out + *len, s, n);
	*len += n;
	(*out)[*len] = '\0';
}

static void add_str(char **out, size_t *len, size_t *cap, const char *s)
{
	add(out, len, cap, s, strlen(s));
}

char *dkim_key_zone_text(const char *domain, const char *selector, const char *record)
{
	const char *p = strstr(record, "p=");
	size_t len = 0, cap = 0, rest;
	char *out = NULL;
	bool any;

	add_str(&out, &len, &cap, selector);
	add_str(&out, &len, &cap, "._domainkey.");
	add_str(&out, &len, &cap, domain);
	add_str(&out, &len, &cap, ". IN TXT (");
	if (p == NULL)
		p = record;
	any = p != record;
	/* The tags before p= in a string of their own, then p= in pieces. */
	for (const char *s = record; s < p;) {
		size_t k = (size_t)(p - s) < TXT_STRING_MAX ? (size_t)(p - s) : TXT_STRING_MAX;

		add_str(&out, &len, &cap, " \"");
		add(&out, &len, &cap, s, k);
		add_str(&out, &len, &cap, "\"");
		s += k;
	}
	rest = strlen(p);
	while (rest > 0) {
		size_t k = rest < TXT_STRING_MAX ? rest : TXT_STRING_MAX;

		add_str(&out, &len, &cap, any ? "\n\t\"" : " \"");
		any = true;
		add(&out, &len, &cap, p, k);
		add_str(&out, &len, &cap, "\"");
		p += k;
		rest -= k;
	}
	add_str(&out, &len, &cap, " )\n");
	return out;
}
