/*
 * cli_dkim: `fulmar dkim` — DKIM keys and, for tests and debugging, a
 * signer over standard input.
 *
 *   fulmar dkim keygen DOMAIN SELECTOR [--ed25519] [--bits N] [--dir DIR]
 *                      [--force] [--config FILE]
 *       writes DIR/DOMAIN.SELECTOR.key (default DIR: STATE_DIR/dkim, mode
 *       0700), mode 0600, owned by server.user when run as root; refuses
 *       to replace a key without --force; prints the TXT record to publish.
 *   fulmar dkim record DOMAIN SELECTOR [--key FILE | --dir DIR] [--config FILE]
 *       prints the TXT record of an existing key again.
 *   fulmar dkim sign --key FILE --selector S [--key FILE --selector S]...
 *                    --domain D [--ed25519] [--time T] [--expire SECONDS]
 *                    [--canon H/B] [--headers NAME:NAME...] < message > signed
 *       signs a message (CRLF line ends) and writes it with the
 *       DKIM-Signature fields in front: the signer exactly as the server
 *       will run it, for the verifier tests and for debugging.
 *   fulmar dkim verify [--dns IP:PORT] [--time T] < message
 *       verifies every DKIM-Signature of a message (CRLF line ends): one
 *       line per signature, "RESULT d=D s=S a=A b=B reason=\"...\"" (or
 *       "none"); exits 0 whatever the results. Keys are looked up through
 *       lib/dns, at --dns (the tests' loopback server) or the system's
 *       resolvers; --time is the "now" x= is compared with. Not in the
 *       usage text: a debugging tool.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/privileges.h"
#include "config/config.h"
#include "lib/dns.h"
#include "lib/fsio.h"
#include "lib/xalloc.h"
#include "signer/dkim_key.h"
#include "signer/dkim_sign.h"
#include "verify/dkim_verify.h"
#include "verify/dkim_verify_async.h"

/* What `dkim sign` reads from standard input at most. */
#define SIGN_INPUT_MAX (512UL * 1024 * 1024)

static void usage(void)
{
	fputs("usage: fulmar dkim keygen DOMAIN SELECTOR [--ed25519] [--bits N] [--dir DIR]\n"
	      "                          [--force] [--config FILE]\n"
	      "       fulmar dkim record DOMAIN SELECTOR [--key FILE | --dir DIR] "
	      "[--config FILE]\n"
	      "       fulmar dkim sign --key FILE --selector S --domain D [--ed25519]\n"
	      "                        [--time T] [--expire SECONDS] [--canon H/B]\n"
	      "                        [--headers NAME:NAME...] < message > signed\n",
	      stderr);
}

