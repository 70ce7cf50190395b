/*
 * base64: strict decoder (base64.h).
 */
#include "proto/base64.h"

static int value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

long base64_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
	if (len % 4 != 0)
		return -1;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 4) {
		const unsigned char *q = (const unsigned char *)in + i;
		int pad = (q[3] == '=') + (q[2] == '=' && q[3] == '=');
		if (pad && i + 4 != len)
			return -1; /* padding only at the very end */
		int v[4];
		for (int k = 0; k < 4 - pad; k++)
			if ((v[k] = value(q[k])) < 0)
				return -1;
		if (q[2] == '=' && q[3] != '=')
			return -1;
		unsigned long n = (unsigned long)v[0] << 18 | (unsigned long)v[1] << 12;
		if (pad < 2)
			n |= (unsigned long)v[2] << 6;
		if (pad < 1)
			n |= (unsigned long)v[3];
		/* Unused bits must be zero (canonical encoding). */
		if ((pad == 2 && (n & 0xffff)) || (pad == 1 && (n & 0xff)))
			return -1;
		size_t outn = (size_t)(3 - pad);
		if (o + outn > cap)
			return -1;
		out[o++] = (unsigned char)(n >> 16);
		if (outn > 1)
			out[o++] = (unsigned char)(n >> 8);
		if (outn > 2)
			out[o++] = (unsigned char)n;
	}
	return (long)o;
}
