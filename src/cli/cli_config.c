/*
 * cli_config: the --config option shared by the subcommands, and
 * `fulmar check-config`.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "config/config.h"
#include "lib/tls.h"

struct config *cli_load_config(int argc, char **argv, int *first_free,
			       int *usage_error)
{
	const char *path = NULL;
	int i = 1;
	*usage_error = 0;
	for (; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "fulmar: %s needs a file name\n", argv[i]);
				*usage_error = 1;
				return NULL;
			}
			path = argv[++i];
		} else if (strncmp(argv[i], "--config=", 9) == 0) {
			path = argv[i] + 9;
		} else {
			break;
		}
	}
	if (first_free)
		*first_free = i;
	struct config_errors errs = { 0 };
	struct config *cfg = path ? config_load_file(path, &errs)
				  : config_load_default(&errs);
	for (size_t k = 0; k < errs.count; k++)
		fprintf(stderr, "%s\n", errs.items[k]);
	if (cfg == NULL && errs.count > 0)
		fprintf(stderr, "fulmar: %zu error%s in the configuration\n", errs.count,
			errs.count == 1 ? "" : "s");
	config_errors_free(&errs);
	return cfg;
}

int cmd_check_config(int argc, char **argv)
{
	int first, usage;
	struct config *cfg = cli_load_config(argc, argv, &first, &usage);
	if (usage)
		return 2;
	if (cfg == NULL)
		return 1;
	if (first < argc) {
		fprintf(stderr, "fulmar: unexpected argument '%s'\n", argv[first]);
		config_unref(cfg);
		return 2;
	}
	/* What serve would load at start-up: the TLS certificates and keys. */
	int bad = 0;
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct cfg_listener *l = &cfg->listeners[i];
		if (l->tls_cert == NULL)
			continue;
		if (config_is_default(cfg) && access(l->tls_cert, F_OK) != 0)
			continue; /* made by serve at the first start */
		char err[512];
		SSL_CTX *ctx = config_listener_tls(cfg, l, err, sizeof(err));
		if (ctx == NULL) {
			fprintf(stderr, "%s:%d: listener %s:%d: %s\n", cfg->source, l->line,
				l->address, l->port, err);
			bad++;
		}
		tls_ctx_free(ctx);
	}
	if (bad) {
		config_unref(cfg);
		return 1;
	}
	printf("%s: configuration OK (%zu listeners, %zu domains, %zu mailboxes, "
	       "%zu aliases)\n",
	       cfg->source, cfg->nlisteners, cfg->ndomains, cfg->nmailboxes, cfg->naliases);
	config_unref(cfg);
	return 0;
}