static void lower_in_place(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

/* Options shared by keygen and record. */
struct key_args {
	char domain[256];
	char selector[256];
	const char *dir;
	const char *key;
	char *config;
	bool ed25519;
	bool force;
	long bits;
};

/* Parses "DOMAIN SELECTOR [options]" from argv[2..]; keygen allows
 * --ed25519, --bits and --force, record allows --key. 0, or 2 after a
 * usage message. */
static int parse_key_args(int argc, char **argv, bool keygen, struct key_args *a)
{
	int npos = 0;
	memset(a, 0, sizeof(*a));
	a->bits = DKIM_RSA_DEFAULT_BITS;
	for (int i = 2; i < argc; i++) {
		const char *o = argv[i];
		bool has_value = i + 1 < argc;
		if (keygen && strcmp(o, "--ed25519") == 0) {
			a->ed25519 = true;
		} else if (keygen && strcmp(o, "--force") == 0) {
			a->force = true;
		} else if (keygen && strcmp(o, "--bits") == 0 && has_value) {
			char *end;
			errno = 0;
			a->bits = strtol(argv[++i], &end, 10);
			if (errno != 0 || *end != '\0' || a->bits < DKIM_RSA_MIN_BITS ||
			    a->bits > DKIM_RSA_MAX_BITS) {
				fprintf(stderr, "fulmar: --bits must be %d to %d\n",
					DKIM_RSA_MIN_BITS, DKIM_RSA_MAX_BITS);
				return 2;
			}
		} else if (strcmp(o, "--dir") == 0 && has_value) {
			a->dir = argv[++i];
		} else if (!keygen && strcmp(o, "--key") == 0 && has_value) {
			a->key = argv[++i];
		} else if ((strcmp(o, "--config") == 0 || strcmp(o, "-c") == 0) && has_value) {
			a->config = argv[++i];
		} else if (o[0] == '-') {
			fprintf(stderr, "fulmar: unknown or incomplete option '%s'\n", o);
			usage();
			return 2;
		} else if (npos == 0) {
			strlcpy_safe(a->domain, o, sizeof(a->domain));
			npos++;
		} else if (npos == 1) {
			strlcpy_safe(a->selector, o, sizeof(a->selector));
			npos++;
		} else {
			fprintf(stderr, "fulmar: unexpected argument '%s'\n", o);
			usage();
			return 2;
		}
	}
	if (npos != 2) {
		usage();
		return 2;
	}
	lower_in_place(a->domain);
	lower_in_place(a->selector);
	if (!dkim_domain_valid(a->domain)) {
		fprintf(stderr, "fulmar: '%s' is not a domain name (IDNs as xn-- labels)\n",
			a->domain);
		return 2;
	}
	if (!dkim_selector_valid(a->selector)) {
		fprintf(stderr, "fulmar: '%s' is not a selector (letters, digits, '-', '_', "
				"dots)\n",
			a->selector);
		return 2;
	}
	return 0;
}

/* The configuration (--config or the embedded default); NULL after a
 * message. */
static struct config *load_config(char *prog, char *path)
{
	char *cargv[3] = { prog, "--config", path };
	int first, usage_error;
	return cli_load_config(path ? 3 : 1, cargv, &first, &usage_error);
}

/* Prints the record to publish for key k. 0, or 1 after a message. */
static int print_record(EVP_PKEY *k, const char *domain, const char *selector)
{
	char err[512];
	char *rec = dkim_key_txt_record(k, err, sizeof(err));
	if (rec == NULL) {
		fprintf(stderr, "fulmar: %s\n", err);
		return 1;
	}
	char *zone = dkim_key_zone_text(domain, selector, rec);
	printf("Publish this TXT record in the DNS zone of %s:\n\n%s\n", domain, zone);
	free(zone);
	free(rec);
	return 0;
}

/* Writes pem to path: a temporary file in the same directory (0600,
 * owned by ru's user when switching), fsynced, then linked (or, with
 * force, renamed) to path, and the directory fsynced. 0, or 1 after a
 * message. */
static int write_key_file(const char *dir, const char *path, const char *pem, size_t len,
			  const struct run_user *ru, bool force)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s/.dkim-key.XXXXXX", dir);
	mode_t old = umask(077);
	int fd = mkstemp(tmp);
	umask(old);
	if (fd < 0) {
		fprintf(stderr, "fulmar: %s: %s\n", tmp, strerror_safe(errno));
		return 1;
	}
	int rc = 1;
	if (fchmod(fd, 0600) < 0 || fsio_write_all(fd, pem, len) < 0 || fsio_fsync(fd) < 0) {
		fprintf(stderr, "fulmar: %s: %s\n", tmp, strerror_safe(errno));
		goto out;
	}
	if (ru->switch_user && fchown(fd, ru->uid, ru->gid) < 0) {
		fprintf(stderr, "fulmar: cannot give %s to %s: %s\n", tmp, ru->name,
			strerror_safe(errno));
		goto out;
	}
	if ((force ? fsio_rename(tmp, path) : fsio_link(tmp, path)) < 0) {
		if (errno == EEXIST)
			fprintf(stderr, "fulmar: %s exists: a key is never replaced without "
					"--force (for a rotation, make a new selector)\n",
				path);
		else
			fprintf(stderr, "fulmar: %s: %s\n", path, strerror_safe(errno));
		goto out;
	}
	if (fsio_fsync_dir(dir) < 0) {
		fprintf(stderr, "fulmar: %s: %s\n", dir, strerror_safe(errno));
		goto out;
	}
	rc = 0;
out:
	close(fd);
	unlink(tmp); /* after rename it is gone already */
	return rc;
}

/* The directory of the keys: --dir, or STATE_DIR/dkim prepared 0700 for
 * the run user. 0, or 1 after a message. */
static int key_dir(const struct key_args *a, const struct config *cfg,
		   const struct run_user *ru, bool create, char *dir, size_t len)
{
	if (a->dir != NULL) {
		strlcpy_safe(dir, a->dir, len);
		if (create && fsio_mkdirs(dir, 0700, ru->switch_user ? ru->uid : (uid_t)-1,
					  ru->gid) < 0) {
			fprintf(stderr, "fulmar: cannot create %s: %s\n", dir,
				strerror_safe(errno));
			return 1;
		}
		return 0;
	}
	snprintf(dir, len, "%s/dkim", cfg->state_dir);
	if (create && (privileges_prepare_dir(ru, cfg->state_dir, 0755, false) < 0 ||
		       privileges_prepare_dir(ru, dir, 0700, false) < 0)) {
		fprintf(stderr, "fulmar: cannot prepare %s: %s\n", dir, strerror_safe(errno));
		return 1;
	}
	return 0;
}

