/*
 * psl: the Public Suffix List as a hash set (psl.h). Each key is a rule's
 * name without its "*." or "!" (lower case), with a mask of the kinds of
 * rule that name has. Open addressing, FNV-1a, the table at most half
 * full; the key strings live in one arena.
 */
#include "verify/psl.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/xalloc.h"

enum { RULE = 1, WILD = 2, EXCEPT = 4 };

struct slot {
	uint32_t off; /* key in the arena; 0: empty (the arena starts with a NUL) */
	uint32_t len;
	uint8_t kinds;
};

struct psl {
	struct slot *slots;
	size_t cap, used;
	char *arena;
	size_t alen, acap;
};

static uint32_t hash(const char *s, size_t len)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	return h;
}

static struct slot *find(const struct psl *p, const char *s, size_t len)
{
	size_t i = hash(s, len) & (p->cap - 1);
	for (;;) {
		struct slot *sl = &p->slots[i];
		if (sl->off == 0)
			return sl;
		if (sl->len == len && memcmp(p->arena + sl->off, s, len) == 0)
			return sl;
		i = (i + 1) & (p->cap - 1);
	}
}

static void grow(struct psl *p)
{
	struct slot *old = p->slots;
	size_t oldcap = p->cap;
	p->cap = oldcap ? oldcap * 2 : 1024;
	p->slots = xcalloc(p->cap, sizeof(*p->slots));
	for (size_t i = 0; i < oldcap; i++)
		if (old[i].off)
			*find(p, p->arena + old[i].off, old[i].len) = old[i];
	free(old);
}

static void add(struct psl *p, const char *s, size_t len, uint8_t kind)
{
	if (len == 0 || len > PSL_NAME_MAX)
		return;
	if ((p->used + 1) * 2 > p->cap)
		grow(p);
	struct slot *sl = find(p, s, len);
	if (sl->off == 0) {
		if (p->alen + len + 1 > p->acap) {
			while (p->alen + len + 1 > p->acap)
				p->acap *= 2;
			p->arena = xrealloc(p->arena, p->acap);
		}
		memcpy(p->arena + p->alen, s, len);
		p->arena[p->alen + len] = '\0';
		sl->off = (uint32_t)p->alen;
		sl->len = (uint32_t)len;
		p->alen += len + 1;
		p->used++;
	}
	sl->kinds |= kind;
}

static uint8_t kinds_of(const struct psl *p, const char *s, size_t len)
{
	if (p->cap == 0)
		return 0;
	return find(p, s, len)->kinds;
}

/* ---- punycode (RFC 3492), for the A-label form of Unicode rules ---- */

static size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *out, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t k;
		if (s[i] < 0x80)
			cp = s[i], k = 1;
		else if ((s[i] & 0xe0) == 0xc0)
			cp = s[i] & 0x1f, k = 2;
		else if ((s[i] & 0xf0) == 0xe0)
			cp = s[i] & 0x0f, k = 3;
		else if ((s[i] & 0xf8) == 0xf0)
			cp = s[i] & 0x07, k = 4;
		else
			return 0;
		if (i + k > len || n == max)
			return 0;
		for (size_t j = 1; j < k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + j] & 0x3f);
		}
		out[n++] = cp;
		i += k;
	}
	return n;
}

static char digit_char(uint32_t d)
{
	return (char)(d < 26 ? 'a' + d : '0' + (d - 26));
}

static uint32_t adapt(uint32_t delta, uint32_t points, bool first)
{
	delta = first ? delta / 700 : delta / 2;
	delta += delta / points;
	uint32_t k = 0;
	while (delta > ((36 - 1) * 26) / 2) {
		delta /= 36 - 1;
		k += 36;
	}
	return k + (36 * delta) / (delta + 38);
}

