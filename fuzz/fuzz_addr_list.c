/*
 * Fuzz target for addr_list (libFuzzer): header fields and RFC 5322
 * address lists. The input is used as a header section and as one list.
 * Checks:
 *   - fields: each starts where the previous ended, its name is ftext
 *     within it, its value lies between the colon and its end, the end is
 *     within the header; addr_list_header_len is where they stop;
 *   - addr_list_recipients reports exactly what addr_list_parse reports
 *     on each To/Cc/Bcc value in turn;
 *   - every address is 1..ADDR_LIST_ADDR_MAX octets, NUL-ended, without
 *     CR or LF; parsing is the same on an exact-size copy and twice;
 *   - a callback that stops at the k-th address gets k calls and
 *     ADDR_LIST_STOPPED;
 *   - round trip: the addresses found, joined with ", ", parse again to
 *     the same addresses (when none holds a NUL, a quoted-pair or a
 *     comment character that the first pass gave meaning to).
 *
 * Build: scripts/fuzz.sh --build-only addr_list
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/addr_list.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)

#define LIST_MAX 256

struct list {
	char addr[LIST_MAX][ADDR_LIST_ADDR_MAX + 1];
	size_t len[LIST_MAX];
	size_t n;      /* addresses seen (may exceed LIST_MAX: not kept) */
	size_t stop_at; /* stop after this many; 0: never */
};

static int collect(void *arg, const char *addr, size_t len)
{
	struct list *l = arg;
	CHECK(len > 0 && len <= ADDR_LIST_ADDR_MAX && addr[len] == '\0');
	CHECK(memchr(addr, '\r', len) == NULL && memchr(addr, '\n', len) == NULL);
	if (l->n < LIST_MAX) {
		memcpy(l->addr[l->n], addr, len + 1);
		l->len[l->n] = len;
	}
	l->n++;
	return l->stop_at && l->n == l->stop_at;
}

static void same_lists(const struct list *a, const struct list *b)
{
	CHECK(a->n == b->n);
	for (size_t i = 0; i < a->n && i < LIST_MAX; i++)
		CHECK(a->len[i] == b->len[i] && memcmp(a->addr[i], b->addr[i], a->len[i]) == 0);
}

static struct list l1, l2, l3;

static bool plain(const struct list *l)
{
	if (l->n > LIST_MAX)
		return false;
	for (size_t i = 0; i < l->n; i++)
		for (size_t k = 0; k < l->len[i]; k++) {
			char c = l->addr[i][k];
			if (c == '\0' || c == '\\' || c == '(' || c == ')')
				return false;
		}
	return true;
}

static void check_list(const char *s, size_t len)
{
	memset(&l1, 0, sizeof(l1));
	enum addr_list_status st = addr_list_parse(s, len, collect, &l1);
	CHECK(st == ADDR_LIST_OK || st == ADDR_LIST_SYNTAX || st == ADDR_LIST_TOO_LONG);
	memset(&l2, 0, sizeof(l2));
	CHECK(addr_list_parse(s, len, collect, &l2) == st);
	same_lists(&l1, &l2);

	if (l1.n > 0) {
		/* Stop at the last address found. */
		memset(&l2, 0, sizeof(l2));
		l2.stop_at = l1.n;
		CHECK(addr_list_parse(s, len, collect, &l2) == ADDR_LIST_STOPPED);
		CHECK(l2.n == l1.n);
	}

	if (st == ADDR_LIST_OK && l1.n > 0 && plain(&l1)) {
		size_t cap = l1.n * (ADDR_LIST_ADDR_MAX + 2), o = 0;
		char *joined = malloc(cap);
		CHECK(joined != NULL);
		for (size_t i = 0; i < l1.n; i++) {
			if (i) {
				memcpy(joined + o, ", ", 2);
				o += 2;
			}
			memcpy(joined + o, l1.addr[i], l1.len[i]);
			o += l1.len[i];
		}
		memset(&l3, 0, sizeof(l3));
		CHECK(addr_list_parse(joined, o, collect, &l3) == ADDR_LIST_OK);
		same_lists(&l1, &l3);
		free(joined);
	}
}

static void check_header(const char *hdr, size_t len)
{
	size_t pos = 0, prev_end = 0, nfields = 0;
	struct addr_list_field f;
	memset(&l2, 0, sizeof(l2));
	enum addr_list_status want = ADDR_LIST_OK;
	while (addr_list_next_field(hdr, len, &pos, &f)) {
		CHECK(f.start == prev_end && f.end > f.start && f.end <= len && pos == f.end);
		CHECK(f.name == hdr + f.start && f.name_len > 0);
		for (size_t i = 0; i < f.name_len; i++)
			CHECK(f.name[i] > 32 && f.name[i] < 127 && f.name[i] != ':');
		CHECK(f.value > f.name + f.name_len && f.value[-1] == ':');
		CHECK(f.value + f.value_len <= hdr + f.end);
		prev_end = f.end;
		nfields++;
		if (want == ADDR_LIST_OK &&
		    (addr_list_field_is(&f, "to") || addr_list_field_is(&f, "cc") ||
		     addr_list_field_is(&f, "bcc")))
			want = addr_list_parse(f.value, f.value_len, collect, &l2);
	}
	CHECK(pos == prev_end);
	CHECK(addr_list_header_len(hdr, len) == pos);
	memset(&l3, 0, sizeof(l3));
	CHECK(addr_list_recipients(hdr, len, collect, &l3) == want);
	same_lists(&l2, &l3);
	(void)nfields;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 16384)
		return 0;
	char *s = malloc(size ? size : 1); /* exact size: no read past len */
	CHECK(s != NULL);
	memcpy(s, data, size);
	check_list(s, size);
	check_header(s, size);
	free(s);
	return 0;
}
