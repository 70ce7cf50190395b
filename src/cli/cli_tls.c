/*
 * cli_tls: `fulmar tls selfsigned --cert FILE --key FILE [--hostname NAME]
 * [--days N]` — a key and a self-signed certificate for trying TLS.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "lib/tls.h"

int cmd_tls(int argc, char **argv)
{
	const char *cert = NULL, *key = NULL;
	char host[256] = "localhost";
	long days = 825;
	if (argc < 2 || strcmp(argv[1], "selfsigned") != 0)
		goto usage;
	for (int i = 2; i < argc; i++) {
		if (i + 1 >= argc)
			goto usage;
		if (strcmp(argv[i], "--cert") == 0)
			cert = argv[++i];
		else if (strcmp(argv[i], "--key") == 0)
			key = argv[++i];
		else if (strcmp(argv[i], "--hostname") == 0)
			snprintf(host, sizeof(host), "%s", argv[++i]);
		else if (strcmp(argv[i], "--days") == 0) {
			char *end;
			days = strtol(argv[++i], &end, 10);
			if (*end || days < 1 || days > 36500)
				goto usage;
		} else
			goto usage;
	}
	if (cert == NULL || key == NULL)
		goto usage;
	char err[512];
	if (tls_selfsigned(cert, key, host, (int)days, err, sizeof(err)) < 0) {
		fprintf(stderr, "fulmar: %s\n", err);
		return 1;
	}
	printf("wrote %s (key, mode 0600) and %s (self-signed for %s, %ld days)\n", key,
	       cert, host, days);
	return 0;
usage:
	fprintf(stderr, "usage: fulmar tls selfsigned --cert FILE --key FILE "
			"[--hostname NAME] [--days N]\n");
	return 2;
}