/* "xn--" and the punycode of one label; its length or 0. */
static size_t punycode_label(const char *label, size_t len, char *out, size_t cap)
{
	uint32_t cp[64];
	size_t n = utf8_decode((const unsigned char *)label, len, cp, 64);
	if (n == 0 || cap < 5)
		return 0;
	size_t o = 0;
	memcpy(out, "xn--", 4);
	o = 4;
	size_t basic = 0;
	for (size_t i = 0; i < n; i++)
		if (cp[i] < 0x80) {
			if (o + 1 >= cap)
				return 0;
			out[o++] = (char)cp[i];
			basic++;
		}
	if (basic > 0) {
		if (o + 1 >= cap)
			return 0;
		out[o++] = '-';
	}
	uint32_t code = 128, delta = 0, bias = 72;
	size_t h = basic;
	while (h < n) {
		uint32_t m = UINT32_MAX;
		for (size_t i = 0; i < n; i++)
			if (cp[i] >= code && cp[i] < m)
				m = cp[i];
		if ((uint64_t)(m - code) * (h + 1) + delta > UINT32_MAX)
			return 0;
		delta += (m - code) * (uint32_t)(h + 1);
		code = m;
		for (size_t i = 0; i < n; i++) {
			if (cp[i] < code)
				delta++;
			if (cp[i] != code)
				continue;
			uint32_t q = delta;
			for (uint32_t k = 36;; k += 36) {
				uint32_t t = k <= bias ? 1 : k >= bias + 26 ? 26 : k - bias;
				if (q < t)
					break;
				if (o + 1 >= cap)
					return 0;
				out[o++] = digit_char(t + (q - t) % (36 - t));
				q = (q - t) / (36 - t);
			}
			if (o + 1 >= cap)
				return 0;
			out[o++] = digit_char(q);
			bias = adapt(delta, (uint32_t)(h + 1), h == basic);
			delta = 0;
			h++;
		}
		delta++;
		code++;
	}
	out[o] = '\0';
	return o;
}

/* The A-label form of a rule name with non-ASCII labels; length or 0. */
static size_t to_alabels(const char *s, size_t len, char *out, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < len;) {
		size_t j = i;
		bool ascii = true;
		while (j < len && s[j] != '.') {
			if ((unsigned char)s[j] >= 0x80)
				ascii = false;
			j++;
		}
		if (o > 0) {
			if (o + 1 >= cap)
				return 0;
			out[o++] = '.';
		}
		if (ascii) {
			if (o + (j - i) >= cap)
				return 0;
			memcpy(out + o, s + i, j - i);
			o += j - i;
		} else {
			size_t n = punycode_label(s + i, j - i, out + o, cap - o);
			if (n == 0)
				return 0;
			o += n;
		}
		i = j + 1;
	}
	return o;
}

/* ---- loading ---- */

static void add_rule(struct psl *p, const char *s, size_t len)
{
	uint8_t kind = RULE;
	if (len > 0 && s[0] == '!') {
		kind = EXCEPT;
		s++, len--;
	} else if (len > 2 && s[0] == '*' && s[1] == '.') {
		kind = WILD;
		s += 2, len -= 2;
	}
	char low[PSL_NAME_MAX + 1];
	if (len == 0 || len > PSL_NAME_MAX)
		return;
	bool ascii = true;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		if ((unsigned char)ch >= 0x80)
			ascii = false;
		low[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
	}
	add(p, low, len, kind);
	if (!ascii) {
		char a[PSL_NAME_MAX + 1];
		size_t n = to_alabels(low, len, a, sizeof(a));
		if (n > 0)
			add(p, a, n, kind);
	}
}

struct psl *psl_parse(const char *text, size_t len)
{
	struct psl *p = xcalloc(1, sizeof(*p));
	p->acap = 4096;
	p->arena = xmalloc(p->acap);
	p->arena[0] = '\0';
	p->alen = 1; /* offset 0 marks an empty slot */
	grow(p);
	for (size_t i = 0; i < len;) {
		size_t e = i;
		while (e < len && text[e] != '\n')
			e++;
		size_t s = i;
		while (s < e && (text[s] == ' ' || text[s] == '\t'))
			s++;
		size_t t = s;
		while (t < e && text[t] != ' ' && text[t] != '\t' && text[t] != '\r')
			t++;
		/* A rule is the first word of a line; "//" starts a comment. */
		if (t > s && !(t - s >= 2 && text[s] == '/' && text[s + 1] == '/'))
			add_rule(p, text + s, t - s);
		i = e + 1;
	}
	return p;
}

