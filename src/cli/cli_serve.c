/*
 * cli_serve: `fulmar serve` — the daemon's life: load the configuration,
 * prepare directories, bind, drop privileges, recover the queue, serve;
 * SIGHUP reloads, SIGTERM/SIGINT stop gracefully.
 */
#include <errno.h>
#include <stdbool.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli/cli.h"
#include "auth/users.h"
#include "cli/privileges.h"
#include "config/config.h"
#include "control/control.h"
#include "delivery/delivery.h"
#include "delivery/local_txn.h"
#include "lib/dns.h"
#include "lib/fsio.h"
#include "lib/log.h"
#include "lib/tls.h"
#include "lib/xalloc.h"
#include "queue/queue.h"
#include "smtp/smtp_server.h"
#include "verify/psl.h"

struct daemon {
	struct event_base *base;
	struct config *cfg;
	const char *config_path; /* NULL: embedded default */
	struct smtp_server *srv;
	struct queue *queue;
	struct delivery *delivery;
	struct control *control; /* STATE_DIR/control.sock */
	struct dns *dns;
	struct local_committer *local;
	struct run_user ru;
	bool stopping;
};

static void open_log(const struct config *cfg)
{
	log_set_level((enum log_level)cfg->log_level);
	if (cfg->log_file == NULL) {
		log_close_file();
		return;
	}
	if (log_open_file(cfg->log_file, isatty(STDERR_FILENO)) < 0)
		log_msg(LOG_WARNING, "log_open_failed", "%s: %s", cfg->log_file,
			strerror_safe(errno));
}

static bool load_users(struct daemon *d, const struct config *cfg);

/* The loop's log lines are written together once its turn's other
 * callbacks have run (log.h): arming makes this event active. */
static void arm_log_flush(void *arg)
{
	event_active(arg, EV_TIMEOUT, 0);
}

static void on_log_flush(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	log_flush();
}

static void free_loop(struct event_base *base, struct event *log_flusher)
{
	log_batch_stop();
	event_free(log_flusher);
	event_base_free(base);
}

/* The Public Suffix List for DMARC, read here (start-up, reload) and not
 * by the first message that needs it: the inbound checks only look it up
 * (psl_default_loaded). Without it DMARC results are temperror. */
static void load_psl(const struct config *cfg)
{
	char err[512];
	if (cfg->inbound.checks && psl_default_loaded() == NULL &&
	    psl_default(err, sizeof(err)) == NULL)
		log_msg(LOG_WARNING, "psl_unavailable", "%s; DMARC results will be temperror",
			err);
}

static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	struct daemon *d = arg;
	struct config_errors errs = { 0 };
	struct config *cfg = d->config_path ? config_load_file(d->config_path, &errs)
					    : config_load_default(&errs);
	if (cfg == NULL) {
		for (size_t i = 0; i < errs.count; i++)
			log_msg(LOG_ERROR, "reload_failed", "%s", errs.items[i]);
		log_msg(LOG_ERROR, "reload_failed", "keeping the running configuration");
		config_errors_free(&errs);
		return;
	}
	bool same = cfg->nlisteners == d->cfg->nlisteners;
	for (size_t i = 0; same && i < cfg->nlisteners; i++)
		same = strcmp(cfg->listeners[i].address, d->cfg->listeners[i].address) == 0 &&
		       cfg->listeners[i].port == d->cfg->listeners[i].port;
	if (!same)
		log_msg(LOG_WARNING, "reload", "listener changes take effect at restart");
	config_unref(d->cfg);
	d->cfg = cfg;
	open_log(cfg);
	smtp_server_set_config(d->srv, cfg);
	delivery_set_config(d->delivery, cfg);
	load_users(d, cfg);
	load_psl(cfg);
	smtp_server_reload_tls(d->srv, cfg);
	log_msg(LOG_INFO, "reloaded", "%s: %zu domains, %zu mailboxes, %zu aliases",
		cfg->source, cfg->ndomains, cfg->nmailboxes, cfg->naliases);
}

/* The users who may AUTH. A file that cannot be read keeps the users
 * already loaded (at reload) and is reported. */
static bool load_users(struct daemon *d, const struct config *cfg)
{
	if (cfg->auth.users_file == NULL) {
		smtp_server_set_users(d->srv, NULL);
		return true;
	}
	char err[512];
	struct auth_users *u = auth_users_load(cfg->auth.users_file, err, sizeof(err));
	if (u == NULL) {
		log_msg(LOG_ERROR, "users_load_failed", "%s", err);
		return false;
	}
	log_msg(LOG_INFO, "users_loaded", "%s: %zu users", cfg->auth.users_file,
		auth_users_count(u));
	smtp_server_set_users(d->srv, u);
	return true;
}

