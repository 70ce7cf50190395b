/*
 * tls: OpenSSL server contexts with Fulmar's defaults, and self-signed
 * certificates for first runs and tests. No mail knowledge.
 *
 * Defaults: TLS 1.2 at least, TLS 1.3 preferred; AEAD ciphers only (TLS 1.2:
 * ECDHE/DHE with AES-GCM or ChaCha20-Poly1305, DH groups chosen by
 * OpenSSL; TLS 1.3: all of its suites); the server's cipher order; no
 * renegotiation, no compression, no session tickets or session cache (no
 * resumption: every session is a full handshake).
 */
#ifndef FULMAR_TLS_H
#define FULMAR_TLS_H

#include <stddef.h>

typedef struct ssl_ctx_st SSL_CTX;

/* A certificate for clients that ask for this name (SNI, RFC 6066). name
 * may start with "*." to match one label. */
struct tls_sni_cert {
	const char *name;
	const char *cert_file;
	const char *key_file;
};

/* Protocol choices; NULL fields keep the defaults above. */
struct tls_options {
	const char *min_version;  /* "TLSv1.2" or "TLSv1.3" */
	const char *ciphers;      /* TLS 1.2 cipher list (OpenSSL syntax) */
	const char *ciphersuites; /* TLS 1.3 suites */
};

/* NULL with err filled (the file and OpenSSL's reason) on failure. The
 * SNI certificates are optional (n = 0); clients naming none of them, or
 * no name at all, get the default one. opts may be NULL. */
SSL_CTX *tls_server_ctx(const char *cert_file, const char *key_file,
			const struct tls_sni_cert *sni, size_t n,
			const struct tls_options *opts, char *err, size_t errlen);

/* A client context for opportunistic TLS (RFC 7435): TLS 1.2 at least,
 * OpenSSL's default ciphers, the server's certificate not verified (an
 * unauthenticated encrypted channel beats plaintext). NULL with err. */
SSL_CTX *tls_client_ctx(char *err, size_t errlen);

/* 0 when the options are acceptable to OpenSSL, else -1 with err. */
int tls_check_options(const struct tls_options *opts, char *err, size_t errlen);
void tls_ctx_free(SSL_CTX *ctx);

/* Write a new P-256 key (mode 0600) and a self-signed certificate for
 * hostname (CN and subjectAltName), valid for days. 0, or -1 with err. */
int tls_selfsigned(const char *cert_file, const char *key_file, const char *hostname,
		   int days, char *err, size_t errlen);

#endif
