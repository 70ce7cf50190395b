/*
 * dkim_key: DKIM private keys (RSA or Ed25519) and the DNS records that
 * publish their public halves (RFC 6376 §3.6.1, RFC 8463 §4.2). Loads a
 * PEM key file with an error that names the file, makes new keys, and
 * writes the TXT record text and its zone-file form. Writing key files
 * (modes, owners, no overwrite) is the CLI's (cli_dkim.c).
 *
 * Ownership: each EVP_PKEY returned is the caller's (EVP_PKEY_free);
 * each string returned is the caller's (free).
 */
#ifndef FULMAR_DKIM_KEY_H
#define FULMAR_DKIM_KEY_H

#include <stddef.h>

#include "signer/dkim_sign.h"

#define DKIM_RSA_DEFAULT_BITS 2048
#define DKIM_RSA_MAX_BITS 4096

/* The signing algorithm for k: rsa-sha256 for RSA of DKIM_RSA_MIN_BITS
 * or more, ed25519-sha256 for Ed25519. 0, or -1 with err filled for any
 * other key. */
int dkim_key_alg(const EVP_PKEY *k, enum dkim_alg *alg, char *err, size_t errlen);

/* A PEM private key file (PKCS#8, or PKCS#1 "RSA PRIVATE KEY"), not
 * encrypted. *alg (may be NULL) is its algorithm. NULL with err filled as
 * "PATH: reason" when it cannot be read or is not a usable DKIM key. */
EVP_PKEY *dkim_key_load(const char *path, enum dkim_alg *alg, char *err, size_t errlen);

/* A new key: RSA of bits (DKIM_RSA_MIN_BITS..DKIM_RSA_MAX_BITS) or
 * Ed25519 (bits ignored). NULL with err filled. */
EVP_PKEY *dkim_key_generate(enum dkim_alg alg, int bits, char *err, size_t errlen);

/* The private key as unencrypted PKCS#8 PEM text, NUL-terminated, *len
 * octets. NULL with err filled. */
char *dkim_key_private_pem(EVP_PKEY *k, size_t *len, char *err, size_t errlen);

/* The TXT record to publish at SELECTOR._domainkey.DOMAIN:
 * "v=DKIM1; k=rsa; p=BASE64(SubjectPublicKeyInfo DER)" or
 * "v=DKIM1; k=ed25519; p=BASE64(the 32-octet public key)". NULL with err
 * filled. */
char *dkim_key_txt_record(const EVP_PKEY *k, char *err, size_t errlen);

/* The zone-file entry for record (a TXT record text as above):
 *   SELECTOR._domainkey.DOMAIN. IN TXT ( "v=DKIM1; k=rsa; "
 *   	"p=..." ... )
 * each quoted string at most 255 octets, ending in a newline. */
char *dkim_key_zone_text(const char *domain, const char *selector, const char *record);

#endif