struct psl *psl_load(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror_safe(errno));
		return NULL;
	}
	char *buf = xmalloc(PSL_FILE_MAX + 1);
	size_t n = fread(buf, 1, PSL_FILE_MAX + 1, f);
	bool bad = ferror(f);
	fclose(f);
	if (bad || n > PSL_FILE_MAX) {
		snprintf(err, errlen, "%s: %s", path, bad ? "read error" : "file too large");
		free(buf);
		return NULL;
	}
	struct psl *p = psl_parse(buf, n);
	free(buf);
	if (p->used == 0) {
		snprintf(err, errlen, "%s: no rules", path);
		psl_free(p);
		return NULL;
	}
	return p;
}

void psl_free(struct psl *p)
{
	if (p == NULL)
		return;
	free(p->slots);
	free(p->arena);
	free(p);
}

size_t psl_count(const struct psl *p)
{
	return p->used;
}

static struct psl *dflt;

const struct psl *psl_default(char *err, size_t errlen)
{
	if (dflt == NULL)
		dflt = psl_load(PSL_DEFAULT_PATH, err, errlen);
	return dflt;
}

const struct psl *psl_default_loaded(void)
{
	return dflt;
}

/* ---- lookups ---- */

/* The lower-cased name and where each label starts; labels or 0. */
static size_t split(const char *domain, char *low, size_t *starts, size_t max)
{
	size_t len = strlen(domain);
	if (len > 0 && domain[len - 1] == '.')
		len--;
	if (len == 0 || len > PSL_NAME_MAX || domain[len - 1] == '.')
		return 0;
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		char ch = domain[i];
		low[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
		if (i == 0 || domain[i - 1] == '.') {
			if (ch == '.' || n == max)
				return 0; /* empty label */
			starts[n++] = i;
		}
	}
	low[len] = '\0';
	return n;
}

/* Index of the label where the public suffix starts; SIZE_MAX on failure. */
static size_t suffix_at(const struct psl *p, const char *low, const size_t *starts, size_t n)
{
	size_t len = strlen(low);
	for (size_t i = 0; i < n; i++)
		if (kinds_of(p, low + starts[i], len - starts[i]) & EXCEPT)
			return i + 1 < n ? i + 1 : i;
	for (size_t i = 0; i < n; i++) {
		if (kinds_of(p, low + starts[i], len - starts[i]) & RULE)
			return i;
		if (i + 1 < n && (kinds_of(p, low + starts[i + 1], len - starts[i + 1]) & WILD))
			return i;
	}
	return n - 1; /* the implicit rule "*" */
}

static bool put(const char *s, char *out, size_t outlen)
{
	size_t len = strlen(s);
	if (len >= outlen)
		return false;
	memcpy(out, s, len + 1);
	return true;
}

/* The public suffix's label index (org: one label more) into out. */
static bool lookup(const struct psl *p, const char *domain, bool org, char *out, size_t outlen)
{
	char low[PSL_NAME_MAX + 1];
	size_t starts[128];
	size_t n = split(domain, low, starts, 128);
	if (n == 0)
		return false;
	size_t i = suffix_at(p, low, starts, n);
	if (org && i > 0)
		i--;
	return put(low + starts[i], out, outlen);
}

bool psl_public_suffix(const struct psl *p, const char *domain, char *out, size_t outlen)
{
	return lookup(p, domain, false, out, outlen);
}

bool psl_org_domain(const struct psl *p, const char *domain, char *out, size_t outlen)
{
	return lookup(p, domain, true, out, outlen);
}
