/*
 * cli_queue: `fulmar queue list` — reads the queue directory directly
 * (queue files are immutable once committed; the journal is append-only).
 */
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "cli/cli.h"
#include "config/config.h"
#include "queue/queue.h"

static const char *state_name(enum rcpt_state st)
{
	switch (st) {
	case RCPT_PENDING:
		return "pending";
	case RCPT_DEFERRED:
		return "deferred";
	case RCPT_DELIVERED:
		return "delivered";
	case RCPT_FAILED:
		return "failed";
	}
	return "?";
}

static void print_one(void *arg, const struct envelope *env)
{
	(void)arg;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	long long age = (long long)tv.tv_sec - env->arrival_us / 1000000;
	printf("%s  age=%llds size=%llu from=<%s> nrcpt=%zu\n", env->id,
	       age < 0 ? 0 : age, (unsigned long long)env->content_size,
	       env->sender, env->nrcpts);
	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct env_rcpt *r = &env->rcpts[i];
		printf("    %s  %s", r->addr, state_name(r->state));
		if (r->state == RCPT_DEFERRED) {
			long long in = (long long)r->next_attempt - (long long)tv.tv_sec;
			printf("  next_attempt_in=%llds attempts=%u", in < 0 ? 0 : in,
			       r->attempts);
		}
		if (r->last_error)
			printf("  last_error=\"%s\"", r->last_error);
		putchar('\n');
	}
}

int cmd_queue(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "list") != 0) {
		fprintf(stderr, "usage: fulmar queue list [--config FILE]\n");
		return 2;
	}
	int first, usage;
	struct config *cfg = cli_load_config(argc - 1, argv + 1, &first, &usage);
	if (usage)
		return 2;
	if (cfg == NULL)
		return 1;
	char err[256] = "";
	long n = queue_list_dir(cfg->state_dir, print_one, NULL, err, sizeof(err));
	config_unref(cfg);
	if (n < 0) {
		fprintf(stderr, "fulmar: %s\n", err);
		return 1;
	}
	if (n == 0)
		fprintf(stderr, "queue is empty\n");
	return 0;
}