static void sessions_done(void *arg)
{
	struct daemon *d = arg;
	log_msg(LOG_INFO, "sessions_closed", "all sessions closed");
	event_base_loopexit(d->base, NULL);
}

static void on_sigterm(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	struct daemon *d = arg;
	if (d->stopping) {
		log_msg(LOG_INFO, "stopping", "second signal %d: exiting now", (int)sig);
		event_base_loopexit(d->base, NULL);
		return;
	}
	d->stopping = true;
	log_msg(LOG_INFO, "stopping", "signal %d: no new sessions; %zu open", (int)sig,
		smtp_server_sessions(d->srv));
	smtp_server_shutdown(d->srv, sessions_done, d);
}

static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* The embedded default configuration's certificate is made at the first
 * start, so TLS and AUTH can be tried at once (self-signed: clients must
 * be told not to verify it). */
static int default_certificate(const struct config *cfg, char *err, size_t errlen)
{
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct cfg_listener *l = &cfg->listeners[i];
		if (l->tls_cert == NULL || access(l->tls_cert, F_OK) == 0)
			continue;
		char dir[PATH_MAX];
		strlcpy_safe(dir, l->tls_cert, sizeof(dir));
		if (fsio_mkdirs(dirname(dir), 0755, (uid_t)-1, (gid_t)-1) < 0 ||
		    tls_selfsigned(l->tls_cert, l->tls_key, cfg->hostname, 825, err, errlen) < 0)
			return -1;
		log_msg(LOG_INFO, "tls_selfsigned", "made %s and %s (self-signed for %s)",
			l->tls_cert, l->tls_key, cfg->hostname);
	}
	return 0;
}

/* Directories the unprivileged user must own. */
static int prepare_dirs(struct daemon *d, char *err, size_t errlen)
{
	const struct config *cfg = d->cfg;
	char buf[PATH_MAX];
	if (privileges_prepare_dir(&d->ru, cfg->state_dir, 0755, false) < 0) {
		snprintf(err, errlen, "cannot prepare %s: %s", cfg->state_dir,
			 strerror_safe(errno));
		return -1;
	}
	snprintf(buf, sizeof(buf), "%s/queue", cfg->state_dir);
	if (privileges_prepare_dir(&d->ru, buf, 0700, true) < 0) {
		snprintf(err, errlen, "cannot prepare %s: %s", buf, strerror_safe(errno));
		return -1;
	}
	for (size_t i = 0; i < cfg->nmailboxes; i++) {
		const char *md = cfg->mailboxes[i].maildir;
		if (privileges_prepare_dir(&d->ru, md, 0700, false) < 0) {
			snprintf(err, errlen, "cannot prepare maildir %s: %s", md,
				 strerror_safe(errno));
			return -1;
		}
		static const char *const subs[] = { "tmp", "new", "cur" };
		for (size_t k = 0; k < 3; k++) {
			snprintf(buf, sizeof(buf), "%s/%s", md, subs[k]);
			if (privileges_prepare_dir(&d->ru, buf, 0700, false) < 0) {
				snprintf(err, errlen, "cannot prepare %s: %s", buf,
					 strerror_safe(errno));
				return -1;
			}
		}
	}
	if (cfg->auth.users_file && d->ru.switch_user &&
	    chown(cfg->auth.users_file, d->ru.uid, d->ru.gid) < 0 && errno != ENOENT) {
		snprintf(err, errlen, "cannot give %s to %s: %s", cfg->auth.users_file,
			 d->ru.name, strerror_safe(errno));
		return -1;
	}
	if (cfg->log_file) {
		strlcpy_safe(buf, cfg->log_file, sizeof(buf));
		if (privileges_prepare_dir(&d->ru, dirname(buf), 0755, false) < 0) {
			snprintf(err, errlen, "cannot prepare the log directory of %s: %s",
				 cfg->log_file, strerror_safe(errno));
			return -1;
		}
	}
	return 0;
}

