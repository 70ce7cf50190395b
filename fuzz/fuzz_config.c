/*
 * Fuzz target for config (libFuzzer): config_load_file on a file holding
 * the input, then everything freed (leaks are reported by LeakSanitizer;
 * run with LSAN_OPTIONS=suppressions=tests/lsan.supp, as scripts/fuzz.sh
 * does: libconfig leaks a buffer on a syntax error).
 * Checks:
 *   - a loaded configuration comes with no error, a refused one with at
 *     least one, each "PATH:LINE: message";
 *   - a loaded configuration finds each of its domains, mailboxes and
 *     aliases by name, and its listeners have ports 0..65535;
 *   - a reference taken and dropped leaves it usable.
 * Inputs with "@include" (libconfig would read other files) or naming a
 * file under /dev, /proc or /sys (a DKIM key is read at load: /dev/zero
 * would never end) are skipped.
 *
 * Build: scripts/fuzz.sh --build-only config
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)

static char path[64];
static int fd = -1;

static void check_errors(const struct config_errors *errs)
{
	size_t plen = strlen(path);
	for (size_t i = 0; i < errs->count; i++) {
		const char *e = errs->items[i];
		CHECK(e != NULL && strncmp(e, path, plen) == 0 && e[plen] == ':');
		const char *p = e + plen + 1;
		CHECK(*p >= '0' && *p <= '9');
		while (*p >= '0' && *p <= '9')
			p++;
		CHECK(p[0] == ':' && p[1] == ' ');
	}
}

static void check_config(struct config *cfg)
{
	for (size_t i = 0; i < cfg->ndomains; i++)
		CHECK(config_find_domain(cfg, cfg->domains[i].name) != NULL);
	for (size_t i = 0; i < cfg->nmailboxes; i++)
		CHECK(config_find_mailbox(cfg, cfg->mailboxes[i].address) != NULL);
	for (size_t i = 0; i < cfg->naliases; i++)
		CHECK(config_find_alias(cfg, cfg->aliases[i].address) != NULL);
	for (size_t i = 0; i < cfg->nlisteners; i++)
		CHECK(cfg->listeners[i].port >= 0 && cfg->listeners[i].port <= 65535);
	CHECK(config_ref(cfg) == cfg);
	config_unref(cfg);
	CHECK(cfg->refs == 1);
}

static void remove_file(void)
{
	unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 65536 || memmem(data, size, "@include", 8) != NULL ||
	    memmem(data, size, "/dev", 4) != NULL || memmem(data, size, "/proc", 5) != NULL ||
	    memmem(data, size, "/sys", 4) != NULL)
		return 0;
	if (fd < 0) {
		snprintf(path, sizeof(path), "/tmp/fulmar-fuzz-config-XXXXXX");
		fd = mkstemp(path);
		CHECK(fd >= 0);
		atexit(remove_file);
	}
	CHECK(ftruncate(fd, 0) == 0);
	CHECK(pwrite(fd, data, size, 0) == (ssize_t)size);

	struct config_errors errs = { 0 };
	struct config *cfg = config_load_file(path, &errs);
	check_errors(&errs);
	if (cfg) {
		CHECK(errs.count == 0);
		check_config(cfg);
		config_unref(cfg);
	} else {
		CHECK(errs.count > 0);
	}
	config_errors_free(&errs);
	return 0;
}