static int cmd_keygen(int argc, char **argv)
{
	struct key_args a;
	int rc = parse_key_args(argc, argv, true, &a);
	if (rc != 0)
		return rc;
	struct config *cfg = load_config(argv[0], a.config);
	if (cfg == NULL)
		return 1;
	char err[512], dir[PATH_MAX], path[PATH_MAX], abs[PATH_MAX];
	struct run_user ru;
	EVP_PKEY *k = NULL;
	char *pem = NULL;
	size_t pemlen = 0;
	enum dkim_alg alg = a.ed25519 ? DKIM_ALG_ED25519_SHA256 : DKIM_ALG_RSA_SHA256;
	rc = 1;
	if (privileges_resolve(cfg->user, &ru, err, sizeof(err)) < 0) {
		fprintf(stderr, "fulmar: %s (the key must belong to the user that signs)\n",
			err);
		goto out;
	}
	if (key_dir(&a, cfg, &ru, true, dir, sizeof(dir)) != 0)
		goto out;
	snprintf(path, sizeof(path), "%s/%s.%s.key", dir, a.domain, a.selector);
	if (!a.force && access(path, F_OK) == 0) {
		fprintf(stderr, "fulmar: %s exists: a key is never replaced without --force "
				"(for a rotation, make a new selector)\n",
			path);
		goto out;
	}
	k = dkim_key_generate(alg, (int)a.bits, err, sizeof(err));
	if (k == NULL || (pem = dkim_key_private_pem(k, &pemlen, err, sizeof(err))) == NULL) {
		fprintf(stderr, "fulmar: %s\n", err);
		goto out;
	}
	rc = write_key_file(dir, path, pem, pemlen, &ru, a.force);
	explicit_bzero(pem, pemlen);
	if (rc != 0)
		goto out;
	if (realpath(path, abs) == NULL)
		strlcpy_safe(abs, path, sizeof(abs));
	if (alg == DKIM_ALG_RSA_SHA256)
		printf("wrote %s (rsa-sha256, %ld bits, mode 0600", abs, a.bits);
	else
		printf("wrote %s (ed25519-sha256, mode 0600", abs);
	printf("%s%s)\n\n", ru.switch_user ? ", owner " : "", ru.switch_user ? ru.name : "");
	rc = print_record(k, a.domain, a.selector);
	if (rc == 0)
		printf("Then sign mail from %s with: domain \"%s\", selector \"%s\", "
		       "key \"%s\" (docs/signer.md).\n",
		       a.domain, a.domain, a.selector, abs);
out:
	free(pem);
	EVP_PKEY_free(k);
	config_unref(cfg);
	return rc;
}

static int cmd_record(int argc, char **argv)
{
	struct key_args a;
	int rc = parse_key_args(argc, argv, false, &a);
	if (rc != 0)
		return rc;
	char err[512], dir[PATH_MAX], path[PATH_MAX];
	if (a.key != NULL) {
		strlcpy_safe(path, a.key, sizeof(path));
	} else {
		struct config *cfg = a.dir ? NULL : load_config(argv[0], a.config);
		struct run_user ru = { 0 };
		if (a.dir == NULL && cfg == NULL)
			return 1;
		key_dir(&a, cfg, &ru, false, dir, sizeof(dir));
		snprintf(path, sizeof(path), "%s/%s.%s.key", dir, a.domain, a.selector);
		config_unref(cfg);
	}
	EVP_PKEY *k = dkim_key_load(path, NULL, err, sizeof(err));
	if (k == NULL) {
		fprintf(stderr, "fulmar: %s\n", err);
		return 1;
	}
	rc = print_record(k, a.domain, a.selector);
	EVP_PKEY_free(k);
	return rc;
}

/* ---- dkim sign ------------------------------------------------------ */

