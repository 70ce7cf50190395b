/*
 * main: dispatches `fulmar SUBCOMMAND ...`.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *out)
{
	fputs("usage: fulmar serve [--config FILE]\n"
	      "       fulmar check-config [--config FILE]\n"
	      "       fulmar queue list [--config FILE]\n"
	      "       fulmar queue show ID [--config FILE]\n"
	      "       fulmar queue flush [ID] [--config FILE]\n"
	      "       fulmar queue hold|release|delete|bounce ID [--config FILE]\n"
	      "       fulmar tls selfsigned --cert FILE --key FILE [--hostname NAME]\n"
	      "       fulmar dkim keygen DOMAIN SELECTOR [--ed25519] [--bits N] [--dir DIR] "
	      "[--force] [--config FILE]\n"
	      "       fulmar dkim record DOMAIN SELECTOR [--key FILE | --dir DIR] [--config FILE]\n"
	      "       fulmar user add|passwd|del NAME [--config FILE] [--users-file PATH]\n"
	      "       fulmar user list [--config FILE] [--users-file PATH]\n"
	      "       fulmar sendmail [-t] [-i] [-f SENDER] [-F NAME] [recipient...]\n"
	      "       fulmar version\n"
	      "Without --config, the embedded default configuration is used\n"
	      "(listening on 127.0.0.1:2525, mail for example.test under ./var).\n",
	      out);
}

int main(int argc, char **argv)
{
	/* Installed as sendmail (a symlink): cron, mail(), scripts. */
	const char *self = argc > 0 ? strrchr(argv[0], '/') : NULL;
	if (argc > 0 && strcmp(self ? self + 1 : argv[0], "sendmail") == 0)
		return cmd_sendmail(argc, argv);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "serve") == 0)
		return cmd_serve(argc - 1, argv + 1);
	if (strcmp(cmd, "check-config") == 0)
		return cmd_check_config(argc - 1, argv + 1);
	if (strcmp(cmd, "queue") == 0)
		return cmd_queue(argc - 1, argv + 1);
	if (strcmp(cmd, "tls") == 0)
		return cmd_tls(argc - 1, argv + 1);
	if (strcmp(cmd, "dkim") == 0)
		return cmd_dkim(argc - 1, argv + 1);
	if (strcmp(cmd, "user") == 0)
		return cmd_user(argc - 1, argv + 1);
	if (strcmp(cmd, "sendmail") == 0)
		return cmd_sendmail(argc - 1, argv + 1);
	if (strcmp(cmd, "spf") == 0) /* hidden: debugging */
		return cmd_spf(argc - 1, argv + 1);
	if (strcmp(cmd, "dmarc") == 0) /* hidden: debugging */
		return cmd_dmarc(argc - 1, argv + 1);
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("fulmar %s\n", FULMAR_VERSION);
		return 0;
	}
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "fulmar: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
