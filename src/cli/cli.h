/*
 * cli: the `fulmar` subcommands. Each returns the process exit status:
 * 0 success, 1 failure (with a message on stderr), 2 usage error.
 */
#ifndef FULMAR_CLI_H
#define FULMAR_CLI_H

struct config;

int cmd_serve(int argc, char **argv);
int cmd_check_config(int argc, char **argv);
int cmd_queue(int argc, char **argv);
int cmd_tls(int argc, char **argv);
int cmd_dkim(int argc, char **argv);
int cmd_user(int argc, char **argv);
/* Hidden debugging commands (cli_verify.c): `fulmar spf check`, `fulmar dmarc check`. */
int cmd_spf(int argc, char **argv);
int cmd_dmarc(int argc, char **argv);
/* `fulmar sendmail` (also run as `sendmail`): returns a sysexits.h status. */
int cmd_sendmail(int argc, char **argv);

/* Parse "[--config FILE]" from argv (starting at argv[0] == the
 * subcommand) and load the configuration; prints errors. NULL on failure;
 * *usage_error set when the arguments were wrong. */
struct config *cli_load_config(int argc, char **argv, int *first_free,
			       int *usage_error);

#endif