static int parse_canon(const char *s, enum dkim_canon_alg *h, enum dkim_canon_alg *b)
{
	char hs[16] = "", bs[16] = "";
	const char *slash = strchr(s, '/');
	size_t hl = slash ? (size_t)(slash - s) : strlen(s);
	if (hl >= sizeof(hs))
		return -1;
	memcpy(hs, s, hl);
	strlcpy_safe(bs, slash ? slash + 1 : "simple", sizeof(bs));
	if (strcmp(hs, "relaxed") != 0 && strcmp(hs, "simple") != 0)
		return -1;
	if (strcmp(bs, "relaxed") != 0 && strcmp(bs, "simple") != 0)
		return -1;
	*h = hs[0] == 'r' ? DKIM_CANON_RELAXED : DKIM_CANON_SIMPLE;
	*b = bs[0] == 'r' ? DKIM_CANON_RELAXED : DKIM_CANON_SIMPLE;
	return 0;
}

static int cmd_sign(int argc, char **argv)
{
	const char *keys[DKIM_SIGN_MAX_SIGS], *sels[DKIM_SIGN_MAX_SIGS];
	const char *domain = NULL, *headers = NULL;
	size_t nkeys = 0, nsels = 0;
	bool ed25519 = false, canon_set = false, time_set = false;
	enum dkim_canon_alg hc = DKIM_CANON_RELAXED, bc = DKIM_CANON_RELAXED;
	long long t = 0, expire = 0;

	for (int i = 2; i < argc; i++) {
		const char *o = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		char *end;
		if (strcmp(o, "--ed25519") == 0) {
			ed25519 = true;
			continue;
		}
		if (v == NULL)
			goto usage;
		i++;
		if (strcmp(o, "--key") == 0 && nkeys < DKIM_SIGN_MAX_SIGS) {
			keys[nkeys++] = v;
		} else if (strcmp(o, "--selector") == 0 && nsels < DKIM_SIGN_MAX_SIGS) {
			sels[nsels++] = v;
		} else if (strcmp(o, "--domain") == 0) {
			domain = v;
		} else if (strcmp(o, "--headers") == 0) {
			headers = v;
		} else if (strcmp(o, "--canon") == 0) {
			if (parse_canon(v, &hc, &bc) < 0)
				goto usage;
			canon_set = true;
		} else if (strcmp(o, "--time") == 0 || strcmp(o, "--expire") == 0) {
			errno = 0;
			long long n = strtoll(v, &end, 10);
			if (errno != 0 || *end != '\0' || n < 0)
				goto usage;
			if (o[2] == 't') {
				t = n;
				time_set = true;
			} else {
				expire = n;
			}
		} else {
			goto usage;
		}
	}
	if (nkeys == 0 || nkeys != nsels || domain == NULL)
		goto usage;

	char err[512];
	struct dkim_sign *s = NULL;
	int rc = 1;
	for (size_t i = 0; i < nkeys; i++) {
		enum dkim_alg alg;
		EVP_PKEY *k = dkim_key_load(keys[i], &alg, err, sizeof(err));
		if (k == NULL)
			goto fail;
		if (ed25519 && alg != DKIM_ALG_ED25519_SHA256) {
			snprintf(err, sizeof(err), "%s: --ed25519 given, but this is an RSA key",
				 keys[i]);
			EVP_PKEY_free(k);
			goto fail;
		}
		int ok = s == NULL ? (s = dkim_sign_new(domain, sels[i], alg, k, err,
							sizeof(err))) != NULL
				   : dkim_sign_add(s, domain, sels[i], alg, k, err,
						   sizeof(err)) == 0;
		EVP_PKEY_free(k); /* the signer holds its own reference */
		if (!ok)
			goto fail;
	}
	if (headers != NULL) {
		char *copy = xstrdup(headers), *save = NULL;
		const char *names[DKIM_SIGN_MAX_NAMES + 1];
		size_t n = 0;
		for (char *tok = strtok_r(copy, ":", &save); tok && n <= DKIM_SIGN_MAX_NAMES;
		     tok = strtok_r(NULL, ":", &save))
			names[n++] = tok;
		int hrc = dkim_sign_set_headers(s, names, n, err, sizeof(err));
		free(copy);
		if (hrc < 0)
			goto fail;
	}
	if (canon_set)
		dkim_sign_set_canon(s, hc, bc);
	if (time_set)
		dkim_sign_set_time(s, t);
	dkim_sign_set_expire(s, expire);

	/* The message: kept for the output, hashed as it is read. */
	size_t len = 0, cap = 1 << 16;
	char *msg = xmalloc(cap);
	for (;;) {
		if (len == cap) {
			if (cap >= SIGN_INPUT_MAX) {
				snprintf(err, sizeof(err), "the message is over %lu octets",
					 SIGN_INPUT_MAX);
				free(msg);
				goto fail;
			}
			cap *= 2;
			msg = xrealloc(msg, cap);
		}
		ssize_t r = read(STDIN_FILENO, msg + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(err, sizeof(err), "standard input: %s", strerror_safe(errno));
			free(msg);
			goto fail;
		}
		if (r == 0)
			break;
		(void)dkim_sign_feed(s, msg + len, (size_t)r); /* errors at finish */
		len += (size_t)r;
	}
	char *hdr = NULL;
	size_t hlen = 0;
	if (dkim_sign_finish(s, &hdr, &hlen, err, sizeof(err)) < 0) {
		free(msg);
		goto fail;
	}
	if (fsio_write_all(STDOUT_FILENO, hdr, hlen) < 0 ||
	    fsio_write_all(STDOUT_FILENO, msg, len) < 0) {
		fprintf(stderr, "fulmar: standard output: %s\n", strerror_safe(errno));
	} else {
		rc = 0;
	}
	free(hdr);
	free(msg);
	dkim_sign_free(s);
	return rc;
fail:
	fprintf(stderr, "fulmar: %s\n", err);
	dkim_sign_free(s);
	return 1;
usage:
	usage();
	return 2;
}

