/*
 * base64: strict RFC 4648 decoding for SASL exchanges (RFC 4954): the
 * standard alphabet, length a multiple of 4, '=' only as final padding,
 * no whitespace. Pure function over bytes.
 */
#ifndef FULMAR_BASE64_H
#define FULMAR_BASE64_H

#include <stddef.h>

/* Decode in[0..len) into out (capacity cap); returns the decoded length,
 * or -1 when the input is not strict base64 or does not fit. */
long base64_decode(const char *in, size_t len, unsigned char *out, size_t cap);

#endif
