/*
 * tls: see tls.h.
 */
#include "lib/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "lib/xalloc.h"

#define TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"

static void openssl_reason(char *err, size_t errlen, const char *what, const char *file)
{
	unsigned long e = ERR_get_error();
	char reason[256] = "unknown error";
	if (e)
		ERR_error_string_n(e, reason, sizeof(reason));
	snprintf(err, errlen, "%s %s: %s", what, file ? file : "", reason);
	ERR_clear_error();
}

/* The SNI table hangs off the default context and dies with it. */
struct sni_table {
	size_t n;
	char **names;
	SSL_CTX **ctxs;
};

static int sni_index = -1;

static void sni_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
		     void *argp)
{
	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	struct sni_table *t = ptr;
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n; i++) {
		free(t->names[i]);
		SSL_CTX_free(t->ctxs[i]);
	}
	free(t->names);
	free(t->ctxs);
	free(t);
}

static bool sni_match(const char *pattern, const char *name)
{
	if (strncmp(pattern, "*.", 2) == 0) {
		const char *dot = strchr(name, '.');
		return dot && dot != name && strcasecmp(dot + 1, pattern + 2) == 0;
	}
	return strcasecmp(pattern, name) == 0;
}

static int on_servername(SSL *ssl, int *alert, void *arg)
{
	(void)alert;
	const struct sni_table *t = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	if (name == NULL)
		return SSL_TLSEXT_ERR_NOACK;
	for (size_t i = 0; i < t->n; i++)
		if (sni_match(t->names[i], name)) {
			SSL_set_SSL_CTX(ssl, t->ctxs[i]);
			return SSL_TLSEXT_ERR_OK;
		}
	return SSL_TLSEXT_ERR_NOACK; /* the default certificate */
}

static SSL_CTX *one_ctx(const char *cert_file, const char *key_file,
			const struct tls_options *opts, char *err, size_t errlen);

SSL_CTX *tls_server_ctx(const char *cert_file, const char *key_file,
			const struct tls_sni_cert *sni, size_t n,
			const struct tls_options *opts, char *err, size_t errlen)
{
	SSL_CTX *ctx = one_ctx(cert_file, key_file, opts, err, errlen);
	if (ctx == NULL || n == 0)
		return ctx;
	if (sni_index < 0)
		sni_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, sni_free);
	struct sni_table *t = xcalloc(1, sizeof(*t));
	t->names = xcalloc(n, sizeof(char *));
	t->ctxs = xcalloc(n, sizeof(SSL_CTX *));
	SSL_CTX_set_ex_data(ctx, sni_index, t);
	for (size_t i = 0; i < n; i++) {
		SSL_CTX *c = one_ctx(sni[i].cert_file, sni[i].key_file, opts, err, errlen);
		if (c == NULL) {
			SSL_CTX_free(ctx); /* frees the table too */
			return NULL;
		}
		t->names[t->n] = xstrdup(sni[i].name);
		t->ctxs[t->n++] = c;
	}
	SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
	SSL_CTX_set_tlsext_servername_arg(ctx, t);
	return ctx;
}

static int apply_options(SSL_CTX *ctx, const struct tls_options *opts, char *err,
			 size_t errlen)
{
	const char *minv = opts && opts->min_version ? opts->min_version : "TLSv1.2";
	int v = strcmp(minv, "TLSv1.2") == 0 ? TLS1_2_VERSION
		: strcmp(minv, "TLSv1.3") == 0 ? TLS1_3_VERSION : 0;
	if (v == 0) {
		snprintf(err, errlen, "TLS minimum version \"%s\": TLSv1.2 or TLSv1.3", minv);
		return -1;
	}
	SSL_CTX_set_min_proto_version(ctx, v);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
					 SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET);
	/* No resumption at all: no TLS 1.3 tickets, no server-side cache. */
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_dh_auto(ctx, 1);
	const char *list = opts && opts->ciphers ? opts->ciphers : TLS12_CIPHERS;
	if (SSL_CTX_set_cipher_list(ctx, list) != 1) {
		openssl_reason(err, errlen, "TLS 1.2 ciphers", list);
		return -1;
	}
	if (opts && opts->ciphersuites &&
	    SSL_CTX_set_ciphersuites(ctx, opts->ciphersuites) != 1) {
		openssl_reason(err, errlen, "TLS 1.3 ciphersuites", opts->ciphersuites);
		return -1;
	}
	return 0;
}

SSL_CTX *tls_client_ctx(char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		openssl_reason(err, errlen, "TLS client context", "");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	return ctx;
}

int tls_check_options(const struct tls_options *opts, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		openssl_reason(err, errlen, "TLS context", NULL);
		return -1;
	}
	int rc = apply_options(ctx, opts, err, errlen);
	SSL_CTX_free(ctx);
	return rc;
}

static SSL_CTX *one_ctx(const char *cert_file, const char *key_file,
			const struct tls_options *opts, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		openssl_reason(err, errlen, "TLS context", NULL);
		return NULL;
	}
	if (apply_options(ctx, opts, err, errlen) < 0) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		openssl_reason(err, errlen, "certificate", cert_file);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		openssl_reason(err, errlen, "private key", key_file);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		openssl_reason(err, errlen, "the key does not match the certificate", cert_file);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

void tls_ctx_free(SSL_CTX *ctx)
{
	SSL_CTX_free(ctx);
}

static int write_pem(const char *path, mode_t mode, EVP_PKEY *key, X509 *cert)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -1;
	FILE *f = fdopen(fd, "w");
	if (f == NULL) {
		close(fd);
		return -1;
	}
	int ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
		     : PEM_write_X509(f, cert);
	if (fclose(f) != 0 || ok != 1)
		return -1;
	return 0;
}

int tls_selfsigned(const char *cert_file, const char *key_file, const char *hostname,
		   int days, char *err, size_t errlen)
{
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *x = X509_new();
	int rc = -1;
	if (key == NULL || x == NULL) {
		openssl_reason(err, errlen, "key generation", NULL);
		goto out;
	}
	ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL));
	X509_set_version(x, 2);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400 - 3600);
	X509_set_pubkey(x, key);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)hostname,
				   -1, -1, 0);
	X509_set_issuer_name(x, name);
	char san[300];
	snprintf(san, sizeof(san), "DNS:%s", hostname);
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
	if (ext == NULL || X509_add_ext(x, ext, -1) != 1) {
		X509_EXTENSION_free(ext);
		openssl_reason(err, errlen, "subjectAltName", hostname);
		goto out;
	}
	X509_EXTENSION_free(ext);
	if (X509_sign(x, key, EVP_sha256()) == 0) {
		openssl_reason(err, errlen, "signing", NULL);
		goto out;
	}
	if (write_pem(key_file, 0600, key, NULL) < 0) {
		snprintf(err, errlen, "%s: %s", key_file, strerror_safe(errno));
		goto out;
	}
	if (write_pem(cert_file, 0644, NULL, x) < 0) {
		snprintf(err, errlen, "%s: %s", cert_file, strerror_safe(errno));
		goto out;
	}
	rc = 0;
out:
	X509_free(x);
	EVP_PKEY_free(key);
	return rc;
}