/* ---- dkim verify ---------------------------------------------------- */

/* Seconds per try of a key lookup. */
#define VERIFY_DNS_TIMEOUT 2.0

static void verify_done(void *arg, struct dkim_verify *v)
{
	(void)v;
	*(bool *)arg = true;
}

static int cmd_verify(int argc, char **argv)
{
	const char *servers = NULL;
	int64_t now = (int64_t)time(NULL);

	for (int i = 2; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		char *end;
		if (v != NULL && strcmp(argv[i], "--dns") == 0) {
			servers = v;
		} else if (v != NULL && strcmp(argv[i], "--time") == 0) {
			errno = 0;
			now = strtoll(v, &end, 10);
			if (errno != 0 || *end != '\0' || now < 0)
				goto usage;
		} else {
			goto usage;
		}
		i++;
	}

	fsio_init_faults(); /* FULMAR_FAULT, for the out-of-memory tests */
	struct dkim_verify *dv = dkim_verify_new(now);
	char buf[65536], err[256];
	int rc = 1;
	if (dv == NULL) {
		fprintf(stderr, "fulmar: out of memory\n");
		return 1;
	}
	for (;;) {
		ssize_t r = read(STDIN_FILENO, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			fprintf(stderr, "fulmar: standard input: %s\n", strerror_safe(errno));
			dkim_verify_free(dv);
			return 1;
		}
		if (r == 0)
			break;
		(void)dkim_verify_feed(dv, buf, (size_t)r); /* errors at the end */
	}
	int nsig = dkim_verify_end(dv);
	if (nsig < 0) {
		fprintf(stderr, "fulmar: %s\n", dkim_verify_error(dv));
		dkim_verify_free(dv);
		return 1;
	}
	struct event_base *base = event_base_new();
	struct dns *dns = base ? dns_new(base, servers, VERIFY_DNS_TIMEOUT, err, sizeof(err))
			       : NULL;
	if (dns == NULL) {
		fprintf(stderr, "fulmar: %s\n", base ? err : "cannot make an event loop");
		goto out;
	}
	bool done = false;
	if (dkim_verify_async_start(dv, dns, verify_done, &done) != NULL)
		event_base_dispatch(base);
	else if (!done) { /* NULL without the callback: no memory to start */
		fprintf(stderr, "fulmar: out of memory\n");
		goto out;
	}
	if (!done) {
		fprintf(stderr, "fulmar: the key lookups did not finish\n");
		goto out;
	}
	if (nsig == 0)
		printf("none\n");
	for (int i = 0; i < nsig; i++) {
		struct dkim_verify_result res;
		if (dkim_verify_result(dv, (size_t)i, &res) < 0)
			continue;
		printf("%s d=%s s=%s a=%s b=%s reason=\"%s\"%s\n",
		       dkim_verify_status_name(res.status), res.domain, res.selector, res.alg,
		       res.header_b, res.reason, res.has_l ? " l=yes" : "");
	}
	rc = 0;
out:
	dns_free(dns);
	if (base)
		event_base_free(base);
	dkim_verify_free(dv);
	return rc;
usage:
	fputs("usage: fulmar dkim verify [--dns IP:PORT] [--time T] < message\n", stderr);
	return 2;
}

int cmd_dkim(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "verify") == 0)
		return cmd_verify(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "keygen") == 0)
		return cmd_keygen(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "record") == 0)
		return cmd_record(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "sign") == 0)
		return cmd_sign(argc, argv);
	usage();
	return 2;
}