int cmd_serve(int argc, char **argv)
{
	int first, usage;
	struct daemon d = { 0 };
	d.cfg = cli_load_config(argc, argv, &first, &usage);
	if (usage)
		return 2;
	if (d.cfg == NULL)
		return 1;
	if (first < argc) {
		fprintf(stderr, "fulmar: unexpected argument '%s'\n", argv[first]);
		config_unref(d.cfg);
		return 2;
	}
	for (int i = 1; i < first; i++)
		if (strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0)
			d.config_path = argv[i + 1];
		else if (strncmp(argv[i], "--config=", 9) == 0)
			d.config_path = argv[i] + 9;

	char err[512];
	signal(SIGPIPE, SIG_IGN);
	fsio_init_faults();
	raise_fd_limit();
	if (privileges_resolve(d.cfg->user, &d.ru, err, sizeof(err)) < 0 ||
	    prepare_dirs(&d, err, sizeof(err)) < 0 ||
	    (config_is_default(d.cfg) && default_certificate(d.cfg, err, sizeof(err)) < 0)) {
		fprintf(stderr, "fulmar: %s\n", err);
		config_unref(d.cfg);
		return 1;
	}
	open_log(d.cfg);
	if (d.cfg->log_file && d.ru.switch_user &&
	    chown(d.cfg->log_file, d.ru.uid, d.ru.gid) < 0)
		log_msg(LOG_WARNING, "log_chown_failed", "%s: %s", d.cfg->log_file,
			strerror_safe(errno));

	evthread_use_pthreads();
	d.base = event_base_new();
	if (d.base == NULL)
		xfatal("cannot create the event loop");
	struct event *log_flusher = event_new(d.base, -1, 0, on_log_flush, NULL);
	if (log_flusher == NULL)
		xfatal("cannot create the event loop");
	log_batch_start(arm_log_flush, log_flusher);
	log_flush_on_abort();
	d.srv = smtp_server_bind(d.base, d.cfg, err, sizeof(err));
	bool ok = d.srv != NULL;
	if (ok && !load_users(&d, d.cfg)) {
		snprintf(err, sizeof(err), "cannot load the users file %s", d.cfg->auth.users_file);
		ok = false;
	}
	if (!ok || privileges_drop(&d.ru, err, sizeof(err)) < 0) {
		fprintf(stderr, "fulmar: %s\n", err);
		log_msg(LOG_ERROR, "startup_failed", "%s", err);
		smtp_server_free(d.srv);
		free_loop(d.base, log_flusher);
		config_unref(d.cfg);
		return 1;
	}
	/* After the drop: the control socket belongs to server.user. */
	d.control = control_open(d.base, d.cfg->state_dir, err, sizeof(err));
	d.queue = d.control ? queue_open(d.base, d.cfg->state_dir, err, sizeof(err)) : NULL;
	if (d.queue == NULL) {
		fprintf(stderr, "fulmar: %s\n", err);
		log_msg(LOG_ERROR, "startup_failed", "%s", err);
		control_free(d.control);
		smtp_server_free(d.srv);
		free_loop(d.base, log_flusher);
		config_unref(d.cfg);
		return 1;
	}
	d.dns = dns_new(d.base, d.cfg->dns.resolvers, d.cfg->dns.timeout, err, sizeof(err));
	if (d.dns == NULL)
		log_msg(LOG_WARNING, "dns_unavailable", "%s; client names will be unknown", err);
	smtp_server_set_dns(d.srv, d.dns);
	load_psl(d.cfg);
	d.local = local_committer_new(d.base);
	smtp_server_set_local_committer(d.srv, d.local);
	d.delivery = delivery_new(d.base, d.queue, d.dns, d.cfg);
	queue_set_ready_hook(d.queue, delivery_schedule, d.delivery);
	control_start(d.control, d.delivery);
	log_msg(LOG_INFO, "starting", "fulmar %s config=%s hostname=%s state_dir=%s user=%s",
		FULMAR_VERSION, d.cfg->source, d.cfg->hostname, d.cfg->state_dir,
		d.ru.switch_user ? d.ru.name : "(unchanged)");
	queue_recover(d.queue);
	queue_prepare_files(d.queue, (size_t)d.cfg->queue.prepared_files);
	smtp_server_start(d.srv, d.queue);

	struct event *hup = evsignal_new(d.base, SIGHUP, on_sighup, &d);
	struct event *term = evsignal_new(d.base, SIGTERM, on_sigterm, &d);
	struct event *intr = evsignal_new(d.base, SIGINT, on_sigterm, &d);
	event_add(hup, NULL);
	event_add(term, NULL);
	event_add(intr, NULL);

	event_base_dispatch(d.base);

	log_msg(LOG_INFO, "draining", "%u commits and %u deliveries in flight",
		queue_commits_in_flight(d.queue), delivery_in_flight(d.delivery));
	control_free(d.control);
	local_committer_free(d.local);
	delivery_free(d.delivery);
	queue_close(d.queue);
	smtp_server_free(d.srv);
	dns_free(d.dns);
	event_free(hup);
	event_free(term);
	event_free(intr);
	free_loop(d.base, log_flusher);
	config_unref(d.cfg);
	log_msg(LOG_INFO, "stopped", "bye");
	log_close_file();
	return 0;
}
